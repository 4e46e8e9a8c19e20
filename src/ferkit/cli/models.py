"""`ferkit models`: the registered architectures, their size and cost per face.

ferkit models            # a table
ferkit models --json     # one JSON list, for scripts
"""

from __future__ import annotations

import argparse
import json


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "models",
        help="list the model architectures",
        description="List the registered models with parameter count, default input size, "
        "and multiply-adds per face at that size.",
    )
    p.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    p.set_defaults(func=run)


def model_rows() -> list[dict]:
    """One dict per registered model: name, params, macs, input size, normalisation, text."""
    import torch

    from ferkit.models import (
        count_macs,
        count_parameters,
        create_model,
        get_model_spec,
        list_models,
    )

    rows = []
    # Building models draws random weights; leave the caller's random state as it was.
    with torch.random.fork_rng(devices=[]):
        for name in list_models():
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


def run(args: argparse.Namespace) -> int:
    rows = model_rows()
    print(json.dumps(rows, indent=2) if args.json else format_rows(rows))
    return 0
