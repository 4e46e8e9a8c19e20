"""EfficientNet-B0 from torchvision, for transfer learning.

The torchvision modules are kept under their own names (`features`, `avgpool`, `classifier`),
so torchvision state dicts load as they are; the stem is summed to one gray channel and the
head replaced, as for `resnet18` (see `_transfer`). Default input 112x112, for the reason
`resnet` gives: the network divides the image by 32.

On a CPU, EfficientNet's depthwise convolutions do few multiply-adds per byte moved, so it
is slower per multiply-add than a dense 3x3 ConvNet; see docs/models.md for the numbers.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torchvision.models import EfficientNet_B0_Weights
from torchvision.models import efficientnet_b0 as tv_efficientnet_b0

from ferkit.models import _transfer
from ferkit.models.freeze import FrozenNormMixin
from ferkit.models.registry import (
    IMAGENET_GRAY_MEAN,
    IMAGENET_GRAY_STD,
    IMAGENET_MEAN,
    IMAGENET_STD,
    register_model,
)

__all__ = ["FerEfficientNet", "efficientnet_b0"]


class FerEfficientNet(FrozenNormMixin, nn.Module):
    """torchvision's EfficientNet-B0 with a stem for `in_channels` and timm's head accessors.

    Args:
        num_classes, in_channels: output and input size.
        dropout: before the classifier (torchvision's default 0.2).
        stochastic_depth_prob: final drop-path rate of the MBConv blocks (default 0.2).
    """

    def __init__(
        self,
        num_classes: int = 7,
        in_channels: int = 1,
        dropout: float = 0.2,
        stochastic_depth_prob: float = 0.2,
    ) -> None:
        super().__init__()
        tv = tv_efficientnet_b0(
            weights=None,
            num_classes=num_classes,
            dropout=dropout,
            stochastic_depth_prob=stochastic_depth_prob,
        )
        self.features = tv.features
        self.avgpool = tv.avgpool
        self.classifier = tv.classifier
        if in_channels != 3:
            self.features[0][0] = _transfer.stem_conv(self.features[0][0], in_channels)
        self.num_features = self.classifier[-1].in_features

    def get_classifier(self) -> nn.Module:
        return self.classifier

    def get_last_stage(self) -> nn.Module:
        # The last MBConv stage (320 channels) and the 1x1 conv to 1280 features after it.
        return self.features[-2:]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


def _imagenet_efficientnet_b0() -> dict:
    return EfficientNet_B0_Weights.IMAGENET1K_V1.get_state_dict(progress=False)


@register_model(
    input_size=(112, 112),
    mean=IMAGENET_GRAY_MEAN,
    std=IMAGENET_GRAY_STD,
    rgb_mean=IMAGENET_MEAN,
    rgb_std=IMAGENET_STD,
)
def efficientnet_b0(
    *,
    num_classes: int = 7,
    in_channels: int = 1,
    pretrained: str | Path | None = None,
    freeze: str = "none",
    dropout: float = 0.2,
    stochastic_depth_prob: float = 0.2,
) -> FerEfficientNet:
    """torchvision EfficientNet-B0 for transfer learning: gray stem (RGB weights summed), new head.

    Args:
        pretrained: None, "imagenet" (torchvision's weights API; downloads), or the path of a
            local torchvision efficientnet_b0 state dict.
        freeze: "none" (full fine-tune), "head" (only the classifier trains), "last_stage"
            (the last MBConv stage, the final 1x1 conv and the classifier).
    """
    return _transfer.build(
        "efficientnet_b0",
        lambda: FerEfficientNet(num_classes, in_channels, dropout, stochastic_depth_prob),
        pretrained=pretrained,
        freeze=freeze,
        get_imagenet=_imagenet_efficientnet_b0,
        stem_key="features.0.0.weight",
        head_prefix="classifier.",
    )
