"""`simmim-ray report DIR`: the answer of an experiment (finished, running or interrupted), from its ledger:
Pareto front, confirmation, winner, baselines (the `--json` contract: search/answer/report.py)."""
from __future__ import annotations

import json

from simmim_ray.cli.args import path_arg
from simmim_ray.cli.search_checks import open_experiment


def add_parser(sub) -> None:
    r = sub.add_parser("report", help="Pareto front and winner of an experiment (finished, running or not)")
    r.add_argument("dir", type=path_arg("report DIR", "an experiment directory"))
    r.add_argument("--json", action="store_true")


def run(args) -> int:
    from simmim_ray.search.answer import report, tables  # pyarrow: not at the CLI's startup
    from simmim_ray.search.answer.answer import labeled_fraction

    exp = open_experiment(args.dir.rstrip("/"), "report")
    s = exp.load_settings()  # a truncated or edited settings.json: one line naming it
    rows, _ = tables.load_trials(exp)
    tables.mark_feasible(rows, s.target_accuracy)
    rep = report.build(s, rows, exp.ledger.events(), labeled_fraction(exp, s))
    if args.json:
        print(json.dumps(rep, indent=2, default=str))
    else:
        print(report.format_text(rep, s))
    return 0
