"""`load_dataset(path)`: any supported source -> `FERData`, through the cache."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ferkit.data import cache
from ferkit.data.csv_source import is_csv, load_csv
from ferkit.data.decode import decode_files
from ferkit.data.ferplus import attach_ferplus, check_mode
from ferkit.data.folders import plan_folder
from ferkit.data.types import FERData, Split, empty_split
from ferkit.errors import DataError, listed_problems, os_problem

log = logging.getLogger(__name__)


def load_dataset(
    path: str | Path,
    *,
    image_size: int = 48,
    strict: bool = False,
    skip_bad: bool = False,
    use_cache: bool = True,
    workers: int | None = None,
    ferplus: str | Path | None = None,
    ferplus_labels: str = "votes",
) -> FERData:
    """Load a FER data set from a FER-2013 CSV or an image-folder tree.

    Args:
        path: a `.csv` or `.csv.gz` file, a msambare (`train/`, `test/`) or `train/` +
            `validation/` folder, or any folder of class subfolders.
        image_size: side of the square grayscale arrays; other sizes are resized.
        strict: refuse class folders that map to no emotion instead of skipping them.
        skip_bad: skip unreadable images and malformed CSV rows (listed in `skipped`) instead
            of stopping at the first.
        use_cache: read/write the decoded arrays under `$FERKIT_CACHE` (~/.cache/ferkit).
        workers: decoding processes (default: one per CPU core).
        ferplus: a FER+ label file (`fer2013new.csv[.gz]`) for the FER-2013 CSV `path`, paired
            with it row by row.
        ferplus_labels: with `ferplus`, "votes" (soft labels for train), "majority", or
            "fer2013-votes" (FER-2013's 7 classes and labels, FER+'s votes as train soft
            labels); see `ferkit.data.ferplus`.

    Raises:
        DataError: the path is missing, empty, of an unknown layout, or holds bad data.
    """
    source = Path(path).expanduser().resolve()
    if not source.exists():
        raise DataError(f"{path}: no such file or folder")
    if source.is_file() and not is_csv(source):
        raise DataError(
            f"{path}: not a data set; expected a FER-2013 .csv/.csv.gz file or a folder of images"
        )
    labels = _ferplus_file(ferplus, ferplus_labels, source)
    variant = f"ferplus-{ferplus_labels}|{labels}" if labels else ""
    fp = cache.fingerprint(source) + (cache.fingerprint(labels) if labels else "")
    data = cache.load(source, image_size, fp, variant) if use_cache else None
    if data is None:
        data = _read_source(source, image_size, strict=strict, workers=workers)
        if labels:
            data = attach_ferplus(data, labels, ferplus_labels)
        if use_cache:
            try:
                cache.save(data, source, fp, variant)
            except OSError as exc:  # a full disk, a read-only home: the data is read all the same
                log.warning(
                    "the data cache cannot be written (%s); the data was read, and is read again "
                    "next time (set FERKIT_CACHE to a folder with room)",
                    os_problem(exc),
                )
    _check_flags(data, strict=strict, skip_bad=skip_bad)
    for note in data.notes:
        log.debug("%s", note)
    return data


def validation_faces(
    path: str | Path,
    *,
    image_size: int = 48,
    limit: int | None = None,
    ferplus: str | Path | None = None,
):
    """Labelled faces for calibration and accuracy checks: (uint8 (N, H, W), labels (N,)).

    `path` is anything `load_dataset` reads; the split is `FERData.scoring_split()`'s (val,
    FER-2013's PublicTest, else test, else the whole unsplit set). `limit` takes an evenly
    spread subset, for quick checks. `ferplus`: FER+'s label file for the FER-2013 CSV `path`,
    whose 8 classes by majority vote label the faces (as evaluation scores a FER+ model).

    Raises:
        DataError: the data set has no split to score on (only training faces, say).
    """
    data = load_dataset(path, image_size=image_size, ferplus=ferplus, ferplus_labels="majority")
    name = data.scoring_split()
    split = data.splits[name]
    # Copies: the data cache hands out read-only memory maps, which torch warns about.
    images, labels = np.array(split.images), np.array(split.labels)
    if limit and len(labels) > limit:
        keep = np.linspace(0, len(labels) - 1, limit).round().astype(int)
        images, labels = images[keep], labels[keep]
    log.info("validating on %d faces of the %r split of %s", len(labels), name, path)
    return images, labels


def _ferplus_file(ferplus: str | Path | None, mode: str, source: Path) -> Path | None:
    if ferplus is None:
        return None
    labels = Path(ferplus).expanduser().resolve()
    if not labels.is_file():
        raise DataError(f"{ferplus}: no such FER+ label file (fer2013new.csv or .csv.gz)")
    if not (source.is_file() and is_csv(source)):
        raise DataError(
            f"{source}: FER+ labels ({ferplus}) pair with the FER-2013 CSV's rows; give the "
            "fer2013.csv[.gz] file as the data, not a folder"
        )
    check_mode(mode)
    return labels


def _check_flags(data: FERData, *, strict: bool, skip_bad: bool) -> None:
    """Apply strict/skip_bad to what a (possibly cached) load found, as a fresh read would."""
    if data.skipped and not skip_bad:
        raise DataError(
            f"{len(data.skipped)} bad image(s)/row(s) in {data.source}: "
            f"{listed_problems(data.skipped)} (use --skip-bad to skip them)"
        )
    if data.ignored_classes and strict:
        raise DataError(
            f"class folder(s) {', '.join(data.ignored_classes)} map to no emotion "
            "(--strict refuses them; drop it to skip them)"
        )
    if data.skipped:
        log.warning(
            "skipped %d bad image(s)/row(s): %s", len(data.skipped), listed_problems(data.skipped)
        )
    if data.ignored_classes:
        log.warning("skipped class folder(s) with no emotion: %s", ", ".join(data.ignored_classes))


def _read_source(source: Path, image_size: int, *, strict: bool, workers: int | None) -> FERData:
    if source.is_file():
        return load_csv(source, image_size=image_size)
    plan = plan_folder(source, strict=strict)
    if not plan.files:
        raise DataError(f"{source}: the class folders hold no images (.jpg, .png, ...)")
    paths = [f for f, _, _ in plan.files]
    images, ok, resized, errors = decode_files(
        paths, image_size, workers=workers, desc=f"decoding {source.name}"
    )
    labels = np.array([y for _, y, _ in plan.files], np.int64)
    split_of = np.array([s for *_, s in plan.files])
    splits = {}
    for name in plan.splits:
        keep = ok & (split_of == name)
        splits[name] = Split(images[keep], labels[keep]) if keep.any() else empty_split(image_size)
    if not ok.any():
        raise DataError(f"{source}: none of its {len(paths)} image(s) could be read: {errors[0]}")
    return FERData(
        source=str(source),
        kind=plan.kind,
        image_size=image_size,
        splits=splits,
        resized=resized,
        skipped=errors,
        ignored_classes=plan.ignored_classes,
        notes=plan.notes,
    )
