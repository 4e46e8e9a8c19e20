"""Emotions over a video: per frame (or every Nth), tracked and smoothed, annotated, timed.

    summary = process_video(rec, "clip.mp4", every=2, smooth=0.6,
                            annotate_to="out.mp4", csv_to="timeline.csv")

Frames are analysed in groups of `batch_frames`: their faces go through the model together.
Each face is matched to the previous frame's faces by box overlap (IoU) and its scores are
smoothed with an exponential moving average per track, which removes most label flicker.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np

from ferkit.errors import ConfigError
from ferkit.imaging import ImageError
from ferkit.inference.recognizer import EmotionRecognizer, Face

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = frozenset(
    {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv"}
)
FALLBACK_FPS = 30.0  # some containers report 0 fps; timestamps then assume this


def is_video(path: str | Path) -> bool:
    """True for file names with a video extension (.mp4, .avi, .mov, ...)."""
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


@dataclass
class FrameResult:
    """One frame of a video with its faces.

    `analysed` is False for frames skipped by `every`; they carry the last analysed faces,
    so an annotated video shows boxes on every frame.
    """

    index: int
    time_s: float
    image: np.ndarray  # BGR frame as read
    faces: list[Face]
    tracks: list[int]  # track id of each face, stable across frames
    analysed: bool


@dataclass
class VideoSummary:
    """What `process_video` did."""

    path: str
    frames: int = 0
    analysed: int = 0
    faces: int = 0
    fps: float = 0.0
    seconds: float = 0.0  # wall time spent
    outputs: list[str] = field(default_factory=list)


def iou(a: Sequence[int], b: Sequence[int]) -> float:
    """Intersection over union of two (x, y, w, h) boxes."""
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[0] + a[2], b[0] + b[2]), min(a[1] + a[3], b[1] + b[3])
    inter = max(0, x1 - x0) * max(0, y1 - y0)
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


class Smoother:
    """Track faces across frames by IoU and smooth each track's scores (EMA).

    Args:
        alpha: weight of the past in 0..1 (0: no smoothing; 0.7: about 3 frames of memory).
        min_iou: overlap needed to call two boxes the same face.
        max_missing: analysed frames a track survives without being seen.
    """

    def __init__(self, alpha: float = 0.0, *, min_iou: float = 0.3, max_missing: int = 5):
        if not 0.0 <= alpha < 1.0:
            raise ConfigError(f"smoothing must be in [0, 1) (got {alpha})")
        self.alpha, self.min_iou, self.max_missing = alpha, min_iou, max_missing
        self._tracks: dict[int, tuple[Face, int]] = {}  # id -> (last smoothed face, missed)
        self._next_id = 0

    def update(self, faces: Sequence[Face]) -> tuple[list[Face], list[int]]:
        """Smoothed faces and their track ids, in the order given."""
        pairs = sorted(
            (
                (iou(f.box, t.box), i, tid)
                for i, f in enumerate(faces)
                for tid, (t, _) in self._tracks.items()
            ),
            reverse=True,
        )
        match: dict[int, int] = {}
        for score, i, tid in pairs:
            if score < self.min_iou:
                break
            if i not in match and tid not in match.values():
                match[i] = tid
        out, ids = [], []
        for i, face in enumerate(faces):
            tid = match.get(i)
            if tid is None:
                tid, self._next_id = self._next_id, self._next_id + 1
            elif self.alpha > 0:
                face = _blend(self._tracks[tid][0], face, self.alpha)
            self._tracks[tid] = (face, 0)
            out.append(face)
            ids.append(tid)
        for tid in set(self._tracks) - set(ids):
            last, missed = self._tracks[tid]
            if missed + 1 > self.max_missing:
                del self._tracks[tid]
            else:
                self._tracks[tid] = (last, missed + 1)
        return out, ids


def _blend(past: Face, now: Face, alpha: float) -> Face:
    scores = {k: alpha * past.scores.get(k, v) + (1 - alpha) * v for k, v in now.scores.items()}
    label = max(scores, key=scores.__getitem__)
    return replace(now, scores=scores, label=label, confidence=scores[label])


def open_video(path: str | Path, *, warn: bool = True) -> tuple[cv2.VideoCapture, float, int]:
    """(capture, fps, frame count or 0) for a video file; ImageError naming it if unreadable."""
    path = Path(path)
    if not path.is_file():
        raise ImageError(f"{path}: no such video file")
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise ImageError(f"{path}: cannot open it as a video (unknown format or corrupt file)")
    fps = cap.get(cv2.CAP_PROP_FPS) or 0.0
    if not fps or fps != fps or fps > 1000:  # 0, NaN or nonsense from some containers
        if warn:
            log.warning("%s: frame rate unknown; timestamps assume %.0f fps", path, FALLBACK_FPS)
        fps = FALLBACK_FPS
    return cap, float(fps), max(0, int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0))


def analyse_video(
    rec: EmotionRecognizer,
    path: str | Path,
    *,
    every: int = 1,
    smooth: float = 0.0,
    batch_frames: int = 16,
) -> Iterator[FrameResult]:
    """Yield a FrameResult for every frame of the video, in order.

    Args:
        rec: the recognizer (its detector, model and TTA settings are used).
        path: the video file.
        every: analyse every Nth frame; the others carry the last results.
        smooth: EMA weight of the past per tracked face, in [0, 1).
        batch_frames: analysed frames whose faces share forward passes.
    """
    if every < 1:
        raise ConfigError(f"every must be at least 1 (got {every})")
    cap, fps, _ = open_video(path)
    smoother = Smoother(smooth)
    last: tuple[list[Face], list[int]] = ([], [])
    pending: list[tuple[int, np.ndarray]] = []
    index = 0
    try:
        while True:
            ok, frame = cap.read()
            if ok:
                pending.append((index, frame))
                index += 1
            n_analysed = sum(1 for i, _ in pending if i % every == 0)
            if pending and (
                not ok or n_analysed >= batch_frames or len(pending) >= 4 * batch_frames
            ):
                todo = [f for i, f in pending if i % every == 0]
                results = iter(rec.predict(todo, color="bgr") if todo else [])
                for i, f in pending:
                    analysed = i % every == 0
                    if analysed:
                        last = smoother.update(next(results))
                    yield FrameResult(i, i / fps, f, list(last[0]), list(last[1]), analysed)
                pending = []
            if not ok:
                break
    finally:
        cap.release()
    if index == 0:
        raise ImageError(f"{path}: no frame could be decoded (empty or corrupt video)")


def timeline_header(labels: Sequence[str]) -> list[str]:
    """CSV columns shared by image and video results (frame/time_s empty for images)."""
    return ["file", "frame", "time_s", "face", "x", "y", "w", "h", "label", "confidence", *labels]


def timeline_row(
    file: str, frame: int | str, time_s: float | str, face_id: int, face: Face
) -> list:
    """One CSV row for one face (see `timeline_header`)."""
    t = f"{time_s:.3f}" if isinstance(time_s, float) else time_s
    return [file, frame, t, face_id, *face.box, face.label, f"{face.confidence:.4f}",
            *(f"{v:.4f}" for v in face.scores.values())]  # fmt: skip


def process_video(
    rec: EmotionRecognizer,
    path: str | Path,
    *,
    every: int = 1,
    smooth: float = 0.0,
    annotate_to: str | Path | None = None,
    csv_to: str | Path | None = None,
    csv_writer=None,
    progress: bool = False,
    batch_frames: int = 16,
    on_frame: Callable[[FrameResult], None] | None = None,
) -> VideoSummary:
    """Analyse a video; optionally write an annotated copy (mp4v) and a CSV timeline.

    Args:
        rec, path, every, smooth, batch_frames: as for `analyse_video`.
        annotate_to: output video path (.mp4 or .avi), same size and frame rate as the input.
        csv_to: CSV file to write one row per face per analysed frame, with timestamps.
        csv_writer: a csv.writer to append rows to instead (the CLI's shared CSV).
        progress: show a progress bar on stderr.
        on_frame: called with every FrameResult (to stream JSON, say), in order.
    """
    import time

    from tqdm import tqdm

    from ferkit.inference.draw import annotate

    _, fps, total = _probe(path)
    summary = VideoSummary(str(path), fps=fps)
    writer = None
    csv_file = open(csv_to, "w", newline="") if csv_to else None  # noqa: SIM115 - closed below
    rows = csv.writer(csv_file) if csv_file else csv_writer
    if csv_file:
        rows.writerow(timeline_header(rec.labels))
    start = time.perf_counter()
    bar = tqdm(
        total=total or None,
        unit="frame",
        desc=Path(path).name,
        disable=None if progress else True,
        leave=False,
    )
    try:
        for r in analyse_video(rec, path, every=every, smooth=smooth, batch_frames=batch_frames):
            summary.frames += 1
            summary.analysed += r.analysed
            if r.analysed:
                summary.faces += len(r.faces)
                if rows is not None:
                    for face, tid in zip(r.faces, r.tracks, strict=True):
                        rows.writerow(timeline_row(str(path), r.index, r.time_s, tid, face))
            if annotate_to:
                if writer is None:
                    writer = _writer(annotate_to, fps, r.image.shape[1], r.image.shape[0])
                writer.write(annotate(r.image, r.faces))
            if on_frame is not None:
                on_frame(r)
            bar.update(1)
    finally:
        bar.close()
        if writer is not None:
            writer.release()
        if csv_file:
            csv_file.close()
    summary.seconds = time.perf_counter() - start
    summary.outputs = [str(p) for p in (annotate_to, csv_to) if p]
    return summary


def _probe(path: str | Path) -> tuple[None, float, int]:
    cap, fps, total = open_video(path, warn=False)
    cap.release()
    return None, fps, total


def _writer(out: str | Path, fps: float, width: int, height: int) -> cv2.VideoWriter:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fourcc = cv2.VideoWriter_fourcc(*("MJPG" if out.suffix.lower() == ".avi" else "mp4v"))
    writer = cv2.VideoWriter(str(out), fourcc, fps, (width, height))
    if not writer.isOpened():
        raise ImageError(f"{out}: cannot write a video there (use a .mp4 or .avi name)")
    return writer
