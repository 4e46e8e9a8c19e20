"""Class probabilities for arrays of faces, in batches, with optional test-time augmentation."""

from __future__ import annotations

import numpy as np
import torch

from ferkit.models.input_spec import InputSpec
from ferkit.tta import check_tta, tta_views

__all__ = ["predict_proba"]


@torch.inference_mode()
def predict_proba(
    model: torch.nn.Module,
    images: np.ndarray,
    *,
    spec: InputSpec,
    tta: str = "none",
    temperature: float | None = None,
    batch_size: int = 256,
) -> np.ndarray:
    """Softmax probabilities (N, num_classes) for uint8 gray faces (N, H, W), fed to the
    model as its checkpoint's `spec` says.

    TTA averages the probabilities of the views; `temperature` divides the logits first.
    """
    tta = check_tta(tta)
    model.eval()
    out = []
    for start in range(0, len(images), batch_size):
        batch = np.array(images[start : start + batch_size])  # a copy: memmaps are read-only
        x = torch.from_numpy(batch).unsqueeze(1).float() / 255
        probs = 0
        views = tta_views(x, tta)
        for view in views:
            inp = spec.to_input(view)
            logits = model(inp.contiguous(memory_format=torch.channels_last)).float()
            probs = probs + torch.softmax(logits / (temperature or 1.0), dim=1)
        out.append((probs / len(views)).numpy())
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)
