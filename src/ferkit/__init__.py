"""ferkit: facial expression recognition, from data to a fast CPU model."""

from ferkit.labels import EMOTIONS

__version__ = "0.1.0"
__all__ = ["EMOTIONS", "__version__"]
