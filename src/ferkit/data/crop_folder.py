"""Cut the faces out of a folder of photos, so it can be trained and scored on like FER-2013.

ferkit's loaders resize each image whole to 48x48. That is right for face crops (FER-2013,
FER+, aligned RAF-DB) and wrong for photos or video frames (CK+, a folder of your own
pictures), where the face is a small part of the image. `crop_face_folder` finds the largest
face in each image with the recognizer's detector and cuts it out with that detector's
framing (`ferkit.detection.crops.framing_for`), so a model trained or scored on the crops sees
faces framed as `ferkit predict` frames them:

    ferkit data crop photos/ photos-faces/
    ferkit evaluate --data photos-faces/
    ferkit data crop photos/ photos-faces/ --resume   # after Ctrl-C: the images left

The folder tree is copied as it is (class folders, `train/`/`test/`, file-name prefixes), with
one grayscale PNG per image in which a face was found. Nothing is written into the source
folder. `crops.csv` in the output lists every image: where its face was, or why it has none.
Ctrl-C writes it for the images done, as does an error writing a crop (a full disk, where the
log still fits), and `resume` reads it to crop only the rest; each crop is whole or absent.
"""

from __future__ import annotations

import contextlib
import csv
import logging
import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from ferkit.data.folders import CROP_LOG, image_files
from ferkit.detection.boxes import FaceFilter
from ferkit.detection.crops import Framing, crop_faces, framing_for
from ferkit.detection.detectors import Detector, find_faces
from ferkit.detection.frames import load_frame
from ferkit.detection.registry import DEFAULT_DETECTOR, FACE_DETECTORS, make_detector
from ferkit.errors import DataError
from ferkit.files import skipped_note
from ferkit.imaging import ImageError
from ferkit.outputs import open_csv, refuse_existing, refuse_inside, replaced_atomically
from ferkit.progress import bar as progress_bar

log = logging.getLogger(__name__)

STATUSES = ("ok", "no_face", "unreadable")


@dataclass
class Crop:
    """What became of one source image."""

    source: str  # relative to the source folder
    status: str  # one of STATUSES
    output: str = ""  # relative to the output folder; empty unless status is "ok"
    faces: int = 0  # faces found; the largest is the one cut out
    box: tuple[int, int, int, int] | None = None  # that face, (x, y, w, h) in the image's pixels
    error: str = ""


