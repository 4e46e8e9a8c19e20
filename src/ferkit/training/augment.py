"""Augmentation on whole batches of tensors (N, 1, H, W) in 0..1.

Per-image PIL transforms are the bottleneck on a 2-core CPU; here one affine grid covers flip,
rotation, shift, zoom and random resized crop for the whole batch, and jitter and erasing are
masked tensor arithmetic. Randomness comes from torch's global generator (seeded per run).

The robust photometrics cover what users feed in besides the canonical CSV pixels: contrast
stretching and equalisation (the processed folder copy of FER-2013 is histogram-equalised),
small faces scaled up (down-up scaling), blur and JPEG. They use torchvision's v2 functionals
(`autocontrast`, `equalize`, `resize`), one grouped convolution for blur (torchvision's
Gaussian kernel, a sigma per image) and OpenCV for JPEG, each on all the images its draw picks
at once; each is off (p = 0) unless a recipe turns it on. Order: geometry, contrast
stretching and equalisation, brightness/contrast jitter, down-up scaling, blur, JPEG, erasing.
"""

from __future__ import annotations

import contextlib
import math

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from ferkit.training.config import TrainConfig


def _uniform(n: int, low: float, high: float, like: torch.Tensor) -> torch.Tensor:
    return torch.rand(n, device=like.device, dtype=like.dtype) * (high - low) + low


@contextlib.contextmanager
def _one_thread():
    """Run on one intra-op thread: these ops are small, and splitting each over the cores costs
    more than it saves (a batch of 64 with the FER+ recipe's augmentation: 196 ms on 2 threads,
    33 ms on one, 2-core VM under load)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def jpeg_compress(gray: np.ndarray, quality: int) -> np.ndarray:
    """A uint8 gray image after JPEG encoding at `quality` and decoding (OpenCV's libjpeg;
    torchvision's JPEG functions are deprecated from 0.29)."""
    ok, encoded = cv2.imencode(".jpg", gray, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError(f"OpenCV could not JPEG-encode a {gray.shape} image")
    return cv2.imdecode(encoded, cv2.IMREAD_GRAYSCALE)


def _gaussian_blur(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Each image of x (N, 1, H, W) blurred with its own sigma (N,): one separable grouped
    convolution, reflecting at the borders as torchvision's gaussian_blur does. Every kernel
    spans three of the largest sigma on each side; torchvision cuts a smaller sigma's kernel at
    three of its own, so the two differ only by that kernel's far tails."""
    n, _, h, w = x.shape
    radius = math.ceil(3 * float(sigma.max()))
    t = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-(t**2) / (2 * sigma.view(n, 1) ** 2))
    kernel = (kernel / kernel.sum(1, keepdim=True)).to(x.device, x.dtype)
    y = F.pad(x.view(1, n, h, w), (radius, radius, radius, radius), mode="reflect")
    y = F.conv2d(y, kernel.view(n, 1, 1, -1), groups=n)
    y = F.conv2d(y, kernel.view(n, 1, -1, 1), groups=n)
    return y.view(n, 1, h, w)


def _picked(n: int, p: float, like: torch.Tensor) -> list[int]:
    """Indices of the images a draw with probability `p` picks (none when p is 0)."""
    if p <= 0:
        return []
    return torch.nonzero(torch.rand(n, device=like.device) < p).flatten().tolist()


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
        self.autocontrast, self.equalize = cfg.autocontrast, cfg.equalize
        self.blur, self.blur_sigma = cfg.blur, tuple(cfg.blur_sigma)
        self.downscale, self.downscale_side = cfg.downscale, tuple(cfg.downscale_side)
        self.jpeg, self.jpeg_quality = cfg.jpeg, tuple(cfg.jpeg_quality)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with _one_thread():
            return self._augment(x)

    def _augment(self, x: torch.Tensor) -> torch.Tensor:
        x = self._geometric(x)
        x = self._tone(x)
        x = self._photometric(x)
        x = self._degrade(x)
        if self.erasing > 0:
            x = self._erase(x)
        return x

    def _tone(self, x: torch.Tensor) -> torch.Tensor:
        """Contrast stretching to the full range, and histogram equalisation, per image."""
        for p, fn in ((self.autocontrast, TF.autocontrast), (self.equalize, TF.equalize)):
            if p > 0:
                chosen = (torch.rand(x.shape[0], device=x.device) < p).view(-1, 1, 1, 1)
                x = torch.where(chosen, fn(x), x)
        return x

    def _degrade(self, x: torch.Tensor) -> torch.Tensor:
        """Down-up scaling, Gaussian blur and JPEG compression of the images each p picks.

        Each works on all its picked images at once (one resize per drawn side, one grouped
        convolution, one copy to and from the host for JPEG), so a GPU waits for the host a
        few times per batch, not once or twice per picked image. Sides, sigmas and qualities
        are drawn on the host."""
        n, _, h, w = x.shape
        if not (self.downscale or self.blur or self.jpeg):
            return x
        x = x.clone()
        picked = _picked(n, self.downscale, x)
        low, high = self.downscale_side
        sides = torch.randint(low, high + 1, (len(picked),)).tolist()
        for side in sorted(set(sides)):
            if side < min(h, w):
                group = [i for i, s in zip(picked, sides, strict=True) if s == side]
                small = TF.resize(x[group], [side, side], antialias=True)
                x[group] = TF.resize(small, [h, w], antialias=False).to(x.dtype)
        picked = _picked(n, self.blur, x)
        if picked:
            sigma = torch.rand(len(picked)) * (self.blur_sigma[1] - self.blur_sigma[0])
            # under autocast the convolution answers in bf16; x keeps its own dtype
            x[picked] = _gaussian_blur(x[picked], sigma + self.blur_sigma[0]).to(x.dtype)
        picked = _picked(n, self.jpeg, x)
        if picked:
            quality = torch.randint(self.jpeg_quality[0], self.jpeg_quality[1] + 1, (len(picked),))
            pixels = (x[picked, 0] * 255).round().clamp(0, 255).to(torch.uint8).cpu().numpy()
            out = np.stack(
                [jpeg_compress(p, q) for p, q in zip(pixels, quality.tolist(), strict=True)]
            )
            x[picked, 0] = torch.from_numpy(out).to(x.device, x.dtype) / 255
        return x.clamp(0, 1)

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
            [
                torch.stack([cos * flip, -sin, offset[:, 0]], 1),
                torch.stack([sin * flip, cos, offset[:, 1]], 1),
            ],
            1,
        )
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
        inside = (
            (rows >= top.view(n, 1, 1))
            & (rows < (top + eh).view(n, 1, 1))
            & (cols >= left.view(n, 1, 1))
            & (cols < (left + ew).view(n, 1, 1))
        )
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
