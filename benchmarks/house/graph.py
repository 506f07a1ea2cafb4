"""The product's import graph from the code (AST): modules, imports, cycles, layers.

    python benchmarks/house/graph.py .                 # this layout (annealing_kd.* and relative)
    python benchmarks/house/graph.py OLD annealing_kd.  # an old flat checkout (`import common...`)
"""

from __future__ import annotations

import ast
import functools
import sys
from pathlib import Path

FOLDERS = ("common", "computer_vision_tasks", "NLP_glue_tasks")


def modules(root: Path) -> dict[str, Path]:
    found = {}
    for folder in FOLDERS:
        for p in (root / folder).rglob("*.py"):
            parts = list(p.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found["annealing_kd." + ".".join(parts)] = p
    return found


def imports(name: str, path: Path, mods: dict[str, Path], prefix: str) -> set[str]:
    """The product modules ``name`` imports (``from pkg import mod`` counts mod, not pkg)."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                mod = f"{base}.{node.module}" if node.module else base
            elif node.module:
                mod = node.module if node.module.startswith("annealing_kd") else prefix + node.module
            else:
                continue
            subs = {f"{mod}.{a.name}" for a in node.names if f"{mod}.{a.name}" in mods}
            out |= subs if len(subs) == len(node.names) else subs | {mod}
        elif isinstance(node, ast.Import):
            out |= {a.name if a.name.startswith("annealing_kd") else prefix + a.name
                    for a in node.names}
    return {m for m in out if m in mods and m != name}


def cycles(graph: dict[str, set[str]]) -> list[set[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(comp)

    sys.setrecursionlimit(10_000)
    for v in graph:
        if v not in index:
            visit(v)
    return found


def main() -> None:
    root = Path(sys.argv[1])
    prefix = sys.argv[2] if len(sys.argv) > 2 else ""
    mods = modules(root)
    graph = {m: imports(m, p, mods, prefix) for m, p in mods.items()}
    loops = cycles(graph)

    @functools.lru_cache(None)
    def depth(v: str) -> int:
        return 1 + max((depth(w) for w in graph[v]), default=0)

    layers = "n/a (cycles)" if loops else max(map(depth, mods))
    print(f"modules {len(mods)}, imports {sum(map(len, graph.values()))}, cycles {len(loops)}, "
          f"layers {layers}")
    for loop in loops:
        print("cycle:", " <-> ".join(sorted(loop)))


if __name__ == "__main__":
    main()
