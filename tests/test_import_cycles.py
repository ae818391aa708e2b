"""No import cycles among qmd_ft's own modules, counting imports hidden inside functions.

A function-level import makes a cycle load, but it still ties the modules together: neither can
be read, tested or replaced without the other. Shared code belongs in a module both import.
The graph is read from the source (ast), so every import counts, whether or not it has run.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCES = {"qmd_ft": ROOT / "qmd_ft", "qmd_ft.backends": ROOT / "backends"}


def modules() -> dict[str, Path]:
    """Dotted name -> file, for every module of the package (backends under qmd_ft.backends)."""
    found = {}
    for package, folder in SOURCES.items():
        for path in folder.rglob("*.py"):
            parts = [p for p in path.relative_to(folder).with_suffix("").parts if p != "__init__"]
            found[".".join([package, *parts])] = path
    return found


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The project modules that `name` imports anywhere in its source.

    `from pkg import sub` is an import of the submodule `pkg.sub` when one exists (importing
    it runs `pkg/__init__` too, as every submodule import does, which is not a dependency).
    """
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            targets = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
                for alias in node.names
            ]
        else:
            continue
        out.update(t for t in targets if t in known and t != name)
    return out


def cycles(graph: dict[str, set[str]]) -> list[frozenset[str]]:
    """The graph's strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[frozenset[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(frozenset(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_cycle_finder_sees_function_level_imports(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("def f():\n    from pkg.b import g\n")
    (tmp_path / "b.py").write_text("from pkg import a\n")
    (tmp_path / "c.py").write_text("from . import b\n")
    known = {f"pkg.{n}": tmp_path / f"{n}.py" for n in "abc"}
    graph = {name: imports(name, path, known) for name, path in known.items()}
    assert graph == {"pkg.a": {"pkg.b"}, "pkg.b": {"pkg.a"}, "pkg.c": {"pkg.b"}}
    assert cycles(graph) == [frozenset({"pkg.a", "pkg.b"})]


def test_no_import_cycles() -> None:
    known = modules()
    assert "qmd_ft.backends.mlx.models" in known  # the backends are in the graph
    graph = {name: imports(name, path, known) for name, path in known.items()}
    found = [sorted(cycle) for cycle in cycles(graph)]
    assert not found, f"import cycles (move the shared code down): {found}"
