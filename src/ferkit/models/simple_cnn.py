"""The two baseline ConvNets of FER tutorials and projects: `simple_cnn` and `fer_model0`.

They are here to be beaten: small, plain, and what most FER-2013 write-ups start from.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ferkit.models._layers import conv_norm_act, init_weights
from ferkit.models.registry import register_model

__all__ = ["FerModel0", "SimpleCNN", "fer_model0", "simple_cnn"]


class SimpleCNN(nn.Module):
    """The Keras FER tutorial ConvNet, layer for layer, in PyTorch.

    conv32-conv64-pool-dropout, conv128-pool-conv128-pool-dropout, flatten, dense 1024,
    dropout, dense `num_classes`. Convolutions are unpadded ("valid") as in the tutorial, so
    a 48x48 face ends as 128 x 4 x 4; an adaptive pool to 4 x 4 (the identity at 48x48) lets
    other input sizes through.

    Args:
        dropout: before the last layer; the two dropouts after pooling use half of it
            (the tutorial's 0.5 and 0.25); 0 disables all three.
        batch_norm: add batch norm after each conv (the tutorial has none).
    """

    def __init__(
        self,
        num_classes: int = 7,
        in_channels: int = 1,
        dropout: float = 0.5,
        batch_norm: bool = False,
    ) -> None:
        super().__init__()

        def conv(c_in: int, c_out: int) -> nn.Sequential:
            return conv_norm_act(c_in, c_out, 3, padding=0, batch_norm=batch_norm)

        self.features = nn.Sequential(
            conv(in_channels, 32),
            conv(32, 64),
            nn.MaxPool2d(2),
            nn.Dropout(dropout / 2),
            conv(64, 128),
            nn.MaxPool2d(2),
            conv(128, 128),
            nn.MaxPool2d(2),
            nn.Dropout(dropout / 2),
            nn.AdaptiveMaxPool2d(4),
        )
        self.num_features = 1024
        self.pre_logits = nn.Sequential(
            nn.Flatten(), nn.Linear(128 * 4 * 4, 1024), nn.ReLU(inplace=True), nn.Dropout(dropout)
        )
        self.head = nn.Linear(1024, num_classes)

    def get_classifier(self) -> nn.Module:
        """The final layer (what the `head` freeze policy leaves trainable)."""
        return self.head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pre_logits(self.features(x)))


class FerModel0(nn.Module):
    """Three blocks of (3x3 conv, BN, ReLU) x 2 then max-pool, and a linear head.

    At 48x48 the last block ends at 6 x 6, which the head flattens; an adaptive average pool
    to 6 x 6 (the identity at 48x48) keeps the head's size fixed at other input sizes, such
    as the 128x128 one published project trained it at.
    """

    def __init__(
        self,
        num_classes: int = 7,
        in_channels: int = 1,
        widths: Sequence[int] = (32, 64, 128),
        dropout: float = 0.0,
        batch_norm: bool = True,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = in_channels
        for w in widths:
            layers += [
                conv_norm_act(c, w, batch_norm=batch_norm),
                conv_norm_act(w, w, batch_norm=batch_norm),
            ]
            layers.append(nn.MaxPool2d(2))
            c = w
        layers.append(nn.AdaptiveAvgPool2d(6))
        self.features = nn.Sequential(*layers)
        self.num_features = c * 6 * 6
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(dropout), nn.Linear(c * 36, num_classes))
        init_weights(self)

    def get_classifier(self) -> nn.Module:
        return self.head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


@register_model(input_size=(48, 48))
def simple_cnn(
    *, num_classes: int = 7, in_channels: int = 1, dropout: float = 0.5, batch_norm: bool = False
) -> SimpleCNN:
    """Basic FER tutorial ConvNet: conv+ReLU+max-pool blocks, dropout, dense 1024, 7-way output."""
    return SimpleCNN(num_classes, in_channels, dropout, batch_norm)


@register_model(input_size=(48, 48))
def fer_model0(
    *,
    num_classes: int = 7,
    in_channels: int = 1,
    widths: Sequence[int] = (32, 64, 128),
    dropout: float = 0.0,
    batch_norm: bool = True,
) -> FerModel0:
    """Three blocks of two 3x3 conv+BN+ReLU then max-pool, linear head (published at 128x128).

    The default input is the data's own 48x48: upsampling to 128x128 as that project did
    costs 7x the compute and adds no information.
    """
    return FerModel0(num_classes, in_channels, tuple(widths), dropout, batch_norm)
