"""`simmim-ray` command line: train | search | check | report | convert.

Bad input exits 2 with one line (`simmim-ray: error: ...`); no trace unless --debug. No feasible trial: exit 3.
"""
from __future__ import annotations

import argparse
import sys

from simmim_ray.errors import NoFeasibleTrial, UserError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2 (argparse prints usage too)
        print(f"simmim-ray: error: {message}", file=sys.stderr)
        sys.exit(2)


def int_at_least(flag: str, low: int):
    def parse(v: str) -> int:
        try:
            n = int(v)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{flag} must be an integer, but got {v!r}") from None
        if n < low:
            raise argparse.ArgumentTypeError(f"`{flag} >= {low}` must hold, but got {n}")
        return n
    return parse


def positive_int(flag: str):
    return int_at_least(flag, 1)


def positive_float(flag: str):
    def parse(v: str) -> float:
        try:
            x = float(v)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{flag} must be a number, but got {v!r}") from None
        if not x > 0:
            raise argparse.ArgumentTypeError(f"`{flag} > 0` must hold, but got {x}")
        return x
    return parse


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="simmim-ray", description="SimMIM pre-training and constrained architecture search on Ray.")
    p.add_argument("--debug", action="store_true", help="show full tracebacks")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    t = sub.add_parser("train", help="train one configuration data-parallel under Ray Train")
    t.add_argument("--config", help="YAML config file (defaults: small ViT on digits)")
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    t.add_argument("--workers", type=positive_int("--workers"), default=2)
    t.add_argument("--gpu", action="store_true")
    t.add_argument("--cpus-per-worker", type=positive_float("--cpus-per-worker"), default=1.0)
    t.add_argument("--output", default="runs/train")
    t.add_argument("--address", default=None, help="Ray address: auto, ray://HOST:PORT (default: start locally)")

    from simmim_ray.search.cli_args import add_search_parsers

    add_search_parsers(sub, positive_int, positive_float)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "train":
            from simmim_ray.train_cmd import run_train

            return run_train(args)
        from simmim_ray.search.cli_args import dispatch

        return dispatch(args)
    except UserError as e:
        if args.debug:
            raise
        print(f"simmim-ray: error: {e}", file=sys.stderr)
        return 2
    except NoFeasibleTrial as e:
        print(f"simmim-ray: {e}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        print("simmim-ray: interrupted; resume with --resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
