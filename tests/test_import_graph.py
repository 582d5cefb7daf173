"""rt_f2f has no import circles: every ``import`` in every module, lazy ones inside functions included.

A lazy import inside a function hides a circle from Python at start-up but not from a reader: the two modules
still cannot be understood, tested or moved apart. Only imports under ``if TYPE_CHECKING:`` are left out (they
never run). The top-level packages are layered the same way: rt_f2f <- engines <- benchmarks (each imports only
those to its left), so the product never needs its command-line tools or its benchmarks to run.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "rt_f2f"
LAYERS = ("rt_f2f", "engines", "benchmarks")  # each may import only the packages before it


def _module_names(root: Path) -> dict[str, tuple[Path, bool]]:
    """Dotted module name -> (file, is a package's __init__)."""
    out = {}
    for path in root.rglob("*.py"):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        out[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return out


def _is_type_checking(node: ast.AST) -> bool:
    test = node.test if isinstance(node, ast.If) else None
    return isinstance(test, ast.Name | ast.Attribute) and ast.unparse(test).endswith("TYPE_CHECKING")


def _imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    found, todo = [], [tree]
    while todo:
        node = todo.pop()
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.append(node)
        elif not _is_type_checking(node):
            todo.extend(ast.iter_child_nodes(node))
    return found


def _targets(module: str, is_package: bool, node: ast.Import | ast.ImportFrom, known: set[str]) -> set[str]:
    """The modules of ``known`` an import statement loads (``from pkg import mod`` counts as importing pkg.mod)."""
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        base = module.split(".") if is_package else module.split(".")[:-1]
        if node.level:
            base = base[: len(base) - (node.level - 1)]
            origin = ".".join(base + ([node.module] if node.module else []))
        else:
            origin = node.module or ""
        names = [f"{origin}.{a.name}" if f"{origin}.{a.name}" in known else origin for a in node.names]
    return {name for name in names if name in known and name != module}


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    modules = _module_names(root)
    known = set(modules)
    graph = {}
    for name, (path, is_package) in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        graph[name] = set().union(*(_targets(name, is_package, n, known) for n in _imports(tree)))
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each as a sorted list."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_circle_finder_sees_a_lazy_circle(tmp_path):
    """The checker itself: a circle closed by an import inside a function is found, a TYPE_CHECKING one is not."""
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from .b import B\n")
    (pkg / "b.py").write_text("B = 1\n\ndef f():\n    from . import a\n    return a\n")
    (pkg / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .d import D\n")
    (pkg / "d.py").write_text("from pkg.c import TYPE_CHECKING\n")
    assert circles(import_graph(pkg)) == [["pkg.a", "pkg.b"]]


def test_rt_f2f_has_no_import_circles():
    graph = import_graph()
    assert "rt_f2f.lipsync.s3fd" in graph and graph["rt_f2f.cli"], "the walk found no modules: is ROOT right?"
    assert circles(graph) == []


def top_level_imports(package: Path) -> dict[str, set[str]]:
    """Module file (relative to the repository) -> the top-level packages its imports name, lazy ones included."""
    out = {}
    for path in sorted(package.rglob("*.py")):
        names = set()
        for node in _imports(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif not node.level and node.module:
                names.add(node.module.split(".")[0])
        out[path.relative_to(package.parent).as_posix()] = names
    return out


def test_layer_checker_sees_a_lazy_import_upwards(tmp_path):
    (tmp_path / "rt_f2f").mkdir()
    (tmp_path / "rt_f2f" / "x.py").write_text("import os\n\ndef f():\n    from benchmarks.common import wer\n")
    assert top_level_imports(tmp_path / "rt_f2f") == {"rt_f2f/x.py": {"os", "benchmarks"}}


def test_packages_import_only_the_layers_below_them():
    repo = ROOT.parent
    for i, layer in enumerate(LAYERS):
        above = set(LAYERS[i + 1 :])
        found = top_level_imports(repo / layer)
        assert found, f"no modules found in {layer}/"
        wrong = {module: sorted(names & above) for module, names in found.items() if names & above}
        assert wrong == {}, f"{layer} must not import {sorted(above)}"
