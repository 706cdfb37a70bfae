"""`simmim-ray report DIR`: Pareto front and winner of an experiment (finished, running or interrupted)."""
from __future__ import annotations

import json


def add_parser(sub) -> None:
    r = sub.add_parser("report", help="Pareto front and winner of an experiment (finished, running or not)")
    r.add_argument("dir")
    r.add_argument("--json", action="store_true")


def run(args) -> int:
    from simmim_ray.errors import UserError
    from simmim_ray.search import results
    from simmim_ray.search.experiment import SETTINGS, Experiment

    d = args.dir.rstrip("/")
    try:
        exp = Experiment(d)
    except UserError as e:  # an unsupported URI: one line, not pyarrow's traceback
        raise UserError(str(e).replace("--storage-path ", "report ", 1)) from None
    if not exp.exists():
        raise UserError(f"report: {d!r} is not an experiment directory (no {SETTINGS})")
    s = exp.load_settings()
    rows, _ = results.load_trials(exp)
    results.mark_feasible(rows, s.target_accuracy)
    if args.json:
        print(json.dumps(results.report_json(rows, s.target_accuracy, s.size_metric), indent=2, default=str))
    else:
        print(results.format_report(rows, s.target_accuracy, s.size_metric))
    return 0
