"""One-way layers: pqstudy's import graph, read from the source with ``ast``, has no cycle and no upward import.

Each module of pqstudy sits in one layer of ``LAYERS`` and may import only from its own layer or the layers before
it, at module level and inside functions alike. A new file must be placed: a module in no layer fails the test with
the line to add here.

How the graph is built (``import_graph``): every ``import``/``from ... import`` anywhere in a module's tree (module
level, functions, classes, ``try``/``if`` blocks) and every ``importlib.import_module("...")`` / ``__import__("...")``
with a constant name; relative imports are resolved against the module's package. ``from pkg import name`` is an
edge to the submodule ``pkg.name`` when that file exists, else to ``pkg`` itself. Importing ``a.b.c`` also runs the
package ``__init__`` files of ``a`` and ``a.b``; those implicit edges are not counted (a package that imports its
own submodules, and the submodules that import their siblings, would otherwise always form a cycle).
"""

from __future__ import annotations

import ast
from collections import deque
from pathlib import Path

import pytest

PACKAGE = "pqstudy"
ROOT = Path(__file__).resolve().parents[1] / PACKAGE

# Layer number → (name, members). A member is ``x`` (the module or package ``pqstudy.x`` itself), ``x/*`` (the
# package ``pqstudy.x`` and everything under it) or ``*/x`` (a module named ``x`` anywhere). A module's layer is
# that of its most specific member: an exact name, then a ``*/x`` name, then the deepest ``x/*`` package.
LAYERS = {
    # "" = pqstudy/__init__
    0: ("util", ("", "runio", "runlock", "safe_pickle", "cpu", "precision", "tv_compat", "offline", "distributed")),
    1: ("config", ("config", "recipes")),
    2: ("data", ("data", "data/*")),
    3: ("quantizers, models", ("quantizers/*", "models/*")),
    4: ("codebooks", ("codebooks/*",)),
    5: ("train, evaluate, metrics", ("train", "train_eval", "evaluate", "metrics/*", "preflight", "losses",
                                    "generation/*")),
    6: ("study", ("study/*",)),
    7: ("figures", ("figures/*",)),
    8: ("cli", ("cli", "__main__")),
}


# ---------------------------------------------------------------------------------------------------------------
# the graph


def module_files(root: Path, package: str) -> dict[str, Path]:
    """``{dotted module name: file}`` for every ``.py`` file under the package directory ``root``."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = [package, *path.relative_to(root).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _resolve_relative(module: str, is_package: bool, level: int, name: str | None) -> str:
    """The absolute name of ``from <level dots><name> import ...`` written in ``module``."""
    base = module.split(".") if is_package else module.split(".")[:-1]
    if level - 1 > len(base) - 1:
        raise ImportError(f"{module}: relative import beyond the top-level package (level {level})")
    base = base[: len(base) - (level - 1)]
    return ".".join([*base, name] if name else base)


def _constant_import_call(node: ast.Call) -> str | None:
    """The module name of ``importlib.import_module("x")`` / ``import_module("x")`` / ``__import__("x")``."""
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None
    if name in ("import_module", "__import__") and node.args and isinstance(node.args[0], ast.Constant):
        value = node.args[0].value
        return value if isinstance(value, str) else None
    return None


def imported_names(source: str, module: str, is_package: bool, known: set[str]) -> set[str]:
    """The modules of ``known`` that ``source`` (the text of ``module``) imports, anywhere in its tree."""
    found = set()

    def add(name: str) -> None:
        # the deepest known module that ``name`` is or lies in (``pqstudy.x.f`` for a function f → ``pqstudy.x``)
        parts = name.split(".")
        for i in range(len(parts), 0, -1):
            if ".".join(parts[:i]) in known:
                found.add(".".join(parts[:i]))
                return

    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            base = (_resolve_relative(module, is_package, node.level, node.module) if node.level
                    else node.module or "")
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                add(submodule if submodule in known else base)
        elif isinstance(node, ast.Call) and (name := _constant_import_call(node)):
            add(name)
    found.discard(module)
    return found


def import_graph(root: Path, package: str = PACKAGE) -> dict[str, set[str]]:
    """``{module: modules of the package it imports}`` for every module under ``root``."""
    files = module_files(root, package)
    known = set(files)
    return {name: imported_names(path.read_text(encoding="utf-8"), name, path.name == "__init__.py", known)
            for name, path in files.items()}


# ---------------------------------------------------------------------------------------------------------------
# the checks


def _shortest_cycle(graph: dict[str, set[str]], start: str, members: set[str]) -> list[str]:
    """A shortest cycle through ``start`` inside the strongly connected ``members``, as ``[start, ..., start]``."""
    previous = {start: None}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for nxt in sorted(graph[node] & members):
            if nxt == start:
                path = [node]
                while previous[path[-1]] is not None:
                    path.append(previous[path[-1]])
                return [*reversed(path), start]
            if nxt not in previous:
                previous[nxt] = node
                queue.append(nxt)
    raise AssertionError(f"{start} is on no cycle")


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One shortest cycle per strongly connected component with a cycle, each ``[a, b, ..., a]``."""
    return sorted(_shortest_cycle(graph, min(c), c) for c in tangles(graph))


