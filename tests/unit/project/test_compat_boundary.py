"""Nothing outside simmim_ray/_compat uses a private API of Ray or Optuna (issue 14): no import of a private module
(`_internal`, `_private`, `_common`, `internal_kv`, ...) or private name, no underscore attribute, argument or
method name of theirs. Read from the source: every module of the package, whether or not it is imported."""
from __future__ import annotations

import ast
import os
import re
import repo_root

REPO = repo_root.REPO
ROOT = os.path.join(REPO, "simmim_ray")
SEAM = os.path.join(ROOT, "_compat")
BENCHMARKS = os.path.join(REPO, "benchmarks")
DEPS = ("ray", "optuna")
PRIVATE_STRING = re.compile(r"^_[a-z][a-z0-9_]*$")  # a private name passed as text (getattr, execute)


def sources() -> list[str]:
    """The package (outside the seam) and the benchmarks, which measure the product and must use it the same way."""
    return sorted(os.path.join(d, f) for root in (ROOT, BENCHMARKS) for d, _, fs in os.walk(root)
                  if not d.startswith(SEAM) for f in fs if f.endswith(".py"))


def private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def own_names(tree: ast.Module) -> set[str]:
    """Names this file defines: its own classes' and functions' private helpers and attributes are not Ray's."""
    names = set()
    for n in ast.walk(tree):
        if isinstance(n, (ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef)):
            names.add(n.name)
        elif isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store):
            names.add(n.id)
        elif isinstance(n, ast.Attribute) and isinstance(n.ctx, ast.Store):
            names.add(n.attr)
    return names


def violations(path: str) -> list[str]:
    with open(path) as f:
        tree = ast.parse(f.read())
    imports_dep = False
    found = []
    for n in ast.walk(tree):
        if isinstance(n, (ast.Import, ast.ImportFrom)):
            modules = [n.module or ""] if isinstance(n, ast.ImportFrom) else [a.name for a in n.names]
            for mod in modules:
                if mod.split(".")[0] in DEPS:
                    imports_dep = True
                    parts = mod.split(".")
                    if any(private(p) or p == "internal_kv" for p in parts):
                        found.append(f"{n.lineno}: import of {mod}")
                    if isinstance(n, ast.ImportFrom):
                        found += [f"{n.lineno}: {mod}.{a.name}" for a in n.names
                                  if private(a.name) or a.name == "internal_kv"]
    if not imports_dep:
        return found
    own = own_names(tree)
    for n in ast.walk(tree):
        if isinstance(n, ast.Attribute) and private(n.attr) and n.attr not in own:
            found.append(f"{n.lineno}: .{n.attr}")
        elif isinstance(n, ast.keyword) and n.arg and private(n.arg):
            found.append(f"{n.lineno}: argument {n.arg}=")
        elif isinstance(n, ast.Constant) and isinstance(n.value, str) and PRIVATE_STRING.match(n.value):
            found.append(f"{n.lineno}: {n.value!r}")
        elif isinstance(n, ast.ClassDef) and n.bases:
            # a subclass of a Ray / Optuna class overriding one of its private methods
            found += [f"{m.lineno}: override {n.name}.{m.name}" for m in n.body
                      if isinstance(m, ast.FunctionDef) and private(m.name) and overrides(tree, n, m.name)]
    return found


def overrides(tree: ast.Module, cls: ast.ClassDef, name: str) -> bool:
    """Whether a base of `cls` imported from Ray / Optuna has `name`."""
    import importlib

    imported = {(a.asname or a.name): (n.module, a.name) for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)
                and (n.module or "").split(".")[0] in DEPS for a in n.names}
    for base in cls.bases:
        if isinstance(base, ast.Name) and base.id in imported:
            module, attr = imported[base.id]
            if hasattr(getattr(importlib.import_module(module), attr), name):
                return True
    return False


def test_no_private_ray_or_optuna_api_outside_the_seam():
    bad = {os.path.relpath(p, REPO): v for p in sources() if (v := violations(p))}
    assert not bad, "private Ray/Optuna API outside simmim_ray/_compat: " + repr(bad)


def test_the_check_finds_what_it_looks_for(tmp_path):
    """The check is real: each kind of private use in a file outside the seam is reported."""
    src = tmp_path / "bad.py"
    src.write_text(
        "import ray\nfrom ray.experimental import internal_kv\nfrom ray.train.v2._internal.util import X\n"
        "from ray.train.torch import TorchTrainer\n"
        "class T(TorchTrainer):\n    def _create_default_callbacks(self):\n        pass\n"
        "internal_kv._internal_kv_get('k')\nray.init(_temp_dir='/tmp')\ngetattr(ray, '_private')\n"
        "def f(study):\n    return study._storage\n")
    got = " | ".join(violations(str(src)))
    for needle in ("ray.experimental.internal_kv", "import of ray.train.v2._internal.util", "._internal_kv_get",
                   "argument _temp_dir=", "'_private'", "._storage", "override T._create_default_callbacks"):
        assert needle in got, (needle, got)
