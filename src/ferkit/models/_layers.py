"""Building blocks shared by the from-scratch families (simple_cnn, vgg, flagship)."""

from __future__ import annotations

from torch import nn


def conv_norm_act(
    c_in: int,
    c_out: int,
    kernel: int = 3,
    stride: int = 1,
    padding: int | None = None,
    *,
    batch_norm: bool = True,
    act: bool = True,
) -> nn.Sequential:
    """Convolution, then batch norm (the conv then needs no bias) and ReLU if asked.

    `padding` defaults to "same" for odd kernels (kernel // 2).
    """
    padding = kernel // 2 if padding is None else padding
    layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, kernel, stride, padding, bias=not batch_norm)]
    if batch_norm:
        layers.append(nn.BatchNorm2d(c_out))
    if act:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


def init_weights(model: nn.Module) -> None:
    """He initialisation for convolutions (ReLU nets), unit/zero batch norm, zero biases."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
