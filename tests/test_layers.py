"""The layers import downwards only: `ferkit.detection` below data, training and inference."""

from __future__ import annotations

import ast
from pathlib import Path

import ferkit

PACKAGE = Path(ferkit.__file__).parent
# package -> top-level ferkit packages it must not import (they sit above it)
FORBIDDEN = {
    "detection": ("inference", "training", "serve", "cli", "evaluation", "data"),
    "data": ("inference", "serve", "cli"),
}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
    return names


def test_lower_layers_do_not_import_upper_ones():
    bad = []
    for package, upper in FORBIDDEN.items():
        for path in sorted((PACKAGE / package).rglob("*.py")):
            for name in _imports(path):
                parts = name.split(".")
                if parts[0] == "ferkit" and len(parts) > 1 and parts[1] in upper:
                    bad.append(f"{path.relative_to(PACKAGE)} imports {name}")
    assert not bad, "\n".join(bad)
