"""ferkit: facial expression recognition, from data to a fast CPU model."""

from ferkit.labels import EMOTIONS

__version__ = "0.1.0"
__all__ = ["EMOTIONS", "EmotionRecognizer", "__version__"]


def __getattr__(name: str):
    # Lazy, so `import ferkit` (and the CLI's --help) does not pay for torch and OpenCV.
    if name == "EmotionRecognizer":
        from ferkit.inference.recognizer import EmotionRecognizer

        return EmotionRecognizer
    raise AttributeError(f"module 'ferkit' has no attribute {name!r}")
