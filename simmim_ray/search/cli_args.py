"""Argument parsers for search / check / report / convert and their dispatch."""
from __future__ import annotations


def add_search_parsers(sub, positive_int, positive_float) -> None:
    pass


def dispatch(args) -> int:
    raise SystemExit(f"unknown command {args.command}")
