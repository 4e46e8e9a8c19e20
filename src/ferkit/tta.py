"""Test-time augmentation (TTA): average a model's probabilities over several views of a face.

One definition for `ferkit evaluate --tta`, `EmotionRecognizer(tta=...)` and `ferkit predict
--tta`. Importing this module does not import torch, so the CLI can offer the modes cheaply.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from ferkit.errors import ConfigError, unknown

if TYPE_CHECKING:
    import torch

__all__ = ["TTA_MODES", "TTA_VIEWS", "check_tta", "tta_mean", "tta_views"]

TTA_VIEWS = {"none": 1, "flip": 2, "tencrop": 10}  # views per face
TTA_MODES = tuple(TTA_VIEWS)


def check_tta(tta: str | bool | None) -> str:
    """A TTA mode: one of TTA_MODES; True means "flip", False or None "none".

    Raises:
        ConfigError: an unknown mode, with the valid ones.
    """
    if tta is None or isinstance(tta, bool):
        return "flip" if tta else "none"
    if tta not in TTA_VIEWS:
        raise ConfigError(unknown("tta", tta, TTA_MODES))
    return tta


def tta_views(faces: torch.Tensor, tta: str | bool | None) -> list[torch.Tensor]:
    """The views of a batch of faces (N, 1, H, W), in TTA_VIEWS[tta] tensors: the batch itself
    (none); it and its mirror image (flip); or four corner crops and a centre crop at 7/8 of
    the side, and their mirror images (tencrop).

    Crops keep their smaller size; `ferkit.preprocess.to_model_input` resizes them to the
    model's input.
    """
    tta = check_tta(tta)
    if tta == "none":
        return [faces]
    if tta == "flip":
        return [faces, faces.flip(-1)]
    from torchvision.transforms.v2 import functional as TF

    h, w = faces.shape[-2:]
    return list(TF.ten_crop(faces, [round(h * 7 / 8), round(w * 7 / 8)]))


def tta_mean(
    probs: Callable[[torch.Tensor], torch.Tensor], faces: torch.Tensor, tta: str | bool | None
) -> torch.Tensor:
    """The mean of `probs` over the TTA views of faces (N, 1, H, W): (N, C).

    `probs` maps a batch of faces to (batch, C) probabilities; it runs once, on all the views
    stacked into one batch (the views of `tencrop` keep their crop size, so they share one).
    """
    import torch

    views = tta_views(faces, tta)
    return probs(torch.cat(views)).reshape(len(views), len(faces), -1).mean(0)
