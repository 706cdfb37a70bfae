"""The package's layers, read from the source (every import, lazy ones inside functions too):

    cli/  ->  search/  ->  train/  ->  io/  ->  the core (config, models, masking, loss, data, engine, ...)

A layer imports only layers to its right; the core is pure PyTorch: no Ray, Optuna, YAML or argparse (it runs, and
is tested, without a cluster or a command line). `_compat/` is the seam for Ray's and Optuna's private APIs: the
layers may use it, the core may not. And no module imports itself back through others: no import circle, whether
its imports run when the module loads or inside a function (a lazy import only hides a circle until it runs)."""
from __future__ import annotations

import ast
import os

import pytest
import repo_root

ROOT = os.path.join(repo_root.REPO, "simmim_ray")
ORDER = ["cli", "search", "train", "io", "core"]  # left may import right, never the other way
SEAM = "_compat"  # Ray's and Optuna's private APIs: any layer but the core may import it
CORE_FORBIDDEN = ("ray", "optuna", "yaml", "argparse")


def layer(module: str) -> str:
    """'simmim_ray.search.driver' -> 'search'; a top-level module of the package is the core
    (`python -m simmim_ray` is the command line)."""
    parts = module.split(".")
    top = parts[1] if len(parts) > 1 else ""
    return "cli" if top == "__main__" else top if top in ORDER or top == SEAM else "core"


def imports(path: str, module: str) -> list[str]:
    """Every module `path` names in an import, at any depth (functions included), relative ones resolved; for
    `from M import x`, M.x when x is a submodule is left to `resolve`."""
    tree = ast.parse(open(path).read(), path)
    out = []
    package = module if path.endswith("__init__.py") else module.rpartition(".")[0]
    for n in ast.walk(tree):
        if isinstance(n, ast.Import):
            out += [a.name for a in n.names]
        elif isinstance(n, ast.ImportFrom):
            if n.level:  # relative: resolve against this module's package
                base = package.split(".")[:len(package.split(".")) - n.level + 1]
                mod = ".".join(base + ([n.module] if n.module else []))
            else:
                mod = n.module or ""
            out.append(mod)
            out += [f"{mod}.{a.name}" for a in n.names]  # `from pkg import submodule`; kept only if one
    return out


def modules(root: str = ROOT) -> list[tuple[str, str]]:
    out = []
    for d, _, files in os.walk(root):
        for f in files:
            if f.endswith(".py"):
                rel = os.path.relpath(os.path.join(d, f), os.path.dirname(root))[:-3].replace(os.sep, ".")
                out.append((os.path.join(d, f), rel.removesuffix(".__init__")))
    return sorted(out)


def import_graph(root: str = ROOT) -> dict[str, set[str]]:
    """module -> the package's modules that importing it (or calling into it) loads: what it names, and the
    packages above those (`import a.b.c` runs a/b/__init__.py), except its own packages (already loaded)."""
    mods = dict((m, p) for p, m in modules(root))
    top = os.path.basename(root)
    graph: dict[str, set[str]] = {}
    for mod, path in mods.items():
        mine = {".".join(mod.split(".")[:i]) for i in range(1, len(mod.split(".")) + 1)}
        edges = set()
        for imp in imports(path, mod):
            if imp.split(".")[0] != top or imp not in mods:
                continue
            parts = imp.split(".")
            edges |= {".".join(parts[:i]) for i in range(2, len(parts) + 1)} - mine
        graph[mod] = edges & set(mods)
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component of more than one module (or a module importing itself)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found = []

    def visit(v: str) -> None:  # Tarjan; the package is small enough for recursion
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1 or v in graph[v]:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


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
           or (imp.startswith("simmim_ray.") and layer(imp) != "core")]
    assert not bad, "\n".join(bad)


def test_no_import_circle():
    found = circles(import_graph())
    assert not found, "import circles (each a set of modules that import one another, lazily or not):\n" + \
        "\n".join(" <-> ".join(c) for c in found)


def test_the_check_sees_lazy_and_relative_imports(tmp_path):
    p = tmp_path / "m.py"
    p.write_text("def f():\n    import ray\n    from .x import y\n")
    assert imports(str(p), "simmim_ray.data.m") == ["ray", "simmim_ray.data.x", "simmim_ray.data.x.y"]
    assert layer("simmim_ray.search.driver") == "search" and layer("simmim_ray.models.vit") == "core"
    assert layer("simmim_ray.io.storage") == "io" and layer("simmim_ray.paths") == "core"


@pytest.mark.parametrize("files, circle", [
    # a lazy import inside a function is a circle too
    ({"a.py": "import pkg.b\n", "b.py": "def f():\n    from pkg import a\n"}, ["pkg.a", "pkg.b"]),
    # through a package's __init__: importing pkg.sub.c runs pkg/sub/__init__.py, which imports pkg.a
    ({"a.py": "from pkg.sub.c import x\n", "sub/__init__.py": "from pkg.a import y\n", "sub/c.py": "x = 1\n"},
     ["pkg.a", "pkg.sub"]),
    ({"a.py": "import pkg.b\n", "b.py": "x = 1\n", "sub/__init__.py": "", "sub/c.py": "from . import d\n",
      "sub/d.py": "from .c import z\n"}, ["pkg.sub.c", "pkg.sub.d"]),
    ({"a.py": "import pkg.b\n", "b.py": "import os\n", "sub/__init__.py": "", "sub/c.py": "from pkg.sub import d\n",
      "sub/d.py": "x = 1\n"}, None),  # a module importing a sibling through its own package is no circle
])
def test_the_circle_check_finds_circles(tmp_path, files, circle):
    for name, text in {"__init__.py": "", **files}.items():
        (tmp_path / "pkg" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "pkg" / name).write_text(text)
    assert circles(import_graph(str(tmp_path / "pkg"))) == ([circle] if circle else [])


def facades() -> list[str]:
    """The packages whose __init__.py is a facade (simmim_ray/facade.py's `surface`)."""
    out = []
    for path, mod in modules():
        if path.endswith("__init__.py"):
            with open(path) as f:
                if "surface(__name__" in f.read():
                    out.append(mod)
    return out


def test_facades_are_found():
    assert {"simmim_ray.data", "simmim_ray.io", "simmim_ray.search.record"} <= set(facades())


@pytest.mark.parametrize("package", facades())
def test_each_package_surface_names_what_its_modules_define(package):
    """A facade's names (simmim_ray/facade.py) are loaded on first use: a stale entry would fail only then."""
    import importlib

    pkg = importlib.import_module(package)
    assert pkg.__all__
    for name in pkg.__all__:
        obj = getattr(pkg, name)
        assert obj.__module__.startswith(package + "."), (name, obj.__module__)
    with pytest.raises(AttributeError, match="no attribute 'nothing_here'"):
        pkg.nothing_here
