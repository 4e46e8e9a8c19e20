"""Emotions over a video: per frame (or every Nth), people tracked and smoothed, a table.

    analysis = process_video(rec, "clip.mp4", every=2, smooth=0.6,
                             annotate_to="out.mp4", csv_to="timeline.csv")
    analysis.to_pandas()        # one row per person per analysed frame (time, track, box, ...)
    for person in analysis.people():
        print(person.text())    # "person 0: happy 62%, neutral 38% (40 frames, 0.0-3.9 s)"

`EmotionRecognizer.predict_video(path, ...)` is the same call. Frames are analysed in groups of
`batch_frames`: their faces go through the model together. A `Tracker` (box overlap) gives
each person an id, smooths their probabilities over frames and leaves out detections that
are not confirmed (a frame or two of a low-scoring box), so every row and every label drawn
is one person in one frame.
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ferkit.errors import ConfigError, OutputError
from ferkit.imaging import ImageError
from ferkit.inference.recognizer import EmotionRecognizer
from ferkit.inference.results import CsvRows, Result, rows_of, to_dataframe, write_csv
from ferkit.inference.tracking import Tracker, follow
from ferkit.outputs import open_csv, partial_name, replaced_atomically

log = logging.getLogger(__name__)

# Read by OpenCV's FFmpeg; .3gp from older phones, .mts/.m2ts from camcorders (AVCHD)
VIDEO_SUFFIXES = frozenset(
    {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".3gp", ".mts"}
    | {".m2ts", ".flv", ".ogv"}
)
FALLBACK_FPS = 30.0  # some containers report 0 fps; timestamps then assume this


def is_video(path: str | Path) -> bool:
    """True for file names with a video extension (.mp4, .avi, .mov, ...)."""
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


@dataclass(frozen=True)
class Person:
    """One tracked person over a video: how long they were seen and what they showed.

    Attributes:
        track: the track id (the `track` column of the table).
        frames: analysed frames the person was labelled in.
        first_s, last_s: time of the first and last of those frames, in seconds.
        shares: emotion -> fraction of those frames with that label, largest first.
    """

    track: int
    frames: int
    first_s: float
    last_s: float
    shares: dict[str, float]

    @property
    def dominant(self) -> str:
        """The emotion shown in most of the person's frames."""
        return next(iter(self.shares))

    def to_dict(self) -> dict[str, Any]:
        return {
            "track": self.track,
            "frames": self.frames,
            "first_s": round(self.first_s, 3),
            "last_s": round(self.last_s, 3),
            "dominant": self.dominant,
            "shares": {k: round(v, 4) for k, v in self.shares.items()},
        }

    def text(self) -> str:
        """One line: "person 0: happy 62%, neutral 38% (40 frames, 0.0-3.9 s)"."""
        shares = ", ".join(f"{k} {v:.0%}" for k, v in self.shares.items())
        return (
            f"person {self.track}: {shares} ({self.frames} frame"
            f"{'' if self.frames == 1 else 's'}, {self.first_s:.1f}-{self.last_s:.1f} s)"
        )


def people(results: Sequence[Result]) -> list[Person]:
    """One `Person` per track id in the analysed frames' results, by id."""
    seen: dict[int, list[tuple[float, str]]] = {}
    for r in results:
        for face in r.faces:
            if face.track is not None:
                seen.setdefault(face.track, []).append((r.time_s or 0.0, face.label))
    out = []
    for track, hits in sorted(seen.items()):
        counts = Counter(label for _, label in hits).most_common()
        shares = {label: n / len(hits) for label, n in counts}
        out.append(Person(track, len(hits), hits[0][0], hits[-1][0], shares))
    return out


@dataclass
class VideoAnalysis:
    """What `process_video` found and did.

    Attributes:
        path: the video file.
        labels: the model's emotion names (the probability columns of the table).
        results: one `Result` per analysed frame (without its image, to keep memory small).
        frames: frames read; analysed: frames analysed (`every`); faces: faces labelled.
        fps: the video's frame rate (timestamps use it); seconds: wall time spent.
        outputs: files written.
    """

    path: str
    labels: tuple[str, ...] = ()
    results: list[Result] = field(default_factory=list, repr=False)
    frames: int = 0
    analysed: int = 0
    faces: int = 0
    fps: float = 0.0
    seconds: float = 0.0
    outputs: list[str] = field(default_factory=list)

    def rows(self) -> list[dict[str, Any]]:
        """One dict per person per analysed frame: file, frame, time_s, face, track, box,
        score, label, confidence and one probability per emotion (`results.columns`)."""
        return rows_of(self.results)

    def to_csv(self, path) -> None:
        """Write `rows()` as CSV to a file name or an open text file."""
        write_csv(self.rows(), self.labels, path)

    def to_pandas(self):
        """`rows()` as a pandas DataFrame (pandas must be installed)."""
        return to_dataframe(self.rows(), self.labels)

    def people(self) -> list[Person]:
        """One summary per tracked person: dominant emotion and share of frames per emotion."""
        return people(self.results)

    def text(self) -> str:
        """What `ferkit predict` prints for a video: a line for it, then one per person."""
        rate = self.frames / self.seconds if self.seconds else 0.0
        people = self.people()
        who = f"{len(people)} {'person' if len(people) == 1 else 'people'}"
        head = (
            f"{self.path}: {self.frames} frames ({self.analysed} analysed), {self.faces} "
            f"faces, {who}, {rate:.1f} frames/s"
        )
        return "\n".join([head, *(f"  {p.text()}" for p in people)])


