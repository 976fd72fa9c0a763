#!/usr/bin/env python3
"""Import loops between the modules of a Python package, counting imports made inside functions too.

    python scripts/import_loops.py src/napari_rarepheno [--under core]

(A copy of the team tool ../shared/tools/import_loops.py, kept here so a clone of the
project alone can run it; tests/test_architecture.py and .ci/run use it.)

A loop hidden behind an import inside a function is still a loop: the two modules cannot be understood,
tested or moved apart. Prints each loop (strongly connected group of modules) with the names that tie it,
then a summary line; exits 1 when there is a loop.
"""
from __future__ import annotations

import ast
import sys
from pathlib import Path


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def resolve(mod: str, is_pkg: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = mod.split(".") if is_pkg else mod.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
    return ".".join(base + ([node.module] if node.module else []))


def graph(root: Path):
    files = {module_name(root, p): p for p in root.rglob("*.py")}
    edges: dict[str, dict[str, set[str]]] = {m: {} for m in files}
    nested = 0
    for mod, path in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        parents = {c: n for n in ast.walk(tree) for c in ast.iter_child_nodes(n)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                targets = [(a.name, a.name) for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = resolve(mod, path.name == "__init__.py", node)
                targets = [(f"{base}.{a.name}" if f"{base}.{a.name}" in files else base, a.name) for a in node.names]
            else:
                continue
            inside = False
            p = parents.get(node)
            while p is not None:
                if isinstance(p, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    inside = True
                    break
                p = parents.get(p)
            for target, name in targets:
                while target and target not in files:
                    target = target.rpartition(".")[0]
                if not target or target == mod or target == root.name:
                    continue
                if mod.startswith(target + "."):  # a module importing its own package's __init__
                    continue
                edges[mod].setdefault(target, set()).add(name)
                nested += inside
    return files, edges, nested


def loops(edges):
    index, low, stack, on, out, i = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = i[0]; i[0] += 1; stack.append(v); on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w); low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop(); on.discard(w); comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in edges:
        if v not in index:
            visit(v)
    return out


def main(argv):
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__); return 0
    root = Path(argv[0]).resolve()
    under = argv[argv.index("--under") + 1] if "--under" in argv else None
    files, edges, nested = graph(root)
    found = loops(edges)
    if under:
        pre = f"{root.name}.{under}"
        found = [c for c in found if any(m == pre or m.startswith(pre + ".") for m in c)]
    for comp in found:
        print("loop: " + " <-> ".join(comp))
        for a in comp:
            for b, names in sorted(edges[a].items()):
                if b in comp:
                    print(f"  {a} -> {b}: {', '.join(sorted(names))}")
    print(f"{len(found)} import loop(s) among {len(files)} modules; {nested} in-package imports sit inside functions")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
