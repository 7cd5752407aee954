"""The import graph of a checkout: upward imports between the layers, import circles, the largest function.

    .venv/bin/python benchmarks/imports.py [ROOT ...]     # default: this checkout
    git worktree add /tmp/before f0e7dd0 && .venv/bin/python benchmarks/imports.py /tmp/before .

Read from the source with `ast` (nothing imported), so lazy imports inside functions count. Works on
both layouts: the old top-level packages (`pipeline`, `stages`, `trainer`) and the installed `pltd`
package whose subpackages are those folders. Layers: pipeline 3 → trainer 2 → stages 1 → ground 0.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

RANK = {"pltd": 0, "pltd.stages": 1, "pltd.trainer": 2, "pltd.pipeline": 3}
FOLDERS = {"pltd": "pltd", "pltd.stages": "stages", "pltd.trainer": "trainer", "pltd.pipeline": "pipeline"}


def modules(root: Path) -> dict[str, Path]:
    out = {}
    for pkg, folder in FOLDERS.items():
        for f in (root / folder).rglob("*.py"):
            parts = list(f.relative_to(root / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join([pkg, *parts])] = f
    return out


def _canonical(name: str) -> str:
    """Old layout: `pipeline.x` is the module the new layout calls `pltd.pipeline.x`."""
    head = name.split(".")[0]
    return f"pltd.{name}" if head in ("pipeline", "stages", "trainer") else name


def layer(module: str) -> str:
    for name in ("pltd.pipeline", "pltd.trainer", "pltd.stages"):
        if module == name or module.startswith(name + "."):
            return name
    return "pltd"


def imports(path: Path, module: str, known: set[str]) -> set[str]:
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                keep = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(keep + ([base] if base else []))
            names = [base] + [f"{base}.{a.name}" for a in node.names]
        for n in map(_canonical, names):
            while n and n not in known:
                n = n.rpartition(".")[0]
            if n and n != module:
                found.add(n)
    return found


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan); a package re-exporting a child is not one."""
    edges = {m: {d for d in deps if not m.startswith(d + ".")} for m, deps in graph.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
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
            while (w := stack.pop()) != v:
                on.discard(w)
                comp.append(w)
            on.discard(v)
            if comp:
                found.append(sorted([v, *comp]))

    for v in edges:
        if v not in index:
            visit(v)
    return found


def largest_function(files: dict[str, Path]) -> tuple[int, str]:
    best = (0, "")
    for module, path in files.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                n = node.end_lineno - node.lineno + 1
                best = max(best, (n, f"{module}.{node.name}"))
    return best


def measure(root: Path) -> dict:
    files = modules(root)
    graph = {m: imports(p, m, set(files)) for m, p in files.items()}
    upward = sorted(f"{m} → {d}" for m, deps in graph.items() for d in deps if RANK[layer(d)] > RANK[layer(m)])
    lines, name = largest_function(files)
    return {"modules": len(files), "upward": upward, "circles": circles(graph), "largest": (lines, name)}


def main(roots: list[str]) -> None:
    results = [(r, measure(Path(r).resolve())) for r in roots]
    for r, m in results:
        print(f"{r}: {m['modules']} modules, {len(m['upward'])} upward imports, {len(m['circles'])} circle(s), "
              f"largest function {m['largest'][0]} lines ({m['largest'][1]})")  # fmt: skip
        for c in m["circles"]:
            print(f"  circle: {' → '.join(c)}")
    if len(results) == 2:
        (_, a), (_, b) = results
        print(f"upward imports {len(a['upward'])} → {len(b['upward'])}; circles {len(a['circles'])} → "
              f"{len(b['circles'])}; largest function {a['largest'][0]} → {b['largest'][0]} lines "
              f"(ratio {b['largest'][0] / a['largest'][0]:.2f})")  # fmt: skip


if __name__ == "__main__":
    main(sys.argv[1:] or ["."])
