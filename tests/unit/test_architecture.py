"""The package's import graph (built by grimp, the library behind import-linter): no module of mailintake
imports itself back through others (imports under TYPE_CHECKING are the type checker's and do not count),
and the README's module tables name every module of the package and no other. The core's purity is a
contract in pyproject.toml (`lint-imports`, run by `make lint`)."""

from __future__ import annotations

import itertools
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[2]


def _cycles(graph: grimp.ImportGraph, modules: set[str]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan), each a cycle or several."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for imported in graph.find_modules_directly_imported_by(module) & modules:
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == module:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for module in sorted(modules):
        if module not in index:
            visit(module)
    return found


def test_no_module_of_the_package_imports_itself_back() -> None:
    graph = grimp.build_graph("mailintake", exclude_type_checking_imports=True)
    modules = {m for m in graph.modules if m.startswith("mailintake.")}
    assert len(modules) > 40  # both portions (the layer's and dev/) were found
    assert _cycles(graph, modules) == []


def test_a_cycle_is_found_when_there_is_one() -> None:
    graph = grimp.ImportGraph()
    for module in ("p.a", "p.b", "p.c"):
        graph.add_module(module)
    graph.add_import(importer="p.a", imported="p.b")
    graph.add_import(importer="p.b", imported="p.a")
    graph.add_import(importer="p.b", imported="p.c")
    assert _cycles(graph, {"p.a", "p.b", "p.c"}) == [["p.a", "p.b"]]


def _table_modules(readme: str, heading: str) -> set[str]:
    """The first column of the table that follows the paragraph starting with ``heading``."""
    lines = readme[readme.index(heading):].splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("|"))
    table = list(itertools.takewhile(lambda line: line.startswith("|"), lines[first:]))
    return {row.split("|")[1].strip().strip("`") for row in table[2:]}  # past the header and its rule


def _package_modules(folder: Path) -> set[str]:
    return {p.stem for p in folder.glob("*.py")} | {p.name for p in folder.iterdir() if (p / "__init__.py").exists()}


def test_the_readme_module_tables_name_every_module_and_no_other() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert _table_modules(readme, "Modules of the runtime portion") == _package_modules(
        ROOT / "layers" / "mailintake" / "mailintake")
    assert _table_modules(readme, "Modules of the dev/admin portion") == _package_modules(ROOT / "dev" / "mailintake")
