"""Inference: faces in images and videos -> emotion probabilities, on PyTorch or ONNX Runtime.

    from ferkit.inference import EmotionRecognizer
    rec = EmotionRecognizer("runs/exp1")
    result = rec.predict("photo.jpg")       # a Result: result.faces, to_dict(), rows(), save()

Modules: `backends` (torch / onnxruntime runners), `recognizer`, `results` (`Face` and the
`Result` of one image), then `video` and `tracking` (people across frames), `draw`, `export`,
`calibration`, and `model_io` (which checkpoint to load). Decoding, detection and cropping
live one layer down, in `ferkit.detection`.
"""

from ferkit.detection import Detector, FixedBoxes, Frame, HaarDetector, YuNetDetector
from ferkit.inference.model_io import resolve_checkpoint
from ferkit.inference.recognizer import EmotionRecognizer
from ferkit.inference.results import Face, Result

__all__ = [
    "Detector",
    "EmotionRecognizer",
    "Face",
    "FixedBoxes",
    "Frame",
    "HaarDetector",
    "Result",
    "YuNetDetector",
    "resolve_checkpoint",
]
