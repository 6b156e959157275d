"""docs/architecture.md stays true of the code: it names every module with its one idea, its imports as they are and
its unit tests; every module is imported by the unit tests; and the house's limits hold (a module under 300 lines, a
class under 150, a function under 50)."""

from __future__ import annotations

import ast
import re

from unit_tests.package_modules import PACKAGE, REPOSITORY, imported_by, imports, modules

DOC = (REPOSITORY / "docs" / "architecture.md").read_text()
UNIT_TESTS = REPOSITORY / "unit_tests"


def table(title: str) -> list[list[str]]:
    """The cells of each row of the table in the section `## title`, header and rule left out."""
    section = DOC.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]
    rows = [[cell.strip() for cell in line.strip().strip("|").split("|")] for line in section.splitlines() if line.startswith("|")]
    return rows[2:]


def named(cell: str, suffix: str = "") -> list[str]:
    return re.findall(r"`(\w+)" + re.escape(suffix) + "`", cell)


def test_the_modules_table_names_every_module_with_its_idea():
    ideas = {module: idea for _, cell, idea in table("The modules") for module in named(cell, ".py")}

    assert sorted(ideas) == modules()
    assert all(ideas.values())


def test_the_imports_table_is_the_imports_as_they_are():
    documented = {
        module: set() if imported.startswith("nothing") else set(named(imported))
        for cell, imported in table("The imports, as they are")
        for module in named(cell)
    }

    assert documented == {module: imports(module) for module in modules()}


def test_every_module_has_unit_tests_named_in_the_map_and_they_exist():
    tested = {module: named(tests, ".py") for cell, tests in table("Module → test") for module in named(cell, ".py")}

    assert sorted(tested) == modules()
    assert all(any(name.startswith("test_") for name in names) for names in tested.values()), tested
    named_files = {name for names in tested.values() for name in names}  # test modules, helpers, a module in passing
    assert [name for name in sorted(named_files) if not any((folder / f"{name}.py").exists() for folder in (UNIT_TESTS, PACKAGE))] == []


def test_every_module_is_imported_by_the_unit_tests():
    imported = set().union(*(imported_by(path) for path in UNIT_TESTS.glob("*.py")))

    assert sorted(set(modules()) - imported) == []


def test_the_house_limits_hold():
    too_long = []
    for path in sorted(PACKAGE.glob("*.py")):
        source = path.read_text()
        if len(source.splitlines()) >= 300:
            too_long.append(f"{path.name}: {len(source.splitlines())} lines")
        for node in ast.walk(ast.parse(source)):
            limit = {ast.ClassDef: 150, ast.FunctionDef: 50, ast.AsyncFunctionDef: 50}.get(type(node))
            if limit is None:
                continue
            lines = node.end_lineno - min([node.lineno] + [decorator.lineno for decorator in node.decorator_list]) + 1
            if lines >= limit:
                too_long.append(f"{path.name}: {node.name}, {lines} lines")

    assert too_long == []
