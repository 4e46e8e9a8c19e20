"""Data: FER-2013 CSV and image-folder sources, the decoded-array cache, PyTorch datasets."""

from ferkit.data.loader import load_dataset, validation_faces
from ferkit.data.types import FERData, Split

__all__ = ["FERData", "Split", "load_dataset", "validation_faces"]
