"""`ferkit data crop`: faces cut out of a folder of photos, framed as the recognizer frames them."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest
from PIL import Image

from conftest import ASTRONAUT
from ferkit.cli import main
from ferkit.data import load_dataset
from ferkit.data.crop_folder import crop_face_folder
from ferkit.detection.crops import FRAMINGS, Framing
from ferkit.errors import DataError
from ferkit.inference import EmotionRecognizer
from ferkit.inference.tracking import iou

ASTRONAUT_FACE = (178, 63, 90, 113)  # where YuNet finds her face (x, y, w, h)


@pytest.fixture
def photos(tmp_path):
    """An msambare-style tree of photos: faces, a blank image, a corrupt file, a name clash."""
    src = tmp_path / "photos"
    for folder in ("train/happy", "train/sad", "test/happy"):
        (src / folder).mkdir(parents=True)
    shutil.copy(ASTRONAUT, src / "train/happy/a.png")
    Image.open(ASTRONAUT).convert("RGB").save(src / "train/happy/a.jpg", quality=95)
    big = Image.open(ASTRONAUT).convert("RGB").resize((2048, 2048))  # shrunk for detection
    big.save(src / "test/happy/PublicTest_1.jpg", quality=95)
    Image.fromarray(np.full((200, 300), 120, np.uint8)).save(src / "train/sad/blank.png")
    (src / "train/sad/bad.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    return src


def log_rows(out):
    with open(out / "crops.csv", newline="") as f:
        return {row["source"]: row for row in csv.DictReader(f)}


def test_tree_copied_with_one_crop_per_face_and_a_log(photos, tmp_path):
    out = tmp_path / "faces"
    before = sorted(p.relative_to(photos) for p in photos.rglob("*"))
    s = crop_face_folder(photos, out, progress=False)
    assert (s["images"], s["ok"], s["no_face"], s["unreadable"]) == (5, 3, 1, 1)
    assert s["folders"]["train/sad"] == {"ok": 0, "no_face": 1, "unreadable": 1}
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png"))
    assert written == ["test/happy/PublicTest_1.png", "train/happy/a.jpg.png", "train/happy/a.png"]
    for path in out.rglob("*.png"):
        img = Image.open(path)
        assert img.mode == "L" and img.size == (48, 48)
    rows = log_rows(out)
    assert rows["train/sad/blank.png"]["status"] == "no_face"
    assert rows["train/sad/bad.jpg"]["status"] == "unreadable"
    assert "bad.jpg" in rows["train/sad/bad.jpg"]["error"]
    box = [int(rows["train/happy/a.png"][k]) for k in "xywh"]
    assert iou(box, ASTRONAUT_FACE) > 0.8
    big = [int(rows["test/happy/PublicTest_1.jpg"][k]) for k in "xywh"]  # in the file's pixels
    assert iou(big, [v * 4 for v in ASTRONAUT_FACE]) > 0.7
    assert sorted(p.relative_to(photos) for p in photos.rglob("*")) == before  # source untouched
    data = load_dataset(out)  # the Kaggle layout and its PublicTest rule survive
    assert len(data["train"]) == 2 and len(data["val"]) == 1


def test_crops_of_class_folders_read_back_without_a_stray_file_warning(photos, tmp_path, caplog):
    """`ferkit data crop photos/ faces/` then `--data faces/`: its crops.csv beside the class
    folders is its own table, not a stray file; any other file there is still named."""
    out = tmp_path / "faces"
    (photos / "train" / "happy" / "IMG_9.dng").write_bytes(b"raw")  # counted, not cropped
    with caplog.at_level("INFO"):
        crop_face_folder(photos / "train", out, progress=False)  # happy/, sad/ and crops.csv
    assert "train: 1 other file(s) skipped (.dng): not images" in caplog.text
    assert (out / "crops.csv").is_file()
    assert len(load_dataset(out, use_cache=False)["all"]) == 2
    assert "outside class folders" not in caplog.text
    (out / "notes.txt").write_text("mine")
    load_dataset(out, use_cache=False)
    assert "1 file(s) outside class folders ignored (e.g. notes.txt)" in caplog.text


def test_crops_are_what_the_recognizer_classifies(photos, tmp_path, checkpoint):
    out = tmp_path / "faces"
    crop_face_folder(photos, out, progress=False)
    rec = EmotionRecognizer(checkpoint)
    [face] = rec.predict(photos / "train/happy/a.png")
    crop = np.asarray(Image.open(out / "train/happy/a.png"))
    [same] = rec.predict_faces(crop[None])
    np.testing.assert_allclose(list(same.scores.values()), list(face.scores.values()),
                               atol=1e-6)  # fmt: skip
    assert [int(log_rows(out)["train/happy/a.png"][k]) for k in "xywh"] == list(face.box)


def test_size_and_margin(photos, tmp_path):
    out = tmp_path / "faces"
    summary = crop_face_folder(photos, out, size=96, margin=0.3, progress=False)
    assert Image.open(out / "train/happy/a.png").size == (96, 96)
    assert summary["framing"] == Framing.from_margin(0.3).to_dict()


def test_default_framing_is_the_detector_s_fitted_one(photos, tmp_path):
    summary = crop_face_folder(photos, tmp_path / "faces", detector="haar", progress=False)
    assert summary["framing"] == FRAMINGS["haar"].to_dict()


def test_existing_outputs_refused_then_replaced_with_overwrite(photos, tmp_path):
    out = tmp_path / "faces"
    (out / "train/happy").mkdir(parents=True)
    mine = out / "train/happy/a.png"
    mine.write_bytes(b"the user's file")
    with pytest.raises(DataError, match="--overwrite"):
        crop_face_folder(photos, out, progress=False)
    assert mine.read_bytes() == b"the user's file"
    crop_face_folder(photos, out, overwrite=True, progress=False)
    assert Image.open(mine).size == (48, 48)


@pytest.mark.parametrize("where", ["inside", "same", "around"])
def test_output_overlapping_the_source_refused(photos, where):
    out = {"inside": photos / "faces", "same": photos, "around": photos.parent}[where]
    with pytest.raises(DataError, match="outside the source"):
        crop_face_folder(photos, out, progress=False)


def test_interrupted_run_resumes_where_it_stopped(photos, tmp_path, monkeypatch, caplog):
    """Ctrl-C writes the log of the images done; --resume crops only the rest and ends with
    the log and summary of the whole folder, as one uninterrupted run would."""
    import ferkit.data.crop_folder as crop_folder

    out, whole = tmp_path / "faces", tmp_path / "whole"
    expected = crop_face_folder(photos, whole, progress=False, workers=1)
    real, calls = crop_folder._crop_one, []

    def interrupted_at_the_third(*args):
        calls.append(args[0].name)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(crop_folder, "_crop_one", interrupted_at_the_third)
    with pytest.raises(KeyboardInterrupt):
        crop_face_folder(photos, out, progress=False, workers=1)
    assert len(log_rows(out)) == 2 and "interrupted after 2 of 5 images" in caplog.text
    assert "--resume` crops the rest" in caplog.text
    assert main(["data", "crop", str(photos), str(out)]) == 2  # refused: says --resume
    calls.clear()
    monkeypatch.setattr(crop_folder, "_crop_one", lambda *a: calls.append(a[0].name) or real(*a))
    summary = crop_face_folder(photos, out, progress=False, workers=1, resume=True)
    assert len(calls) == 3  # the two logged images were not cropped again
    assert {k: summary[k] for k in ("images", "ok", "no_face", "unreadable", "folders")} == {
        k: expected[k] for k in ("images", "ok", "no_face", "unreadable", "folders")
    }
    assert (out / "crops.csv").read_text() == (whole / "crops.csv").read_text()


def test_resume_refuses_what_it_cannot_continue(photos, tmp_path, capsys):
    out = tmp_path / "faces"
    with pytest.raises(DataError, match="nothing to resume"):
        crop_face_folder(photos, out, progress=False, resume=True)
    crop_face_folder(photos, out, progress=False)
    with pytest.raises(DataError, match="its crops are 48x48; resume with --size 48"):
        crop_face_folder(photos, out, progress=False, resume=True, size=64)
    (out / "crops.csv").write_text("source,status\na.png,melted\n")
    with pytest.raises(DataError, match="not a log that `ferkit data crop` wrote"):
        crop_face_folder(photos, out, progress=False, resume=True)
    assert main(["data", "crop", str(photos), str(out), "--resume", "--overwrite"]) == 2
    assert "not allowed with argument" in capsys.readouterr().err


def test_output_that_is_a_file_refused(photos, tmp_path):
    (tmp_path / "faces").write_text("a file")
    with pytest.raises(DataError, match="must be a folder"):
        crop_face_folder(photos, tmp_path / "faces", progress=False)


def test_missing_or_empty_source(tmp_path):
    with pytest.raises(DataError, match="no such folder"):
        crop_face_folder(tmp_path / "missing", tmp_path / "out", progress=False)
    (tmp_path / "empty/happy").mkdir(parents=True)
    with pytest.raises(DataError, match="no image files"):
        crop_face_folder(tmp_path / "empty", tmp_path / "out", progress=False)


def test_cli_json_and_exit_codes(photos, tmp_path, capsys):
    out = tmp_path / "faces"
    assert main(["data", "crop", str(photos), str(out), "--json"]) == 2  # one unreadable file
    summary = json.loads(capsys.readouterr().out)
    assert summary["ok"] == 3 and summary["log"] == str(out / "crops.csv")
    (photos / "train/sad/bad.jpg").unlink()
    assert main(["data", "crop", str(photos), str(tmp_path / "again")]) == 0
    table = capsys.readouterr().out
    assert "cropped 3 of 4 images" in table and "train/sad" in table
    assert "framing scale 0.91, dx 0, dy 0.01)" in table  # YuNet's, as people read it
    assert f"wrote {tmp_path / 'again' / 'crops.csv'}: every image" in table
    blank = tmp_path / "blank/sad"
    blank.mkdir(parents=True)
    shutil.copy(photos / "train/sad/blank.png", blank)
    assert main(["data", "crop", str(blank.parent), str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no face found in any of the 1 images" in err[0]


def test_a_full_disk_leaves_no_half_crop(photos, tmp_path, monkeypatch, capsys):
    """Crops were written in place, so a disk filling up left a truncated PNG where a crop
    goes, which a rerun with --resume or --overwrite could take for done. Each crop is now
    whole or absent, and the error names it."""
    import errno

    real_save, saves = Image.Image.save, []

    def full_at_the_second(self, fp, *args, **kwargs):
        saves.append(fp)
        if len(saves) == 2:
            with open(fp, "wb") as f:
                f.write(b"\x89PNG\r\n")  # the start of one, as a full disk leaves it
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(self, fp, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "save", full_at_the_second)
    out = tmp_path / "faces"
    assert main(["data", "crop", str(photos), str(out), "--workers", "1"]) == 2
    assert "cannot be written, the disk is full" in capsys.readouterr().err
    monkeypatch.undo()
    written = list(out.rglob("*.png"))
    assert len(written) < 3 and all(Image.open(p).size == (48, 48) for p in written)
    assert not list(out.rglob(".partial*"))
    # the log of what was done is kept, as on Ctrl-C, so --resume crops only the rest
    assert 1 <= len(log_rows(out)) < 5  # (crops.csv of the images done; none written before)
    crop_face_folder(photos, out, progress=False, workers=1, resume=True)
    assert len(log_rows(out)) == 5 and len(list(out.rglob("*.png"))) == 3
