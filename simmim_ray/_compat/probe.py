"""Whether a dependency's module still has a private piece, read from its source without importing it (some of
those modules import torch, which the driver need not pay for just to pick a trial path)."""
from __future__ import annotations

import ast
import importlib.util
from functools import lru_cache


@lru_cache(maxsize=None)
def _tree(module: str) -> ast.Module | None:
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        return None
    with open(spec.origin, encoding="utf-8") as f:
        return ast.parse(f.read())


def _find(body: list, name: str):
    for node in body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name == name:
            return node
        if isinstance(node, (ast.Import, ast.ImportFrom)) and any((a.asname or a.name) == name for a in node.names):
            return node
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            return node
    return None


def _self_attrs(cls: ast.ClassDef) -> set[str]:
    return {t.attr for n in ast.walk(cls) if isinstance(n, (ast.Assign, ast.AnnAssign))
            for t in (n.targets if isinstance(n, ast.Assign) else [n.target])
            if isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name) and t.value.id == "self"}


def check(module: str, qualname: str, params: tuple[str, ...] = (), attrs: tuple[str, ...] = ()) -> str | None:
    """None when `module` defines `qualname` (`f`, `Cls` or `Cls.method`) taking `params`, and, for a class, setting
    `self.<attr>` for each of `attrs`; else what is missing, as one phrase."""
    what = f"{module}.{qualname}"
    tree = _tree(module)
    if tree is None:
        return f"{module} (no such module)"
    node, body = None, tree.body
    for part in qualname.split("."):
        node = _find(body, part)
        if node is None:
            return what
        body = getattr(node, "body", [])
    if params and isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        args = node.args
        have = {a.arg for a in args.posonlyargs + args.args + args.kwonlyargs}
        lost = [p for p in params if p not in have]
        if lost and args.kwarg is None:
            return f"{what}({', '.join(lost)})"
    if attrs and isinstance(node, ast.ClassDef):
        lost = [a for a in attrs if a not in _self_attrs(node)]
        if lost:
            return f"{what}.{', '.join(lost)}"
    return None


def missing(*checks: tuple) -> list[str]:
    return [m for c in checks if (m := check(*c)) is not None]
