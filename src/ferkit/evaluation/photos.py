"""Score whole photos end to end: detect, keep the largest face, classify; no face is wrong.

    ferkit evaluate --data PHOTOS --detect          # PHOTOS: class folders of photos

The result has the keys of crop evaluation (`classification_metrics`: accuracy, per-class
accuracy, confusion matrix, ...) plus what only photos have: how many photos had a face
(`face_found_rate`), which had none (`no_face`), and the time per photo, file to label.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ferkit.data.folders import plan_folder
from ferkit.errors import DataError
from ferkit.evaluation.metrics import classification_metrics
from ferkit.labels import EMOTIONS
from ferkit.progress import bar as progress_bar

log = logging.getLogger(__name__)

CHUNK = 32  # photos per `predict` call: detection runs in parallel threads within a call


def list_photos(folder: str | Path) -> tuple[list[str], np.ndarray]:
    """(photo paths, label indices) of a folder of class subfolders (happy/, sad/, ...)."""
    root = Path(folder)
    if not root.is_dir():
        raise DataError(
            f"{root}: not a folder; --detect scores class folders of photos "
            "(happy/*.jpg, sad/*.jpg, ...)"
        )
    plan = plan_folder(root)
    if not plan.files:
        raise DataError(f"{root}: no photos in its class folders")
    return [f for f, _, _ in plan.files], np.array([y for _, y, _ in plan.files], np.int64)


def evaluate_photos(
    recognizer,
    folder: str | Path,
    *,
    progress: bool = True,
    with_probs: bool = False,
) -> dict:
    """Score `recognizer` (an EmotionRecognizer with a detector) on a folder of photos.

    Each photo counts once: its largest face's top label, or wrong when no face is found.
    A model with labels beyond the folders' seven (FER+'s contempt) is scored as it answers:
    a top label the folders do not have counts as wrong (`outside_labels`). A photo that
    cannot be read stops the run with its name (a data error, not a miss).

    Args:
        recognizer: an `EmotionRecognizer`; its detector, framing and options are used as set.
        folder: class subfolders of photos, named as `ferkit.labels` maps them.
        progress: a progress bar on stderr.
        with_probs: also return, under "scored", a `ScoredPhotos` (not JSON-ready): each
            photo's file, label, prediction and probabilities, for `prediction_rows` and
            `face_grid`.

    Returns:
        `classification_metrics` (per-class accuracy and the confusion matrix count a photo
        without a face as wrong; its loss uses uniform probabilities) plus `photos`,
        `faces_found`, `face_found_rate`, `no_face` (the files), `outside_labels` (photos
        whose top label the folders lack), `ms_per_photo`, `detector`.
    """
    files, y_true = list_photos(folder)
    labels, n = list(recognizer.labels), len(EMOTIONS)
    if labels[:n] != list(EMOTIONS):
        raise DataError(f"the model predicts {labels}; photo folders are labelled {EMOTIONS}")
    probs = np.full((len(files), n), 1.0 / n, np.float32)  # the folders' labels only
    y_pred = np.full(len(files), -1, np.int64)  # -1: no face, or a label the folders lack
    found = np.zeros(len(files), bool)
    bar = progress_bar(total=len(files), desc="photos", unit="photo", show=progress)
    start = time.perf_counter()
    for i in range(0, len(files), CHUNK):
        for j, faces in enumerate(recognizer.predict(files[i : i + CHUNK]), start=i):
            if faces:  # largest first
                p = np.array([faces[0].scores[k] for k in labels], np.float32)
                top = int(np.argmax(p))
                found[j], y_pred[j] = True, top if top < n else -1
                probs[j] = p[:n] / max(float(p[:n].sum()), 1e-12)
        bar.update(min(CHUNK, len(files) - i))
    seconds = time.perf_counter() - start
    bar.close()
    result = classification_metrics(y_true, probs, list(EMOTIONS), y_pred=y_pred)
    result.update(
        photos=len(files),
        faces_found=int(found.sum()),
        face_found_rate=float(found.mean()),
        no_face=[f for f, ok in zip(files, found, strict=True) if not ok],
        outside_labels=int((found & (y_pred < 0)).sum()),
        ms_per_photo=round(1000 * seconds / len(files), 2),
        detector=type(recognizer.detector).__name__ if recognizer.detector else "none",
    )
    if with_probs:
        result["scored"] = ScoredPhotos(files, y_true, y_pred, probs, found)
    return result


@dataclass
class ScoredPhotos:
    """Per photo of an `evaluate_photos` run: file, label index, predicted index (-1: no face,
    or a label the folders lack), the 7 probabilities (uniform where no face), face found."""

    files: list[str]
    y_true: np.ndarray
    y_pred: np.ndarray
    probs: np.ndarray
    found: np.ndarray


def prediction_rows(scored: ScoredPhotos) -> list[dict]:
    """One row per photo: file, its label, the predicted label and its probability (empty
    where no face was found), whether it was right, then each emotion's probability."""
    rows = []
    for file, truth, pred, p, found in zip(
        scored.files, scored.y_true, scored.y_pred, scored.probs, scored.found, strict=True
    ):
        row = {
            "file": file,
            "label": EMOTIONS[truth],
            "predicted": EMOTIONS[pred] if pred >= 0 else "",
            "confidence": round(float(p[pred]), 4) if pred >= 0 else "",
            "correct": int(pred == truth),
        }
        row.update(
            {e: round(float(v), 4) if found else "" for e, v in zip(EMOTIONS, p, strict=True)}
        )
        rows.append(row)
    return rows


def face_grid(
    recognizer, scored: ScoredPhotos, n: int = 32, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(crops, y_true, probs) of `n` photos with a face, drawn at random (`seed`), for
    `plots.prediction_grid`: each photo's largest face cut as the model saw it (detected and
    framed again by `recognizer.crop`, as `predict` cuts it)."""
    with_face = np.flatnonzero(scored.found)
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(with_face, min(n, len(with_face)), replace=False))
    crops = []
    for i in pick:
        frame = recognizer.load(scored.files[i])
        crops.append(recognizer.crop(frame, recognizer.detect(frame)[:1])[0])  # the largest
    size = tuple(recognizer.input_size)
    images = np.stack(crops) if crops else np.zeros((0, *size), np.uint8)
    return images, scored.y_true[pick], scored.probs[pick]
