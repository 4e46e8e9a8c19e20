"""The model shipped inside the package (ferkit/weights/flagship.pt): present, small, safe to
load, complete, calibrated, and as accurate on FER-2013 PublicTest as its model card says."""

from __future__ import annotations

import json

import pytest

from conftest import ASTRONAUT
from ferkit.cli import main
from ferkit.inference import EmotionRecognizer
from ferkit.inference.model_io import default_checkpoint
from ferkit.labels import EMOTIONS
from ferkit.models import load_checkpoint
from ferkit.models._weights import safe_load

MAX_BYTES = 20_000_000  # issue 6: at most 20 MB in the repo
PUBLIC_TEST_N = 3589


@pytest.fixture(scope="module")
def shipped():
    return load_checkpoint(default_checkpoint(), arch="flagship")


def test_weights_are_package_data_small_and_safe_to_load():
    path = default_checkpoint()
    assert path.stat().st_size <= MAX_BYTES
    assert "state_dict" in safe_load(path, map_location="cpu")  # torch.load(weights_only=True)


def test_metadata_says_what_inference_and_a_reader_need(shipped):
    _, meta = shipped
    assert meta["labels"] == list(EMOTIONS)
    assert meta["input_size"] == [48, 48] and meta["in_channels"] == 1
    assert meta["temperature"] and 0.3 < meta["temperature"] < 5
    calibration = meta["extra"]["calibration"]
    assert calibration["ece_after"] < calibration["ece_before"]
    recipe = meta["extra"]["recipe"]
    assert recipe["config"]["model"] == "flagship" and recipe["n_train"] == 28709
    assert meta["metrics"]["val_n"] == PUBLIC_TEST_N


def test_default_recognizer_reads_the_example_photo():
    faces = EmotionRecognizer().predict(ASTRONAUT)
    assert len(faces) == 1
    assert faces[0].label == "happy"  # Eileen Collins smiling in her official portrait


def test_predict_uses_the_shipped_model(capsys):
    assert main(["predict", str(ASTRONAUT), "--json"]) == 0
    (record,) = json.loads(capsys.readouterr().out)
    assert record["faces"][0]["label"] == "happy"


@pytest.mark.shared_data
def test_publictest_accuracy_as_the_model_card_says(shared_fer, tmp_path):
    out = tmp_path / "eval.json"
    assert main(["evaluate", "--data", str(shared_fer), "--output", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["n"] == PUBLIC_TEST_N and result["split"] == "val"
    assert result["accuracy"] >= 0.70  # docs/MODEL_CARD.md: 70.3% without TTA
