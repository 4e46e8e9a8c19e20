"""`ferkit models`: the registered architectures, their size and cost per face.

ferkit models            # a table
ferkit models --json     # one JSON list, for scripts

Counting parameters and multiply-adds builds every model (seconds); the rows are kept in
`$FERKIT_CACHE/models.json` (default ~/.cache/ferkit), keyed by the versions of ferkit and
torch and the model sources' sizes and times, so later listings need no PyTorch at all.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import importlib.util
import json
import logging
from pathlib import Path

from ferkit import __version__
from ferkit.cache import cache_root
from ferkit.outputs import json_dumps, replaced_atomically

log = logging.getLogger(__name__)

CACHE_NAME = "models.json"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "models",
        help="list the model architectures",
        description="List the registered models with parameter count, default input size, "
        "and multiply-adds per face at that size.",
    )
    p.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    p.set_defaults(func=cmd_models)


def model_rows() -> list[dict]:
    """One dict per registered model: name, params, macs, input size, normalisation, text.

    From the cache when it matches this install; else computed (with a progress bar on a
    terminal) and cached.
    """
    path, key = cache_root() / CACHE_NAME, _cache_key()
    try:
        cached = json.loads(path.read_text())
        if cached.get("key") == key:
            return cached["rows"]
    except (OSError, ValueError, AttributeError, KeyError):
        pass  # no cache yet, or an unreadable one: compute
    rows = _compute_rows()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with replaced_atomically(path) as tmp:
            tmp.write_text(json_dumps({"key": key, "rows": rows}))
    except OSError as exc:  # a read-only home: list anyway
        log.debug("not cached (%s)", exc)
    return rows


def _cache_key() -> str:
    """ferkit's and torch's versions and every model source file's name, size and mtime."""
    spec = importlib.util.find_spec("ferkit.models")
    folder = Path(next(iter(spec.submodule_search_locations)))
    h = hashlib.sha1(f"{__version__}\0{importlib.metadata.version('torch')}".encode())
    for src in sorted(folder.glob("*.py")):
        st = src.stat()
        h.update(f"\0{src.name}\0{st.st_size}\0{st.st_mtime_ns}".encode())
    return h.hexdigest()


def _compute_rows() -> list[dict]:
    import torch

    from ferkit.models import (
        count_macs,
        count_parameters,
        create_model,
        get_model_spec,
        list_models,
    )
    from ferkit.progress import bar as progress_bar

    rows = []
    # Building models draws random weights; leave the caller's random state as it was.
    with torch.random.fork_rng(devices=[]):
        names = list_models()
        bar = progress_bar(names, desc="measuring models", unit="model")
        for name in bar:
            spec = get_model_spec(name)
            model = create_model(name)
            rows.append(
                {
                    "name": name,
                    "params": count_parameters(model),
                    "macs": count_macs(model),
                    "input_size": list(spec.input_size),
                    "in_channels": spec.in_channels,
                    "mean": list(spec.mean),
                    "std": list(spec.std),
                    "description": spec.description,
                }
            )
    return rows


def format_rows(rows: list[dict]) -> str:
    """The rows as an aligned text table."""
    header = ("model", "params", "input", "MMACs/face", "description")
    cells = [
        (
            r["name"],
            f"{r['params'] / 1e6:.2f}M",
            f"{r['in_channels']}x{r['input_size'][0]}x{r['input_size'][1]}",
            f"{r['macs'] / 1e6:.1f}",
            r["description"],
        )
        for r in rows
    ]
    widths = [max(len(row[i]) for row in [header, *cells]) for i in range(len(header) - 1)]
    right = {1, 3}  # numbers align right

    def line(row: tuple[str, ...]) -> str:
        parts = [
            cell.rjust(w) if i in right else cell.ljust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=False))
        ]
        return "  ".join([*parts, row[-1]]).rstrip()

    return "\n".join([line(header), *(line(c) for c in cells)])


def cmd_models(args: argparse.Namespace) -> int:
    rows = model_rows()
    print(json_dumps(rows, indent=2) if args.json else format_rows(rows))
    return 0
