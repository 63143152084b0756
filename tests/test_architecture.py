"""The package's shape: no import cycle among wattwise modules, no module over 500 lines.

Both properties are read from the source with :mod:`ast` (nothing is imported), so a cycle that
only a lazy, function-level or ``TYPE_CHECKING`` import closes is still a cycle here: each of
them is a dependency that makes the two modules one unit.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "wattwise"
MAX_LINES = 500
#: The word that a module over :data:`MAX_LINES` writes in its first docstring, with the reason.
SIZE_MARK = "Size:"


def module_files(src: Path = SRC, package: str = PACKAGE) -> dict[str, Path]:
    """Dotted module name -> file, for every module of ``package`` (a package is its __init__)."""
    files = {}
    for path in sorted((src / package).rglob("*.py")):
        parts = path.relative_to(src).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        files[".".join(parts)] = path
    return files


def _resolve_from(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    """The absolute module that ``from <...> import`` names (relative imports resolved)."""
    if node.level == 0:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    if node.level > 1:
        base = base[: -(node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def import_graph(files: Mapping[str, Path]) -> dict[str, set[str]]:
    """Module -> the package modules it imports, at any depth of its code.

    ``import a.b`` and ``from a.b import c`` point at ``a.b`` (at ``a.b.c`` when that is a
    module); imports of other distributions, of names that are no module of the package, and of a
    module by itself are no edges.
    """
    graph: dict[str, set[str]] = {name: set() for name in files}
    for module, path in files.items():
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _resolve_from(node, module, is_package)
                targets = [
                    f"{base}.{alias.name}" if f"{base}.{alias.name}" in files else base
                    for alias in node.names
                ]
            graph[module].update(t for t in targets if t in files and t != module)
    return graph


def strongly_connected(graph: Mapping[str, set[str]]) -> list[set[str]]:
    """The groups of two or more modules that reach each other (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[set[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                group = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.add(member)
                    if member == node:
                        break
                if len(group) > 1:
                    groups.append(group)
    return groups


def cycle_path(graph: Mapping[str, set[str]], group: set[str]) -> list[str]:
    """A shortest cycle through the group's first module, as ``[a, b, ..., a]`` (BFS)."""
    start = min(group)
    parent: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for child in sorted(graph[node] & group):
                if child == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(parent[path[-1]])
                    return [*reversed(path), start]
                if child not in parent:
                    parent[child] = node
                    following.append(child)
        frontier = following
    raise AssertionError(f"no cycle through {start} in {sorted(group)}")


def test_cycle_detection_finds_a_planted_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set(), "e": {"d"}}
    groups = strongly_connected(graph)
    assert groups == [{"a", "b", "c"}]
    assert cycle_path(graph, groups[0]) == ["a", "b", "c", "a"]
    assert strongly_connected({"a": {"b"}, "b": set()}) == []


def test_graph_resolves_relative_and_module_imports(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("from . import sub\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "a.py").write_text("from .b import thing\nfrom .. import other\n")
    (pkg / "sub" / "b.py").write_text("def f():\n    from pkg.sub import a\n")
    (pkg / "other.py").write_text("import pkg.sub.a\nimport json\n")
    graph = import_graph(module_files(tmp_path, "pkg"))
    assert graph == {
        "pkg": {"pkg.sub"},
        "pkg.sub": set(),
        "pkg.sub.a": {"pkg.sub.b", "pkg.other"},
        "pkg.sub.b": {"pkg.sub.a"},
        "pkg.other": {"pkg.sub.a"},
    }


def test_no_import_cycle_among_wattwise_modules() -> None:
    graph = import_graph(module_files())
    cycles = [" -> ".join(cycle_path(graph, group)) for group in strongly_connected(graph)]
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def _docstring(path: Path) -> str:
    return ast.get_docstring(ast.parse(path.read_text(), filename=str(path))) or ""


def test_no_module_over_500_lines_without_a_reason() -> None:
    too_long = []
    for module, path in module_files().items():
        lines = len(path.read_text().splitlines())
        if lines > MAX_LINES and SIZE_MARK not in _docstring(path):
            too_long.append(f"{module}: {lines} lines ({path})")
    assert not too_long, (
        f"modules over {MAX_LINES} lines without '{SIZE_MARK} <reason>' in their docstring:\n"
        + "\n".join(too_long)
    )