def open_capture(source: str | int) -> cv2.VideoCapture:
    """An OpenCV capture of a video file or camera, without FFmpeg's own stderr lines.

    ferkit names an unreadable video in its error; FFmpeg's lines ("moov atom not found") say
    it again, in its words. OpenCV reads OPENCV_FFMPEG_LOGLEVEL once, when it opens its first
    capture, so it is set here, before that. Debug logging (`--debug`) or the user's own
    setting of the variable keeps them.
    """
    if not log.isEnabledFor(logging.DEBUG):
        os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET
    return cv2.VideoCapture(source)


def open_video(path: str | Path, *, warn: bool = True) -> tuple[cv2.VideoCapture, float, int]:
    """(capture, fps, frame count or 0) for a video file; ImageError naming it if unreadable."""
    path = Path(path)
    if not path.is_file():
        raise ImageError(f"{path}: no such video file")
    cap = open_capture(str(path))
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
    tracker: Tracker | None = None,
) -> Iterator[Result]:
    """Yield a `Result` for every frame of the video, in order.

    Each carries `frame`, `time_s`, the frame as read (`image`, BGR) and the confirmed,
    tracked faces (`face.track` set). Frames skipped by `every` have `analysed` False and
    carry the faces of the last analysed frame, so an annotated video shows boxes throughout.

    Args:
        rec: the recognizer (its detector, model and TTA settings are used).
        path: the video file.
        every: analyse every Nth frame.
        smooth: EMA weight of the past per tracked face, in [0, 1).
        batch_frames: analysed frames whose faces share forward passes.
        tracker: a `Tracker` with other settings (then `smooth` is its own).
    """
    if every < 1:
        raise ConfigError(f"every must be at least 1 (got {every})")
    tracker = tracker or Tracker(smooth)
    fps, _ = _probe(path)
    for (i, frame, timings), faces in follow(tracker, _detected(rec, path, every, batch_frames)):
        yield Result(
            str(path),
            (frame.shape[1], frame.shape[0]),
            faces,
            rec.labels,
            timings,
            image=frame,
            frame=i,
            time_s=i / fps,
            analysed=i % every == 0,
        )


def _detected(rec: EmotionRecognizer, path, every: int, batch_frames: int) -> Iterator[tuple]:
    """((index, frame, timings), faces or None) for every frame; faces of every Nth frame,
    found `batch_frames` analysed frames at a time (their faces share forward passes)."""
    cap, _, _ = open_video(path)
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
                found = iter(rec.predict(todo, color="bgr") if todo else [])
                for i, f in pending:
                    if i % every == 0:
                        result = next(found)
                        yield (i, f, result.timings), result.faces
                    else:
                        yield (i, f, {}), None
                pending = []
            if not ok:
                break
    finally:
        cap.release()
    if index == 0:
        raise ImageError(f"{path}: no frame could be decoded (empty or corrupt video)")


