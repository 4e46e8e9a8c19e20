"""How big and how costly a model is: parameters, and multiply-adds per image.

Multiply-adds are counted by torch's own FLOP counter (`torch.utils.flop_counter`), which
counts convolutions and matrix products (2 FLOPs per multiply-add); batch norm, activations,
pooling and additions are left out, as in the multiply-add counts papers and torchvision
publish.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from ferkit.errors import ConfigError

__all__ = ["count_macs", "count_parameters"]


def count_parameters(model: nn.Module, *, trainable_only: bool = False) -> int:
    """Number of parameters of `model` (only those with requires_grad if `trainable_only`)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def count_macs(
    model: nn.Module,
    input_size: Sequence[int] | None = None,
    in_channels: int | None = None,
) -> int:
    """Multiply-adds of one forward pass for one image.

    Args:
        model: the model; run once in eval mode, without gradients, then put back in the
            mode it was in.
        input_size: (H, W); default: the registered default of `model.ferkit_arch`.
        in_channels: default: the channels the model was built with.
    """
    arch = getattr(model, "ferkit_arch", None)
    if input_size is None or in_channels is None:
        if arch is None:
            raise ConfigError(
                "count_macs needs input_size and in_channels for a model not built by create_model"
            )
        from ferkit.models.registry import get_model_spec

        if input_size is None:
            input_size = get_model_spec(arch).input_size
        if in_channels is None:
            in_channels = int(model.ferkit_kwargs.get("in_channels", 1))
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    x = torch.zeros(1, in_channels, *input_size, device=device)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(x)
    finally:
        model.train(was_training)
    return int(counter.get_total_flops() // 2)
