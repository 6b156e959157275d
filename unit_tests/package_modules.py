"""The package's modules and what each imports of the package, read from the source (for the tests of the house's
shape: test_store_seam.py, test_architecture.py)."""

from __future__ import annotations

import ast
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]
PACKAGE = REPOSITORY / "destination_kvdb"


def modules() -> list[str]:
    """Every module of the package by name, `__init__` aside."""
    return sorted(path.stem for path in PACKAGE.glob("*.py") if path.stem != "__init__")


def imports(module: str) -> set[str]:
    """The package's modules that `module` imports."""
    return imported_by(PACKAGE / f"{module}.py") - {module}


def imported_by(path: Path) -> set[str]:
    """The package's modules that the Python file at `path` imports."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("destination_kvdb."):
            found.add(node.module.split(".")[1])
        elif isinstance(node, ast.ImportFrom) and node.module == "destination_kvdb":
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.Import):
            found |= {alias.name.split(".")[1] for alias in node.names if alias.name.startswith("destination_kvdb.")}
    return found
