"""`ferkit data info|convert`: look at a data set, or export it."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ferkit.data import load_dataset
from ferkit.data.convert import to_csv, to_npy


def _add_load_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("path", help="FER-2013 CSV, msambare/Kaggle folder, or folder of class folders")
    p.add_argument("--image-size", type=int, default=48, help="side of the square images (48)")
    p.add_argument("--strict", action="store_true", help="refuse class folders with no emotion")
    p.add_argument("--skip-bad", action="store_true", help="skip unreadable images / bad rows")
    p.add_argument("--no-cache", action="store_true", help="decode again, do not use the cache")


def add_parser(sub: argparse._SubParsersAction) -> None:
    data = sub.add_parser("data", help="inspect or convert a data set")
    data_sub = data.add_subparsers(dest="data_command", metavar="SUBCOMMAND", required=True)

    info = data_sub.add_parser("info", help="per split and per class counts, size, balance")
    _add_load_options(info)
    info.add_argument("--json", action="store_true", help="print JSON instead of a table")
    info.set_defaults(func=cmd_info)

    convert = data_sub.add_parser("convert", help="export as .npy arrays or fer2013.csv")
    _add_load_options(convert)
    convert.add_argument("--to", choices=("npy", "csv"), required=True, help="output format")
    convert.add_argument("out", type=Path, help="output folder (npy) or .csv file (csv)")
    convert.add_argument("--overwrite", action="store_true", help="replace existing files")
    convert.set_defaults(func=cmd_convert)


def _load(args: argparse.Namespace):
    return load_dataset(args.path, image_size=args.image_size, strict=args.strict,
                        skip_bad=args.skip_bad, use_cache=not args.no_cache)  # fmt: skip


def cmd_info(args: argparse.Namespace) -> int:
    summary = _load(args).summary()
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    print(format_summary(summary))
    return 0


def format_summary(s: dict) -> str:
    """A human-readable table of a data set summary."""
    names = [n for n in s["splits"]]
    labels = s["labels"]
    width = max(len(e) for e in labels)
    lines = [
        f"source: {s['source']}",
        f"layout: {s['kind']}   images: {s['total']:,}   size: {s['image_size'][0]}x"
        f"{s['image_size'][1]} gray   resized: {s['resized']:,}",
        "",
        f"{'class':<{width}} " + "".join(f"{n:>16}" for n in names),
    ]
    for e in labels:
        cells = []
        for n in names:
            c, frac = s["splits"][n]["classes"][e], s["splits"][n]["fraction"][e]
            cells.append(f"{c:>8,} ({frac:5.1%})" if s["splits"][n]["n"] else f"{'-':>16}")
        lines.append(f"{e:<{width}} " + "".join(f"{c:>16}" for c in cells))
    lines.append(f"{'total':<{width}} " + "".join(f"{s['splits'][n]['n']:>16,}" for n in names))
    ratios = [s["splits"][n]["imbalance_ratio"] for n in names]
    lines.append(f"{'max/min':<{width}} " + "".join(f"{r or '-':>16}" for r in ratios))
    extras = [*s["notes"]]
    if s["skipped"]:
        extras.append(
            f"skipped {len(s['skipped'])} bad image(s)/row(s): " + "; ".join(s["skipped"][:5])
        )
    if s["ignored_classes"]:
        extras.append("ignored class folders (no emotion): " + ", ".join(s["ignored_classes"]))
    return "\n".join(lines + ([""] + [f"note: {x}" for x in extras] if extras else []))


def cmd_convert(args: argparse.Namespace) -> int:
    data = _load(args)
    if args.to == "npy":
        written = to_npy(data, args.out, overwrite=args.overwrite)
        print(f"wrote {len(written)} files to {args.out}")
    else:
        n = to_csv(data, args.out, overwrite=args.overwrite)
        print(f"wrote {n:,} rows to {args.out}")
    return 0
