"""Face detectors: where the faces are in an image, as (x, y, w, h) boxes, largest first.

A detector is any object with `detect(image) -> list[Box]`, where `image` is a uint8 grayscale
(H, W) or BGR (H, W, 3) array and boxes are in that image's pixels. Three ship here:

- `HaarDetector`: OpenCV's frontal-face Haar cascade, which ships inside opencv-python(-headless),
  so it works offline with nothing to download. The default.
- `YuNetDetector`: OpenCV's small CNN detector (cv2.FaceDetectorYN) from a local .onnx file
  (`face_detection_yunet_2023mar.onnx` of the OpenCV model zoo); better on turned or small faces.
- `FixedBoxes`: boxes the caller already knows (a fixed camera, another detector's output).

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

from ferkit.detection.boxes import Box, clip_box, largest_first
from ferkit.errors import ConfigError

if TYPE_CHECKING:
    from ferkit.detection.frames import Frame

log = logging.getLogger(__name__)

MIN_FACE_SIDE = 12  # an image smaller than this cannot hold a detectable face


@runtime_checkable
class Detector(Protocol):
    """Anything that finds faces: `detect(gray_or_bgr) -> [(x, y, w, h), ...]`, largest first."""

    def detect(self, image: np.ndarray) -> list[Box]: ...


def _gray(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        return image
    return cv2.cvtColor(image, cv2.COLOR_BGRA2GRAY if image.shape[2] == 4 else cv2.COLOR_BGR2GRAY)


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
        self.max_side = max_side
        self.equalize = equalize

    thread_safe = True

    def _cascade(self) -> cv2.CascadeClassifier:
        cascade = getattr(self._local, "cascade", None)
        if cascade is None:
            cascade = self._local.cascade = cv2.CascadeClassifier(str(self.path))
        return cascade

    def detect(self, image: np.ndarray) -> list[Box]:
        """Faces in a gray or BGR uint8 image, as (x, y, w, h) in its pixels, largest first."""
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
        return largest_first(np.asarray(found, dtype=np.float64).reshape(-1, 4) / f)


class YuNetDetector:
    """OpenCV's YuNet face detector (cv2.FaceDetectorYN) from a local ONNX file.

    Nothing is downloaded: get `face_detection_yunet_2023mar.onnx` from the OpenCV model zoo
    (github.com/opencv/opencv_zoo, models/face_detection_yunet) and pass its path.

    Args:
        model_path: the YuNet .onnx file.
        score_threshold: minimum face score in 0..1.
        nms_threshold: IoU above which overlapping boxes are merged.
        max_side: longer side the image is shrunk to before detection (boxes scaled back).
    """

    color = True  # YuNet wants BGR; the recognizer passes colour when a detector says so

    def __init__(
        self,
        model_path: str | Path,
        *,
        score_threshold: float = 0.7,
        nms_threshold: float = 0.3,
        max_side: int | None = 640,
    ) -> None:
        path = Path(model_path)
        if not path.is_file():
            raise ConfigError(
                f"YuNet model file {path} not found; download face_detection_yunet_2023mar.onnx "
                "from the OpenCV model zoo (opencv_zoo/models/face_detection_yunet) and pass its "
                "path, or use the built-in Haar detector (--detector haar)"
            )
        self.path, self.max_side = path, max_side
        self._args = (score_threshold, nms_threshold)
        self._local = threading.local()
        try:
            self._net()
        except cv2.error as exc:
            raise ConfigError(f"{path}: not a YuNet model OpenCV can load ({exc})") from None

    thread_safe = True  # one network per thread: FaceDetectorYN keeps its input size

    def _net(self):
        net = getattr(self._local, "net", None)
        if net is None:
            score, nms = self._args
            net = cv2.FaceDetectorYN.create(str(self.path), "", (320, 320), score, nms, 5000)
            self._local.net = net
        return net

    def detect(self, image: np.ndarray) -> list[Box]:
        """Faces in a BGR (or gray) uint8 image, as (x, y, w, h) in its pixels, largest first."""
        if image.ndim == 2:
            image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
        elif image.shape[2] == 4:
            image = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
        small, f = _shrink(image, self.max_side)
        net = self._net()
        net.setInputSize((small.shape[1], small.shape[0]))
        _, faces = net.detect(small)
        if faces is None:
            return []
        return largest_first(faces[:, :4].astype(np.float64) / f)


class FixedBoxes:
    """A detector that returns boxes given in advance (clipped to each image), largest first.

    Use it for a fixed camera, or to feed another detector's output through the same pipeline.
    """

    def __init__(self, boxes: Iterable[Sequence[float]]) -> None:
        self.boxes = largest_first(boxes)
        for b in self.boxes:
            if b[2] <= 0 or b[3] <= 0:
                raise ConfigError(f"box {b} must have a positive width and height (x, y, w, h)")

    def detect(self, image: np.ndarray) -> list[Box]:
        h, w = image.shape[:2]
        return [b for b in (clip_box(b, w, h) for b in self.boxes) if b[2] > 0 and b[3] > 0]


def find_faces(detector: Detector, frame: Frame) -> list[Box]:
    """Face boxes in a Frame's working pixels, largest first: colour for detectors that want
    it (`color = True`), gray for the others; none (with a warning) in a too-small image."""
    h, w = frame.gray.shape[:2]
    if min(h, w) < MIN_FACE_SIDE:
        log.warning("%s: %dx%d is too small to hold a face; none reported", frame.source, w, h)
        return []
    wants_color = getattr(detector, "color", False) and frame.image.ndim == 3
    return detector.detect(frame.image if wants_color else frame.gray)
