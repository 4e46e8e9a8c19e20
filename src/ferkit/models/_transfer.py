"""Shared machinery of the torchvision transfer models (resnet18, efficientnet_b0).

Starting weights come from torchvision's weights API ("imagenet", which downloads them on a
user's machine) or from a local torchvision-format state dict (3-channel stem, 1000-class
head). Two adaptations follow:

* Grayscale stem (the default, in_channels=1): the first convolution's weights are summed
  over R, G and B. A gray image x repeated to RGB gives sum_c W_c * x = (sum_c W_c) * x, so
  the summed filter computes exactly what the pretrained filter computes on the repeated
  image (with one normalisation for all three channels), at a third of the first layer's
  cost and without tripling the input in memory. in_channels=3 keeps the RGB stem for input
  repeated to three channels (`to_model_input(..., in_channels=3)`).
* Head: the classifier is replaced by a freshly initialised `num_classes` one; a file's own
  classifier weights are ignored, whatever its number of classes.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from ferkit.errors import CheckpointError, ConfigError, unknown
from ferkit.models._weights import describe_mismatch, read_state_dict
from ferkit.models.freeze import FREEZE_POLICIES
from ferkit.models.freeze import freeze as apply_freeze

PRETRAINED_CHOICES = "None, 'imagenet', or the path of a local torchvision state dict"


def build(
    arch: str,
    make: Callable[[], nn.Module],
    *,
    pretrained: str | Path | None,
    freeze: str,
    get_imagenet: Callable[[], dict[str, torch.Tensor]],
    stem_key: str,
    head_prefix: str,
) -> nn.Module:
    """A transfer model, the one recipe: check the options, build it with `make()`, load the
    `pretrained` weights (`pretrained_state_dict`, `load_pretrained`), apply `freeze`.

    Args:
        arch: model name, for messages.
        make: builds the model with its fresh head.
        pretrained, freeze: the builder's options (see `check_options`).
        get_imagenet: fetches the ImageNet state dict through torchvision's weights API.
        stem_key, head_prefix: as for `load_pretrained`.
    """
    check_options(arch, pretrained, freeze)
    model = make()
    if pretrained is not None:
        load_pretrained(
            model,
            pretrained_state_dict(arch, pretrained, get_imagenet),
            arch=arch,
            source=str(pretrained),
            stem_key=stem_key,
            head_prefix=head_prefix,
        )
    return apply_freeze(model, freeze)


def check_options(arch: str, pretrained: str | Path | None, freeze: str) -> None:
    """Fail early, before building anything, on option values that are not valid."""
    if freeze not in FREEZE_POLICIES:
        raise ConfigError(f"{arch}: {unknown('freeze policy', freeze, FREEZE_POLICIES)}")
    if pretrained is not None and not isinstance(pretrained, str | Path):
        raise ConfigError(f"{arch}: pretrained must be {PRETRAINED_CHOICES}; got {pretrained!r}")


def pretrained_state_dict(
    arch: str, pretrained: str | Path, get_imagenet: Callable[[], dict[str, torch.Tensor]]
) -> dict[str, torch.Tensor]:
    """The torchvision-format state dict `pretrained` names.

    Args:
        arch: model name, for messages.
        pretrained: "imagenet" or a local file path.
        get_imagenet: fetches the ImageNet state dict through torchvision's weights API.
    """
    if str(pretrained).lower() == "imagenet":
        try:
            return get_imagenet()
        except Exception as exc:  # no network, a proxy, a full disk: all need the same advice
            raise ConfigError(
                f"{arch}: could not get torchvision's ImageNet weights ({type(exc).__name__}: "
                f"{str(exc).splitlines()[0] if str(exc) else 'no detail'}); without network "
                f"access, pass a local torchvision state-dict file instead: pretrained=PATH"
            ) from exc
    return read_state_dict(pretrained)


def load_pretrained(
    model: nn.Module,
    state_dict: dict[str, torch.Tensor],
    *,
    arch: str,
    source: str,
    stem_key: str,
    head_prefix: str,
) -> None:
    """Load a torchvision state dict into `model`: stem summed to gray if needed, head skipped.

    Raises:
        CheckpointError: the body's keys or shapes do not fit `arch`.
    """
    state_dict = {k: v for k, v in state_dict.items() if not k.startswith(head_prefix)}
    expected = {k: v for k, v in model.state_dict().items() if not k.startswith(head_prefix)}
    if stem_key in state_dict and stem_key in expected:
        state_dict[stem_key] = adapt_stem(state_dict[stem_key], expected[stem_key].shape[1])
    problem = describe_mismatch(expected, state_dict)
    if problem:
        raise CheckpointError(
            f"{source} is not a torchvision {arch} state dict: {problem}; pass a file saved "
            f"from torchvision.models.{arch}().state_dict()"
        )
    missing, _ = model.load_state_dict(state_dict, strict=False)
    assert all(k.startswith(head_prefix) for k in missing), missing  # checked just above


def adapt_stem(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    """First-conv weights (out, c, kh, kw) for `in_channels` inputs: RGB summed to one gray
    channel, or kept; anything else is returned as is (and reported as a shape mismatch)."""
    if weight.shape[1] == 3 and in_channels == 1:
        return weight.sum(dim=1, keepdim=True)
    return weight


def stem_conv(conv: nn.Conv2d, in_channels: int) -> nn.Conv2d:
    """A copy of `conv`'s geometry taking `in_channels` inputs, initialised as torchvision
    initialises its convolutions."""
    new = nn.Conv2d(
        in_channels,
        conv.out_channels,
        conv.kernel_size,
        stride=conv.stride,
        padding=conv.padding,
        bias=conv.bias is not None,
    )
    nn.init.kaiming_normal_(new.weight, mode="fan_out", nonlinearity="relu")
    return new
