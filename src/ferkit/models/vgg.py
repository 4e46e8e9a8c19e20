"""VGG-style nets for 48x48 faces: stacks of 3x3 conv + BN + ReLU, max-pools, dropout in a
three-layer dense head.

The best published from-scratch single models on FER-2013 (about 72.7-73.3% test accuracy)
are VGG variants of this shape. ImageNet VGGs have five pooling stages; a 48x48 face has room
for four (48 -> 24 -> 12 -> 6 -> 3), so each variant is four stages of widths 64-128-256-512
and a dense head on the 512 x 3 x 3 map. The number in the name counts weight layers
(convolutions + the three dense layers), as torchvision's names do.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ferkit.models._layers import conv_norm_act, init_weights
from ferkit.models.registry import register_model

__all__ = ["FerVGG", "vgg_11", "vgg_11_half", "vgg_13", "vgg_16"]

WIDTHS = (64, 128, 256, 512)


class FerVGG(nn.Module):
    """VGG for small faces.

    Args:
        num_classes, in_channels: output and input size.
        depths: convolutions per stage (each stage ends with a 2x2 max-pool).
        widths: channels per stage.
        fc_width: width of the two hidden dense layers.
        dropout: dropout before each dense layer (the head is where VGG overfits FER).
        batch_norm: batch norm after each conv (False: the original VGG, for ablations).
    """

    def __init__(
        self,
        num_classes: int = 7,
        in_channels: int = 1,
        depths: Sequence[int] = (2, 2, 2, 2),
        widths: Sequence[int] = WIDTHS,
        fc_width: int = 1024,
        dropout: float = 0.5,
        batch_norm: bool = True,
    ) -> None:
        super().__init__()
        if len(depths) != len(widths):
            raise ValueError(f"depths {depths} and widths {widths} differ in length")
        layers: list[nn.Module] = []
        c = in_channels
        for depth, width in zip(depths, widths, strict=True):
            for _ in range(depth):
                layers.append(conv_norm_act(c, width, batch_norm=batch_norm))
                c = width
            layers.append(nn.MaxPool2d(2))
        # The identity at 48x48 (four pools leave 3 x 3); keeps the head's size at other sizes.
        layers.append(nn.AdaptiveAvgPool2d(3))
        self.features = nn.Sequential(*layers)
        self.num_features = fc_width
        self.pre_logits = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(dropout),
            nn.Linear(c * 9, fc_width),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(fc_width, fc_width),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
        )
        self.head = nn.Linear(fc_width, num_classes)
        init_weights(self)

    def get_classifier(self) -> nn.Module:
        return self.head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pre_logits(self.features(x)))


def _vgg(depths: Sequence[int], widths: Sequence[int], **kwargs) -> FerVGG:
    return FerVGG(depths=depths, widths=widths, **kwargs)


@register_model()
def vgg_11(
    *,
    num_classes: int = 7,
    in_channels: int = 1,
    fc_width: int = 1024,
    dropout: float = 0.5,
    batch_norm: bool = True,
) -> FerVGG:
    """VGG, 4 stages of 2 convs (64-128-256-512) + 3 dense layers: the 73.3% FER-2013 layout."""
    return _vgg(
        (2, 2, 2, 2),
        WIDTHS,
        num_classes=num_classes,
        in_channels=in_channels,
        fc_width=fc_width,
        dropout=dropout,
        batch_norm=batch_norm,
    )


@register_model()
def vgg_11_half(
    *,
    num_classes: int = 7,
    in_channels: int = 1,
    fc_width: int = 512,
    dropout: float = 0.5,
    batch_norm: bool = True,
) -> FerVGG:
    """vgg_11 at half width (32-64-128-256) with a 512-wide head: a quarter of the compute."""
    return _vgg(
        (2, 2, 2, 2),
        [w // 2 for w in WIDTHS],
        num_classes=num_classes,
        in_channels=in_channels,
        fc_width=fc_width,
        dropout=dropout,
        batch_norm=batch_norm,
    )


@register_model()
def vgg_13(
    *,
    num_classes: int = 7,
    in_channels: int = 1,
    fc_width: int = 1024,
    dropout: float = 0.5,
    batch_norm: bool = True,
) -> FerVGG:
    """VGG, convs 2-2-3-3 (64-128-256-512) + 3 dense layers."""
    return _vgg(
        (2, 2, 3, 3),
        WIDTHS,
        num_classes=num_classes,
        in_channels=in_channels,
        fc_width=fc_width,
        dropout=dropout,
        batch_norm=batch_norm,
    )


@register_model()
def vgg_16(
    *,
    num_classes: int = 7,
    in_channels: int = 1,
    fc_width: int = 1024,
    dropout: float = 0.5,
    batch_norm: bool = True,
) -> FerVGG:
    """VGG, convs 2-3-4-4 (64-128-256-512) + 3 dense layers: the deepest, slowest baseline."""
    return _vgg(
        (2, 3, 4, 4),
        WIDTHS,
        num_classes=num_classes,
        in_channels=in_channels,
        fc_width=fc_width,
        dropout=dropout,
        batch_norm=batch_norm,
    )