def tangles(graph: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected components that hold a cycle (Tarjan): every module of one reaches every other."""
    index, low, stack, on_stack, components = {}, {}, [], set(), []

    def visit(v: str) -> None:  # recursion depth ≤ number of modules (~50 here)
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1 or v in graph[v]:
                components.append(component)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(components, key=min)


def layer_of(module: str, layers: dict = LAYERS, package: str = PACKAGE) -> int | None:
    """The layer of ``module`` under ``layers`` (see ``LAYERS``), or None when no member matches."""
    rel = module[len(package) + 1 :].split(".") if module != package else []
    exact = basename = None
    deepest = (-1, None)
    for number, (_, members) in layers.items():
        for member in members:
            if member.startswith("*/"):
                if rel and rel[-1] == member[2:]:
                    basename = number
            elif member.endswith("/*"):
                prefix = member[:-2].split("/")
                if rel[: len(prefix)] == prefix and len(prefix) > deepest[0]:
                    deepest = (len(prefix), number)
            elif rel == (member.split("/") if member else []):
                exact = number
    for number in (exact, basename, deepest[1]):
        if number is not None:
            return number
    return None


def unplaced(graph: dict[str, set[str]], layers: dict = LAYERS, package: str = PACKAGE) -> list[str]:
    return sorted(m for m in graph if layer_of(m, layers, package) is None)


def upward_imports(graph: dict[str, set[str]], layers: dict = LAYERS, package: str = PACKAGE) -> list[str]:
    """``a -> b (layer x -> y)`` for every import of a later layer (modules in no layer are skipped here)."""
    out = []
    for a in sorted(graph):
        for b in sorted(graph[a]):
            x, y = layer_of(a, layers, package), layer_of(b, layers, package)
            if x is not None and y is not None and y > x:
                out.append(f"{a} -> {b} (layer {x} -> {y})")
    return out


def _where(module: str) -> str:
    """The file of a pqstudy module, relative to the repository."""
    path = module.replace(".", "/")
    return path + ("/__init__.py" if (ROOT.parent / path).is_dir() else ".py")


# ---------------------------------------------------------------------------------------------------------------
# pqstudy itself


@pytest.fixture(scope="module")
def graph():
    return import_graph(ROOT)


def test_every_module_has_a_layer(graph):
    missing = unplaced(graph)
    layer_list = "; ".join(f"{n} {name}: {', '.join(m or '<pqstudy/__init__>' for m in members)}"
                           for n, (name, members) in LAYERS.items())
    assert not missing, (
        "modules in no layer: " + ", ".join(f"{m} ({_where(m)})" for m in missing) + ". Place each one: add it to "
        f"the members of its layer in LAYERS in tests/test_layers.py, or move it into a package that has one "
        f"(layers: {layer_list})")


def test_no_upward_imports(graph):
    edges = upward_imports(graph)
    assert not edges, "imports of a later layer (a module may import only its own layer and those before it):\n" + (
        "\n".join(edges))


def test_no_import_cycles(graph):
    lines = [f"{' -> '.join(_shortest_cycle(graph, min(c), c))}" + (
        f"  (one of the cycles among {', '.join(sorted(c))})" if len(c) > 2 else "") for c in tangles(graph)]
    assert not lines, "import cycles:\n" + "\n".join(lines)


def test_the_graph_sees_pqstudy():
    """A sanity anchor: the reader finds the package and a few edges that are certainly there."""
    g = import_graph(ROOT)
    assert len(g) > 30 and "pqstudy.cli" in g
    assert "pqstudy.config" in g["pqstudy.train"] and "pqstudy.tv_compat" in g["pqstudy"]


# ---------------------------------------------------------------------------------------------------------------
# the checker, on tiny fake packages


def write_package(root: Path, files: dict[str, str]) -> Path:
    """Write ``{"relative/path.py": source}`` under ``root/fake`` (every folder gets an ``__init__.py``)."""
    pkg = root / "fake"
    for rel, source in {"__init__.py": "", **files}.items():
        path = pkg / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        for parent in path.relative_to(pkg).parents:
            init = pkg / parent / "__init__.py"
            if not init.exists():
                init.write_text("")
        path.write_text(source)
    return pkg


FAKE_LAYERS = {0: ("low", ("", "util", "*/device")), 1: ("mid", ("core/*",)), 2: ("top", ("app",))}


@pytest.mark.parametrize(
    ("files", "edges"),
    [
        pytest.param({"util.py": "", "app.py": "import fake.util\n"}, {"fake.app": {"fake.util"}}, id="import"),
        pytest.param({"util.py": "x = 1", "app.py": "from fake.util import x\n"}, {"fake.app": {"fake.util"}},
                     id="from-name"),
        pytest.param({"core/a.py": "", "app.py": "from fake.core import a\n"}, {"fake.app": {"fake.core.a"}},
                     id="from-submodule"),
        pytest.param({"core/a.py": "from . import b\n", "core/b.py": ""}, {"fake.core.a": {"fake.core.b"}},
                     id="relative-sibling"),
        pytest.param({"core/a.py": "from ..util import f\n", "util.py": "def f(): pass\n"},
                     {"fake.core.a": {"fake.util"}}, id="relative-parent"),
        pytest.param({"core/__init__.py": "from .a import g\n", "core/a.py": "def g(): pass\n"},
                     {"fake.core": {"fake.core.a"}}, id="relative-in-init"),
        pytest.param({"util.py": "def f():\n    from fake import app\n    return app\n", "app.py": ""},
                     {"fake.util": {"fake.app"}}, id="function-level"),
        pytest.param({"util.py": "class C:\n    def m(self):\n        if True:\n            import fake.app\n",
                      "app.py": ""}, {"fake.util": {"fake.app"}}, id="nested-method"),
        pytest.param({"util.py": "import importlib\nM = importlib.import_module('fake.app')\n", "app.py": ""},
                     {"fake.util": {"fake.app"}}, id="import-module-call"),
        pytest.param({"util.py": "import os, numpy\nfrom json import dumps\n"}, {"fake.util": set()},
                     id="outside-imports-ignored"),
    ],
)
def test_graph_builder_finds_each_kind_of_import(tmp_path, files, edges):
    graph = import_graph(write_package(tmp_path, files), "fake")
    for module, expected in edges.items():
        assert graph[module] == expected


def test_relative_import_beyond_the_package_is_an_error(tmp_path):
    with pytest.raises(ImportError, match="beyond the top-level package"):
        import_graph(write_package(tmp_path, {"util.py": "from ... import x\n"}), "fake")


@pytest.mark.parametrize(
    ("files", "cycles"),
    [
        pytest.param({"a.py": "import fake.b\n", "b.py": "import fake.a\n"}, [["fake.a", "fake.b", "fake.a"]],
                     id="two"),
        pytest.param({"a.py": "import fake.b\n", "b.py": "import fake.c\n", "c.py": "def f():\n    import fake.a\n"},
                     [["fake.a", "fake.b", "fake.c", "fake.a"]], id="three-through-a-function"),
        pytest.param({"a.py": "import fake.b\n", "b.py": "import fake.c\n", "c.py": ""}, [], id="chain"),
        pytest.param({"a.py": "from .b import x\n", "b.py": "from .a import y\n", "c.py": "import fake.d\n",
                      "d.py": "import fake.c\n"}, [["fake.a", "fake.b", "fake.a"], ["fake.c", "fake.d", "fake.c"]],
                     id="two-components-relative"),
    ],
)
def test_cycles_are_found(tmp_path, files, cycles):
    assert find_cycles(import_graph(write_package(tmp_path, files), "fake")) == cycles


@pytest.mark.parametrize(
    ("module", "layer"),
    [("fake", 0), ("fake.util", 0), ("fake.core", 1), ("fake.core.x.y", 1), ("fake.core.device", 0),
     ("fake.app", 2), ("fake.other", None), ("fake.app.sub", None)],
)
def test_layer_of(module, layer):
    assert layer_of(module, FAKE_LAYERS, "fake") == layer


def test_upward_and_unplaced_imports_are_reported(tmp_path):
    files = {"util.py": "def f():\n    from .core import a\n", "core/a.py": "from .. import util\nimport fake.app\n",
             "core/device.py": "import fake.core.a\n", "app.py": "from fake.core import a\n", "stray.py": ""}
    graph = import_graph(write_package(tmp_path, files), "fake")
    assert upward_imports(graph, FAKE_LAYERS, "fake") == [
        "fake.core.a -> fake.app (layer 1 -> 2)",
        "fake.core.device -> fake.core.a (layer 0 -> 1)",
        "fake.util -> fake.core.a (layer 0 -> 1)",
    ]
    assert unplaced(graph, FAKE_LAYERS, "fake") == ["fake.stray"]


def test_a_clean_fake_package_passes(tmp_path):
    files = {"util.py": "", "core/a.py": "from .. import util\nfrom . import b\n", "core/b.py": "import fake.util\n",
             "app.py": "def main():\n    from fake.core import a\n"}
    graph = import_graph(write_package(tmp_path, files), "fake")
    assert upward_imports(graph, FAKE_LAYERS, "fake") == [] and unplaced(graph, FAKE_LAYERS, "fake") == []
    assert find_cycles(graph) == []
