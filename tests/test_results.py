"""`Result`: one object per image, and every output (JSON, rows, CSV, DataFrame, drawing, text)
made from it; `top_emotion`; `ferkit predict`'s summary line and its hint for face crops."""

from __future__ import annotations

import csv
import io
import json
import re
import sys

import cv2
import numpy as np
import pytest
from PIL import Image

from conftest import ASTRONAUT
from ferkit.cli import main
from ferkit.errors import FerkitError
from ferkit.inference import EmotionRecognizer
from ferkit.inference.results import Result, columns
from ferkit.labels import EMOTIONS


@pytest.fixture(scope="module")
def rec(checkpoint):
    return EmotionRecognizer(checkpoint)


@pytest.fixture(scope="module")
def result(rec) -> Result:
    return rec.predict(ASTRONAUT)


def test_one_result_per_image_and_a_list_for_a_list(rec, result):
    assert isinstance(result, Result)
    assert result.source == str(ASTRONAUT) and result.size == (512, 512)
    assert len(result) == 1 and result[0] is result.faces[0] and list(result) == result.faces
    both = rec.predict([ASTRONAUT, np.full((100, 100, 3), 90, np.uint8)])
    assert [type(r) for r in both] == [Result, Result] and [len(r) for r in both] == [1, 0]
    assert both[1].source == "<array>" and both[1].size == (100, 100)
    assert set(result.timings) == {"decode", "detect", "classify"}
    assert all(v >= 0 for v in result.timings.values()) and result.timings["classify"] > 0


def test_to_dict_and_json(result):
    d = result.to_dict()
    assert list(d) == ["file", "image", "faces", "timing_ms"]
    assert d["image"] == {"width": 512, "height": 512}
    assert d["faces"] == [result[0].to_dict(4)]
    assert json.loads(result.to_json()) == json.loads(json.dumps(d))


def test_rows_csv_and_dataframe_say_the_same(result, tmp_path):
    (row,) = result.rows()
    assert list(row) == columns(EMOTIONS)
    assert (row["face"], row["frame"], row["track"]) == (0, None, None)
    assert (row["x"], row["y"], row["w"], row["h"]) == result[0].box
    assert row["label"] == result[0].label and row[row["label"]] == row["confidence"]
    result.to_csv(tmp_path / "r.csv")
    (written,) = list(csv.DictReader((tmp_path / "r.csv").open()))
    assert written["frame"] == "" and float(written["happy"]) == pytest.approx(row["happy"], 1e-4)
    buffer = io.StringIO()
    result.to_csv(buffer)
    assert buffer.getvalue() == (tmp_path / "r.csv").read_bytes().decode()
    df = result.to_pandas()
    assert list(df.columns) == columns(EMOTIONS) and df.loc[0, "label"] == row["label"]


