"""`simmim-ray check SPACE`: validate a search space against the config schema and print it; runs nothing."""
from __future__ import annotations

from simmim_ray.cli.args import path_arg
from simmim_ray.cli.input_checks import validate_check


def add_parser(sub) -> None:
    c = sub.add_parser("check", help="validate a search space and print it; runs nothing")
    c.add_argument("space", type=path_arg("space", "a search space file"))
    c.add_argument("--config", default=None, type=path_arg("--config", "a YAML config file"))
    c.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")


def run(args) -> int:
    _, space = validate_check(args)
    print(f"space {space.name}: {len(space.params)} searched keys, target_accuracy={space.target_accuracy}, "
          f"size_metric={space.size_metric}, trials={space.trials}"
          + (f", budget={space.budget} trial-epochs" if space.budget else ""))
    for k, v in space.fixed.items():
        print(f"  fixed  {k} = {v}")
    for p in space.params:
        print(f"  search {p.key}: {p.describe()}")
    print("ok")
    return 0
