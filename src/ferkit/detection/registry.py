"""Face detectors by name: the `DETECTORS` table the CLI, the server and the recognizer read.

Light to import (OpenCV is loaded only when a detector is built), so `--help` stays fast.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from ferkit.errors import ConfigError

if TYPE_CHECKING:
    from ferkit.detection.detectors import Detector, HaarDetector, YuNetDetector


def _haar(model_path: str | Path | None = None, **options) -> HaarDetector:
    from ferkit.detection.detectors import HaarDetector

    return HaarDetector(model_path, **options) if model_path else HaarDetector(**options)


def _yunet(model_path: str | Path | None = None, **options) -> YuNetDetector:
    from ferkit.detection.detectors import YuNetDetector

    if not model_path:
        raise ConfigError(
            "the YuNet detector needs its model file: pass --detector-model PATH to "
            "face_detection_yunet_2023mar.onnx (OpenCV model zoo)"
        )
    return YuNetDetector(model_path, **options)


def _no_detector(model_path: str | Path | None = None, **options) -> None:
    return None


# name -> factory(model_path=None, **options); the first one is the default.
DETECTORS: dict[str, Callable[..., Detector | None]] = {
    "haar": _haar,
    "yunet": _yunet,
    "none": _no_detector,  # every image is one face already
}
DEFAULT_DETECTOR = next(iter(DETECTORS))
# The names that find faces (all but "none"), for commands that need a detector.
FACE_DETECTORS = tuple(n for n in DETECTORS if n != "none")


def make_detector(
    name: str | Detector | None = DEFAULT_DETECTOR,
    *,
    model_path: str | Path | None = None,
    **options,
):
    """A detector by its name in `DETECTORS`, or None for "none"/None.

    Args:
        name: a key of `DETECTORS`, a Detector object (returned as it is), or None.
        model_path: the detector's model file (a YuNet .onnx, a Haar cascade XML).
        options: keyword arguments of the detector's class.

    Raises:
        ConfigError: an unknown name (the message lists the valid ones) or a bad model file.
    """
    if name is None or not isinstance(name, str):
        return name
    factory = DETECTORS.get(name)
    if factory is None:
        raise ConfigError(f"unknown face detector {name!r}; choose one of {', '.join(DETECTORS)}")
    return factory(model_path, **options)