def test_to_pandas_without_pandas_is_one_clear_error(result, monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(FerkitError, match="pip install pandas"):
        result.to_pandas()


def test_plot_and_save(result, tmp_path):
    drawn = result.plot()
    plain = cv2.imread(str(ASTRONAUT))
    assert drawn.shape == plain.shape and np.abs(drawn.astype(int) - plain).sum() > 0
    out = result.save(tmp_path / "sub" / "a.jpg")
    assert cv2.imread(str(out)).shape == plain.shape
    with pytest.raises(FerkitError, match=r"a\.nope: not an image format ferkit writes"):
        result.save(tmp_path / "a.nope")
    assert not list(tmp_path.glob(".partial*"))


def test_a_full_disk_is_no_wrong_suffix(result, tmp_path, monkeypatch):
    """cv2.imwrite says False both for a suffix it cannot write and for a full disk, and the
    message blamed the suffix ("use .png or .jpg") for a full disk."""
    import errno
    from pathlib import Path

    def full(self, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", full)
    with pytest.raises(FerkitError, match=r"a\.png: cannot be written, the disk is full"):
        result.save(tmp_path / "a.png")
    assert list(tmp_path.iterdir()) == []


def test_short_reprs_and_the_image_in_a_notebook(result):
    top = result[0]
    assert repr(top) == f"Face({top.label} {top.confidence:.1%}, box={tuple(top.box)})"
    shown = f"{top.label} {top.confidence:.1%}"
    assert repr(result) == f"Result({str(ASTRONAUT)!r}, 512x512, 1 face: {shown})"
    png = cv2.imdecode(np.frombuffer(result._repr_png_(), np.uint8), cv2.IMREAD_COLOR)
    np.testing.assert_array_equal(png, result.plot())  # what Jupyter shows


def test_text_is_what_predict_prints(result, capsys, checkpoint):
    assert main(["predict", str(ASTRONAUT), "--model", str(checkpoint)]) == 0
    assert capsys.readouterr().out.startswith(result.text() + "\n")


def test_top_emotion_of_the_largest_face_and_none_without_a_face(rec, result):
    assert rec.top_emotion(ASTRONAUT) == (result[0].label, result[0].confidence)
    assert rec.top_emotion(np.full((240, 320, 3), 128, np.uint8)) is None
    assert rec.top_emotion(np.zeros((2, 2), np.uint8)) is None  # too small: no face, no crash


def test_exif_orientation_is_applied_to_files(rec, tmp_path):
    """A phone photo stored sideways with EXIF 'rotate 90' is read upright, as the server does."""
    upright = Image.open(ASTRONAUT).convert("RGB")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW to display
    path = tmp_path / "phone.jpg"
    upright.rotate(90, expand=True).save(path, quality=95, exif=exif)
    sideways = rec.predict(path)
    assert sideways.size == (512, 512) and len(sideways) == 1
    (x, y, _, _), (ux, uy, _, _) = sideways[0].box, rec.predict(ASTRONAUT)[0].box
    assert abs(x - ux) < 12 and abs(y - uy) < 12


# -- ferkit predict's summary ------------------------------------------------------------


def test_predict_prints_a_summary_and_spots_face_crops(checkpoint, tmp_path, capsys):
    crops = tmp_path / "crops"
    crops.mkdir()
    rng = np.random.default_rng(0)
    for i in range(5):
        Image.fromarray(rng.integers(0, 256, (48, 48), dtype=np.uint8)).save(crops / f"{i}.png")
    assert main(["predict", str(crops), "--model", str(checkpoint), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "5 images, 0 faces, 5 without a face" in out
    assert "like face crops" in out and "--detector none" in out
    # the same crops without detection: a face each, no hint
    code = main(["predict", str(crops), "--model", str(checkpoint), "--detector", "none"])
    out = capsys.readouterr().out
    assert code == 0 and "5 images, 5 faces, 0 without a face" in out and "hint" not in out
    counted = re.search(r"faces by label: (.*)", out)[1]  # the labels of the 5 faces, by count
    assert sum(int(part.split()[1]) for part in counted.split(", ")) == 5


def test_summary_goes_to_stderr_with_json(checkpoint, capsys):
    assert main(["predict", str(ASTRONAUT), "--model", str(checkpoint), "--json"]) == 0
    out, err = capsys.readouterr()
    (doc,) = json.loads(out)
    assert doc["faces"] and "1 image, 1 face, 0 without a face" in err
    no_hint = "like face crops" not in err  # a 512x512 photo is no crop
    assert no_hint


def test_no_crop_hint_when_no_image_was_read(checkpoint, tmp_path, capsys):
    """A corrupt photo: exit 2 naming it, and no hint about 'face crops' among 0 images."""
    broken = tmp_path / "broken.png"
    data = bytearray(ASTRONAUT.read_bytes())
    data[5000:5100] = b"x" * 100  # inside the pixel data: a CRC error
    broken.write_bytes(bytes(data))
    assert main(["predict", str(broken), "--model", str(checkpoint)]) == 2
    out, err = capsys.readouterr()
    assert "broken.png: corrupt or truncated image" in err
    assert "like face crops" not in out + err


def test_summary_counts_the_files_not_read(checkpoint, tmp_path, capsys):
    """Two images and two files that are none: the summary says 2 were not read, exit 2."""
    for name in ("a.png", "b.png"):
        (tmp_path / name).write_bytes(ASTRONAUT.read_bytes())
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "notes.png").write_text("hello")
    code = main(["predict", str(tmp_path), "--model", str(checkpoint), "--no-progress"])
    out, err = capsys.readouterr()
    assert code == 2 and "empty.jpg: empty file" in err and "notes.png" in err
    assert "2 images, 2 faces, 0 without a face; 2 not read (see above)" in out


def test_every_label_of_both_shipped_label_sets_has_its_own_colour():
    """Boxes and bars tell the label at a glance: FER+'s contempt is no second gray."""
    from ferkit.inference.draw import COLORS
    from ferkit.labels import EMOTIONS, FERPLUS_EMOTIONS

    assert set(EMOTIONS) <= set(COLORS) and set(FERPLUS_EMOTIONS) <= set(COLORS)
    assert len(set(COLORS.values())) == len(COLORS)
