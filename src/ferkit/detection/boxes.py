"""Face boxes and detections: (x, y, w, h) in pixels, a score, five landmarks; sorting,
clipping, merging overlaps and picking the faces a caller asked for."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ferkit.errors import ConfigError

Box = tuple[int, int, int, int]  # x, y, width, height in pixels
Point = tuple[float, float]  # x, y in pixels

# YuNet's five landmarks, in its order. "right" is the person's right (the left of the image).
LANDMARKS = ("right_eye", "left_eye", "nose", "mouth_right", "mouth_left")
# Faces a detector scores below this are dropped unless a caller asks for fewer or more.
DEFAULT_MIN_FACE_SCORE = 0.7


@dataclass(frozen=True)
class Detection:
    """One face a detector found.

    Attributes:
        box: (x, y, w, h) in pixels.
        score: the detector's confidence that this is a face, 0..1; None for detectors that
            give none (Haar, boxes given by the caller).
        landmarks: the five points of `LANDMARKS` as (x, y) pixels, or None (Haar).
    """

    box: Box
    score: float | None = None
    landmarks: tuple[Point, ...] | None = None

    def scaled(self, factor: float) -> Detection:
        """The same detection with every coordinate multiplied by `factor` (box rounded)."""
        if factor == 1.0:
            return self
        box = tuple(round(v * factor) for v in self.box)
        points = self.landmarks
        if points is not None:
            points = tuple((x * factor, y * factor) for x, y in points)
        return Detection(box, self.score, points)  # type: ignore[arg-type]


def as_detection(found: Detection | Sequence[float]) -> Detection:
    """A Detection from a detector's output: a Detection, or a bare (x, y, w, h) box."""
    if isinstance(found, Detection):
        return found
    return Detection(tuple(round(v) for v in found[:4]))  # type: ignore[arg-type]


def largest_first(boxes: Iterable[Sequence[float]]) -> list[Box]:
    """Integer boxes sorted by area, largest first (ties: top-left first, so the order is stable)."""
    out = [tuple(round(v) for v in b[:4]) for b in boxes]
    return sorted(out, key=_area_order)  # type: ignore[return-value]


def by_area(detections: Iterable[Detection]) -> list[Detection]:
    """Detections sorted by box area, largest first (ties: top-left first)."""
    return sorted(detections, key=lambda d: _area_order(d.box))


def _area_order(b: Sequence[int]) -> tuple[int, int, int]:
    return (-b[2] * b[3], b[1], b[0])


def clip_box(box: Sequence[int], width: int, height: int) -> Box:
    """Clip an (x, y, w, h) box to an image of `width` x `height` (may leave w or h at 0)."""
    x0, y0 = max(0, int(box[0])), max(0, int(box[1]))
    x1, y1 = min(width, int(box[0] + box[2])), min(height, int(box[1] + box[3]))
    return x0, y0, max(0, x1 - x0), max(0, y1 - y0)


def merge_overlaps(detections: Sequence[Detection], iou_threshold: float = 0.3) -> list[Detection]:
    """Non-maximum suppression (OpenCV's): of boxes overlapping by more than `iou_threshold`
    (IoU), keep the highest-scoring one (without scores, the largest). Largest first."""
    if len(detections) < 2:
        return list(detections)
    import cv2  # here, so the CLI can read FaceFilter's defaults without loading OpenCV
    import numpy as np

    ranked = sorted(detections, key=lambda d: (-_score(d), *_area_order(d.box)))
    # Equal scores: NMSBoxes then keeps the order given, ours (and drops none below a threshold).
    keep = cv2.dnn.NMSBoxes([list(d.box) for d in ranked], [1.0] * len(ranked), 0.0, iou_threshold)
    return by_area(ranked[int(i)] for i in np.ravel(keep))


def _score(d: Detection) -> float:
    return d.score if d.score is not None else 1.0


@dataclass(frozen=True)
class FaceFilter:
    """Which of the detected faces a caller wants, largest first.

    The same three options in Python (`EmotionRecognizer(min_face_score=...)`), on the command
    line (`--min-face-score`, `--min-face-size`, `--max-faces`) and in the server's query
    (`/v1/predict?min_face_score=...`).

    Attributes:
        min_face_score: drop faces the detector scores below this, 0..1 (faces without a
            score, from Haar or given boxes, are kept).
        min_face_size: drop faces whose shorter side is below this many input pixels.
        max_faces: keep at most this many, the largest (None: all).
    """

    min_face_score: float = DEFAULT_MIN_FACE_SCORE
    min_face_size: float = 0
    max_faces: int | None = None

    def __post_init__(self) -> None:
        if not 0.0 <= self.min_face_score <= 1.0:
            raise ConfigError(f"min_face_score must be in 0..1 (got {self.min_face_score})")
        if not self.min_face_size >= 0:
            raise ConfigError(f"min_face_size must be 0 or more pixels (got {self.min_face_size})")
        if self.max_faces is not None and self.max_faces < 1:
            raise ConfigError(
                f"max_faces must be at least 1 (got {self.max_faces}); omit it for all"
            )

    def apply(self, detections: Sequence[Detection], scale: float = 1.0) -> list[Detection]:
        """The wanted detections of a largest-first list; `scale`: input pixels per pixel of
        the detections' image (a shrunk working copy)."""
        out = [
            d
            for d in detections
            if min(d.box[2], d.box[3]) * scale >= self.min_face_size
            and (d.score is None or d.score >= self.min_face_score)
        ]
        return out if self.max_faces is None else out[: self.max_faces]


def named_landmarks(
    points: Sequence[Point] | None, digits: int = 1
) -> dict[str, list[float]] | None:
    """Landmarks as JSON: {"right_eye": [x, y], ...} rounded to `digits`; None stays None."""
    if points is None:
        return None
    return {
        k: [round(x, digits), round(y, digits)] for k, (x, y) in zip(LANDMARKS, points, strict=True)
    }
