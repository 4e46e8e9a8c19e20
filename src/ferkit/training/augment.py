"""Augmentation on whole batches of tensors (N, 1, H, W) in 0..1.

Per-image PIL transforms are the bottleneck on a 2-core CPU; here one affine grid covers flip,
rotation, shift, zoom and random resized crop for the whole batch, and jitter and erasing are
masked tensor arithmetic. Randomness comes from torch's global generator (seeded per run).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.transforms import v2

from ferkit.training.config import TrainConfig


def _uniform(n: int, low: float, high: float, like: torch.Tensor) -> torch.Tensor:
    return torch.rand(n, device=like.device, dtype=like.dtype) * (high - low) + low


class BatchAugment(nn.Module):
    """Geometric and photometric augmentation of a batch, each part switchable by config."""

    def __init__(self, cfg: TrainConfig):
        super().__init__()
        self.hflip, self.rotation, self.shift, self.scale = (
            cfg.hflip,
            cfg.rotation,
            cfg.shift,
            cfg.scale,
        )
        self.crop_scale, self.brightness, self.contrast = (
            cfg.crop_scale,
            cfg.brightness,
            cfg.contrast,
        )
        self.erasing = cfg.erasing

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._geometric(x)
        x = self._photometric(x)
        if self.erasing > 0:
            x = self._erase(x)
        return x

    def _geometric(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        if not (self.hflip or self.rotation or self.shift or self.scale or self.crop_scale):
            return x
        angle = _uniform(n, -self.rotation, self.rotation, x) * (math.pi / 180)
        # zoom < 1 samples a smaller region (zoom in); a random resized crop is a zoom-in
        # whose centre may move as far as the crop stays inside the image
        zoom = _uniform(n, 1 - self.scale, 1 + self.scale, x)
        offset = _uniform(2 * n, -self.shift, self.shift, x).view(n, 2) * 2  # grid spans 2
        if self.crop_scale > 0:
            side = _uniform(n, self.crop_scale, 1.0, x).sqrt()
            zoom = zoom * side
            offset = offset + (1 - side).unsqueeze(1) * _uniform(2 * n, -1, 1, x).view(n, 2)
        flip = torch.ones(n, device=x.device, dtype=x.dtype)
        if self.hflip:
            flip = torch.where(torch.rand(n, device=x.device) < 0.5, -flip, flip)
        cos, sin = torch.cos(angle) * zoom, torch.sin(angle) * zoom
        theta = torch.stack(
            [torch.stack([cos * flip, -sin, offset[:, 0]], 1),
             torch.stack([sin * flip, cos, offset[:, 1]], 1)], 1
        )  # fmt: skip
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        return F.grid_sample(
            x, grid, mode="bilinear", padding_mode="reflection", align_corners=False
        )

    def _photometric(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        if self.brightness:
            x = x * _uniform(n, 1 - self.brightness, 1 + self.brightness, x).view(n, 1, 1, 1)
        if self.contrast:
            mean = x.mean(dim=(1, 2, 3), keepdim=True)
            x = (x - mean) * _uniform(n, 1 - self.contrast, 1 + self.contrast, x).view(
                n, 1, 1, 1
            ) + mean
        return x.clamp(0, 1)

    def _erase(self, x: torch.Tensor) -> torch.Tensor:
        """Random erasing (Zhong et al. 2017): a rectangle of 2-25% area filled with noise."""
        n, _, h, w = x.shape
        area = _uniform(n, 0.02, 0.25, x)
        aspect = torch.exp(_uniform(n, math.log(0.3), math.log(3.3), x))
        eh = (area * aspect).sqrt().clamp(max=1) * h
        ew = (area / aspect).sqrt().clamp(max=1) * w
        top = torch.rand(n, device=x.device) * (h - eh)
        left = torch.rand(n, device=x.device) * (w - ew)
        rows = torch.arange(h, device=x.device).view(1, h, 1)
        cols = torch.arange(w, device=x.device).view(1, 1, w)
        inside = ((rows >= top.view(n, 1, 1)) & (rows < (top + eh).view(n, 1, 1))
                  & (cols >= left.view(n, 1, 1)) & (cols < (left + ew).view(n, 1, 1)))  # fmt: skip
        chosen = (torch.rand(n, device=x.device) < self.erasing).view(n, 1, 1)
        mask = (inside & chosen).unsqueeze(1)
        return torch.where(mask, torch.rand_like(x), x)


def batch_mixer(cfg: TrainConfig, num_classes: int) -> nn.Module | None:
    """MixUp and/or CutMix on (images, labels) -> (images, soft labels), or None if both off."""
    mixers = []
    if cfg.mixup > 0:
        mixers.append(v2.MixUp(alpha=cfg.mixup, num_classes=num_classes))
    if cfg.cutmix > 0:
        mixers.append(v2.CutMix(alpha=cfg.cutmix, num_classes=num_classes))
    if not mixers:
        return None
    return mixers[0] if len(mixers) == 1 else v2.RandomChoice(mixers)
