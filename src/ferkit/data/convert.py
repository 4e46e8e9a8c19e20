"""Export a loaded data set: the `.npy` arrays many projects build by hand, fer2013.csv, or
lossless PNG class folders (what torchvision's `ImageFolder` and ferkit read back)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from ferkit.data.csv_source import write_csv
from ferkit.data.types import FERData
from ferkit.errors import DataError, OutputError, os_problem
from ferkit.outputs import new_folder_atomically, refuse_existing, replaced_atomically
from ferkit.progress import bar as progress_bar

PNG_SMALLEST = [cv2.IMWRITE_PNG_COMPRESSION, 9]  # lossless at any level; 48x48 faces encode fast


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


def to_folder(data: FERData, out: Path) -> dict[str, int]:
    """Write every face as a lossless PNG into class folders, `out/{split}/{class}/NNNNN.png`
    (`out/{class}/` for a source without splits), numbered in the source's order; returns the
    number written per split. `load_dataset(out)` reads the same pixels and labels back
    (splits train, val, test), and each split folder is an `ImageFolder` for torchvision.

    `out` must be new or empty (`new_folder_atomically`): an interrupted export leaves nothing
    there, and no faces of an earlier export stay among the new ones.
    """
    splits = {name: s for name, s in data.splits.items() if len(s)}
    total = sum(map(len, splits.values()))
    with (
        new_folder_atomically(out, error=DataError) as tmp,
        progress_bar(total=total, desc="writing PNGs", unit="face") as bar,
    ):
        for name, split in splits.items():
            root = tmp if name == "all" else tmp / name
            for label in np.unique(
                split.labels
            ):  # no empty class folders: ImageFolder refuses them
                (root / data.labels[label]).mkdir(parents=True)
            digits = max(5, len(str(len(split) - 1)))
            for i, (image, label) in enumerate(zip(split.images, split.labels, strict=True)):
                path = root / data.labels[label] / f"{i:0{digits}d}.png"
                # encoded, then written: cv2.imwrite says True on a full disk and leaves 0 bytes
                png = cv2.imencode(".png", np.ascontiguousarray(image), PNG_SMALLEST)[1]
                try:
                    path.write_bytes(png.tobytes())
                except OSError as exc:  # named as the export's file, not the hidden folder
                    raise OutputError(os_problem(exc, out / path.relative_to(tmp))) from exc
                bar.update()
    return {name: len(split) for name, split in splits.items()}
