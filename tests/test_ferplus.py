"""FER+ labels with the FER-2013 CSV: pairing, FER+'s own filtering, vote distributions, the
8-class set, .csv.gz, the CLI, FER+ evaluation, soft-label training and a new classifier head."""

from __future__ import annotations

import csv
import gzip
import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import face, make_checkpoint, write_fer_csv
from ferkit.cli import main
from ferkit.data import load_dataset
from ferkit.data.dataset import FERDataset
from ferkit.data.types import Split
from ferkit.errors import CheckpointError, ConfigError, DataError
from ferkit.evaluation.evaluate import evaluate
from ferkit.labels import EMOTIONS, FERPLUS_EMOTIONS
from ferkit.models import create_model, load_checkpoint
from ferkit.training.config import load_config

HEADER = [
    "Usage",
    "Image name",
    "neutral",
    "happiness",
    "surprise",
    "sadness",
    "anger",
    "disgust",
    "fear",
    "contempt",
    "unknown",
    "NF",
]
# (usage, kept by FER+, votes in HEADER order from neutral to NF): what FER+ makes of each
ROWS = [
    (
        "Training",
        True,
        [4, 0, 0, 1, 3, 2, 0, 0, 0, 0],
    ),  # 0 no majority; votes: neutral 4/7, angry 3/7
    ("Training", True, [0, 10, 0, 0, 0, 0, 0, 0, 0, 0]),  # 1 happy
    ("Training", True, [4, 0, 0, 0, 0, 0, 0, 6, 0, 0]),  # 2 contempt; votes contempt .6, neutral .4
    ("Training", True, [4, 0, 0, 0, 0, 0, 0, 0, 6, 0]),  # 3 unknown leads: dropped
    ("Training", True, [0, 0, 0, 0, 0, 0, 0, 0, 0, 10]),  # 4 not a face: dropped
    ("Training", False, [0, 10, 0, 0, 0, 0, 0, 0, 0, 0]),  # 5 empty Image name: dropped
    ("Training", True, [0, 0, 5, 0, 0, 0, 5, 0, 0, 0]),  # 6 tie: no majority; votes .5/.5
    ("Training", True, [1, 1, 1, 1, 1, 1, 1, 1, 2, 0]),  # 7 single votes are outliers: dropped
    ("PublicTest", True, [0, 0, 0, 0, 7, 3, 0, 0, 0, 0]),  # 8 angry
    ("PublicTest", True, [5, 5, 0, 0, 0, 0, 0, 0, 0, 0]),  # 9 no majority: dropped
    ("PublicTest", True, [0, 0, 2, 2, 0, 0, 6, 0, 0, 0]),  # 10 fear
]


