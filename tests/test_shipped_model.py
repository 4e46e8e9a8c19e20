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


def test_ferplus_model_ships_by_name_with_eight_labels():
    """`flagship-ferplus`: FER+'s 8 classes (contempt last), by name like `flagship`."""
    from ferkit.inference.model_io import SHIPPED, resolve_model
    from ferkit.labels import FERPLUS_EMOTIONS

    path = resolve_model("flagship-ferplus")
    assert path.name == SHIPPED["flagship-ferplus"] and path.stat().st_size <= MAX_BYTES
    _, meta = load_checkpoint(path, arch="flagship")
    assert meta["labels"] == list(FERPLUS_EMOTIONS) and meta["input_size"] == [48, 48]
    assert EmotionRecognizer("flagship-ferplus").top_emotion(ASTRONAUT)[0] == "happy"


@pytest.mark.shared_data
def test_ferplus_model_majority_accuracy_as_the_model_card_says(shared_fer, tmp_path):
    csv = shared_fer.parent / "fer2013-csv" / "fer2013.csv.gz"
    votes = shared_fer.parent / "ferplus" / "fer2013new.csv.gz"
    out = tmp_path / "eval.json"
    args = ["evaluate", "--model", "flagship-ferplus", "--data", str(csv), "--ferplus"]
    assert main([*args, str(votes), "--output", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["n"] == 3199  # FER+ PublicTest faces with a majority label
    assert result["accuracy"] >= 0.86  # docs/MODEL_CARD.md: 87.2%