def crop_face_folder(
    src: str | Path,
    dst: str | Path,
    *,
    size: int = 48,
    margin: float | None = None,
    detector: str | Detector = DEFAULT_DETECTOR,
    detector_model: str | Path | None = None,
    face_filter: FaceFilter | None = None,
    overwrite: bool = False,
    resume: bool = False,
    workers: int | None = None,
    progress: bool = True,
) -> dict:
    """Write the largest face of every image under `src` to the same place under `dst`.

    Args:
        src: a folder of images, in any layout (searched recursively).
        dst: the output folder; created. Must not be inside `src`, nor `src` inside it.
        size: side of the square grayscale crops, in pixels.
        margin: fraction of the face box's longer side added on every side; None: the
            detector's framing fitted on FER-2013, as `ferkit predict` frames faces
            (`ferkit.detection.crops.framing_for`).
        detector: a name in `ferkit.detection.DETECTORS` other than "none" (default yunet),
            or a Detector object.
        detector_model: the detector's model file (default: the shipped one).
        face_filter: which faces count (minimum score and size); default `FaceFilter()`.
        overwrite: replace crops and the log that already exist (refused otherwise).
        resume: finish a run stopped by Ctrl-C: the images `dst/crops.csv` lists are kept as
            they are, the others are cropped (the same options are expected).
        workers: images processed at once (default: one per core).
        progress: show a progress bar.

    Returns:
        A summary: counts per status, per folder, the output and log paths.

    Raises:
        DataError: a missing or empty source, an output that overlaps it, outputs that exist;
            with `resume`, no log to resume from, or crops of another size.
    """
    src, dst = Path(src).resolve(), Path(dst).resolve()
    files = _check_folders(src, dst)
    if size < 8:
        raise DataError(f"crop size must be at least 8 pixels (got {size})")
    face_filter = face_filter or FaceFilter()
    finder = make_detector(
        detector, model_path=detector_model, min_score=face_filter.min_face_score
    )
    if finder is None:
        raise DataError(
            f"cropping faces needs a face detector ({' or '.join(FACE_DETECTORS)}), not 'none'"
        )
    framing = Framing.from_margin(margin) if margin is not None else framing_for(finder)
    targets = _outputs(src, files)
    names = [f.relative_to(src).as_posix() for f in files]
    done = _resumed(dst, names, size) if resume else []
    if not overwrite and not resume:
        refuse_existing(
            (dst / t for t in [*targets, Path(CROP_LOG)]),
            hint="pass --overwrite to replace them, --resume to finish an interrupted run, "
            "or choose another output folder",
        )
    logged = {c.source for c in done}
    todo = [(f, t) for f, t, n in zip(files, targets, names, strict=True) if n not in logged]

    def one(job: tuple[Path, Path]) -> Crop:
        return _crop_one(job[0], src, dst, job[1], finder, face_filter, size, framing)

    threads = workers or os.cpu_count() or 1
    if not getattr(finder, "thread_safe", False):
        threads = 1
    crops = list(done)
    try:
        _crop_each(one, todo, threads, progress, crops)
    except (KeyboardInterrupt, OSError) as exc:  # Ctrl-C, a full disk: keep what was done
        how = "interrupted" if isinstance(exc, KeyboardInterrupt) else "stopped"
        with contextlib.suppress(OSError):  # the disk that stopped the crops may refuse it too
            _write_log(dst / CROP_LOG, crops)  # what --resume reads
            log.warning(
                "%s after %s of %s images: wrote %s for those; `ferkit data crop %s %s "
                "--resume` crops the rest", how, f"{len(crops):,}", f"{len(files):,}",
                dst / CROP_LOG, src, dst,
            )  # fmt: skip
        raise
    order = {name: i for i, name in enumerate(names)}
    crops.sort(key=lambda c: order[c.source])
    _write_log(dst / CROP_LOG, crops)
    return _summary(src, dst, crops, size, framing)


def _crop_each(one, todo: list, threads: int, progress: bool, crops: list[Crop]) -> None:
    """Append `one(job)` of every job to `crops` as each ends, so an interruption keeps them."""
    with ThreadPoolExecutor(threads) as pool:
        jobs = pool.map(one, todo)
        for crop in progress_bar(jobs, total=len(todo), desc="cropping faces", unit=" img",
                                 show=progress, leave=False):  # fmt: skip
            crops.append(crop)


def _resumed(dst: Path, names: list[str], size: int) -> list[Crop]:
    """The crops an interrupted run logged, for the images still under the source."""
    path = dst / CROP_LOG
    if not path.is_file():
        raise DataError(
            f"{path}: not there, so there is nothing to resume (it is written when `ferkit "
            "data crop` ends or is interrupted); run without --resume"
        )
    present = set(names)
    done = [c for c in _read_log(path) if c.source in present]
    sample = next((dst / c.output for c in done if c.status == "ok"), None)
    if sample is not None and sample.is_file():
        with Image.open(sample) as img:
            if img.size != (size, size):
                raise DataError(
                    f"{dst}: its crops are {img.width}x{img.height}; resume with --size "
                    f"{img.width}, or start over with --overwrite"
                )
    return done