def write_ferplus(path: Path, rows=ROWS) -> Path:
    """The exact fer2013new.csv format (plain, or gzip for a .gz name)."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wt", newline="") as f:
        w = csv.writer(f)
        w.writerow(HEADER)
        for i, (usage, kept, votes) in enumerate(rows):
            w.writerow([usage, f"fer{i:07d}.png" if kept else "", *votes])
    return path


def write_pixels(path: Path, usages: list[str]) -> Path:
    """fer2013.csv rows (FER-2013 labels do not matter to FER+), face(i) for row i."""
    return write_fer_csv(path, [(i % 7, face(i), u) for i, u in enumerate(usages)])


@pytest.fixture
def pair(tmp_path) -> tuple[Path, Path]:
    return write_pixels(tmp_path / "fer2013.csv", [r[0] for r in ROWS]), write_ferplus(
        tmp_path / "fer2013new.csv"
    )


def idx(name: str) -> int:
    return FERPLUS_EMOTIONS.index(name)


# --- labels: FER+'s own rules -----------------------------------------------------------------
def test_majority_labels_keep_only_faces_with_a_majority(pair):
    data = load_dataset(pair[0], ferplus=pair[1], ferplus_labels="majority")
    assert data.kind == "ferplus" and data.labels == FERPLUS_EMOTIONS
    assert data["train"].labels.tolist() == [idx("happy"), idx("contempt")]
    np.testing.assert_array_equal(data["train"].images, np.stack([face(1), face(2)]))
    assert data["train"].soft_labels is None
    assert data["val"].labels.tolist() == [idx("angry"), idx("fear")]
    np.testing.assert_array_equal(data["val"].images, np.stack([face(8), face(10)]))


def test_votes_are_ferplus_crossentropy_targets(pair):
    data = load_dataset(pair[0], ferplus=pair[1], ferplus_labels="votes")
    train = data["train"]
    np.testing.assert_array_equal(train.images, np.stack([face(i) for i in (0, 1, 2, 6)]))
    expected = np.zeros((4, 8), np.float32)
    expected[0, [idx("neutral"), idx("angry")]] = [4 / 7, 3 / 7]
    expected[1, idx("happy")] = 1
    expected[2, [idx("contempt"), idx("neutral")]] = [0.6, 0.4]
    expected[3, [idx("surprise"), idx("fear")]] = [0.5, 0.5]
    np.testing.assert_allclose(train.soft_labels, expected, atol=1e-6)
    assert train.labels.tolist() == expected.argmax(1).tolist()
    # validation stays majority-labelled: FER+ scores majority-vote accuracy
    assert data["val"].labels.tolist() == [idx("angry"), idx("fear")]
    assert data["val"].soft_labels is None
    assert data.summary()["labels"] == list(FERPLUS_EMOTIONS)


def test_fer2013_votes_keep_fer2013_labels_and_add_the_votes_over_them(pair):
    # FER-2013 labels i % 7 for row i, but rows 1 and 10 labelled as FER+'s majority has them
    y = [idx("happy") if i == 1 else idx("fear") if i == 10 else i % 7 for i in range(len(ROWS))]
    write_fer_csv(pair[0], [(y[i], face(i), r[0]) for i, r in enumerate(ROWS)])
    plain = load_dataset(pair[0])
    data = load_dataset(pair[0], ferplus=pair[1], ferplus_labels="fer2013-votes")
    assert data.labels == EMOTIONS and data.label_mode == "fer2013-votes"
    for name in ("train", "val"):  # every face, with its FER-2013 label
        np.testing.assert_array_equal(data[name].images, plain[name].images)
        np.testing.assert_array_equal(data[name].labels, plain[name].labels)
    assert data["val"].soft_labels is None  # scored on FER-2013's labels
    y = plain["train"].labels  # write_pixels: row i has label i % 7
    expected = np.eye(7, dtype=np.float32)[y]  # rows 3, 4, 5, 7: FER+ dropped them
    expected[0] = 0
    expected[0, [idx("neutral"), idx("angry")]] = [4 / 7, 3 / 7]
    expected[1] = np.eye(7)[idx("happy")]
    expected[2] = np.eye(7)[idx("neutral")]  # contempt .6, neutral .4: contempt's share dropped
    expected[6] = 0
    expected[6, [idx("surprise"), idx("fear")]] = [0.5, 0.5]
    np.testing.assert_allclose(data["train"].soft_labels, expected, atol=1e-6)
    assert any("for 4 of 8 training faces" in n for n in data.notes)
    # FER+ majority labels: train happy (row 1) and contempt (row 2), val angry (row 8, FER-2013
    # disgust) and fear (row 10)
    assert (
        "train: the FER-2013 label is FER+'s majority label for 50.0% of the 2 " in data.notes[-2]
    )
    assert "val: the FER-2013 label is FER+'s majority label for 50.0% of the 2 " in data.notes[-1]
    # training mixes the FER-2013 label back in
    _, target = FERDataset(data["train"], hard_label_weight=0.5)[1]
    np.testing.assert_allclose(
        target.numpy(), 0.5 * np.eye(7)[y[1]] + 0.5 * np.eye(7)[idx("happy")]
    )


def test_extra_train_joins_soft_labels_as_one_hot_rows(pair, tmp_path):
    from ferkit.data.dataset import FERDataModule

    other = tmp_path / "other" / "faces.csv"
    other.parent.mkdir()
    write_fer_csv(other, [(i % 7, face(100 + i), "Training") for i in range(5)])
    dm = FERDataModule(
        str(pair[0]), ferplus=str(pair[1]), ferplus_labels="fer2013-votes", extra_train=[str(other)]
    )
    dm.setup()
    train, extra = dm.splits["train"], load_dataset(other)["train"]
    assert len(train) == 8 + len(extra) and train.soft_labels.shape == (len(train), 7)
    np.testing.assert_array_equal(train.soft_labels[8:], np.eye(7)[extra.labels])
    np.testing.assert_array_equal(
        train.soft_labels[:8].argmax(1)[[1, 2]], [idx("happy"), idx("neutral")]
    )


def test_gzip_files_read_like_plain_ones(pair, tmp_path):
    gz_pixels = tmp_path / "gz" / "fer2013.csv.gz"
    gz_pixels.parent.mkdir()
    with open(pair[0], "rb") as src, gzip.open(gz_pixels, "wb") as dst:
        shutil.copyfileobj(src, dst)
    gz_labels = write_ferplus(tmp_path / "gz" / "fer2013new.csv.gz")
    plain = load_dataset(pair[0])
    packed = load_dataset(gz_pixels)
    for name in ("train", "val"):
        np.testing.assert_array_equal(plain[name].images, packed[name].images)
        np.testing.assert_array_equal(plain[name].labels, packed[name].labels)
    a = load_dataset(pair[0], ferplus=pair[1])
    b = load_dataset(gz_pixels, ferplus=gz_labels)
    np.testing.assert_array_equal(a["train"].soft_labels, b["train"].soft_labels)


def test_cache_keeps_modes_apart(pair):
    votes = load_dataset(pair[0], ferplus=pair[1])
    majority = load_dataset(pair[0], ferplus=pair[1], ferplus_labels="majority")
    again = load_dataset(pair[0], ferplus=pair[1])
    assert not votes.from_cache and not majority.from_cache and again.from_cache
    assert again.labels == FERPLUS_EMOTIONS and again.label_mode == "votes"
    np.testing.assert_array_equal(again["train"].soft_labels, votes["train"].soft_labels)
    assert len(majority["train"]) == 2 and len(again["train"]) == 4
    assert load_dataset(pair[0])["train"].soft_labels is None  # the plain CSV: 7 classes
    assert load_dataset(pair[0]).labels == EMOTIONS


# --- pairing ----------------------------------------------------------------------------------
def test_mismatched_pair_is_refused_with_both_counts(pair, tmp_path):
    short = write_ferplus(tmp_path / "short.csv", ROWS[:-1])
    with pytest.raises(DataError, match=r"10 label rows but .* has 11 face rows"):
        load_dataset(pair[0], ferplus=short)
    swapped = write_ferplus(tmp_path / "swapped.csv", [ROWS[8], *ROWS[:8], *ROWS[9:]])
    with pytest.raises(DataError, match=r"row 1 is 'val' in .* but 'train'"):
        load_dataset(pair[0], ferplus=swapped)


def test_bad_ferplus_inputs_say_what_to_do(pair, tmp_path):
    with pytest.raises(DataError, match=r"no such FER\+ label file"):
        load_dataset(pair[0], ferplus=tmp_path / "missing.csv")
    with pytest.raises(DataError, match=r"not a FER\+ label file: no column .*contempt.*It is "
                       r"the FER-2013 CSV, the data itself; --ferplus takes FER\+'s"):  # fmt: skip
        load_dataset(pair[0], ferplus=pair[0])  # the pixel CSV given as labels
    with pytest.raises(DataError, match=r"no column named emotion or pixels .* It is FER\+'s "
                       r"label file .*--ferplus FILE"):  # fmt: skip
        load_dataset(pair[1])  # the label file given as the data
    with pytest.raises(DataError, match=r"give the fer2013\.csv"):
        load_dataset(tmp_path, ferplus=pair[1])
    image = tmp_path / "labels.png"  # not text at all
    image.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)))
    with pytest.raises(DataError, match=r"not a readable CSV .* expected FER\+'s label file"):
        load_dataset(pair[0], ferplus=image)
    with pytest.raises(DataError, match=r"unknown FER\+ label mode 'soft'"):
        load_dataset(pair[0], ferplus=pair[1], ferplus_labels="soft")
    bad = tmp_path / "bad.csv"
    bad.write_text(",".join(HEADER) + "\nTraining,fer0.png,1,two,0,0,0,0,0,0,0,0\n")
    with pytest.raises(DataError, match=r"bad\.csv, line 2: expected a Usage"):
        load_dataset(pair[0], ferplus=bad)
    broken = tmp_path / "broken.csv.gz"
    broken.write_bytes(b"not gzip at all")
    with pytest.raises(DataError, match="not a readable CSV"):
        load_dataset(broken)


# --- CLI --------------------------------------------------------------------------------------
def test_cli_info_convert_with_ferplus(pair, tmp_path, capsys):
    assert main(["data", "info", str(pair[0]), "--ferplus", str(pair[1]), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["labels"] == list(FERPLUS_EMOTIONS) and info["label_mode"] == "votes"
    assert info["splits"]["train"]["n"] == 4 and info["splits"]["val"]["n"] == 2
    assert info["splits"]["val"]["classes"]["fear"] == 1
    args = ["data", "info", str(pair[0]), "--ferplus", str(pair[1]), "--ferplus-labels", "majority"]
    assert main(args) == 0
    table = capsys.readouterr().out
    assert "contempt" in table and "labels: FER+ majority" in table
    convert = ["data", "convert", str(pair[0]), "--ferplus", str(pair[1]), "--format"]
    out = tmp_path / "npy"
    assert main([*convert, "npy", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"wrote {out / 'train_soft_labels.npy'}" in printed and "7 contempt" in printed
    assert np.load(out / "train_soft_labels.npy").shape == (4, 8)
    assert not (out / "val_soft_labels.npy").exists()
    assert main(["data", "info", str(pair[0]), "--ferplus-labels", "majority"]) == 2
    assert "--ferplus-labels needs --ferplus FILE" in capsys.readouterr().err
    csv_out = tmp_path / "ferplus.csv"
    assert main([*convert, "csv", str(csv_out)]) == 2
    assert "convert to a folder of npy arrays" in capsys.readouterr().err
    assert not csv_out.exists()
    assert main([*convert, "folder", str(tmp_path / "png")]) == 2
    assert "do not fit class folders" in capsys.readouterr().err
    assert not (tmp_path / "png").exists()


# --- evaluation -------------------------------------------------------------------------------
def _checkpoint(path: Path, labels) -> Path:
    # not the training runs' seed: their fresh weights differ from these
    return make_checkpoint(path, seed=123, labels=labels)


def test_evaluate_scores_ferplus_majority(pair, tmp_path, capsys):
    ferplus_model = _checkpoint(tmp_path / "ferplus.pt", FERPLUS_EMOTIONS)
    result = evaluate(ferplus_model, pair[0], ferplus=pair[1])
    assert result["n"] == 2 and result["split"] == "val"
    assert "FER+ majority-vote accuracy (8 classes) on FER+ PublicTest" in result["protocol"]
    assert list(result["per_class"]) == list(FERPLUS_EMOTIONS)
    assert (
        main(["evaluate", str(ferplus_model), "--data", str(pair[0]), "--ferplus", str(pair[1])])
        == 0
    )
    out = capsys.readouterr().out
    assert "FER+ majority-vote accuracy" in out
    assert f"{ferplus_model} (simple_cnn) on val of" in out  # the model as given, its network
    # label sets must match, with the way out named
    with pytest.raises(CheckpointError, match="--ferplus"):
        evaluate(ferplus_model, pair[0])
    with pytest.raises(CheckpointError, match="cannot be scored"):
        evaluate(_checkpoint(tmp_path / "seven.pt", EMOTIONS), pair[0], ferplus=pair[1])


def test_export_calibrates_a_ferplus_model_on_ferplus_labels(pair, tmp_path, capsys):
    """A FER+ model's temperature is fitted on FER+'s majority labels (--ferplus), never on
    FER-2013's 7 (refused, with the way out named), and a 7-class one is refused on FER+'s."""
    import torch

    ferplus_model = _checkpoint(tmp_path / "ferplus.pt", FERPLUS_EMOTIONS)
    out = tmp_path / "calibrated.pt"
    base = ["export", str(ferplus_model), str(out), "--calibrate", "--data", str(pair[0])]
    assert main(base) == 2 and not out.exists()
    assert "it is a FER+ model: score it on FER+ labels (--ferplus" in capsys.readouterr().err
    assert main([*base, "--ferplus", str(pair[1])]) == 0
    assert "on 2 faces" in capsys.readouterr().out  # FER+ PublicTest's majority faces
    meta = torch.load(out, weights_only=True)
    assert meta["temperature"] and meta["extra"]["calibration"]["n"] == 2
    seven = _checkpoint(tmp_path / "seven.pt", EMOTIONS)
    args = ["export", str(seven), str(tmp_path / "s.pt"), "--calibrate", "--data", str(pair[0])]
    assert main([*args, "--ferplus", str(pair[1])]) == 2
    assert "cannot be scored" in capsys.readouterr().err
    assert main(["export", str(seven), str(tmp_path / "s.pt"), "--ferplus", str(pair[1])]) == 2


# --- training ---------------------------------------------------------------------------------
def test_hard_label_weight_mixes_the_majority_into_the_votes():
    soft = np.array([[0.6, 0.4, 0, 0, 0, 0, 0, 0]], np.float32)
    split = Split(np.zeros((1, 48, 48), np.uint8), np.array([0]), soft)
    _, target = FERDataset(split, hard_label_weight=0.5)[0]
    np.testing.assert_allclose(target.numpy(), [0.8, 0.2, 0, 0, 0, 0, 0, 0])
    _, target = FERDataset(split)[0]
    np.testing.assert_allclose(target.numpy(), soft[0])


def test_ferplus_config_keys_are_validated():
    assert load_config(None, {"ferplus": "x.csv", "ferplus_labels": "majority"}).ferplus == "x.csv"
    with pytest.raises(ConfigError, match="unknown ferplus_labels 'soft'"):
        load_config(None, {"ferplus_labels": "soft"})
    with pytest.raises(ConfigError, match=r"hard_label_weight must be in 0\.\.1"):
        load_config(None, {"hard_label_weight": 2})
    # a label mode without the label file would train on FER-2013's labels alone, unsaid
    with pytest.raises(ConfigError, match="'fer2013-votes' needs FER\\+ labels: set ferplus="):
        load_config(None, {"ferplus_labels": "fer2013-votes"})
    # and a weight for votes there are none of (no file, or majority labels) would do nothing
    for keys in ({}, {"ferplus": "x.csv", "ferplus_labels": "majority"}):
        with pytest.raises(ConfigError, match=r"hard_label_weight 0\.5 mixes the label into FER"):
            load_config(None, {**keys, "hard_label_weight": 0.5})
    assert load_config(None, {"ferplus": "x.csv", "hard_label_weight": 0.5}).hard_label_weight


def test_train_on_ferplus_votes_from_a_7_class_checkpoint(tmp_path, caplog):
    """Soft-label training end to end: 8 outputs, FER+ labels in the checkpoint, and a 7-class
    starting point whose classifier is re-initialised while the rest is loaded."""
    rows = ROWS[:8] * 6 + ROWS[8:] * 3  # 48 training rows, 9 PublicTest rows
    pixels = write_pixels(tmp_path / "fer2013.csv", [r[0] for r in rows])
    labels = write_ferplus(tmp_path / "fer2013new.csv", rows)
    start = _checkpoint(tmp_path / "seven.pt", EMOTIONS)
    run = tmp_path / "run"
    with caplog.at_level(logging.WARNING):
        assert (
            main(
                [
                    "train",
                    "--arch",
                    "simple_cnn",
                    "--data",
                    str(pixels),
                    "--out",
                    str(run),
                    "--epochs",
                    "1",
                    "--batch-size",
                    "8",
                    "--no-progress",
                    "--set",
                    f"ferplus={labels}",
                    "--set",
                    f"pretrained={start}",
                    "--set",
                    "hard_label_weight=0.2",
                    "--set",
                    "jpeg=0.5",
                    "--set",
                    "autocontrast=0.5",
                ]
            )
            == 0
        )
    assert "7-class classifier; head re-initialised for 8 classes" in caplog.text
    model, meta = load_checkpoint(run / "best.pt")
    assert meta["labels"] == list(FERPLUS_EMOTIONS) and meta["num_classes"] == 8
    assert json.loads((run / "summary.json").read_text())["val_n"] == 6  # 3 x 2 with a majority
    # the body came from the 7-class checkpoint: its first convolution trained from there
    seven, _ = load_checkpoint(start)
    first = next(k for k, v in seven.state_dict().items() if v.ndim == 4)
    assert torch.allclose(seven.state_dict()[first], model.state_dict()[first], atol=0.05)


def test_train_on_fer2013_labels_with_ferplus_votes(tmp_path):
    """fer2013-votes: 7 outputs, FER-2013 labels in the checkpoint, validated on all faces."""
    rows = ROWS[:8] * 6 + ROWS[8:] * 3
    pixels = write_pixels(tmp_path / "fer2013.csv", [r[0] for r in rows])
    labels = write_ferplus(tmp_path / "fer2013new.csv", rows)
    run = tmp_path / "run"
    args = ["train", "--arch", "simple_cnn", "--data", str(pixels), "--out", str(run)]
    args += ["--epochs", "1", "--batch-size", "8", "--no-progress", "--set", f"ferplus={labels}"]
    assert (
        main([*args, "--set", "ferplus_labels=fer2013-votes", "--set", "hard_label_weight=0.5"])
        == 0
    )
    _, meta = load_checkpoint(run / "best.pt")
    assert meta["labels"] == list(EMOTIONS) and meta["num_classes"] == 7
    assert json.loads((run / "summary.json").read_text())["val_n"] == 9  # every PublicTest row
    assert main(["report", str(run)]) == 0  # scored as validated: FER-2013's labels
    assert json.loads((run / "eval_val.json").read_text())["n"] == 9


def test_pretrained_refuses_other_mismatches(tmp_path):
    start = _checkpoint(tmp_path / "seven.pt", EMOTIONS)
    model = create_model("simple_cnn", num_classes=8, pretrained=start)
    assert model.head.out_features == 8
    with pytest.raises(CheckpointError, match="do not fit"):
        create_model("simple_cnn", num_classes=8, pretrained=start, batch_norm=True)


# --- the real data ----------------------------------------------------------------------------
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.mark.shared_data
def test_shared_ferplus_counts():
    pixels = SHARED / "fer2013-csv" / "fer2013.csv.gz"
    labels = SHARED / "ferplus" / "fer2013new.csv.gz"
    if not (pixels.exists() and labels.exists()):
        pytest.skip(f"{pixels} or {labels} is absent")
    data = load_dataset(pixels, ferplus=labels, ferplus_labels="majority")
    assert len(data["train"]) == 25_060 and len(data["val"]) == 3_199
    assert data["val"].class_counts(FERPLUS_EMOTIONS)["contempt"] == 13
    votes = load_dataset(pixels, ferplus=labels)
    assert len(votes["train"]) == 27_956 and len(votes["val"]) == 3_199
