"""Class probabilities for arrays of faces, in batches, with optional test-time augmentation."""

from __future__ import annotations

import numpy as np
import torch

from ferkit.models.input_spec import InputSpec
from ferkit.tta import TTA_VIEWS, check_tta, tta_mean

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

    TTA averages the probabilities of the views (`ferkit.tta.tta_mean`, as the recognizer
    does), all views of a face in one pass of about `batch_size` inputs; `temperature`
    divides the logits first. The faces go to the model's device; the answers come back.
    """
    tta = check_tta(tta)
    model.eval()
    device = next(model.parameters(), torch.empty(0)).device  # the model's own (CPU, GPU)

    def probs(faces: torch.Tensor) -> torch.Tensor:
        x = spec.to_input(faces.to(device)).contiguous(memory_format=torch.channels_last)
        return torch.softmax(model(x).float() / (temperature or 1.0), dim=1).cpu()

    out = []
    step = max(1, batch_size // TTA_VIEWS[tta])
    for start in range(0, len(images), step):
        batch = np.array(images[start : start + step])  # a copy: memmaps are read-only
        x = torch.from_numpy(batch).unsqueeze(1).float() / 255
        out.append(tta_mean(probs, x, tta).numpy())
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)
