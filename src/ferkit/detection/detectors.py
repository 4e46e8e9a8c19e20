"""Face detectors: where the faces are in an image, largest first.

A detector is any object with `detect(image) -> list[Detection]` (or plain (x, y, w, h)
boxes), where `image` is a uint8 grayscale (H, W) or BGR (H, W, 3) array and coordinates are
in that image's pixels. Three ship here:

- `YuNetDetector`: OpenCV Zoo's YuNet CNN, its 232 KB model shipped in `ferkit/detection/yunet/`,
  run by ONNX Runtime (`yunet_onnx`) or cv2.FaceDetectorYN; scores and five landmarks per
  face. The default.
- `HaarDetector`: OpenCV's frontal-face Haar cascade (ships inside opencv-python); boxes only.
- `FixedBoxes`: boxes the caller already knows (a fixed camera, another detector's output).

`find_faces` runs one on a Frame, merges overlapping boxes and keeps what the caller asked for.

`ferkit.detection.registry` builds one by name (the table the CLI offers).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import cv2
import numpy as np

from ferkit.detection.boxes import (
    Box,
    Detection,
    FaceFilter,
    as_detection,
    by_area,
    clip_box,
    largest_first,
    merge_overlaps,
)
from ferkit.errors import ConfigError, unknown

if TYPE_CHECKING:
    from ferkit.detection.frames import Frame

log = logging.getLogger(__name__)

MIN_FACE_SIDE = 12  # an image smaller than this cannot hold a detectable face
NMS_IOU = 0.3  # boxes overlapping more than this (intersection over union) are one face
YUNET_MIN_SCORE = 0.5  # YuNet reports nothing below this; FaceFilter picks from the rest
YUNET_MODEL = Path(__file__).parent / "yunet" / "face_detection_yunet_2023mar.onnx"
YUNET_RUNTIMES = ("onnxruntime", "opencv")


@runtime_checkable
class Detector(Protocol):
    """Anything that finds faces: `detect(gray_or_bgr) -> [Detection or (x, y, w, h), ...]`."""

    def detect(self, image: np.ndarray) -> list[Detection] | list[Box]: ...


def _gray(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        return image
    return cv2.cvtColor(image, cv2.COLOR_BGRA2GRAY if image.shape[2] == 4 else cv2.COLOR_BGR2GRAY)


def check_max_side(max_side: int | None, name: str = "max_side") -> None:
    """Refuse a detection size that leaves no face to find (`name` is what the user set)."""
    if max_side is not None and max_side < MIN_FACE_SIDE:
        raise ConfigError(
            f"{name} {max_side}: an image shrunk below {MIN_FACE_SIDE} px holds no face to "
            "find; give more pixels (haar's default is 320, yunet's 640)"
        )


def _shrink(image: np.ndarray, max_side: int | None) -> tuple[np.ndarray, float]:
    """Downscale so the longer side is at most max_side; returns the image and the factor used."""
    side = max(image.shape[:2])
    if not max_side or side <= max_side:
        return image, 1.0
    f = max_side / side
    return cv2.resize(image, None, fx=f, fy=f, interpolation=cv2.INTER_AREA), f


class HaarDetector:
    """OpenCV's Haar cascade, tuned for webcam-style photos and video frames.

    The cascade's cost grows with the pixel count, and FER models see faces at 48x48 anyway, so
    the image is first shrunk to `max_side` (boxes are scaled back). At the defaults a face must
    be at least `min_size` pixels of the shrunk image, i.e. 1/13 of the longer side: in a
    640x480 frame down to ~48 px, in a 4000x3000 photo down to ~300 px. For group photos with
    small faces, raise `max_side` (640 finds faces of 1/27 of the side, at about 4x the time).

    Thread-safe: each thread gets its own cascade (OpenCV's keeps per-call buffers), so the
    recognizer can detect in several frames at once; the cascade itself uses one core.

    Args:
        cascade: a file name in cv2.data.haarcascades, or a path to a cascade XML.
        scale_factor: pyramid step; smaller finds more faces, slower (OpenCV's default is 1.1;
            1.15 is ~25% faster and still finds frontal faces reliably).
        min_neighbors: overlapping hits needed to accept a box; higher means fewer false faces.
        min_size: smallest face, in pixels of the shrunk image (the cascade's window is 24).
        max_side: longer side the image is shrunk to before detection (None: never shrink).
        equalize: histogram-equalise first, which helps on dark or washed-out frames.
    """

    def __init__(
        self,
        cascade: str | Path = "haarcascade_frontalface_default.xml",
        *,
        scale_factor: float = 1.15,
        min_neighbors: int = 5,
        min_size: int = 24,
        max_side: int | None = 320,
        equalize: bool = False,
    ) -> None:
        path = Path(cascade)
        if not path.is_file():
            path = Path(cv2.data.haarcascades) / str(cascade)
        self.path = path
        self._local = threading.local()
        if self._cascade().empty():
            raise ConfigError(
                f"cannot load the Haar cascade {cascade!r} (looked for {path}); give a cascade "
                f"XML path or a file name in {cv2.data.haarcascades}"
            )
        if scale_factor <= 1.0:
            raise ConfigError(f"scale_factor must be > 1 (got {scale_factor})")
        self.scale_factor = scale_factor
        self.min_neighbors = min_neighbors
        self.min_size = min_size
        check_max_side(max_side)
        self.max_side = max_side
        self.equalize = equalize

    thread_safe = True

    def _cascade(self) -> cv2.CascadeClassifier:
        cascade = getattr(self._local, "cascade", None)
        if cascade is None:
            cascade = self._local.cascade = cv2.CascadeClassifier(str(self.path))
        return cascade

    def detect(self, image: np.ndarray) -> list[Detection]:
        """Faces in a gray or BGR uint8 image, in its pixels, largest first (no scores)."""
        small, f = _shrink(_gray(image), self.max_side)
        if self.equalize:
            small = cv2.equalizeHist(small)
        if min(small.shape[:2]) < self.min_size:
            return []
        found = self._cascade().detectMultiScale(
            small,
            scaleFactor=self.scale_factor,
            minNeighbors=self.min_neighbors,
            minSize=(self.min_size, self.min_size),
        )
        boxes = largest_first(np.asarray(found, dtype=np.float64).reshape(-1, 4) / f)
        return [Detection(b) for b in boxes]


class YuNetDetector:
    """OpenCV Zoo's YuNet face detector, shipped with ferkit.

    A small CNN (Wu, Peng, Yu, "YuNet: A tiny millisecond-level face detector", Machine
    Intelligence Research 2023; MIT / Apache-2.0, the license texts are in
    `ferkit/detection/yunet/`). Each face comes with a score and five landmarks (eyes, nose
    tip, mouth corners). Nothing is downloaded.

    Args:
        model_path: a YuNet .onnx file (default: the shipped `face_detection_yunet_2023mar.onnx`).
        score_threshold: the lowest face score reported, 0..1. Below the default face filter's
            (0.7, see `FaceFilter`) so that a caller can ask for less sure faces at run time.
        nms_threshold: IoU above which overlapping boxes are merged.
        max_side: longer side the image is shrunk to before detection (boxes scaled back).
        runtime: "onnxruntime" (default) runs the network with ONNX Runtime and decodes it as
            OpenCV does (`ferkit.detection.yunet_onnx`): the same faces, within float
            rounding, about 3x faster; "opencv" runs cv2.FaceDetectorYN.
        threads: ONNX Runtime threads per detection; None: as many as OpenCV uses
            (`cv2.getNumThreads()`, which `ferkit serve --threads` sets).
    """

    color = True  # YuNet wants BGR; the recognizer passes colour when a detector says so
    thread_safe = True  # one ORT session serves all threads; FaceDetectorYN: one per thread

    def __init__(
        self,
        model_path: str | Path | None = None,
        *,
        score_threshold: float = YUNET_MIN_SCORE,
        nms_threshold: float = 0.3,
        max_side: int | None = 640,
        runtime: str = "onnxruntime",
        threads: int | None = None,
    ) -> None:
        path = Path(model_path) if model_path else YUNET_MODEL
        if not path.is_file():
            raise ConfigError(
                f"YuNet model file {path} not found; pass the path of "
                "face_detection_yunet_2023mar.onnx (OpenCV model zoo), or leave it out to use "
                "the one shipped with ferkit"
            )
        if not 0.0 <= score_threshold <= 1.0:
            raise ConfigError(f"score_threshold must be in 0..1 (got {score_threshold})")
        if runtime not in YUNET_RUNTIMES:
            raise ConfigError(unknown("YuNet runtime", runtime, YUNET_RUNTIMES))
        check_max_side(max_side)
        self.path, self.max_side, self.runtime = path, max_side, runtime
        self.score_threshold, self.nms_threshold = float(score_threshold), float(nms_threshold)
        self._local = threading.local()
        self._session = None
        try:
            if runtime == "onnxruntime":
                from ferkit.detection.yunet_onnx import YuNetSession

                self._session = YuNetSession(path, threads=threads or cv2.getNumThreads())
            else:
                self._net((320, 320))
        except Exception as exc:  # cv2.error, onnx's DecodeError, ORT's own types
            raise ConfigError(f"{path}: not a YuNet model {runtime} can load ({exc})") from None

    def _net(self, size: tuple[int, int]):
        """This thread's network, set to `size` = (width, height) only when it changes."""
        local = self._local
        if getattr(local, "net", None) is None:
            local.net = cv2.FaceDetectorYN.create(
                str(self.path), "", size, self.score_threshold, self.nms_threshold, 5000
            )
            local.size, local.score = size, self.score_threshold
        if local.size != size:
            local.net.setInputSize(size)
            local.size = size
        if local.score != self.score_threshold:  # changed on the object since
            local.net.setScoreThreshold(self.score_threshold)
            local.score = self.score_threshold
        return local.net

    def detect(self, image: np.ndarray) -> list[Detection]:
        """Faces in a BGR (or gray) uint8 image, in its pixels, largest first."""
        if image.ndim == 2:
            image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
        elif image.shape[2] == 4:
            image = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
        small, f = _shrink(image, self.max_side)
        if self._session is not None:
            faces = self._session.detect(small, self.score_threshold, self.nms_threshold)
        else:
            _, faces = self._net((small.shape[1], small.shape[0])).detect(small)
        if faces is None or not len(faces):
            return []
        coords = faces[:, :14].astype(np.float64) / f
        return by_area(
            Detection(
                tuple(round(v) for v in xy[:4]),  # type: ignore[arg-type]
                float(score),
                tuple((float(x), float(y)) for x, y in xy[4:14].reshape(5, 2)),
            )
            for xy, score in zip(coords, faces[:, 14], strict=True)
        )


class FixedBoxes:
    """A detector that returns boxes given in advance (clipped to each image), largest first.

    Use it for a fixed camera, or to feed another detector's output through the same pipeline.
    Its boxes are taken as they are: overlapping ones are not merged.
    """

    merge = False  # the caller's boxes are not suppressed as duplicates

    def __init__(self, boxes: Iterable[Sequence[float]]) -> None:
        self.boxes = largest_first(boxes)
        for b in self.boxes:
            if b[2] <= 0 or b[3] <= 0:
                raise ConfigError(f"box {b} must have a positive width and height (x, y, w, h)")

    def detect(self, image: np.ndarray) -> list[Detection]:
        h, w = image.shape[:2]
        clipped = (clip_box(b, w, h) for b in self.boxes)
        return [Detection(b) for b in clipped if b[2] > 0 and b[3] > 0]


def find_faces(
    detector: Detector, frame: Frame, face_filter: FaceFilter | None = None
) -> list[Detection]:
    """The faces in a Frame, in its working pixels, largest first, as `face_filter` selects them
    (default: `FaceFilter()`).

    Colour goes to detectors that want it (`color = True`), gray to the others; overlapping
    boxes are merged (except a detector's with `merge = False`); none (with a warning) in a
    too-small image.
    """
    h, w = frame.gray.shape[:2]
    if min(h, w) < MIN_FACE_SIDE:
        size = "{}x{}".format(*frame.size)
        if frame.scale != 1.0:  # a long, thin image shrunk to the working size
            size += f" (shrunk to {w}x{h} for detection)"
        log.warning("%s: %s is too small to hold a face; none reported", frame.source, size)
        return []
    wants_color = getattr(detector, "color", False) and frame.image.ndim == 3
    found = by_area(
        as_detection(d) for d in detector.detect(frame.image if wants_color else frame.gray)
    )
    if getattr(detector, "merge", True):
        found = merge_overlaps(found, NMS_IOU)
    return (face_filter or FaceFilter()).apply(found, frame.scale)
