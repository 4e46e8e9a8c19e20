"""The layers import downwards only, as docs/architecture.md draws them.

Every `import ferkit.X...` / `from ferkit.X... import` in src/ferkit is checked, at module level
and inside functions alike (a late import is still a dependency), against one table.
"""

from __future__ import annotations

import ast
from pathlib import Path

import ferkit

PACKAGE = Path(ferkit.__file__).parent

# Top-level modules any part may import: shared rules with no ferkit dependency above them.
BASE = frozenset(
    {"errors", "labels", "imaging", "files", "outputs", "progress", "cache", "preprocess", "tta"}
)

# part of ferkit (a subpackage or a top-level module) -> the other parts it may import.
# Bottom to top: base, detection, data and models (side by side, neither imports the other),
# inference, evaluation, training, serve, cli.
ALLOWED: dict[str, frozenset[str]] = {
    **{name: BASE for name in BASE},
    "detection": BASE,
    "data": BASE | {"detection"},
    "models": BASE | {"detection"},
    "inference": BASE | {"detection", "models"},
    "evaluation": BASE | {"detection", "data", "models", "inference"},
    "training": BASE | {"detection", "data", "models", "inference", "evaluation"},
    "serve": BASE | {"detection", "models", "inference"},
    "cli": BASE | {"detection", "data", "models", "inference", "evaluation", "training", "serve"},
    "demo": frozenset({"cli"}),
    "__main__": frozenset({"cli"}),
    "__init__": frozenset({"labels", "inference"}),  # the public API's lazy re-exports
}

# (file, imported module) pairs that break the table today, each with why and where it goes.
EXCEPTIONS = {
    # A Lightning .ckpt is rebuilt by the training module that wrote it (its config makes the
    # model). Belongs with checkpoint loading in models/ once that loads .ckpt files itself.
    ("inference/model_io.py", "ferkit.training.module"),
}


def _part(path: Path) -> str:
    rel = path.relative_to(PACKAGE).parts
    return rel[0] if len(rel) > 1 else path.stem


def _ferkit_imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every import of a ferkit module in `path`, relative ones resolved."""
    package = ["ferkit", *path.relative_to(PACKAGE).parts[:-1]]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = [*base, *(node.module.split(".") if node.module else [])]
            if node.module is None:  # from . import x, y
                found += [(node.lineno, ".".join([*module, a.name])) for a in node.names]
            else:
                found.append((node.lineno, ".".join(module)))
    return [(line, m) for line, m in found if m.startswith("ferkit.")]


def _violations() -> list[str]:
    bad = []
    for path in sorted(PACKAGE.rglob("*.py")):
        part, rel = _part(path), path.relative_to(PACKAGE).as_posix()
        assert part in ALLOWED, f"{rel}: new part {part!r} of ferkit; add it to ALLOWED"
        for line, module in _ferkit_imports(path):
            target = module.split(".")[1]
            if target == part or target in ALLOWED[part] or (rel, module) in EXCEPTIONS:
                continue
            bad.append(f"{rel}:{line} imports {module} ({part} may not import {target})")
    return bad


def test_every_import_between_parts_runs_down_the_layers():
    bad = _violations()
    assert not bad, "\n".join(bad)


def test_every_exception_is_still_needed():
    used = {
        (path.relative_to(PACKAGE).as_posix(), module)
        for path in PACKAGE.rglob("*.py")
        for _, module in _ferkit_imports(path)
    }
    assert not EXCEPTIONS - used, f"no longer imported, drop from EXCEPTIONS: {EXCEPTIONS - used}"


def test_an_upward_import_inside_a_function_is_caught(tmp_path, monkeypatch):
    # the checker itself: a late import from data/ into inference/ must be reported
    fake = tmp_path / "ferkit"
    (fake / "data").mkdir(parents=True)
    (fake / "data" / "bad.py").write_text("def f():\n    from ferkit.inference import x\n")
    (fake / "data" / "rel.py").write_text("from ..training import y\n")
    monkeypatch.setattr(f"{__name__}.PACKAGE", fake)
    assert _violations() == [
        "data/bad.py:2 imports ferkit.inference (data may not import inference)",
        "data/rel.py:1 imports ferkit.training (data may not import training)",
    ]
