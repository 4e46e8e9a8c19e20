"""Data: FER-2013 CSV and image-folder sources, the decoded-array cache, PyTorch datasets."""

from ferkit.data.loader import load_dataset, validation_faces
from ferkit.data.types import SPLITS, FERData, Split

__all__ = ["SPLITS", "FERData", "Split", "load_dataset", "validation_faces"]
