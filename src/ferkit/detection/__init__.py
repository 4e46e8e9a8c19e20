"""Where the faces are and how they are cut out: the layer below training, data and inference.

Modules, in pipeline order: `frames` (any input -> a bounded-size working copy), `boxes`
(`Detection`: box, score, landmarks; merging overlaps; `FaceFilter`), `detectors` (YuNet,
Haar, fixed boxes), `registry` (the `DETECTORS` name -> factory table), `crops` (`Framing`:
how a box becomes the model's square crop). Nothing here imports from `ferkit.inference`,
`ferkit.training`, `ferkit.serve` or `ferkit.cli`.

Names are loaded lazily, so importing the package (for the registry) does not load OpenCV.
"""

from importlib import import_module

_WHERE = {
    "Box": "boxes",
    "Detection": "boxes",
    "FaceFilter": "boxes",
    "LANDMARKS": "boxes",
    "merge_overlaps": "boxes",
    "clip_box": "boxes",
    "largest_first": "boxes",
    "Framing": "crops",
    "crop_faces": "crops",
    "square_box": "crops",
    "Detector": "detectors",
    "FixedBoxes": "detectors",
    "HaarDetector": "detectors",
    "YuNetDetector": "detectors",
    "find_faces": "detectors",
    "Frame": "frames",
    "load_frame": "frames",
    "DETECTORS": "registry",
    "DEFAULT_DETECTOR": "registry",
    "make_detector": "registry",
}
__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module 'ferkit.detection' has no attribute {name!r}")
    return getattr(import_module(f"ferkit.detection.{_WHERE[name]}"), name)
