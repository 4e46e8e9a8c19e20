"""Export a loaded data set: the `.npy` arrays many projects build by hand, or fer2013.csv."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ferkit.data.csv_source import write_csv
from ferkit.data.types import FERData
from ferkit.errors import DataError


def _refuse_existing(paths: list[Path], overwrite: bool) -> None:
    existing = [str(p) for p in paths if p.exists()]
    if existing and not overwrite:
        raise DataError(f"{', '.join(existing)} already exist(s); pass --overwrite to replace")


def to_npy(data: FERData, out: Path, *, overwrite: bool = False) -> list[Path]:
    """Write `{split}_images.npy` (N, H, W) uint8 and `{split}_labels.npy` (N,) int64 into `out`
    for every non-empty split; returns the files written."""
    splits = {name: s for name, s in data.splits.items() if len(s)}
    targets = [out / f"{name}_{kind}.npy" for name in splits for kind in ("images", "labels")]
    _refuse_existing(targets, overwrite)
    out.mkdir(parents=True, exist_ok=True)
    for name, split in splits.items():
        np.save(out / f"{name}_images.npy", np.ascontiguousarray(split.images))
        np.save(out / f"{name}_labels.npy", np.asarray(split.labels, np.int64))
    return targets


def to_csv(data: FERData, out: Path, *, overwrite: bool = False) -> int:
    """Write the fer2013.csv format; returns the number of rows written."""
    _refuse_existing([out], overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".partial")
    n = write_csv(data, tmp)
    tmp.replace(out)
    return n
