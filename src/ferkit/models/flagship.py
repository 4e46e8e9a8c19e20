"""`flagship`: ferkit's own network for 48x48 faces, built for accuracy per CPU-second.

A compact ResNet/VGG hybrid (VGG's dense 3x3 convolutions and width doubling, ResNet's
residual blocks and global pooling):

    48x48x1  -> 3x3 conv, 32          stem at full resolution: edges, cheap with one input
    48 -> 24 -> 3x3 conv /2, 64       downsample once, early: 48x48 is where compute goes
    24 -> 12 -> basic block /2, 128   (two 3x3 conv + BN; shortcut: 2x2 avg-pool, 1x1 conv)
    12 -> 6  -> basic block /2, 256
    6  -> 3  -> basic block /2, 512
    global average pool -> dropout -> linear

Why this shape (docs/models.md has the measurements and a training probe):

* Dense 3x3 convolutions. On this CPU (AVX-512 BF16, oneDNN, channels-last) every dense 3x3
  net runs at about 200 G multiply-adds/s in bf16; EfficientNet's depthwise convolutions,
  at the same multiply-adds, run 3x slower in inference and 7x slower in training.
* Compute is spent where it buys capacity. A 3x3 conv at (64 ch, 24 px), (128, 12),
  (256, 6) or (512, 3) costs the same 21 M multiply-adds but carries 1x, 4x, 16x or 64x the
  weights; the 48x48 level gets one conv from a single channel (0.7 M multiply-adds), where
  VGG and the FER ResNet-18 spend 85 M per 64-channel conv.
* 110 M multiply-adds, 4.8 M parameters: vgg_11's depth pattern at a quarter of its cost,
  with the capacity of the VGGs that reach 72.7-73.3%. Speed: docs/models.md (this
  architecture against the others, `benchmarks/models.py`) and docs/MODEL_CARD.md#speed (the
  shipped model, `benchmarks/inference.py`).
* Every block downsamples, so each has a projection shortcut; ResNet-D's (average pool, then
  1x1 conv) keeps all pixels, where a strided 1x1 conv drops three in four.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ferkit.models._layers import conv_norm_act, init_weights
from ferkit.models.registry import register_model

__all__ = ["BasicBlock", "FlagshipNet", "flagship"]


class BasicBlock(nn.Module):
    """ResNet's basic block: two 3x3 conv + BN, added to the input, then ReLU.

    Where the shape changes, the input is projected by a 2x2 average pool and a 1x1 conv + BN
    (ResNet-D's shortcut): a strided 1x1 conv would drop three pixels in four, and here every
    block downsamples.
    """

    def __init__(self, c_in: int, c_out: int, stride: int = 1, batch_norm: bool = True) -> None:
        super().__init__()
        self.conv1 = conv_norm_act(c_in, c_out, 3, stride, batch_norm=batch_norm)
        self.conv2 = conv_norm_act(c_out, c_out, 3, batch_norm=batch_norm, act=False)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            pool = nn.AvgPool2d(stride, ceil_mode=True) if stride > 1 else nn.Identity()
            proj = conv_norm_act(c_in, c_out, 1, batch_norm=batch_norm, act=False)
            self.shortcut = nn.Sequential(pool, *proj)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv2(self.conv1(x)) + self.shortcut(x))


class FlagshipNet(nn.Module):
    """The flagship network; see the module docstring for the design.

    Args:
        num_classes, in_channels: output and input size.
        stem_width: channels of the full-resolution stem conv.
        widths: channels per stage; stage 0 runs at half the input resolution, and each
            later stage halves it again.
        depths: basic blocks per stage; stage 0 may have none (the stem's stride-2 conv is
            then its only layer), later stages at least one (it downsamples).
        dropout: before the linear head.
        batch_norm: batch norm after each conv (False only for ablations).
    """

    def __init__(
        self,
        num_classes: int = 7,
        in_channels: int = 1,
        stem_width: int = 32,
        widths: Sequence[int] = (64, 128, 256, 512),
        depths: Sequence[int] = (0, 1, 1, 1),
        dropout: float = 0.3,
        batch_norm: bool = True,
    ) -> None:
        super().__init__()
        if len(widths) != len(depths) or any(d < 1 for d in depths[1:]) or depths[0] < 0:
            raise ValueError(
                f"need one depth per width and depth >= 1 after stage 0; got widths {widths}, "
                f"depths {depths}"
            )
        self.stem = nn.Sequential(
            conv_norm_act(in_channels, stem_width, batch_norm=batch_norm),
            conv_norm_act(stem_width, widths[0], stride=2, batch_norm=batch_norm),
        )
        stages: list[nn.Module] = []
        c = widths[0]
        for i, (w, d) in enumerate(zip(widths, depths, strict=True)):
            blocks = []
            for j in range(d):
                stride = 2 if (i > 0 and j == 0) else 1  # each stage after the first halves
                blocks.append(BasicBlock(c, w, stride, batch_norm))
                c = w
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.num_features = c
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(c, num_classes)
        # No zero-initialised residual branches (the ImageNet ResNet trick): with every block
        # downsampling, the net at initialisation would be the stem and three 1x1 convs, and
        # it learned markedly slower in a short FER-2013 probe (docs/models.md).
        init_weights(self)

    def get_classifier(self) -> nn.Module:
        return self.head

    def get_last_stage(self) -> nn.Module:
        return self.stages[-1]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Feature map before pooling: (N, num_features, H/16, W/16)."""
        return self.stages(self.stem(x))

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(torch.flatten(self.pool(x), 1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


@register_model(input_size=(48, 48))
def flagship(
    *,
    num_classes: int = 7,
    in_channels: int = 1,
    stem_width: int = 32,
    widths: Sequence[int] = (64, 128, 256, 512),
    depths: Sequence[int] = (0, 1, 1, 1),
    dropout: float = 0.3,
    batch_norm: bool = True,
) -> FlagshipNet:
    """ferkit's own: compact residual 3x3 ConvNet for 48x48, most accuracy per CPU-second."""
    return FlagshipNet(
        num_classes, in_channels, stem_width, tuple(widths), tuple(depths), dropout, batch_norm
    )
