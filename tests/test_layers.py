"""The import layers of ARCHITECTURE.md hold: pltd.pipeline → pltd.trainer → pltd.stages → pltd (ground).

Read from the source with `ast` (no imports executed), so lazy imports inside functions count too.
A module may import from its own layer or any layer below it, never above; and no two modules
import each other, directly or through a longer circle.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {"pltd": ROOT / "pltd", "pltd.stages": ROOT / "stages", "pltd.trainer": ROOT / "trainer",
           "pltd.pipeline": ROOT / "pipeline"}  # fmt: skip
RANK = {"pltd": 0, "pltd.stages": 1, "pltd.trainer": 2, "pltd.pipeline": 3}


def _modules() -> dict[str, Path]:
    out = {}
    for pkg, folder in FOLDERS.items():
        for f in folder.rglob("*.py"):
            parts = list(f.relative_to(folder).with_suffix("").parts)
            if pkg == "pltd" and parts[0] in ("pipeline", "stages", "trainer"):
                continue
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join([pkg, *parts])] = f
    return out


def _layer(module: str) -> str:
    for name in ("pltd.pipeline", "pltd.trainer", "pltd.stages"):
        if module == name or module.startswith(name + "."):
            return name
    return "pltd"


def _imports(path: Path, module: str, known: set[str]) -> set[str]:
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else [])
                )
            subs = [f"{base}.{a.name}" for a in node.names]
            # `from pkg import child` imports the module pkg.child; any other name is read from
            # pkg's __init__, which is then an edge of its own (the one a package circle runs through)
            names = subs + ([base] if any(s not in known for s in subs) else [])
        for n in names:
            if n.startswith("pltd"):
                # the longest known module this name refers to
                while n and n not in known:
                    n = n.rpartition(".")[0]
                if n and n != module:
                    found.add(n)
    return found


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    return {m: _imports(p, m, set(mods)) for m, p in mods.items()}


def test_no_upward_imports():
    """Consistency of the layout with ARCHITECTURE.md's rule (a structural check, not a convention)."""
    graph = _graph()
    assert len(graph) > 50  # the walk found the project
    upward = sorted(f"{m} → {d}" for m, deps in graph.items() for d in deps if RANK[_layer(d)] > RANK[_layer(m)])
    assert upward == []


def _circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The import circles of a graph: its strongly connected components of more than one module."""
    index, low, stack, on, circles = {}, {}, [], set(), []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
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
            if len(comp) > 1:
                circles.append(sorted(comp))

    for v in edges:
        if v not in index:
            visit(v)
    return circles


def test_no_import_circles():
    """Consistency: no two modules import each other, a package `__init__` and its children included."""
    assert _circles(_graph()) == []


def test_a_package_init_circle_is_found(tmp_path):
    """Consistency of the checker itself: a child reading a name from its package's `__init__`, which
    imports the child, is a circle (pltd.networks was one before its registry moved to `_registry.py`); importing a
    sibling module through the package (`from pkg import child`) is not."""
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("from pltd.pkg import child\nREG = {}\n")
    (pkg / "child.py").write_text("from pltd.pkg import REG\n")
    (pkg / "sibling.py").write_text("from pltd.pkg import child\n")
    mods = {"pltd.pkg": pkg / "__init__.py", "pltd.pkg.child": pkg / "child.py", "pltd.pkg.sibling": pkg / "sibling.py"}
    graph = {m: _imports(p, m, set(mods)) for m, p in mods.items()}
    assert graph == {
        "pltd.pkg": {"pltd.pkg.child"},
        "pltd.pkg.child": {"pltd.pkg"},
        "pltd.pkg.sibling": {"pltd.pkg.child"},
    }
    assert _circles(graph) == [["pltd.pkg", "pltd.pkg.child"]]
    (pkg / "child.py").write_text("from pltd.pkg.registry import REG\n")  # the fix: a module of its own
    mods["pltd.pkg.registry"] = pkg / "registry.py"
    (pkg / "registry.py").write_text("REG = {}\n")
    graph = {m: _imports(p, m, set(mods)) for m, p in mods.items()}
    assert _circles(graph) == []
