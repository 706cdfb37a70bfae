"""argparse pieces shared by the commands: a parser whose errors are one line and exit 2, typed number flags."""
from __future__ import annotations

import argparse
import sys


class Parser(argparse.ArgumentParser):
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
