"""`Face` and `Result`: what was found in one image (or one video frame), and every way to
write it out.

    result = EmotionRecognizer().predict("photo.jpg")
    result.top_emotion()            # ("happy", 0.91) for the largest face, None without a face
    result.to_dict()                # {"file", "image": {"width", "height"}, "faces", "timing_ms"}
    result.rows()                   # one dict per face: the CSV / DataFrame row
    result.to_pandas()              # those rows as a pandas DataFrame
    result.save("annotated.png")    # result.plot() is the annotated image as an array

JSON, CSV rows, drawings and the command line's text all come from here, so `ferkit predict`,
`ferkit serve` and Python report the same facts in the same words.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

from ferkit.detection.boxes import Box, Point, named_landmarks
from ferkit.errors import FerkitError
from ferkit.outputs import json_dumps, open_csv, replaced_atomically

DIGITS = 4  # decimals of probabilities in JSON and CSV (1e-4 is far below any model's noise)


@dataclass(frozen=True)
class Face:
    """One face: where it is and what it shows.

    Attributes:
        box: (x, y, w, h) in the input image's pixels.
        label: the most probable emotion.
        scores: emotion -> probability, in the checkpoint's label order, summing to 1.
        confidence: the probability of `label`.
        score: the detector's confidence that this is a face, 0..1 (None: the detector gives
            none, as Haar, or the box was given).
        landmarks: YuNet's five points (right eye, left eye, nose tip, right and left mouth
            corner; "right" is the person's right) as (x, y) in the input image's pixels, or
            None.
        track: in a video, the id of the person this face belongs to (None elsewhere).
    """

    box: Box
    label: str
    scores: dict[str, float]
    confidence: float
    track: int | None = None
    score: float | None = None
    landmarks: tuple[Point, ...] | None = None

    def __repr__(self) -> str:  # short: the probabilities are in `scores` and `to_dict()`
        extra = "" if self.track is None else f", track={self.track}"
        return f"Face({self.label} {self.confidence:.1%}, box={tuple(self.box)}{extra})"

    def to_dict(self, digits: int | None = None) -> dict[str, Any]:
        """JSON-ready: {"box": [x, y, w, h], "label", "confidence", "emotions": {...}, "score",
        "landmarks": {"right_eye": [x, y], ...}} (score and landmarks null where there are none).

        The `box` and `emotions` keys are those of the `fer` package, so code written for it
        reads ours. `digits` rounds the probabilities (None keeps full precision).
        """

        def r(v: float) -> float:
            return round(v, digits) if digits is not None else v

        out = {
            "box": list(self.box),
            "label": self.label,
            "confidence": r(self.confidence),
            "emotions": {k: r(v) for k, v in self.scores.items()},
            "score": None if self.score is None else r(self.score),
            "landmarks": named_landmarks(self.landmarks),
        }
        if self.track is not None:
            out["track"] = self.track
        return out


def columns(labels: Sequence[str]) -> list[str]:
    """The columns of `Result.rows()`, for images and video frames alike.

    `frame`, `time_s` and `track` are empty for still images; `face` is the face's place in
    its image (0 = largest); `score` is the detector's confidence (empty when the detector
    gives none, or when boxes were given).
    """
    return [
        "file",
        "frame",
        "time_s",
        "face",
        "track",
        "x",
        "y",
        "w",
        "h",
        "score",
        "label",
        "confidence",
        *labels,
    ]


@dataclass(eq=False)  # compared by identity: its image is an array, which == cannot reduce
class Result:
    """The faces found in one image or video frame, largest first.

    A Result is a sequence of its faces (`len(result)`, `result[0]`, `for face in result`), so
    code written when `predict` returned a list of faces keeps working.

    Attributes:
        source: the file name, or "<array>" / "<PIL image>" / "<bytes>".
        size: the input's (width, height) in its own pixels; face boxes are in these pixels.
        faces: the faces, largest first (empty when there is none).
        labels: the model's emotion names, in its order (the keys of each face's scores).
        timings: milliseconds spent on this image: "decode", "detect" and "classify" (the
            model's time for a batch is shared among its images by their number of faces).
        image: the picture faces were found in, as analysed (BGR or gray uint8, at most the
            recognizer's `max_side` on its longer side); what `plot` draws on.
        scale: input pixels per pixel of `image`.
        frame, time_s: the frame index and its time in seconds, for video frames.
        analysed: False for a video frame skipped by `every`: it carries the faces of the
            last analysed frame (so an annotated video shows them) and adds no table rows.
    """

    source: str
    size: tuple[int, int]
    faces: list[Face]
    labels: tuple[str, ...]
    timings: dict[str, float] = field(default_factory=dict)
    image: np.ndarray | None = field(default=None, repr=False)
    scale: float = 1.0
    frame: int | None = None
    time_s: float | None = None
    analysed: bool = True

    # -- a sequence of faces ----------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.faces)

    def __iter__(self) -> Iterator[Face]:
        return iter(self.faces)

    def __getitem__(self, i):
        return self.faces[i]

    def top_emotion(self) -> tuple[str, float] | None:
        """(label, probability) of the largest face, or None when no face was found."""
        if not self.faces:
            return None
        return self.faces[0].label, self.faces[0].confidence

    # -- machine-readable -------------------------------------------------------------------

    def to_dict(self, digits: int | None = DIGITS) -> dict[str, Any]:
        """JSON-ready: {"file", "image": {"width", "height"}, "faces": [...], "timing_ms"},
        plus "frame" and "time_s" for a video frame. Each face is `Face.to_dict(digits)`.
        """
        out: dict[str, Any] = {"file": self.source}
        if self.frame is not None:
            out["frame"] = self.frame
            out["time_s"] = round(self.time_s, 3) if self.time_s is not None else None
        out["image"] = {"width": self.size[0], "height": self.size[1]}
        out["faces"] = [f.to_dict(digits) for f in self.faces]
        out["timing_ms"] = {k: round(v, 2) for k, v in self.timings.items()}
        return out

    def to_json(self, indent: int | None = None, digits: int | None = DIGITS) -> str:
        """`to_dict()` as a JSON string."""
        return json_dumps(self.to_dict(digits), indent=indent)

    def rows(self) -> list[dict[str, Any]]:
        """One dict per face with the keys of `columns(labels)`: the table form of the result."""
        out = []
        for i, face in enumerate(self.faces):
            x, y, w, h = face.box
            out.append(
                {
                    "file": self.source,
                    "frame": self.frame,
                    "time_s": self.time_s,
                    "face": i,
                    "track": getattr(face, "track", None),
                    "x": x,
                    "y": y,
                    "w": w,
                    "h": h,
                    "score": getattr(face, "score", None),
                    "label": face.label,
                    "confidence": face.confidence,
                    **face.scores,
                }
            )
        return out

    def to_csv(self, path: str | Path | IO[str]) -> None:
        """Write `rows()` as CSV (with a header) to a file name or an open text file."""
        write_csv(self.rows(), self.labels, path)

    def to_pandas(self):
        """`rows()` as a pandas DataFrame (pandas must be installed)."""
        return to_dataframe(self.rows(), self.labels)

    # -- for people -------------------------------------------------------------------------

    def plot(self, *, bars: bool = True) -> np.ndarray:
        """The image with each face's box, label and probability bars (BGR uint8)."""
        from ferkit.inference.draw import annotate

        if self.image is None:
            raise FerkitError(f"{self.source}: this result holds no image to draw on")
        return annotate(self.image, self.faces, scale=self.scale, bars=bars)

    def save(self, path: str | Path, *, bars: bool = True) -> Path:
        """Write `plot()` to `path` (the suffix picks the format: .png, .jpg, ...); returns it.

        The file is replaced in one step, so a failed write leaves an existing file whole.
        """
        import cv2

        path = Path(path)
        try:  # encoded first: a suffix OpenCV cannot write is not a failed write
            ok, encoded = cv2.imencode(path.suffix or ".", self.plot(bars=bars))
        except cv2.error:
            ok = False
        if not ok:
            raise FerkitError(f"{path}: not an image format ferkit writes (use .png or .jpg)")
        with replaced_atomically(path) as tmp:
            tmp.write_bytes(encoded.tobytes())
        return path

    def text(self) -> str:
        """What `ferkit predict` prints: "FILE: N faces", then a line per face."""
        n = len(self.faces)
        lines = [f"{self.source}: {n} face{'' if n == 1 else 's'}"]
        for face in self.faces:
            track = f"  track {face.track}" if getattr(face, "track", None) is not None else ""
            lines.append(f"  {face.label:<9} {face.confidence:6.1%}  box {tuple(face.box)}{track}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.text()

    def __repr__(self) -> str:  # one line, for notebooks and logs; `text()` has every face
        w, h = self.size
        n = len(self.faces)
        shown = ", ".join(f"{f.label} {f.confidence:.1%}" for f in self.faces[:3])
        more = ", ..." if n > 3 else ""
        faces = f"{n} face{'' if n == 1 else 's'}" + (f": {shown}{more}" if n else "")
        when = f", frame {self.frame}" if self.frame is not None else ""
        return f"Result({self.source!r}, {w}x{h}{when}, {faces})"

    def _repr_png_(self) -> bytes | None:
        """Jupyter shows a result as its annotated image (`plot()`), where it holds one."""
        import cv2

        if self.image is None:
            return None
        ok, png = cv2.imencode(".png", self.plot())
        return png.tobytes() if ok else None


# -- tables of many results ------------------------------------------------------------------


def rows_of(results: Iterable[Result]) -> list[dict[str, Any]]:
    """The rows of several results, in order (a folder of photos, a video's frames)."""
    return [row for r in results for row in r.rows()]


def _cell(key: str, value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.3f}" if key == "time_s" else f"{value:.{DIGITS}f}"
    return value


class CsvRows:
    """A CSV writer for result rows: the header of `columns(labels)` first, then `write(rows)`."""

    def __init__(self, file: IO[str], labels: Sequence[str]) -> None:
        self._writer = csv.DictWriter(file, fieldnames=columns(labels), extrasaction="ignore")
        self._writer.writeheader()
        self.written = 0  # rows so far, the header not counted

    def write(self, rows: Iterable[dict[str, Any]]) -> None:
        for row in rows:
            self._writer.writerow({k: _cell(k, v) for k, v in row.items()})
            self.written += 1


def write_csv(rows: Iterable[dict], labels: Sequence[str], path: str | Path | IO[str]) -> None:
    """Write result rows as CSV to a file name (replaced whole once written, never left half
    written) or to an open text file."""
    if isinstance(path, str | Path):
        with replaced_atomically(path) as tmp, open_csv(tmp) as f:
            CsvRows(f, labels).write(rows)
    else:
        CsvRows(path, labels).write(rows)


def to_dataframe(rows: Sequence[dict], labels: Sequence[str]):
    """Result rows as a pandas DataFrame with the columns of `columns(labels)`."""
    try:
        import pandas as pd
    except ImportError:
        raise FerkitError(
            "to_pandas() needs pandas, which is not installed: pip install pandas "
            "(or use rows() / to_csv())"
        ) from None
    return pd.DataFrame(list(rows), columns=columns(labels))
