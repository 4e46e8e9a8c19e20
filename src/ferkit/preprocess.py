"""Turn uint8 grayscale faces into the float tensor a model expects, as its checkpoint says.

The single place where input size, channels and normalisation are applied, for training,
evaluation, inference and export alike.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F


def to_model_input(
    faces: np.ndarray | torch.Tensor,
    *,
    input_size: Sequence[int],
    mean: Sequence[float],
    std: Sequence[float],
    in_channels: int = 1,
) -> torch.Tensor:
    """Batch of grayscale faces -> normalised float tensor (N, in_channels, H, W).

    Args:
        faces: uint8 (N, H, W) or (N, 1, H, W) in 0..255, or float in 0..1, any H x W.
        input_size: (height, width) the model takes; faces of another size are resized
            (bilinear, antialiased) on the tensor.
        mean, std: per-channel normalisation, applied to values in 0..1.
        in_channels: 1, or 3 to repeat the gray channel for RGB models.
    """
    x = torch.as_tensor(faces)
    if x.ndim == 3:
        x = x.unsqueeze(1)
    if x.ndim != 4 or x.shape[1] != 1:
        raise ValueError(
            f"expected grayscale faces (N, H, W) or (N, 1, H, W), got {tuple(x.shape)}"
        )
    x = x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()
    size = tuple(int(s) for s in input_size)
    if tuple(x.shape[-2:]) != size:
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
    if in_channels == 3:
        x = x.expand(-1, 3, -1, -1)
    m = torch.tensor(mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    return ((x - m) / s).contiguous()
