"""The shape of the package, checked: no import loops, imports inside functions only to defer a
heavy library (and saying so), a headless engine, and wings that import only the wings below."""
from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "src" / "napari_rarepheno"
# the order of docs/architecture.md and core/__init__.py: a wing may import the base and the wings before it
WINGS = ["nets", "inputs", "io", "datasets", "cells", "inference", "training", "classic", "wscnn", "deepyeast",
         "discover", "plates", "export"]
BASE = {"errors", "progress", "device", "metrics"}


def _tool():
    spec = importlib.util.spec_from_file_location("import_loops", ROOT / "scripts" / "import_loops.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _imports(path: Path, mod: str):
    """(target module, lineno, inside a function, source line) of every in-package import."""
    tool = _tool()
    tree = ast.parse(path.read_text(encoding="utf-8"))
    parents = {c: n for n in ast.walk(tree) for c in ast.iter_child_nodes(n)}
    lines = path.read_text(encoding="utf-8").split("\n")
    for node in ast.walk(tree):
        if not isinstance(node, ast.ImportFrom):
            continue
        base = tool.resolve(mod, path.name == "__init__.py", node)
        if not base.startswith("napari_rarepheno"):
            continue
        p, inside = parents.get(node), False
        while p is not None:
            inside |= isinstance(p, (ast.FunctionDef, ast.AsyncFunctionDef))
            p = parents.get(p)
        for a in node.names:
            yield f"{base}.{a.name}", node.lineno, inside, "\n".join(lines[node.lineno - 2:node.end_lineno])


def _modules():
    tool = _tool()
    for path in PKG.rglob("*.py"):
        yield path, tool.module_name(PKG, path)


def test_no_import_loops_even_through_imports_inside_functions():
    tool = _tool()
    files, edges, _ = tool.graph(PKG)
    assert len(files) > 50
    assert tool.loops(edges) == []


def test_the_loop_finder_sees_a_loop_hidden_in_a_function(tmp_path):
    pkg = tmp_path / "p"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from .b import x\ny = 1\n")
    (pkg / "b.py").write_text("x = 1\ndef f():\n    from .a import y\n    return y\n")
    tool = _tool()
    assert tool.loops(tool.graph(pkg)[1]) == [["p.a", "p.b"]]


def test_imports_inside_functions_say_what_they_defer():
    silent = [f"{path.relative_to(ROOT)}:{line}" for path, mod in _modules()
              for _t, line, inside, text in _imports(path, mod) if inside and "deferred" not in text]
    assert silent == []


def test_the_engine_imports_neither_napari_nor_qt():
    bad = []
    for path in (PKG / "core").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else []
            bad += [f"{path.name}: {n}" for n in names
                    if n.split(".")[0] in ("napari", "qtpy", "PyQt5", "PyQt6", "PySide6", "magicgui", "superqt")]
    assert bad == []


def _wing(mod: str) -> str | None:
    parts = mod.split(".")
    if len(parts) < 3 or parts[1] != "core":
        return None
    return "base" if parts[2] in BASE or len(parts) == 3 else parts[2]


def test_a_wing_imports_only_the_base_and_the_wings_below_it():
    bad = []
    for path, mod in _modules():
        w = _wing(mod)
        if w is None:
            continue
        assert w == "base" or w in WINGS, f"{mod}: wing {w} is not in the documented order"
        for target, line, _inside, _ in _imports(path, mod):
            t = _wing(target)
            if t in ("base", w) or (t is None and mod.endswith(".core")):
                continue
            if w == "base" or t not in WINGS or WINGS.index(t) > WINGS.index(w):
                bad.append(f"{mod}:{line} imports {target}")
    assert bad == []


def test_test_modules_have_unique_names():
    """The tests are not packages (no __init__.py), so pytest imports each module by its
    basename: two files of one name stop the whole run at collection."""
    seen: dict[str, Path] = {}
    for path in sorted((ROOT / "tests").rglob("test_*.py")):
        assert path.name not in seen, f"{path} and {seen[path.name]} share a name"
        seen[path.name] = path