def process_video(
    rec: EmotionRecognizer,
    path: str | Path,
    *,
    every: int = 1,
    smooth: float = 0.0,
    annotate_to: str | Path | None = None,
    csv_to: str | Path | None = None,
    csv_rows: CsvRows | None = None,
    progress: bool = False,
    batch_frames: int = 16,
    tracker: Tracker | None = None,
    on_frame: Callable[[Result], None] | None = None,
) -> VideoAnalysis:
    """Analyse a video; optionally write an annotated copy (mp4v) and a CSV timeline.

    Args:
        rec, path, every, smooth, batch_frames, tracker: as for `analyse_video`.
        annotate_to: output video path (.mp4 or .avi), same size and frame rate as the input.
        csv_to: CSV file to write one row per person per analysed frame, with timestamps.
        csv_rows: a `CsvRows` to append rows to instead (the CLI's shared CSV).
        progress: show a progress bar on stderr.
        on_frame: called with every frame's Result (to stream JSON, say), in order.

    Returns:
        A `VideoAnalysis`: the per-frame table (`rows()`, `to_pandas()`, `to_csv()`), one
        summary per person (`people()`) and counts.
    """
    from ferkit.progress import bar as progress_bar

    fps, total = _probe(path)
    analysis = VideoAnalysis(str(path), labels=rec.labels, fps=fps)
    start = time.perf_counter()
    # Each output is written beside its name and replaces it only when the whole video is
    # done: an error midway leaves an old file whole and no half-written one. Ctrl-C keeps
    # what was written so far (a finished file, the frames up to then) under a name of its own.
    kept = {out: partial_name(out) for out in (annotate_to, csv_to) if out}
    try:
        with ExitStack() as outputs:
            video_tmp, csv_tmp = (
                outputs.enter_context(replaced_atomically(out, keep_interrupted=kept[out]))
                if out
                else None
                for out in (annotate_to, csv_to)
            )
            rows = csv_rows
            if csv_tmp is not None:
                rows = CsvRows(outputs.enter_context(open_csv(csv_tmp)), rec.labels)
            bar = outputs.enter_context(
                progress_bar(
                    total=total or None,
                    unit="frame",
                    desc=Path(path).name,
                    show=progress,
                    leave=False,
                )
            )
            frames = analyse_video(
                rec, path, every=every, smooth=smooth, batch_frames=batch_frames, tracker=tracker
            )
            video = None if video_tmp is None else (video_tmp, annotate_to, fps)
            _consume(frames, analysis, rows, video, bar.update, on_frame)
    except KeyboardInterrupt:
        for partial in kept.values():
            if partial.exists():
                log.warning("interrupted: wrote %s with the frames so far", partial)
        raise
    analysis.seconds = time.perf_counter() - start
    analysis.outputs = [str(p) for p in (annotate_to, csv_to) if p]
    return analysis


def _consume(frames, analysis: VideoAnalysis, rows, video, advance, on_frame) -> None:
    """Count and keep each frame's Result in `analysis`, write its CSV rows and, when `video`
    is (file, name, fps), its annotated image; the writer is closed, and the file read back,
    before it is moved."""
    from ferkit.inference.draw import annotate

    writer, written = None, 0
    try:
        for r in frames:
            analysis.frames += 1
            if r.analysed:
                analysis.analysed += 1
                analysis.faces += len(r.faces)
                analysis.results.append(replace(r, image=None))
                if rows is not None:
                    rows.write(r.rows())
            if video is not None:
                if writer is None:
                    file, name, fps = video
                    writer = _writer(file, fps, *r.image.shape[1::-1], name=name)
                with _writer_warnings_off():
                    writer.write(annotate(r.image, r.faces))
                written += 1
            if on_frame is not None:
                on_frame(r)
            advance(1)
    finally:
        if writer is not None:
            writer.release()  # before the finished file replaces its name
    if writer is not None:
        _check_written(video[0], video[1], written)


@contextmanager
def _writer_warnings_off() -> Iterator[None]:
    """OpenCV's writer warns for each frame it cannot write ("Failed to write frame"), on
    stderr; ferkit says it once, naming the file (`_check_written`). --debug keeps them."""
    if log.isEnabledFor(logging.DEBUG):
        yield
        return
    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    try:
        yield
    finally:
        cv2.utils.logging.setLogLevel(level)


def _check_written(file: Path, name: str | Path, frames: int) -> None:
    """OpenCV's writer drops frames it cannot write without a word (a full disk): an annotated
    video is read back, and one that lacks frames never replaces `name`."""
    cap = cv2.VideoCapture(str(file))
    readable = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) if cap.isOpened() else 0
    cap.release()
    if readable < frames:
        raise OutputError(
            f"{name}: the annotated video was not written whole ({readable} of {frames} "
            "frames readable; is the disk full?); nothing was replaced"
        )


def _probe(path: str | Path) -> tuple[float, int]:
    """(fps, frame count or 0) of a video, without keeping it open."""
    cap, fps, total = open_video(path, warn=False)
    cap.release()
    return fps, total


def _writer(
    out: str | Path, fps: float, width: int, height: int, *, name: str | Path
) -> cv2.VideoWriter:
    """A video writer to `out`, which becomes `name` when done (named in errors)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fourcc = cv2.VideoWriter_fourcc(*("MJPG" if out.suffix.lower() == ".avi" else "mp4v"))
    writer = cv2.VideoWriter(str(out), fourcc, fps, (width, height))
    if not writer.isOpened():
        raise ImageError(f"{name}: cannot write a video there (use a .mp4 or .avi name)")
    return writer
