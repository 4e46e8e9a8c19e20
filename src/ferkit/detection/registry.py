"""Face detectors by name: the `DETECTORS` table the CLI, the server and the recognizer read.

Light to import (OpenCV is loaded only when a detector is built), so `--help` stays fast.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from ferkit.errors import ConfigError, unknown

if TYPE_CHECKING:
    from ferkit.detection.detectors import Detector, HaarDetector, YuNetDetector


def _yunet(model_path=None, *, min_score: float | None = None, **options) -> YuNetDetector:
    from ferkit.detection.detectors import YUNET_MIN_SCORE, YuNetDetector

    if min_score is not None and min_score < YUNET_MIN_SCORE:
        options["score_threshold"] = min_score  # so YuNet reports faces down to that score
    return YuNetDetector(model_path, **options)


def _haar(model_path=None, *, min_score: float | None = None, **options) -> HaarDetector:
    from ferkit.detection.detectors import HaarDetector

    # Haar gives no scores, so min_score has nothing to filter.
    return HaarDetector(model_path, **options) if model_path else HaarDetector(**options)


def _no_detector(model_path=None, *, min_score: float | None = None, **options) -> None:
    return None


# name -> factory(model_path=None, *, min_score=None, **options); the first is the default.
DETECTORS: dict[str, Callable[..., Detector | None]] = {
    "yunet": _yunet,  # OpenCV Zoo's YuNet, shipped in ferkit/detection/yunet/
    "haar": _haar,  # OpenCV's frontal-face Haar cascade
    "none": _no_detector,  # every image is one face already
}
DEFAULT_DETECTOR = next(iter(DETECTORS))
# The names that find faces (all but "none"), for commands that need a detector.
FACE_DETECTORS = tuple(n for n in DETECTORS if n != "none")


def make_detector(
    name: str | Detector | None = DEFAULT_DETECTOR,
    *,
    model_path: str | Path | None = None,
    min_score: float | None = None,
    **options,
):
    """A detector by its name in `DETECTORS`, or None for "none"/None.

    Args:
        name: a key of `DETECTORS`, a Detector object (returned as it is), or None.
        model_path: the detector's model file (a YuNet .onnx, a Haar cascade XML); None: the
            shipped one.
        min_score: the lowest face score the detector must report (for detectors with scores
            and a floor above it).
        options: keyword arguments of the detector's class.

    Raises:
        ConfigError: an unknown name (the message lists the valid ones) or a bad model file.
    """
    if name is None or not isinstance(name, str):
        return name
    factory = DETECTORS.get(name)
    if factory is None:
        raise ConfigError(unknown("face detector", name, DETECTORS))
    return factory(model_path, min_score=min_score, **options)
