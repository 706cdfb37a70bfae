"""The package's layers, read from the source (every import, lazy ones inside functions too):

    cli/  ->  search/  ->  train/  ->  the core (config, models, masking, loss, data, engine, ...)

A layer imports only layers to its right, so there are no import circles between them; the core is pure PyTorch:
no Ray, Optuna, YAML or argparse (it runs, and is tested, without a cluster or a command line)."""
from __future__ import annotations

import ast
import os
import repo_root

ROOT = os.path.join(repo_root.REPO, "simmim_ray")
ORDER = ["cli", "search", "train", "core"]  # left may import right, never the other way
CORE_FORBIDDEN = ("ray", "optuna", "yaml", "argparse")
# top-level modules that are not core: the seam and the I/O helpers (the core must not import them either)
NOT_CORE = ("cli", "search", "train", "_compat", "configio", "yamlio", "storage", "tblog", "__main__", "resources",
           "export")  # export writes and reads best/ (YAML beside the weights)


def layer(module: str) -> str:
    """'simmim_ray.search.driver' -> 'search'; anything else of the package is the core or a helper."""
    parts = module.split(".")
    top = parts[1] if len(parts) > 1 else ""
    return top if top in ORDER else ("core" if top not in NOT_CORE else top)


def imports(path: str, module: str) -> list[str]:
    tree = ast.parse(open(path).read(), path)
    out = []
    for n in ast.walk(tree):
        if isinstance(n, ast.Import):
            out += [a.name for a in n.names]
        elif isinstance(n, ast.ImportFrom):
            if n.level:  # relative: resolve against this module's package
                base = module.split(".")[:-n.level]
                out.append(".".join(base + ([n.module] if n.module else [])))
            elif n.module:
                out.append(n.module)
    return out


def modules() -> list[tuple[str, str]]:
    out = []
    for d, _, files in os.walk(ROOT):
        for f in files:
            if f.endswith(".py"):
                rel = os.path.relpath(os.path.join(d, f), os.path.dirname(ROOT))[:-3].replace(os.sep, ".")
                out.append((os.path.join(d, f), rel.removesuffix(".__init__")))
    return sorted(out)


def test_layers_import_only_to_their_right():
    bad = []
    for path, mod in modules():
        mine = layer(mod)
        if mine not in ORDER:
            continue
        for imp in imports(path, mod):
            if imp.startswith("simmim_ray.") and layer(imp) in ORDER:
                if ORDER.index(layer(imp)) < ORDER.index(mine):
                    bad.append(f"{mod} ({mine}) imports {imp} ({layer(imp)})")
    assert not bad, "\n".join(bad)


def test_the_core_is_pure_pytorch():
    bad = [f"{mod} imports {imp}" for path, mod in modules() if layer(mod) == "core"
           for imp in imports(path, mod) if imp.split(".")[0] in CORE_FORBIDDEN
           or (imp.startswith("simmim_ray.") and layer(imp) not in ("core",) and imp.split(".")[1] in NOT_CORE)]
    assert not bad, "\n".join(bad)


def test_the_check_sees_lazy_and_relative_imports(tmp_path):
    p = tmp_path / "m.py"
    p.write_text("def f():\n    import ray\n    from .x import y\n")
    assert imports(str(p), "simmim_ray.data.m") == ["ray", "simmim_ray.data.x"]
    assert layer("simmim_ray.search.driver") == "search" and layer("simmim_ray.models.vit") == "core"
