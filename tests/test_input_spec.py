"""InputSpec: one description of a checkpoint's input, read by every path."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import make_checkpoint
from ferkit.detection.crops import FRAMINGS, Framing
from ferkit.errors import ConfigError
from ferkit.inference import EmotionRecognizer
from ferkit.inference.model_io import default_checkpoint, load_torch_model
from ferkit.models.input_spec import InputSpec
from ferkit.preprocess import to_model_input


def test_round_trip_and_framing_per_detector():
    spec = InputSpec(
        (64, 64), 3, (0.4, 0.5, 0.6), (0.2, 0.2, 0.2), {"yunet": Framing(1.1, 0, 0.05)}
    )
    meta = spec.to_meta()
    assert InputSpec.from_meta(meta) == spec
    assert spec.shape == (3, 64, 64)
    assert spec.framing_for("yunet") == Framing(1.1, 0, 0.05)  # the checkpoint's own
    assert spec.framing_for("haar") == FRAMINGS["haar"]  # none of its own: the fitted one
    assert InputSpec.from_meta({**meta, "framing": {}, "crop_margin": 0.2}).framing_for(
        "yunet"
    ) == Framing.from_margin(0.2)  # older checkpoints: their single margin


def test_to_input_is_the_shared_preprocessing():
    faces = np.random.default_rng(0).integers(0, 256, (3, 40, 40), dtype=np.uint8)
    spec = InputSpec((48, 48), 3, (0.5,) * 3, (0.25,) * 3)
    expected = to_model_input(
        faces, input_size=(48, 48), mean=(0.5,) * 3, std=(0.25,) * 3, in_channels=3
    )
    assert torch.equal(spec.to_input(faces), expected) and expected.shape == (3, 3, 48, 48)


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        ({"input_size": (0, 48)}, "input_size"),
        ({"in_channels": 2, "mean": (0.5,) * 2, "std": (0.5,) * 2}, "in_channels"),
        ({"mean": (0.5, 0.5)}, "mean and std"),
        ({"std": (0.0,)}, "'std' must be numbers > 0"),
    ],
)
def test_bad_values_are_refused_with_their_name(bad, match):
    with pytest.raises(ConfigError, match=match):
        InputSpec(**bad)


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"input_size": None}, "'input_size' must be a list of numbers"),
        ({"input_size": [47.5, 48]}, "'input_size' must be .*whole numbers"),
        ({"mean": ["0.5"]}, "'mean' must be a list of numbers"),
        ({"mean": [float("nan")]}, "'mean' must be finite"),
        ({"in_channels": True}, "'in_channels' must be 1 or 3"),
    ],
)
def test_bad_metadata_is_refused_with_its_key(changes, match):
    meta = {"input_size": [48, 48], "in_channels": 1, "mean": [0.5], "std": [0.5]}
    with pytest.raises(ConfigError, match=match):
        InputSpec.from_meta(meta | changes)


def test_the_shipped_checkpoint_loads_unchanged():
    _, meta = load_torch_model(default_checkpoint())
    spec = InputSpec.from_meta(meta)
    assert spec == InputSpec((48, 48), 1, (0.5,), (0.5,))  # no framing of its own
    rec = EmotionRecognizer(detector="yunet")
    assert rec.spec == spec and rec.framing == FRAMINGS["yunet"]


def test_training_writes_what_inference_reads(tmp_path):
    path = make_checkpoint(tmp_path / "m.pt")
    rec = EmotionRecognizer(path, detector=None)
    _, meta = load_torch_model(path)
    assert rec.spec == InputSpec.from_meta(meta)
    assert rec.spec.to_meta() == {k: meta[k] for k in ("input_size", "in_channels", "mean", "std")}
