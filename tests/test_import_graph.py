"""The layer map of DESIGN.md, checked on the source: no import cycle, no upward import, no private
name imported across layers.

Every import statement counts, those inside functions included; only imports under
`if TYPE_CHECKING:` are left out (they never run). A package's `__init__` is a module like any
other: `from robustlab.train import X` (X not a submodule) is an edge to `robustlab.train`'s
`__init__`, so a submodule importing from its own package while that `__init__` imports it closes a
cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

#: Lowest first: a layer may import itself and the layers before it, never one after it.
LAYERS = ("core", "data", "losses", "attacks", "models", "train", "defenses", "store", "selftest",
          "evaluate", "report", "privacy", "experiment", "cli")


def _modules(src: Path) -> dict[str, tuple[Path, bool]]:
    mods: dict[str, tuple[Path, bool]] = {}
    for path in src.rglob("*.py"):
        parts = list(path.relative_to(src).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts = parts[:-1]
        mods[".".join(parts)] = (path, is_package)
    return mods


def _owner(name: str, mods: dict[str, tuple[Path, bool]]) -> str:
    """The longest known module that `name` (a dotted module or module.attribute) lies in."""
    while name not in mods and "." in name:
        name = name.rsplit(".", 1)[0]
    return name


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def import_edges(src: Path = SRC) -> dict[str, set[tuple[str, str]]]:
    """module -> {(imported module, imported name or "")} for every robustlab import that runs."""
    mods = _modules(src)
    edges: dict[str, set[tuple[str, str]]] = {m: set() for m in mods}

    for module, (path, is_package) in mods.items():
        package = module if is_package else module.rsplit(".", 1)[0]

        def visit(node: ast.AST, module: str = module, package: str = package) -> None:
            if isinstance(node, ast.If) and _is_type_checking(node):
                for child in node.orelse:
                    visit(child)
                return
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] == "robustlab":
                        edges[module].add((_owner(alias.name, mods), ""))
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    source = ".".join(base + ([node.module] if node.module else []))
                else:
                    source = node.module or ""
                if source.split(".")[0] == "robustlab":
                    for alias in node.names:
                        target = f"{source}.{alias.name}"
                        if target in mods:
                            edges[module].add((target, ""))
                        else:
                            edges[module].add((_owner(source, mods), alias.name))
            for child in ast.iter_child_nodes(node):
                visit(child)

        visit(ast.parse(path.read_text(encoding="utf-8")))
        edges[module] = {(t, n) for t, n in edges[module] if t != module}
    return edges


def cycles(edges: dict[str, set[tuple[str, str]]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    graph = {m: sorted({t for t, _ in ts if t in edges}) for m, ts in edges.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in graph:
        if root in index:
            continue
        work = [(root, 0)]
        while work:
            node, i = work.pop()
            if i == 0:
                index[node] = low[node] = counter
                counter += 1
                stack.append(node)
                on_stack.add(node)
            if i < len(graph[node]):
                work.append((node, i + 1))
                nxt = graph[node][i]
                if nxt not in index:
                    work.append((nxt, 0))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            if low[node] == index[node]:
                component = []
                while True:
                    top = stack.pop()
                    on_stack.discard(top)
                    component.append(top)
                    if top == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
    return found


def _layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS else None


def upward(edges: dict[str, set[tuple[str, str]]]) -> list[str]:
    rank = {name: i for i, name in enumerate(LAYERS)}
    out = set()
    for module, targets in edges.items():
        for target, _ in targets:
            a, b = _layer(module), _layer(target)
            if a and b and rank[b] > rank[a]:
                out.add(f"{module} -> {target}")
    return sorted(out)


def private_across_layers(edges: dict[str, set[tuple[str, str]]]) -> list[str]:
    out = []
    for module, targets in edges.items():
        for target, name in targets:
            dunder = name.startswith("__") and name.endswith("__")  # metadata such as __version__
            if name.startswith("_") and not dunder and _layer(module) != _layer(target):
                out.append(f"{module} imports {target}.{name}")
    return sorted(out)


def test_no_import_cycle() -> None:
    assert cycles(import_edges()) == []


def test_no_upward_import() -> None:
    assert upward(import_edges()) == []


def test_no_private_name_across_layers() -> None:
    assert private_across_layers(import_edges()) == []


def test_every_subpackage_has_a_layer() -> None:
    packages = {p.name for p in (SRC / "robustlab").iterdir() if (p / "__init__.py").exists()}
    assert packages <= set(LAYERS), packages - set(LAYERS)


def _write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / "robustlab" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


@pytest.mark.parametrize("files, expected", [
    # a lazy import inside a function still closes the cycle
    ({"__init__.py": "", "core/__init__.py": "", "core/a.py": "import robustlab.core.b\n",
      "core/b.py": "def f():\n    from robustlab.core import a\n"}, [["robustlab.core.a", "robustlab.core.b"]]),
    # a submodule importing a name from its own package's __init__, which imports it
    ({"__init__.py": "", "train/__init__.py": "from robustlab.train.t import T\n",
      "train/t.py": "from robustlab.train import helper\nT = 1\n", "train/helper.py": ""}, []),
    ({"__init__.py": "", "train/__init__.py": "from robustlab.train.t import T\nX = 2\n",
      "train/t.py": "from robustlab.train import X\nT = 1\n"}, [["robustlab.train", "robustlab.train.t"]]),
    # under TYPE_CHECKING: never runs, not an edge
    ({"__init__.py": "", "core/__init__.py": "", "core/a.py": "import robustlab.core.b\n",
      "core/b.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from robustlab.core import a\n"}, []),
])
def test_cycle_rule_on_small_trees(tmp_path: Path, files: dict[str, str], expected: list[list[str]]) -> None:
    assert cycles(import_edges(_write(tmp_path, files))) == expected


def test_upward_and_private_rules_on_a_small_tree(tmp_path: Path) -> None:
    src = _write(tmp_path, {"__init__.py": "", "core/__init__.py": "", "store/__init__.py": "",
                            "store/s.py": "_hidden = 1\n",
                            "core/c.py": "def f():\n    from robustlab.store.s import _hidden\n"})
    edges = import_edges(src)
    assert upward(edges) == ["robustlab.core.c -> robustlab.store.s"]
    assert private_across_layers(edges) == ["robustlab.core.c imports robustlab.store.s._hidden"]
