"""Inference: faces in images and videos -> emotion probabilities, on PyTorch or ONNX Runtime.

    from ferkit.inference import EmotionRecognizer
    rec = EmotionRecognizer("runs/exp1")
    [face.to_dict() for face in rec.predict("photo.jpg")]

Modules: `backends` (torch / onnxruntime runners), `recognizer`, then `video`, `draw`,
`export`, `calibration`, and `model_io` (which checkpoint to load). Decoding, detection and
cropping live one layer down, in `ferkit.detection`.
"""

from ferkit.detection import Detector, FixedBoxes, Frame, HaarDetector, YuNetDetector
from ferkit.inference.model_io import resolve_checkpoint
from ferkit.inference.recognizer import EmotionRecognizer, Face

__all__ = [
    "Detector",
    "EmotionRecognizer",
    "Face",
    "FixedBoxes",
    "Frame",
    "HaarDetector",
    "YuNetDetector",
    "resolve_checkpoint",
]
