"""Export a loaded data set: the `.npy` arrays many projects build by hand, or fer2013.csv."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ferkit.data.csv_source import write_csv
from ferkit.data.types import FERData
from ferkit.outputs import refuse_existing, replaced_atomically


def to_npy(data: FERData, out: Path, *, overwrite: bool = False) -> list[Path]:
    """Write `{split}_images.npy` (N, H, W) uint8 and `{split}_labels.npy` (N,) int64 into `out`
    for every non-empty split, and `{split}_soft_labels.npy` (N, C) float32 where the split has
    label distributions (FER+ votes); returns the files written."""
    splits = {name: s for name, s in data.splits.items() if len(s)}
    arrays = {}
    for name, split in splits.items():
        arrays[out / f"{name}_images.npy"] = np.ascontiguousarray(split.images)
        arrays[out / f"{name}_labels.npy"] = np.asarray(split.labels, np.int64)
        if split.soft_labels is not None:
            arrays[out / f"{name}_soft_labels.npy"] = np.asarray(split.soft_labels, np.float32)
    if not overwrite:
        refuse_existing(list(arrays))
    for path, array in arrays.items():
        _save(path, array)
    return list(arrays)


def _save(path: Path, array: np.ndarray) -> None:
    with replaced_atomically(path) as tmp:
        np.save(tmp, array)


def to_csv(data: FERData, out: Path, *, overwrite: bool = False) -> int:
    """Write the fer2013.csv format, gzip-compressed if `out` ends in .gz; returns the number
    of rows written."""
    if not overwrite:
        refuse_existing([out])
    with replaced_atomically(out) as tmp:
        return write_csv(data, tmp, compress=out.name.lower().endswith(".gz"))
