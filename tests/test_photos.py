"""Photos end to end: the framing math that turns a detector box into the model's crop,
`ferkit evaluate --detect` on a tiny folder of photos built here, and photos without a face."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import ASTRONAUT, make_checkpoint
from ferkit.cli import main
from ferkit.detection.crops import FRAMINGS, Framing, crop_faces, framing_for, square_box
from ferkit.errors import ConfigError
from ferkit.evaluation.metrics import classification_metrics
from ferkit.inference import EmotionRecognizer
from ferkit.labels import EMOTIONS, FERPLUS_EMOTIONS


@pytest.mark.parametrize(
    ("box", "framing", "expected"),
    [
        ((100, 100, 50, 50), Framing(), (95, 95, 60, 60)),  # margin 0.1: 1.2 x the side
        ((100, 100, 40, 50), Framing(scale=1.0), (95, 100, 50, 50)),  # the longer side, centred
        ((100, 100, 50, 50), Framing(scale=1.0, dx=0.2, dy=-0.1), (110, 95, 50, 50)),
        ((100, 100, 50, 50), Framing(scale=0.8, dy=0.1), (105, 110, 40, 40)),
        ((0, 0, 50, 50), Framing(scale=2.0), (0, 0, 100, 100)),  # moved inside, not cut
        ((150, 150, 50, 50), Framing(scale=2.0), (100, 100, 100, 100)),
    ],
)
def test_square_box(box, framing, expected):
    assert square_box(box, 200, 200, framing) == expected


def test_square_box_larger_than_the_image_is_clipped():
    assert square_box((10, 10, 80, 80), 100, 60, Framing(scale=2.0)) == (0, 0, 100, 60)


def test_crop_follows_the_framing():
    """A bright square in a dark image: a crop at the box's own size is all bright, a crop of
    twice the box shows the dark ring, and an offset crop shows the square off-centre."""
    gray = np.zeros((200, 200), np.uint8)
    gray[80:120, 80:120] = 255
    box = [(80, 80, 40, 40)]
    tight = crop_faces(gray, box, (48, 48), Framing(scale=1.0))[0]
    wide = crop_faces(gray, box, (48, 48), Framing(scale=2.0))[0]
    right = crop_faces(gray, box, (48, 48), Framing(scale=1.0, dx=0.5))[0]
    assert tight.min() == 255
    assert wide[24, 24] == 255 and wide[2, 2] == 0 and 0.2 < (wide == 255).mean() < 0.3
    assert right[:, :20].min() == 255 and right[:, 28:].max() == 0


def test_fitted_framings_per_detector():
    """Each detector has its own fitted framing; an unknown one gets the plain default."""
    assert set(FRAMINGS) >= {"yunet", "haar"}
    for name, framing in FRAMINGS.items():
        assert framing_for(name) == framing
        assert 0.7 < framing.scale < 1.3 and abs(framing.dx) < 0.1 and abs(framing.dy) < 0.1
    assert framing_for("none") == Framing() and framing_for(None) == Framing()
    assert Framing.from_dict(FRAMINGS["yunet"].to_dict()) == FRAMINGS["yunet"]


def test_a_checkpoint_s_framing_comes_first():
    own = Framing(scale=1.1, dy=0.05)
    meta = {"extra": {"framing": {"yunet": own.to_dict()}}}
    assert framing_for("yunet", meta) == own
    assert framing_for("haar", meta) == FRAMINGS["haar"]  # none of its own for haar
    assert framing_for("haar", {"extra": {"crop_margin": 0.2}}) == Framing(scale=1.4)
    with pytest.raises(ConfigError, match="valid: scale, dx, dy"):
        framing_for("yunet", {"framing": {"yunet": {"scale": 1.0, "zoom": 2}}})


def test_metrics_count_a_missing_prediction_wrong():
    y_true = np.array([0, 0, 1, 1])
    probs = np.eye(2, dtype=np.float32)[[0, 1, 1, 1]]
    m = classification_metrics(y_true, probs, ["a", "b"], y_pred=np.array([0, -1, 1, 1]))
    assert m["accuracy"] == 0.75
    assert m["per_class"]["a"]["accuracy"] == 0.5 and m["per_class"]["b"]["accuracy"] == 1.0
    assert m["confusion_matrix"] == [[1, 0], [0, 2]]  # the miss is in no column
    assert m["confusion_matrix_normalized"][0] == [0.5, 0.0]  # but counts in its row


@pytest.fixture
def photo_folder(tmp_path):
    """photos/happy/astronaut.png (one face) and photos/sad/blank.png (a plain grey image: no
    face); the tests write their outputs beside photos/, never into it."""
    root = tmp_path / "photos"
    (root / "happy").mkdir(parents=True)
    (root / "sad").mkdir()
    cv2.imwrite(str(root / "happy" / "astronaut.png"), cv2.imread(str(ASTRONAUT)))
    cv2.imwrite(str(root / "sad" / "blank.png"), np.full((300, 300, 3), 128, np.uint8))
    return root


def test_photos_scored_as_crops_get_a_hint_to_detect(checkpoint, photo_folder, capsys, caplog):
    assert main(["evaluate", str(checkpoint), "--data", str(photo_folder)]) == 0
    assert "2 of 2 images were not 48x48 and were resized whole" in caplog.text
    assert "score them end to end (`ferkit evaluate --detect`" in caplog.text
    printed = capsys.readouterr().out
    assert re.search(r"angry +acc +- +precision", printed)  # no angry photo: no accuracy


def test_the_grid_shows_each_face_as_the_model_saw_it(checkpoint, photo_folder):
    from ferkit.evaluation.photos import evaluate_photos, face_grid

    rec = EmotionRecognizer(checkpoint)
    scored = evaluate_photos(rec, photo_folder, progress=False, with_probs=True)["scored"]
    crops, y_true, probs = face_grid(rec, scored)
    assert crops.shape == (1, 48, 48) and list(y_true) == [EMOTIONS.index("happy")]
    np.testing.assert_allclose(rec.classify(crops), probs, atol=1e-5)  # the same crop


def test_evaluate_detect_writes_a_row_per_photo(
    checkpoint, photo_folder, tmp_path, capsys, monkeypatch
):
    table = tmp_path / "photos.csv"
    args = ["evaluate", str(checkpoint), "--data", str(photo_folder), "--detect"]
    assert main([*args, "--csv", str(table), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)  # the arrays behind the rows stay out of it
    rows = {Path(r["file"]).name: r for r in csv.DictReader(table.open())}
    face, blank = rows["astronaut.png"], rows["blank.png"]
    assert face["label"] == "happy" and face["predicted"] in EMOTIONS
    assert face["correct"] == str(int(face["predicted"] == "happy"))
    assert abs(sum(float(face[e]) for e in EMOTIONS) - 1) < 1e-3
    assert blank["label"] == "sad" and blank["predicted"] == "" and blank["correct"] == "0"
    assert result["photos"] == 2 and "probs" not in result
    assert main([*args, "--csv", str(table)]) == 2  # an existing table is kept
    assert "--overwrite" in capsys.readouterr().err
    assert main(["evaluate", str(checkpoint), "--data", str(photo_folder), "--csv", "x.csv"]) == 2
    assert "--csv writes one row per photo with --detect" in capsys.readouterr().err
    # `--csv -`: the table alone on stdout, the figures on stderr, no file named "-"
    monkeypatch.chdir(tmp_path)
    assert main([*args, "--csv", "-"]) == 0
    out, err = capsys.readouterr()
    assert sorted(Path(r["file"]).name for r in csv.DictReader(io.StringIO(out))) == [
        "astronaut.png",
        "blank.png",
    ]
    assert "accuracy" in err and not (tmp_path / "-").exists()
    assert main([*args, "--output", "-"]) == 0  # the JSON, as --json prints it
    assert json.loads(capsys.readouterr().out)["photos"] == 2
    assert main([*args, "--csv", "-", "--json"]) == 2
    assert "both print on stdout" in capsys.readouterr().err


def test_evaluate_detect_on_a_photo_folder(checkpoint, photo_folder, tmp_path, capsys):
    args = ["evaluate", str(checkpoint), "--data", str(photo_folder), "--detect"]
    assert main([*args, "--plots", str(tmp_path / "plots")]) == 0
    printed = capsys.readouterr().out
    assert "a face in 1 of 2 photos (50.0%)" in printed and "blank.png" in printed
    drawn = {p.name for p in (tmp_path / "plots").iterdir()}  # the grid: faces as cut
    assert drawn == {"confusion_matrix.png", "per_class_accuracy.png", "predictions.png"}
    assert main([*args, "--json", "--framing", "0.9,0,0.05"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["n"] == r["photos"] == 2 and r["faces_found"] == 1
    assert r["face_found_rate"] == 0.5 and r["no_face"] == [str(photo_folder / "sad/blank.png")]
    assert r["per_class"]["sad"]["accuracy"] == 0.0  # the photo without a face: wrong
    assert r["accuracy"] <= 0.5 and r["ms_per_photo"] > 0
    assert r["labels"] == list(EMOTIONS) and len(r["confusion_matrix"]) == len(EMOTIONS)
    assert "yunet detector (framing scale 0.9, dx 0, dy 0.05)" in r["protocol"]
    for key in ("macro_f1", "loss", "confusion_matrix_normalized", "checkpoint", "arch"):
        assert key in r  # the keys of crop evaluation


def test_evaluate_detect_refuses_what_is_not_a_photo_folder(checkpoint, tmp_path, capsys):
    code = main(["evaluate", str(checkpoint), "--data", str(tmp_path / "nope"), "--detect"])
    assert code == 2
    assert "not a folder" in capsys.readouterr().err
    args = ["evaluate", str(checkpoint), "--data", str(tmp_path), "--detect", "--framing", "1,0"]
    assert main(args) == 2
    assert "SCALE or SCALE,DX,DY" in capsys.readouterr().err


def test_a_photo_without_a_face_gives_no_faces(checkpoint):
    rec = EmotionRecognizer(checkpoint)
    blank = np.full((240, 320, 3), 200, np.uint8)
    assert len(rec.predict(blank)) == 0 and list(rec.predict(blank)) == []
    empty, astronaut = rec.predict([blank, cv2.imread(str(ASTRONAUT))])
    assert len(empty) == 0 and len(astronaut) == 1


def test_the_recognizer_frames_as_its_detector_was_fitted(checkpoint):
    for name in ("yunet", "haar"):
        assert EmotionRecognizer(checkpoint, detector=name).framing == FRAMINGS[name]
    assert EmotionRecognizer(checkpoint, detector="haar", margin=0.0).framing == Framing(1.0)
    assert EmotionRecognizer(checkpoint, detector="none").framing == Framing()


def test_evaluate_detect_scores_an_eight_class_model_on_seven_class_photos(
    tmp_path, photo_folder, capsys
):
    """A FER+ model (contempt last) is scored on the folders' seven labels; a top label the
    folders lack would count as wrong, and the report says how many did."""
    ckpt = make_checkpoint(tmp_path / "ferplus.pt", labels=list(FERPLUS_EMOTIONS))
    assert main(["evaluate", str(ckpt), "--data", str(photo_folder), "--detect", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["labels"] == list(EMOTIONS) and len(r["confusion_matrix"]) == len(EMOTIONS)
    assert r["faces_found"] == 1 and r["outside_labels"] in (0, 1)
    assert r["accuracy"] == (r["per_class"]["happy"]["accuracy"] / 2)
