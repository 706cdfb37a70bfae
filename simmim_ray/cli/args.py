"""argparse pieces shared by the commands: a parser whose errors are one line and exit 2, typed flags.

Number flags are checked when parsed, with the rule in the message: ints within their range, floats finite
(`inf` and `nan` parse as floats, and no flag means them). Path flags are never empty (paths.py's policy).
"""
from __future__ import annotations

import argparse
import math
import sys

from simmim_ray.errors import UserError, excerpt, one_line
from simmim_ray.paths import nonempty


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2 (argparse prints usage too)
        print(f"simmim-ray: error: {one_line(message)}", file=sys.stderr)
        sys.exit(2)


def int_in(flag: str, low: int, high: int | None = None):
    def parse(v: str) -> int:
        try:
            n = int(v)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{flag} must be an integer, but got {excerpt(v)}") from None
        if n < low or (high is not None and n > high):
            rule = f"{flag} >= {low}" if high is None else f"{low} <= {flag} <= {high}"
            raise argparse.ArgumentTypeError(f"`{rule}` must hold, but got {excerpt(n)}")
        return n
    return parse


def int_at_least(flag: str, low: int):
    return int_in(flag, low)


def positive_int(flag: str):
    return int_in(flag, 1)


def positive_float(flag: str, at_least: float = 0.0, why: str = ""):
    """A finite float > 0; with `at_least`, also >= it (`why` says where that bound comes from)."""
    def parse(v: str) -> float:
        try:
            x = float(v)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{flag} must be a number, but got {excerpt(v)}") from None
        if not math.isfinite(x):
            raise argparse.ArgumentTypeError(f"{flag} must be a finite number, but got {x}")
        if not x > 0:
            raise argparse.ArgumentTypeError(f"`{flag} > 0` must hold, but got {x}")
        if x < at_least:
            raise argparse.ArgumentTypeError(f"`{flag} >= {at_least:g}` must hold{why}, but got {x:g}")
        return x
    return parse


def resource_amount(flag: str):
    """CPUs or GPUs per worker: Ray counts resources in steps of 0.0001 and refuses a smaller fraction, after it
    started."""
    return positive_float(flag, 0.0001, " (Ray counts resources in steps of 0.0001)")


def budget_flag(v: str) -> tuple[str, float]:
    """--budget: compute as trial-epochs (`480`, `480epochs`) or trial wall time (`900s`, `15m`, `2h`) ->
    ("budget_epochs", n) or ("budget_seconds", seconds)."""
    text = v.strip().lower()
    units = {"s": 1, "m": 60, "h": 3600}
    for suffix, field in (("epochs", "budget_epochs"), ("epoch", "budget_epochs"), ("", "budget_epochs")):
        if suffix and not text.endswith(suffix):
            continue
        num = text[:len(text) - len(suffix)] if suffix else text
        if num.isdigit() and int(num) >= 1:
            return field, int(num)
    if text[-1:] in units:
        try:
            x = float(text[:-1]) * units[text[-1]]
        except ValueError:
            x = math.nan
        if math.isfinite(x) and x > 0:
            return "budget_seconds", x
    raise argparse.ArgumentTypeError(f"must be trial-epochs (e.g. 480) or a time (e.g. 900s, 15m, 2h) > 0, but got "
                                     f"{excerpt(v)}")


def path_arg(flag: str, what: str):
    """A path (or URI) flag: `--points ''` (an unset shell variable, say) must not quietly mean "none" or "here"."""
    def parse(v: str) -> str:
        try:
            return nonempty(v, flag, what)
        except UserError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
    return parse
