"""FER-2013 CSV files: `emotion,pixels,Usage`, columns found by header name, plain (`.csv`) or
gzip-compressed (`.csv.gz`).

Usage `Training`/`PublicTest`/`PrivateTest` become splits `train`/`val`/`test`; a CSV without
a Usage column is one split, `all`. The emotion column may hold indices (FER-2013 order) or
names (`happy`, `Sadness`, ...), mapped through the alias map.
"""

from __future__ import annotations

import csv
import gzip
import math
from pathlib import Path

import numpy as np

from ferkit.data.types import FERData, Split, empty_split
from ferkit.errors import DataError
from ferkit.imaging import resize_gray
from ferkit.labels import EMOTIONS, label_index
from ferkit.progress import bar as progress_bar

USAGE_TO_SPLIT = {"training": "train", "publictest": "val", "privatetest": "test"}
SPLIT_TO_USAGE = {"train": "Training", "val": "PublicTest", "test": "PrivateTest"}


class _BadRow(ValueError):
    pass


def is_csv(path: Path) -> bool:
    """Whether `path` names a CSV file ferkit reads: `.csv` or gzip-compressed `.csv.gz`."""
    name = path.name.lower()
    return name.endswith(".csv") or name.endswith(".csv.gz")


def open_text(path: Path):
    """A CSV file opened for reading as text; `.gz` files are decompressed on the fly."""
    if path.name.lower().endswith(".gz"):
        return gzip.open(path, "rt", newline="", encoding="utf-8-sig")
    return open(path, newline="", encoding="utf-8-sig")


def _find_columns(header: list[str], path: Path) -> tuple[int, int, int | None]:
    names = [h.strip().lower() for h in header]
    missing = [c for c in ("emotion", "pixels") if c not in names]
    if missing:
        ferplus = {"image name", "nf"} <= set(names)  # FER+'s label file: votes, no pixels
        raise DataError(
            f"{path}: no column named {' or '.join(missing)} in the header "
            f"({', '.join(header) or 'empty'}); expected a FER-2013 CSV with columns "
            "emotion,pixels[,Usage]"
            + (
                ". It is FER+'s label file (fer2013new.csv): give the FER-2013 CSV as the data "
                "and this file as its labels (--ferplus FILE; in training --set ferplus=FILE)"
                if ferplus
                else ""
            )
        )
    usage = names.index("usage") if "usage" in names else None
    return names.index("emotion"), names.index("pixels"), usage


def _parse_label(text: str) -> int:
    text = text.strip()
    if text.lstrip("-").isdigit():
        value = int(text)
        if not 0 <= value < len(EMOTIONS):
            raise _BadRow(f"label {value} outside 0-{len(EMOTIONS) - 1}")
        return value
    index = label_index(text)
    if index is None:
        raise _BadRow(f"label {text!r} is neither 0-{len(EMOTIONS) - 1} nor an emotion name")
    return index


def _parse_pixels(text: str, side: int | None) -> np.ndarray:
    parts = text.split()
    n = len(parts)
    expected = side * side if side else None
    if expected is not None and n != expected:
        raise _BadRow(f"row has {n} pixels, expected {expected} ({side}x{side})")
    if expected is None and math.isqrt(n) ** 2 != n:
        raise _BadRow(f"row has {n} pixels, which is not a square image (48x48 is 2304)")
    try:
        values = np.array(parts, dtype=np.int64)
    except ValueError:
        bad = next(p for p in parts if not p.lstrip("-").isdigit())
        raise _BadRow(f"pixel value {bad!r} is not an integer") from None
    if values.min(initial=0) < 0 or values.max(initial=0) > 255:
        raise _BadRow("pixel values must be integers in 0-255")
    return values.astype(np.uint8)


