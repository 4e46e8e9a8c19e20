"""ResNet-18: torchvision's, for transfer learning, and a 48x48 variant trained from scratch.

`resnet18` is torchvision's ResNet-18 (state-dict keys included, so torchvision weights load
as they are), with the stem summed to one gray channel and a `num_classes` head; see
`_transfer` for the adaptation and `freeze` for the policies.

Its default input is 112x112, not the data's 48x48: the ImageNet stem (7x7 stride-2 conv,
then a stride-2 max-pool) divides the image by 32 overall, so a 48x48 face would reach the
last stage as 2x2 and lose most of its detail in the first two layers; at 112 it ends 4x4,
close to the 7x7 the weights were trained for, at a quarter of the cost of 224.

`resnet18_fer` is the variant published FER work trains from scratch at 48x48: a 3x3 stride-1
stem and no max-pool, so the stages run at 48, 24, 12 and 6 pixels. It is accurate and slow
(about 1.4 G multiply-adds per face, 9x the flagship).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torchvision.models import ResNet, ResNet18_Weights
from torchvision.models.resnet import BasicBlock

from ferkit.models import _transfer
from ferkit.models.freeze import FrozenNormMixin
from ferkit.models.registry import (
    IMAGENET_GRAY_MEAN,
    IMAGENET_GRAY_STD,
    IMAGENET_MEAN,
    IMAGENET_STD,
    register_model,
)

__all__ = ["FerResNet", "resnet18", "resnet18_fer"]


class FerResNet(FrozenNormMixin, ResNet):
    """torchvision's ResNet with a stem for `in_channels` and timm's head accessors.

    Args:
        num_classes, in_channels: output and input size.
        dropout: before the classifier (torchvision's ResNet has none: default 0).
        small_input: 3x3 stride-1 stem without max-pool, for 48x48 faces from scratch.
        zero_init_residual: start each residual branch at zero (helps from-scratch training).
    """

    def __init__(
        self,
        num_classes: int = 7,
        in_channels: int = 1,
        dropout: float = 0.0,
        *,
        small_input: bool = False,
        zero_init_residual: bool = False,
    ) -> None:
        super().__init__(
            BasicBlock, [2, 2, 2, 2], num_classes=num_classes, zero_init_residual=zero_init_residual
        )
        if small_input:
            conv = nn.Conv2d(in_channels, 64, 3, stride=1, padding=1, bias=False)
            nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
            self.conv1 = conv
            self.maxpool = nn.Identity()
        elif in_channels != 3:
            self.conv1 = _transfer.stem_conv(self.conv1, in_channels)
        self.dropout = nn.Dropout(dropout)  # no weights: the state dict stays torchvision's
        self.num_features = self.fc.in_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(self.dropout(torch.flatten(self.avgpool(x), 1)))

    def get_classifier(self) -> nn.Module:
        return self.fc

    def get_last_stage(self) -> nn.Module:
        return self.layer4


def _imagenet_resnet18() -> dict:
    return ResNet18_Weights.IMAGENET1K_V1.get_state_dict(progress=False)


@register_model(
    input_size=(112, 112),
    mean=IMAGENET_GRAY_MEAN,
    std=IMAGENET_GRAY_STD,
    rgb_mean=IMAGENET_MEAN,
    rgb_std=IMAGENET_STD,
)
def resnet18(
    *,
    num_classes: int = 7,
    in_channels: int = 1,
    pretrained: str | Path | None = None,
    freeze: str = "none",
    dropout: float = 0.0,
) -> FerResNet:
    """torchvision ResNet-18 for transfer learning: gray stem (RGB weights summed), new head.

    Args:
        pretrained: None, "imagenet" (torchvision's weights API; downloads), or the path of a
            local torchvision resnet18 state dict.
        freeze: "none" (full fine-tune), "head" (only fc trains), "last_stage" (layer4 + fc).
        dropout: before the classifier.
    """
    return _transfer.build(
        "resnet18",
        lambda: FerResNet(num_classes, in_channels, dropout),
        pretrained=pretrained,
        freeze=freeze,
        get_imagenet=_imagenet_resnet18,
        stem_key="conv1.weight",
        head_prefix="fc.",
    )


@register_model(input_size=(48, 48))
def resnet18_fer(*, num_classes: int = 7, in_channels: int = 1, dropout: float = 0.0) -> FerResNet:
    """ResNet-18 for 48x48 faces from scratch: 3x3 stride-1 stem, no max-pool (as FER papers)."""
    return FerResNet(num_classes, in_channels, dropout, small_input=True, zero_init_residual=True)
