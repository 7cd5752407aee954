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
            names = [base] + [f"{base}.{a.name}" for a in node.names]
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


def test_no_import_circles():
    graph = _graph()
    # package __init__ files re-exporting their children are not circles of code
    edges = {m: {d for d in deps if not m.startswith(d + ".")} for m, deps in graph.items()}
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
    assert circles == []