def _checked(reader, path: Path, expected: str = "a FER-2013 .csv or .csv.gz file"):
    """The rows of `reader`; a damaged file (bad gzip data, not text) becomes a DataError
    that says what file was `expected`."""
    try:
        yield from reader
    except (OSError, EOFError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{path}: not a readable CSV ({exc}); expected {expected}") from None


def load_csv(path: Path, *, image_size: int = 48) -> FERData:
    """Parse a FER-2013-format CSV into splits of uint8 arrays.

    Bad rows are not kept; each is listed in `skipped` with its line and problem, and the
    loader decides whether that is an error (the default) or skipped (`--skip-bad`).
    """
    rows: dict[str, tuple[list[np.ndarray], list[int]]] = {}
    row_splits: list[str] = []
    skipped: list[str] = []
    resized = 0
    side: int | None = None
    with open_text(path) as f:
        reader = csv.reader(f)
        lines = _checked(reader, path)
        header = next(lines, None)
        if header is None:
            raise DataError(f"{path}: empty file; expected a CSV with columns emotion,pixels,Usage")
        emo_col, pix_col, usage_col = _find_columns(header, path)
        for row in progress_bar(lines, desc=f"reading {path.name}", unit=" rows", leave=False):
            if not row or all(not cell.strip() for cell in row):
                continue
            line = reader.line_num
            try:
                if len(row) != len(header):
                    raise _BadRow(f"row has {len(row)} fields, the header has {len(header)}")
                label = _parse_label(row[emo_col])
                split = "all"
                if usage_col is not None:
                    usage = row[usage_col].strip()
                    split = USAGE_TO_SPLIT.get(usage.lower(), "")
                    if not split:
                        raise _BadRow(
                            f"unknown Usage {usage!r}; expected Training, PublicTest or PrivateTest"
                        )
                pixels = _parse_pixels(row[pix_col], side)
            except _BadRow as exc:
                skipped.append(f"{path.name}, line {line}: {exc}")
                continue
            side = side or math.isqrt(len(pixels))
            image = pixels.reshape(side, side)
            if side != image_size:
                image = resize_gray(image, image_size)
                resized += 1
            rows.setdefault(split, ([], []))
            row_splits.append(split)
            rows[split][0].append(image)
            rows[split][1].append(label)
    if not rows:
        why = f" ({len(skipped)} bad, first: {skipped[0]})" if skipped else ""
        raise DataError(f'{path}: no usable rows{why}; expected lines like 3,"70 80 ...",Training')
    names = ["train", "val", "test"] if usage_col is not None else ["all"]
    splits = {
        name: (
            Split(np.stack(rows[name][0]), np.asarray(rows[name][1], np.int64))
            if name in rows
            else empty_split(image_size)
        )
        for name in names
    }
    notes = [
        f"{name} is empty: the CSV has no {SPLIT_TO_USAGE[name]} rows"
        for name in names
        if name != "all" and name not in rows
    ]
    return FERData(
        source=str(path),
        kind="csv",
        image_size=image_size,
        splits=splits,
        resized=resized,
        skipped=skipped,
        notes=notes,
        row_splits=row_splits,
    )


def write_csv(data: FERData, out: Path, *, compress: bool = False) -> int:
    """Write a data set in the fer2013.csv format (`emotion,pixels,Usage`); returns rows written.

    Splits map back to Usage (train -> Training, val -> PublicTest, test -> PrivateTest); the
    one split of an unsplit source is written without a Usage column. With `compress`, the file
    is gzip-compressed (what `.csv.gz` names).
    """
    with_usage = "all" not in data.splits
    n = 0
    total = sum(len(split) for split in data.splits.values())
    bar = progress_bar(total=total, desc="writing CSV", unit="row", unit_scale=True)
    opener = gzip.open if compress else open
    with opener(out, "wt", newline="") as f, bar:
        writer = csv.writer(f)
        writer.writerow(["emotion", "pixels", "Usage"] if with_usage else ["emotion", "pixels"])
        for name, split in data.splits.items():
            for image, label in zip(split.images, split.labels, strict=True):
                row = [int(label), " ".join(map(str, image.ravel().tolist()))]
                writer.writerow([*row, SPLIT_TO_USAGE[name]] if with_usage else row)
                n += 1
                bar.update()
    return n
