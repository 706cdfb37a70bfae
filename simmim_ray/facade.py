"""A package's surface, loaded on first use (PEP 562): what `search/record/`, `search/trial/`, `search/answer/` and
`io/` export in their `__init__.py`.

The facade imports nothing itself. An eager one (`from .recorder import Recorder` in `__init__.py`) would make
importing any module of the package import all of them: Ray Tune for `simmim-ray report`, which needs none of it,
and an import circle wherever a module the facade loads imports back into the package (settings.py -> record/db_url
-> record/__init__ -> experiment.py -> settings.py). Pure Python."""
from __future__ import annotations

import importlib
from typing import Any, Callable


def surface(package: str, names: dict[str, str]) -> tuple[list[str], Callable[[str], Any]]:
    """`names`: {exported name: the package's module that defines it}; -> (`__all__`, the package's `__getattr__`).
    A module of the package is imported by its own name as usual (the import system asks `__getattr__` first and
    takes the AttributeError as "not loaded yet")."""

    def getattr_(name: str) -> Any:
        if name not in names:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{names[name]}"), name)

    return sorted(names), getattr_
