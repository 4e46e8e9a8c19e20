"""`ferkit data info|convert|crop`: look at a data set, export it, or cut faces out of photos.

Data loading (NumPy, OpenCV) is imported inside the handlers: `ferkit --help` stays fast.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ferkit.cli.recognizer_options import (
    add_detector_options,
    detector_from_args,
    face_filter_from_args,
)
from ferkit.cli.vocabulary import add_deprecated, add_json_option, say_for
from ferkit.errors import DataError, listed_problems
from ferkit.labels import FERPLUS_LABEL_MODES
from ferkit.outputs import json_dumps, refuse_inside

CONVERT_FORMATS = ("npy", "csv", "folder")


def _add_load_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "path",
        help="FER-2013 CSV (.csv or .csv.gz), msambare/Kaggle folder, or folder of class folders",
    )
    add_ferplus_option(p)
    p.add_argument(
        "--data-size",
        dest="image_size",
        type=int,
        default=48,
        metavar="PX",
        help="side of the decoded square gray images (48; train's data_size)",
    )
    new = "--data-size (--image-size is a model's input side)"
    add_deprecated(p, "--image-size", new, dest="image_size", type=int)
    p.add_argument("--strict", action="store_true", help="refuse class folders with no emotion")
    p.add_argument("--skip-bad", action="store_true", help="skip unreadable images / bad rows")
    p.add_argument("--no-cache", action="store_true", help="decode again, do not use the cache")


def add_ferplus_option(p: argparse.ArgumentParser, *, modes: bool = True) -> None:
    """`--ferplus FILE` (and `--ferplus-labels`): FER+ labels for a FER-2013 CSV."""
    p.add_argument(
        "--ferplus",
        metavar="FILE",
        help="FER+ label file (fer2013new.csv[.gz]) for the FER-2013 CSV, paired row by row: "
        + (
            "its votes label the faces as --ferplus-labels says"
            if modes
            else "its 8 classes (FER-2013's 7 + contempt), by majority vote"
        ),
    )
    if modes:
        p.add_argument(
            "--ferplus-labels",
            choices=FERPLUS_LABEL_MODES,
            help="with --ferplus: votes (vote shares as soft labels for train; val/test "
            "by majority), majority (every split; FER+'s filtering), or fer2013-votes "
            "(FER-2013's 7 labels; train adds the votes over them as soft labels) (votes)",
        )


def add_parser(sub: argparse._SubParsersAction) -> None:
    data = sub.add_parser("data", help="inspect or convert a data set")
    data_sub = data.add_subparsers(dest="data_command", required=True)

    info = data_sub.add_parser("info", help="per split and per class counts, size, balance")
    _add_load_options(info)
    add_json_option(info, "the summary (counts per class and split)")
    info.set_defaults(func=cmd_info)

    convert = data_sub.add_parser(
        "convert", help="export as .npy arrays, fer2013.csv, or PNG class folders"
    )
    _add_load_options(convert)
    convert.add_argument(
        "--format",
        choices=CONVERT_FORMATS,
        help="output format: npy arrays, a fer2013.csv, or folder (lossless PNGs in "
        "OUT/{train,val,test}/CLASS/, as ImageFolder and ferkit read them) (default: csv for "
        "an OUT named .csv or .csv.gz, else npy)",
    )
    add_deprecated(convert, "--to", "--format", dest="format", choices=CONVERT_FORMATS)
    convert.add_argument(
        "out",
        type=Path,
        help="output folder (npy; folder: new or empty), or .csv / .csv.gz file (csv, gzip "
        "for .gz)",
    )
    convert.add_argument(
        "--overwrite", action="store_true", help="replace existing files (npy, csv)"
    )
    add_json_option(convert, "what was written (files, counts per split)")
    convert.set_defaults(func=cmd_convert)

    crop = data_sub.add_parser(
        "crop",
        help="cut the largest face out of every photo, into a copy of the folder tree",
        description="Find the largest face in every image under PATH (recursively) and write it "
        "as a SIZExSIZE grayscale PNG at the same place under OUT, framed as `ferkit predict` "
        "frames faces. OUT/crops.csv lists every image: its face box, or why it has none. Use "
        "it on photos or video frames before `ferkit train`/`evaluate`, which resize each "
        "image whole.",
    )
    crop.add_argument("path", type=Path, help="folder of photos (class folders, any layout)")
    crop.add_argument("out", type=Path, help="output folder (outside PATH)")
    crop.add_argument("--size", type=int, default=48, help="side of the square crops (48)")
    crop.add_argument(
        "--margin",
        type=float,
        help="added on each side, as a fraction of the face box (default: the "
        "detector's framing fitted on FER-2013, as `ferkit predict` crops)",
    )
    add_detector_options(crop, crops=False)
    crop.add_argument("--workers", type=int, help="images at once (default: one per core)")
    again = crop.add_mutually_exclusive_group()
    again.add_argument("--overwrite", action="store_true", help="replace crops that exist")
    again.add_argument(
        "--resume",
        action="store_true",
        help="finish a run stopped by Ctrl-C: crop only the images OUT/crops.csv does not list",
    )
    add_json_option(crop, "the summary")
    crop.set_defaults(func=cmd_crop)
    data_sub.metavar = "{" + ",".join(data_sub.choices) + "}"  # named in usage and errors


def _load(args: argparse.Namespace):
    from ferkit.data import load_dataset

    if args.ferplus_labels and not args.ferplus:
        raise DataError("--ferplus-labels needs --ferplus FILE (fer2013new.csv[.gz])")
    return load_dataset(
        args.path,
        image_size=args.image_size,
        strict=args.strict,
        skip_bad=args.skip_bad,
        use_cache=not args.no_cache,
        ferplus=args.ferplus,
        ferplus_labels=args.ferplus_labels or "votes",
    )


def cmd_info(args: argparse.Namespace) -> int:
    summary = _load(args).summary()
    if args.json:
        print(json_dumps(summary, indent=2))
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
        f"{s['image_size'][1]} gray   resized: {s['resized']:,}"
        + (f"   labels: FER+ {s['label_mode']}" if s.get("label_mode") else ""),
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
            f"skipped {len(s['skipped'])} bad image(s)/row(s): {listed_problems(s['skipped'])}"
        )
    if s["ignored_classes"]:
        extras.append("ignored class folders (no emotion): " + ", ".join(s["ignored_classes"]))
    return "\n".join(lines + ([""] + [f"note: {x}" for x in extras] if extras else []))


def cmd_convert(args: argparse.Namespace) -> int:
    from ferkit.data.convert import to_csv, to_folder, to_npy

    args.format = _convert_format(args.format, args.out)
    if args.format != "npy" and args.ferplus:
        what = "the fer2013.csv format" if args.format == "csv" else "class folders"
        raise DataError(
            f"{args.out}: FER+ labels (vote shares, contempt) do not fit {what} (one of "
            "FER-2013's 7 classes per face); convert to a folder of npy arrays instead"
        )
    refuse_inside(args.out, Path(args.path))
    data = _load(args)
    say = say_for(args)  # stdout: the JSON, with --json
    doc = {
        "source": data.source,
        "out": str(args.out),
        "format": args.format,
        "labels": list(data.labels),
    }
    if args.format == "npy":
        written = to_npy(data, args.out, overwrite=args.overwrite)
        for path in written:
            say(f"wrote {path}")
        say(f"labels: {', '.join(f'{i} {e}' for i, e in enumerate(data.labels))}")
        doc["written"] = [str(path) for path in written]
    elif args.format == "folder":
        counts = to_folder(data, args.out)
        split = ", ".join(f"{name} {n:,}" for name, n in counts.items())
        say(f"wrote {sum(counts.values()):,} PNG faces to {args.out} ({split})")
        doc["faces"] = counts
    else:
        n = to_csv(data, args.out, overwrite=args.overwrite)
        say(f"wrote {n:,} rows to {args.out}")
        doc["rows"] = n
    if args.json:
        print(json_dumps(doc, indent=2))
    return 0


def _convert_format(given: str | None, out: Path) -> str:
    """The format OUT's name asks for (a .csv or .csv.gz file: csv, else a folder of npy);
    a --format that contradicts it is refused, as ferkit reads a CSV back by its name."""
    from ferkit.data.csv_source import is_csv

    named_csv = is_csv(out)
    fmt = given or ("csv" if named_csv else "npy")
    if fmt == "csv" and not named_csv:
        raise DataError(f"{out}: name the CSV file .csv (or .csv.gz, compressed)")
    if fmt in ("npy", "folder") and named_csv:
        raise DataError(f"{out}: --format {fmt} writes a folder; name a folder, not a .csv")
    return fmt


def cmd_crop(args: argparse.Namespace) -> int:
    from ferkit.data.crop_folder import crop_face_folder

    summary = crop_face_folder(
        args.path,
        args.out,
        size=args.size,
        margin=args.margin,
        detector=detector_from_args(args),
        overwrite=args.overwrite,
        resume=args.resume,
        face_filter=face_filter_from_args(args),
        workers=args.workers,
    )
    if args.json:
        print(json_dumps(summary, indent=2))
    else:
        print(format_crop_summary(summary))
    if not summary["ok"]:
        raise DataError(
            f"no face found in any of the {summary['images']:,} images under "
            f"{summary['source']}; see {summary['log']}"
        )
    return 2 if summary["unreadable"] else 0


def format_crop_summary(s: dict) -> str:
    """What `ferkit data crop` did, per folder, with what to check."""
    from ferkit.detection.crops import Framing

    width = max(len("folder"), *(len(k) for k in s["folders"]))
    framing = Framing.from_dict(s["framing"])
    lines = [
        f"cropped {s['ok']:,} of {s['images']:,} images into {s['output']} "
        f"({s['size']}x{s['size']} gray PNG, {framing})",
        "",
        f"{'folder':<{width}} {'faces':>8} {'no face':>8} {'unreadable':>11}",
    ]
    for name, c in s["folders"].items():
        lines.append(f"{name:<{width}} {c['ok']:>8,} {c['no_face']:>8,} {c['unreadable']:>11,}")
    if s["several_faces"]:
        lines.append(
            f"\nnote: {s['several_faces']:,} image(s) showed several faces; the largest was kept"
        )
    for error in s["errors"]:
        lines.append(f"error: {error}")
    lines.append(f"\nwrote {s['log']}: every image, its face box or why it has none")
    return "\n".join(lines)
