"""`simmim-ray report DIR`: Pareto front and winner of an experiment (finished, running or interrupted)."""
from __future__ import annotations

import json


def add_parser(sub) -> None:
    r = sub.add_parser("report", help="Pareto front and winner of an experiment (finished, running or not)")
    r.add_argument("dir")
    r.add_argument("--json", action="store_true")


def run(args) -> int:
    from simmim_ray import storage as sio
    from simmim_ray.errors import PATH_CHARS, UserError, excerpt
    from simmim_ray.search import results
    from simmim_ray.storage import resolve_storage

    d = args.dir.rstrip("/")
    try:
        resolve_storage(d)  # an unsupported URI: one line, not pyarrow's traceback
    except UserError as e:
        raise UserError(str(e).replace("--storage-path ", "report ", 1)) from None
    if not sio.exists(sio.join(d, "settings.json")):
        raise UserError(f"report: {d!r} is not an experiment directory (no settings.json)")
    try:
        st = json.loads(sio.read_bytes(sio.join(d, "settings.json")))
        target, size_metric = float(st["target_accuracy"]), str(st["size_metric"])
    except (ValueError, TypeError, KeyError) as e:  # truncated, edited, or not a search's settings
        raise UserError(f"report: {excerpt(d, PATH_CHARS)} has a settings.json that is not a search's settings "
                        f"({type(e).__name__}: {excerpt(str(e), 100)[1:-1]})") from None
    rows, _ = results.load_trials(d)
    results.mark_feasible(rows, target)
    if args.json:
        print(json.dumps(results.report_json(rows, target, size_metric), indent=2, default=str))
    else:
        print(results.format_report(rows, target, size_metric))
    return 0
