"""The robust photometric augmentation: each part on its own, its shapes and range, its
determinism under a seed, what it does to an image, and its config keys."""

from __future__ import annotations

import math

import pytest
import torch
from torchvision.transforms.v2 import functional as TF

from ferkit.errors import ConfigError
from ferkit.training.augment import BatchAugment, _gaussian_blur
from ferkit.training.config import TrainConfig, load_config

# geometry and jitter off, so each test sees one part alone
QUIET = dict(hflip=False, rotation=0, shift=0, scale=0, brightness=0, contrast=0)


def batch(seed: int = 0, low: float = 0.0, high: float = 1.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(16, 1, 48, 48, generator=g) * (high - low) + low


def run(seed: int = 1, x: torch.Tensor | None = None, **keys) -> torch.Tensor:
    torch.manual_seed(seed)
    return BatchAugment(TrainConfig(**QUIET, **keys))(batch() if x is None else x)


def roughness(x: torch.Tensor) -> float:
    """Mean absolute difference of neighbouring pixels: detail that blur and scaling remove."""
    return float((x[..., 1:, :] - x[..., :-1, :]).abs().mean())


@pytest.mark.parametrize(
    "keys",
    [
        dict(autocontrast=1.0),
        dict(equalize=1.0),
        dict(blur=1.0),
        dict(downscale=1.0),
        dict(jpeg=1.0),
        dict(autocontrast=0.5, equalize=0.5, blur=0.5, downscale=0.5, jpeg=0.5),
    ],
)
def test_each_part_keeps_shape_dtype_range_and_is_seeded(keys):
    x = batch()
    a, b, c = run(1, x, **keys), run(1, x, **keys), run(2, x, **keys)
    assert a.shape == x.shape and a.dtype == x.dtype and a.min() >= 0 and a.max() <= 1
    assert torch.equal(a, b) and not torch.equal(a, x)
    if keys in (dict(autocontrast=1.0), dict(equalize=1.0)):
        return  # applied to every image with nothing drawn: the seed has nothing to change
    assert not torch.equal(a, c)


def test_off_by_default_is_the_identity():
    x = batch()
    assert torch.equal(run(1, x), x)
    assert TrainConfig().autocontrast == TrainConfig().jpeg == TrainConfig().blur == 0


def test_contrast_stretching_and_equalisation_use_the_full_range():
    dull = batch(low=0.4, high=0.6)
    for keys in (dict(autocontrast=1.0), dict(equalize=1.0)):
        out = run(1, dull, **keys)
        lows, highs = out.amin(dim=(1, 2, 3)), out.amax(dim=(1, 2, 3))
        assert torch.all(lows < 0.02) and torch.all(highs > 0.98), keys


def test_blur_and_down_up_scaling_remove_detail():
    x = batch()
    assert roughness(run(1, x, blur=1.0, blur_sigma=[1.0, 1.5])) < 0.6 * roughness(x)
    assert roughness(run(1, x, downscale=1.0, downscale_side=[12, 16])) < 0.6 * roughness(x)


def test_every_part_runs_under_bf16_autocast_as_training_does():
    keys = dict(autocontrast=0.5, equalize=0.5, blur=1.0, downscale=1.0, jpeg=1.0, erasing=0.5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = run(1, batch(), **keys)
    assert out.dtype == torch.float32 and out.shape == batch().shape


def test_one_convolution_blurs_each_image_as_torchvision_does_with_its_sigma():
    x, sigma = batch()[:3], torch.tensor([0.3, 0.8, 1.2])
    out = _gaussian_blur(x, sigma)
    for i, s in enumerate(sigma.tolist()):
        k = 2 * math.ceil(3 * s) + 1  # torchvision's kernel ends there; ours at 3 x 1.2
        expected = TF.gaussian_blur(x[i], [k, k], [s, s])
        assert torch.allclose(out[i], expected, atol=2e-3), s
    alone = TF.gaussian_blur(x[2], [9, 9], [1.2, 1.2])  # the same kernel: the same answer
    assert torch.allclose(_gaussian_blur(x[2:], sigma[2:])[0], alone, atol=1e-6)


def test_jpeg_leaves_8_bit_values_that_differ_from_the_input():
    x = batch()
    out = run(1, x, jpeg=1.0, jpeg_quality=[20, 30])
    assert torch.allclose(out * 255, (out * 255).round(), atol=1e-3)
    assert (out - x).abs().mean() > 0.02


def test_probability_picks_about_that_share_of_images():
    x = batch()
    torch.manual_seed(0)
    out = BatchAugment(TrainConfig(**QUIET, autocontrast=0.5))(x.repeat(8, 1, 1, 1))
    changed = (out != x.repeat(8, 1, 1, 1)).flatten(1).any(1).float().mean()
    assert 0.25 < changed < 0.75


@pytest.mark.parametrize(
    "keys, message",
    [
        ({"jpeg": 1.5}, "jpeg must be in 0..1"),
        ({"blur": -0.1}, "blur must be in 0..1"),
        ({"jpeg_quality": [90, 30]}, "jpeg_quality must be \\[min, max\\]"),
        ({"jpeg_quality": [0, 50]}, "jpeg_quality"),
        ({"jpeg_quality": [30.5, 50]}, "integers"),
        ({"downscale_side": [8]}, "downscale_side"),
        ({"blur_sigma": [0, 1]}, "blur_sigma"),
        ({"autocontrast": "often"}, "autocontrast"),
    ],
)
def test_keys_are_validated(keys, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, keys)


def test_ranges_from_set_and_recipe(tmp_path):
    cfg = load_config(None, {"jpeg_quality": "[20, 80]", "blur_sigma": "[0.5, 1]"})
    assert cfg.jpeg_quality == [20, 80] and cfg.blur_sigma == [0.5, 1]
    recipe = load_config("configs/flagship_ferplus.yaml")
    assert recipe.jpeg > 0 and recipe.autocontrast > 0 and recipe.ferplus