def _read_log(path: Path) -> list[Crop]:
    """The rows `_write_log` wrote, as Crops."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        crops = [
            Crop(
                r["source"],
                r["status"],
                r["output"],
                int(r["faces"]),
                tuple(int(r[k]) for k in "xywh") if r["x"] else None,
                r["error"],
            )
            for r in rows
        ]
    except (KeyError, ValueError, TypeError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(
            f"{path}: not a log that `ferkit data crop` wrote ({type(exc).__name__}: {exc}); "
            "start over with --overwrite"
        ) from None
    bad = next((c for c in crops if c.status not in STATUSES), None)
    if bad is not None:
        raise DataError(
            f"{path}: status {bad.status!r} of {bad.source} is none of {', '.join(STATUSES)}; "
            "start over with --overwrite"
        )
    return crops


def _check_folders(src: Path, dst: Path) -> list[Path]:
    if not src.is_dir():
        raise DataError(f"{src}: no such folder; expected a folder of images (class folders)")
    refuse_inside(dst, src)
    if src.resolve().is_relative_to(dst.resolve()):  # a copy of the tree around the tree
        raise DataError(f"{dst}: the output folder must be outside the source folder {src} "
                        "(and not contain it): nothing is written into the data")  # fmt: skip
    if dst.exists() and not dst.is_dir():
        raise DataError(f"{dst}: is a file; the output must be a folder (it is created)")
    others: list[Path] = []
    files = image_files(src, others)
    if others:
        log.info("%s: %s: not images", src, skipped_note(others))
    if not files:
        raise DataError(f"{src}: no image files found (looked for "
                        "*.jpg, *.png, ... in it and its subfolders)")  # fmt: skip
    return files


def _outputs(src: Path, files: list[Path]) -> list[Path]:
    """Each source's output path, relative: its own path with a .png suffix (`a.jpg` ->
    `a.png`), or its full name plus .png where two sources would share one (`a.jpg.png`)."""
    plain = [f.relative_to(src).with_suffix(".png") for f in files]
    shared = {p for p, n in Counter(plain).items() if n > 1}
    return [
        p.with_name(f.name + ".png") if p in shared and f.suffix.lower() != ".png" else p
        for f, p in zip(files, plain, strict=True)
    ]


def _crop_one(
    path: Path,
    src: Path,
    dst: Path,
    target: Path,
    finder: Detector,
    face_filter: FaceFilter,
    size: int,
    framing: Framing,
) -> Crop:
    rel = path.relative_to(src).as_posix()
    try:
        frame = load_frame(path)
    except ImageError as exc:
        return Crop(rel, "unreadable", error=str(exc))
    found = find_faces(finder, frame, face_filter)
    if not found:
        return Crop(rel, "no_face")
    box = found[0].box
    face = crop_faces(frame.gray, [box], (size, size), framing)[0]
    with replaced_atomically(dst / target) as tmp:  # whole or not at all: --resume trusts it
        Image.fromarray(face).save(tmp)
    return Crop(rel, "ok", target.as_posix(), len(found), frame.to_input(box))


def _write_log(path: Path, crops: list[Crop]) -> None:
    with replaced_atomically(path) as tmp, open_csv(tmp) as f:
        w = csv.writer(f)
        w.writerow(["source", "status", "output", "faces", "x", "y", "w", "h", "error"])
        for c in crops:
            w.writerow([c.source, c.status, c.output, c.faces, *(c.box or [""] * 4), c.error])


def _summary(src: Path, dst: Path, crops: list[Crop], size: int, framing: Framing) -> dict:
    counts = Counter(c.status for c in crops)
    folders: dict[str, Counter] = {}
    for c in crops:
        folders.setdefault(str(Path(c.source).parent.as_posix()), Counter())[c.status] += 1
    return {
        "source": str(src),
        "output": str(dst),
        "log": str(dst / CROP_LOG),
        "images": len(crops),
        **{s: counts[s] for s in STATUSES},
        "several_faces": sum(c.faces > 1 for c in crops),
        "size": size,
        "framing": framing.to_dict(),
        "folders": {k: {s: v[s] for s in STATUSES} for k, v in sorted(folders.items())},
        "errors": [c.error for c in crops if c.status == "unreadable"],
    }
