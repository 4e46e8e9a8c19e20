"""The data layer: labels, CSV and folder parsers, split rules, cache, bad input, CLI."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import face, write_class_folders, write_fer_csv
from ferkit.cli import main
from ferkit.data import cache, load_dataset
from ferkit.data.cache import entry_dir
from ferkit.errors import DataError
from ferkit.labels import EMOTIONS, FERPLUS_EMOTIONS, canonical, label_index, map_class_names


# --- labels -----------------------------------------------------------------------------------
def test_emotions_in_fer2013_order():
    assert EMOTIONS == ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")


@pytest.mark.parametrize(
    "name, expected",
    [
        ("anger", "angry"),
        ("Angry", "angry"),
        ("SADNESS", "sad"),
        ("happiness", "happy"),
        ("surprised", "surprise"),
        ("Fearful", "fear"),
        ("disgusted", "disgust"),
        (" neutral ", "neutral"),
        ("3_happy", "happy"),
        ("contempt", "contempt"),
        ("unknown", None),
    ],
)
def test_alias_map(name, expected):
    assert canonical(name) == expected


def test_contempt_is_a_ferplus_class_only():
    assert label_index("contempt") is None  # FER-2013's 7 classes have none
    assert label_index("contempt", FERPLUS_EMOTIONS) == 7
    assert FERPLUS_EMOTIONS[:7] == EMOTIONS  # index i is the same emotion in both sets


def test_model_labels_must_match_names_and_order():
    from ferkit.errors import CheckpointError
    from ferkit.labels import check_model_labels

    check_model_labels(list(EMOTIONS), EMOTIONS, model="m.pt", against="x", then="y")
    swapped = [EMOTIONS[1], EMOTIONS[0], *EMOTIONS[2:]]
    for labels in (swapped, None, FERPLUS_EMOTIONS):
        with pytest.raises(
            CheckpointError, match=r"^m\.pt predicts \[.*\], but the data is .*; y$"
        ):
            check_model_labels(labels, EMOTIONS, model="m.pt", against="the data is", then="y")


def test_unknown_class_folder_warns_or_refuses(caplog):
    assert map_class_names(["happy", "contempt"]) == {"happy": 3}
    assert "contempt" in caplog.text
    with pytest.raises(DataError, match="contempt"):
        map_class_names(["happy", "contempt"], strict=True)


# --- CSV --------------------------------------------------------------------------------------
def test_csv_splits_by_usage(fer_csv):
    data = load_dataset(fer_csv)
    assert data.kind == "csv"
    assert {k: len(v) for k, v in data.splits.items()} == {"train": 21, "val": 7, "test": 7}
    assert data["train"].images.shape == (21, 48, 48) and data["train"].images.dtype == np.uint8
    assert data["val"].class_counts() == dict.fromkeys(EMOTIONS, 1)
    np.testing.assert_array_equal(data["train"].images[0], face(0))  # row 1: label 0, seed 0


def test_a_model_is_scored_on_val_then_test_then_all_never_train_unasked(fer_csv, tmp_path):
    from ferkit.data import Split, validation_faces

    data = load_dataset(fer_csv)
    assert data.scoring_split() == "val" and data.scoring_split("train") == "train"
    data.splits["val"] = Split(data["val"].images[:0], data["val"].labels[:0])
    assert data.scoring_split() == "test"
    with pytest.raises(DataError, match=r"split 'val' is empty or absent \(splits: train \(21\)"):
        data.scoring_split("val")
    faces, labels = validation_faces(fer_csv, limit=3)
    assert faces.shape == (3, 48, 48) and len(labels) == 3  # from val's 7
    train_only = write_fer_csv(tmp_path / "t.csv", [(i % 7, face(i), "Training") for i in range(7)])
    with pytest.raises(DataError, match=r"no val, test or unsplit images.*train \(7\)"):
        validation_faces(train_only)


def test_csv_columns_by_name_and_without_usage(tmp_path):
    rows = [(face(i), EMOTIONS[i % 7]) for i in range(14)]  # names instead of indices
    path = write_fer_csv(tmp_path / "x.csv", rows, header=("pixels", "Emotion"))
    data = load_dataset(path)
    assert list(data.splits) == ["all"]
    assert data["all"].class_counts() == dict.fromkeys(EMOTIONS, 2)


def test_csv_other_resolution_is_resized(tmp_path):
    path = write_fer_csv(tmp_path / "big.csv", [(3, face(1, 64), "Training")])
    data = load_dataset(path)
    assert data.resized == 1 and data["train"].images.shape == (1, 48, 48)


@pytest.mark.parametrize(
    "pixels, label, usage, message",
    [
        (" ".join(["1"] * 2303), 0, "Training", "2303 pixels"),
        (" ".join(["1"] * 2303 + ["x"]), 0, "Training", "'x' is not an integer"),
        (" ".join(["1"] * 2303 + ["300"]), 0, "Training", "0-255"),
        (" ".join(["1"] * 2304), 7, "Training", "label 7 outside 0-6"),
        (" ".join(["1"] * 2304), 0, "Validation", "unknown Usage 'Validation'"),
    ],
)
def test_csv_bad_row_names_file_and_line(tmp_path, pixels, label, usage, message):
    rows = [(0, face(0), "Training"), (label, pixels, usage), (1, face(1), "Training")]
    path = write_fer_csv(tmp_path / "bad.csv", rows)
    with pytest.raises(DataError, match="line 3") as exc:
        load_dataset(path)
    assert message in str(exc.value) and "bad.csv" in str(exc.value)
    data = load_dataset(path, skip_bad=True)
    assert (
        len(data["train"]) == 2 and len(data.skipped) == 1 and "bad.csv, line 3:" in data.skipped[0]
    )


def test_csv_without_needed_columns(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("label,image\n0,1 2 3\n")
    with pytest.raises(DataError, match="no column named emotion or pixels"):
        load_dataset(path)


# --- folders ----------------------------------------------------------------------------------
def test_msambare_prefix_rules(msambare):
    data = load_dataset(msambare)
    assert data.kind == "msambare"
    assert {k: len(v) for k, v in data.splits.items()} == {"train": 21, "val": 14, "test": 7}
    assert not data.notes


def test_msambare_public_test_only_gives_empty_test_with_note(tmp_path):
    root = tmp_path / "fer"
    write_class_folders(root / "train", dict.fromkeys(EMOTIONS, 2), prefix="Training")
    write_class_folders(root / "test", dict.fromkeys(EMOTIONS, 1), prefix="PublicTest")
    data = load_dataset(root)
    assert (len(data["val"]), len(data["test"])) == (7, 0)
    assert any("only PublicTest" in n for n in data.notes)


def test_train_validation_layout_with_aliases(tmp_path):
    names = ["Anger", "Disgust", "Fear", "Happiness", "Sadness", "Surprised", "Neutral"]
    write_class_folders(tmp_path / "Train", dict.fromkeys(names, 2))
    write_class_folders(tmp_path / "validation", dict.fromkeys(names, 1), ext="png")
    data = load_dataset(tmp_path)
    assert data.kind == "train_validation"
    assert data["train"].class_counts() == dict.fromkeys(EMOTIONS, 2)
    assert len(data["val"]) == 7 and len(data["test"]) == 0


def test_class_folders_any_size_and_mode_are_gray_48(tmp_path):
    (tmp_path / "happy").mkdir()
    Image.new("RGB", (100, 80), (200, 10, 10)).save(tmp_path / "happy" / "a.png")
    Image.new("RGBA", (48, 48), (0, 0, 0, 0)).save(tmp_path / "happy" / "b.png")
    Image.fromarray(np.full((48, 48), 40000, np.uint16)).save(tmp_path / "happy" / "c.png")
    write_class_folders(tmp_path, {"contempt": 2})
    data = load_dataset(tmp_path)
    assert data.kind == "class_folders" and len(data["all"]) == 3 and data.resized == 1
    assert data["all"].images.shape == (3, 48, 48)
    assert data.ignored_classes == [f"{tmp_path.name}/contempt"]
    assert data["all"].images[1].min() == 255  # transparent -> white background
    with pytest.raises(DataError, match="contempt"):
        load_dataset(tmp_path, strict=True)


def test_bad_images_named_or_skipped(tmp_path):
    write_class_folders(tmp_path, {"happy": 2, "sad": 2})
    (tmp_path / "sad" / "notes.jpg").write_text("not an image")
    good = tmp_path / "happy" / "img_0.jpg"
    (tmp_path / "happy" / "cut.jpg").write_bytes(good.read_bytes()[:200])
    with pytest.raises(DataError) as exc:
        load_dataset(tmp_path)
    assert "notes.jpg" in str(exc.value) and "cut.jpg" in str(exc.value)
    data = load_dataset(tmp_path, skip_bad=True)
    assert len(data["all"]) == 4 and len(data.skipped) == 2


def test_linked_folders_are_read_and_watched_broken_links_named(tmp_path, caplog):
    """A class folder extended by a link to more faces elsewhere: they are read (os.walk
    skipped them unsaid), a change to one of them refreshes the cache, and a link to a
    missing image is a warning naming it, not a crash of the fingerprint."""
    data = write_class_folders(tmp_path / "data", {"happy": 2, "sad": 2})
    more = write_class_folders(tmp_path / "more", {"sad": 3}, seed=7) / "sad"
    (data / "sad" / "more").symlink_to(more, target_is_directory=True)
    (data / "sad" / "loop").symlink_to(data, target_is_directory=True)
    (data / "happy" / "gone.jpg").symlink_to(tmp_path / "unmounted.jpg")
    first = load_dataset(data)
    assert first["all"].labels.tolist().count(EMOTIONS.index("sad")) == 5
    assert "happy/gone.jpg: a broken link" in caplog.text
    assert load_dataset(data).from_cache
    Image.fromarray(np.zeros((48, 48), np.uint8)).save(more / "img_0.jpg")
    os.utime(more / "img_0.jpg", ns=(time.time_ns(), time.time_ns() + 10**9))
    assert not load_dataset(data).from_cache  # a linked file changed: decoded again


def test_other_files_in_class_folders_are_counted_by_kind(tmp_path):
    """A RAW photo or a notes file among the faces is not read, and is said to be skipped."""
    data = write_class_folders(tmp_path / "data", {"happy": 2, "sad": 2})
    (data / "happy" / "IMG_1.dng").write_bytes(b"raw")
    (data / "sad" / "notes.txt").write_text("from the shoot")
    (data / "sad" / ".DS_Store").write_bytes(b"")  # hidden: not worth a word
    notes = load_dataset(data).notes
    assert notes == ["2 other file(s) skipped (.dng, .txt) in the class folders: not images"]


def test_folders_that_differ_only_in_case(tmp_path):
    """Happy/ beside happy/ (two sources merged) lost Happy/'s faces unsaid: both are read,
    as one class, the way aliases are; train/ beside Train/ is an ambiguous layout, refused."""
    data = write_class_folders(tmp_path / "data", {"happy": 2, "sad": 2})
    write_class_folders(tmp_path / "data", {"Happy": 3}, prefix="other", seed=9)
    labels = load_dataset(data)["all"].labels.tolist()
    assert labels.count(EMOTIONS.index("happy")) == 5 and len(labels) == 7
    splits = tmp_path / "splits"
    write_class_folders(splits / "train", {"happy": 2})
    write_class_folders(splits / "Train", {"happy": 2})
    write_class_folders(splits / "test", {"happy": 2})
    with pytest.raises(DataError, match="Train/ and train/ differ only in case"):
        load_dataset(splits)


@pytest.mark.parametrize(
    "setup, message",
    [
        (lambda p: None, "no such file or folder"),
        (lambda p: p.mkdir(), "holds nothing"),
        (lambda p: (p.mkdir(), (p / "a.jpg").write_bytes(b"x")), "only files"),
        (lambda p: [(p / n).mkdir(parents=True) for n in ("cats", "dogs")], "maps to an emotion"),
        (lambda p: [(p / n).mkdir(parents=True) for n in ("happy", "sad")], "hold no images"),
        (lambda p: (p.mkdir(), (p / "x.txt").write_text("hi")), "only files"),
    ],
)
def test_bad_sources_say_what_was_expected(tmp_path, setup, message):
    target = tmp_path / "data"
    setup(target)
    with pytest.raises(DataError, match=message):
        load_dataset(target)


def test_not_a_data_file(tmp_path):
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(DataError, match="not a data set"):
        load_dataset(tmp_path / "x.txt")


# --- cache ------------------------------------------------------------------------------------
def test_cache_hit_and_rebuild_on_change(msambare):
    before = sorted(p for p in msambare.rglob("*"))
    first = load_dataset(msambare)
    assert not first.from_cache
    second = load_dataset(msambare)
    assert second.from_cache and isinstance(second["train"].images, np.memmap)
    np.testing.assert_array_equal(first["train"].images, second["train"].images)
    assert json.loads((entry_dir(msambare, 48) / "manifest.json").read_text())["counts"]
    assert sorted(p for p in msambare.rglob("*")) == before  # nothing written into the data

    target = msambare / "train" / "happy" / "Training_0.jpg"
    Image.fromarray(np.zeros((48, 48), np.uint8)).save(target)
    os.utime(target, ns=(time.time_ns(), time.time_ns() + 10**9))
    third = load_dataset(msambare)
    assert not third.from_cache
    assert not np.array_equal(third["train"].images, first["train"].images)
    (msambare / "train" / "happy" / "Training_1.jpg").unlink()
    assert len(load_dataset(msambare)["train"]) == 20


def test_cache_written_by_other_code_is_rebuilt(msambare, monkeypatch):
    load_dataset(msambare)
    assert load_dataset(msambare).from_cache
    manifest = entry_dir(msambare, 48) / "manifest.json"
    assert json.loads(manifest.read_text())["code"] == cache.code_fingerprint()
    monkeypatch.setattr(cache, "code_fingerprint", lambda: "another ferkit")
    assert not load_dataset(msambare).from_cache  # decoded again, and the entry replaced
    assert json.loads(manifest.read_text())["code"] == "another ferkit"
    assert load_dataset(msambare).from_cache


def test_cached_load_keeps_bad_input_rules(tmp_path):
    write_class_folders(tmp_path, {"happy": 2, "contempt": 1})
    (tmp_path / "happy" / "bad.png").write_bytes(b"broken")
    load_dataset(tmp_path, skip_bad=True)  # builds the cache
    with pytest.raises(DataError, match=r"bad\.png"):
        load_dataset(tmp_path)
    with pytest.raises(DataError, match="contempt"):
        load_dataset(tmp_path, skip_bad=True, strict=True)


# --- CLI --------------------------------------------------------------------------------------
def test_cli_info_json(msambare, capsys):
    assert main(["data", "info", str(msambare), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["splits"]["train"]["n"] == 21 and info["image_size"] == [48, 48]
    assert info["splits"]["val"]["classes"]["happy"] == 2


def test_cli_convert_json(msambare, tmp_path, capsys):
    out = tmp_path / "faces"
    assert main(["data", "convert", str(msambare), str(out), "--format", "folder", "--json"]) == 0
    said = capsys.readouterr()
    doc = json.loads(said.out)
    assert doc["faces"] == {"train": 21, "val": 14, "test": 7} and doc["out"] == str(out)
    assert f"wrote 42 PNG faces to {out}" in said.err


def test_cli_info_table(fer_csv, capsys):
    assert main(["data", "info", str(fer_csv)]) == 0
    out = capsys.readouterr().out
    assert "layout: csv" in out and "disgust" in out


def test_cli_bad_input_one_line_exit_2(tmp_path, capsys):
    assert main(["data", "info", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no such file or folder" in err[0] and "Traceback" not in err[0]


def test_cli_convert_npy_and_csv_round_trip(msambare, tmp_path, capsys):
    out = tmp_path / "arrays"
    assert main(["data", "convert", str(msambare), "--format", "npy", str(out)]) == 0
    assert np.load(out / "train_images.npy").shape == (21, 48, 48)
    assert sorted(np.load(out / "val_labels.npy").tolist()) == sorted([*range(7)] * 2)
    assert main(["data", "convert", str(msambare), "--to", "npy", str(out)]) == 2  # old spelling
    assert "--overwrite" in capsys.readouterr().err
    csv_path = tmp_path / "fer2013.csv"
    assert main(["data", "convert", str(msambare), "--format", "csv", str(csv_path)]) == 0
    back = load_dataset(csv_path)
    original = load_dataset(msambare)
    for name in ("train", "val", "test"):
        np.testing.assert_array_equal(back[name].images, original[name].images)
        np.testing.assert_array_equal(back[name].labels, original[name].labels)


def test_convert_to_png_class_folders_reads_back_the_same_faces(fer_csv, tmp_path, capsys):
    out = tmp_path / "faces"
    out.mkdir()  # new or empty: both fine
    assert main(["data", "convert", str(fer_csv), "--format", "folder", str(out)]) == 0
    assert f"wrote 35 PNG faces to {out} (train 21, val 7, test 7)" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["test", "train", "val"]
    original, back = load_dataset(fer_csv), load_dataset(out)
    for name in ("train", "val", "test"):
        for label in range(7):  # lossless, and in the source's order within a class
            np.testing.assert_array_equal(
                back[name].images[back[name].labels == label],
                original[name].images[original[name].labels == label],
            )
    from torchvision.datasets import ImageFolder

    assert len(ImageFolder(out / "train")) == 21 and len(ImageFolder(out / "val").classes) == 7
    # fewer splits: the split folders it has, read back as the same splits
    for usages in (["Training"], ["PublicTest", "PrivateTest"]):
        rows = [(y, face(y), u) for y in range(7) for u in usages]
        some = write_fer_csv(tmp_path / f"{len(usages)}.csv", rows)
        assert (
            main(["data", "convert", str(some), "--format", "folder", str(tmp_path / usages[0])])
            == 0
        )
        back = load_dataset(tmp_path / usages[0])
        assert {n for n, s in back.splits.items() if len(s)} == {
            {"Training": "train", "PublicTest": "val", "PrivateTest": "test"}[u] for u in usages
        }


def test_convert_to_folders_never_merges_into_or_half_writes_a_folder(
    msambare, tmp_path, capsys, monkeypatch
):
    out = tmp_path / "faces"
    out.mkdir()
    (out / "mine.txt").write_text("keep")
    assert main(["data", "convert", str(msambare), "--format", "folder", str(out)]) == 2
    assert "faces: is a folder with files in it" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["mine.txt"]
    # a write that fails part-way (the disk full at the sixth face) leaves neither the folder
    # nor a hidden partial one, and names the face; cv2.imwrite said True on a full disk and
    # left empty files ("wrote 800 PNG faces", 775 of them 0 bytes)
    import errno

    real_write, calls = Path.write_bytes, []

    def full_at_the_sixth(self, data):
        calls.append(self)
        if len(calls) == 6:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(self, data)

    monkeypatch.setattr(Path, "write_bytes", full_at_the_sixth)
    assert (
        main(["data", "convert", str(msambare), "--format", "folder", str(tmp_path / "new")]) == 2
    )
    assert f"{tmp_path / 'new'}/train/" in (err := capsys.readouterr().err)
    assert ".png: cannot be written, the disk is full; free some space and run it again" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["faces", "fer2013"]
    monkeypatch.undo()
    # a source without splits: class folders at the top, as it came
    flat = write_class_folders(tmp_path / "flat", {"happy": 2, "sad": 1})
    assert main(["data", "convert", str(flat), "--format", "folder", str(tmp_path / "f")]) == 0
    assert sorted(p.name for p in (tmp_path / "f").iterdir()) == ["happy", "sad"]
    assert len(load_dataset(tmp_path / "f")["all"]) == 3


# --- the real data ----------------------------------------------------------------------------
@pytest.mark.shared_data
def test_shared_fer2013_counts(shared_fer):
    data = load_dataset(shared_fer)
    assert len(data["train"]) == 28_709 and len(data["val"]) == 3_589 and len(data["test"]) == 0
    assert data["train"].class_counts() == {
        "angry": 3995,
        "disgust": 436,
        "fear": 4097,
        "happy": 7215,
        "sad": 4830,
        "surprise": 3171,
        "neutral": 4965,
    }
    assert data.resized == 0 and not data.skipped


def test_class_folders_too_small_to_hold_out_a_val_split_are_refused(tmp_path):
    from ferkit.data.dataset import FERDataModule

    root = write_class_folders(tmp_path / "faces", {"happy": 1, "sad": 1})
    with pytest.raises(DataError, match=r"faces: 2 training image\(s\) and no class with two"):
        FERDataModule(root).setup()


def test_emotions_without_training_images_are_named(tmp_path, caplog):
    from ferkit.data.dataset import FERDataModule

    root = write_class_folders(tmp_path / "faces", {"happy": 4, "sad": 4})
    module = FERDataModule(root)
    module.setup()
    assert len(module.splits["val"]) == 2
    assert "no training images of angry, disgust, fear, surprise, neutral (5 of 7" in caplog.text


def test_convert_takes_its_format_from_the_output_name(msambare, tmp_path, capsys):
    """OUT.csv: csv; OUT.csv.gz: gzip-compressed csv, read back as the original is; a folder:
    npy; a --format that contradicts the name is refused before anything is read."""
    original = load_dataset(msambare)
    for name in ("faces.csv", "faces.csv.gz"):
        assert main(["data", "convert", str(msambare), str(tmp_path / name)]) == 0
        back = load_dataset(tmp_path / name)
        np.testing.assert_array_equal(back["train"].images, original["train"].images)
    assert (tmp_path / "faces.csv.gz").read_bytes()[:2] == b"\x1f\x8b"  # gzip's magic
    assert main(["data", "convert", str(msambare), str(tmp_path / "arrays")]) == 0
    assert (tmp_path / "arrays" / "train_images.npy").is_file()
    capsys.readouterr()
    assert main(["data", "convert", str(msambare), "--format", "npy", str(tmp_path / "x.csv")]) == 2
    assert "x.csv: --format npy writes a folder" in capsys.readouterr().err
    assert main(["data", "convert", str(msambare), "--format", "folder", str(tmp_path / "x.csv")])
    assert "x.csv: --format folder writes a folder" in capsys.readouterr().err
    assert main(["data", "convert", str(msambare), "--format", "csv", str(tmp_path / "x")]) == 2
    assert "x: name the CSV file .csv (or .csv.gz" in capsys.readouterr().err
    assert not (tmp_path / "x").exists() and not (tmp_path / "x.csv").exists()


def test_extra_train_sources_join_the_training_faces_only(fer_csv, msambare, tmp_path):
    """The CSV's 21 Training faces plus msambare's 21 train/ faces; validation and test stay
    the CSV's (its 7 PublicTest and 7 PrivateTest rows), msambare's test/ is not used."""
    from ferkit.data.dataset import FERDataModule

    module = FERDataModule(str(fer_csv), extra_train=[str(msambare)])
    module.setup()
    csv, folders = load_dataset(fer_csv), load_dataset(msambare)
    train = module.splits["train"]
    np.testing.assert_array_equal(
        train.images, np.concatenate([csv["train"].images, folders["train"].images])
    )
    assert train.labels.tolist() == csv["train"].labels.tolist() + folders["train"].labels.tolist()
    np.testing.assert_array_equal(module.splits["val"].images, csv["val"].images)
    assert len(module.splits["test"]) == len(csv["test"]) == 7


def test_extra_val_sources_are_validated_after_data(fer_csv, msambare, tmp_path):
    """`extra_val`: msambare's 14 PublicTest files are a second validation loader after the
    CSV's 7 PublicTest rows; training and test stay the CSV's. A source without a val split
    is refused with the splits it has."""
    from torch.utils.data import DataLoader

    from ferkit.data.dataset import FERDataModule

    module = FERDataModule(str(fer_csv), extra_val=str(msambare))
    module.setup()
    csv, folders = load_dataset(fer_csv), load_dataset(msambare)
    first, second = module.val_dataloader()
    np.testing.assert_array_equal(first.dataset.images, csv["val"].images)
    np.testing.assert_array_equal(second.dataset.images, folders["val"].images)
    assert len(module.splits["train"]) == 21 and len(module.splits["test"]) == 7
    alone = FERDataModule(str(fer_csv))
    alone.setup()
    assert isinstance(alone.val_dataloader(), DataLoader)  # one source: one loader, as before
    train_only = write_fer_csv(tmp_path / "train_only.csv", [(0, face(1), "Training")])
    with pytest.raises(
        DataError, match=r"extra_val .*train_only.csv: no validation faces .*; its splits: train$"
    ):
        FERDataModule(str(fer_csv), extra_val=[str(train_only)]).setup()


def test_extra_train_must_share_the_labels(fer_csv, tmp_path):
    """FER+ data (8 classes) with FER-2013 faces (7): refused; so is a source without any
    training face."""
    from ferkit.data.dataset import FERDataModule
    from test_ferplus import ROWS, write_ferplus, write_pixels

    pixels = write_pixels(tmp_path / "p.csv", [r[0] for r in ROWS])
    votes = write_ferplus(tmp_path / "fer2013new.csv")
    ferplus = FERDataModule(str(pixels), ferplus=str(votes), extra_train=[str(fer_csv)])
    with pytest.raises(DataError, match=r"extra_train .*fer2013.csv: its labels \(angry"):
        ferplus.setup()
    empty = write_fer_csv(tmp_path / "only_val.csv", [(0, face(1), "PublicTest")])
    with pytest.raises(DataError, match=r"extra_train .*only_val.csv: no training faces"):
        FERDataModule(str(fer_csv), extra_train=[str(empty)]).setup()
    with pytest.raises(DataError, match=r"^extra_train: .*nope: no such file or folder"):
        FERDataModule(str(fer_csv), extra_train=[str(tmp_path / "nope")]).setup()


def test_a_cache_that_cannot_be_written_is_a_warning_not_a_failure(tmp_path, monkeypatch, caplog):
    """The cache only saves decoding time: a full disk or a read-only home stopped every
    command that reads data ("Not enough free space to write 66145536 bytes", "read-only file
    system") after the data had been read. Now the data is used, and a warning says why the
    cache was not written."""
    data = write_fer_csv(tmp_path / "fer.csv", [(3, face(i), "Training") for i in range(4)])
    afile = tmp_path / "afile"
    afile.write_text("")
    monkeypatch.setenv("FERKIT_CACHE", str(afile / "cache"))  # a file where its folder goes
    assert len(load_dataset(data).splits["train"]) == 4
    assert "the data cache cannot be written" in caplog.text
    assert f"{afile / 'cache'}" in caplog.text
    assert main(["data", "info", str(data)]) == 0


def test_files_bad_for_one_reason_say_it_once(tmp_path):
    """Class folders of HEIC photos without the extra, or of empty downloads, gave the same
    reason after every name ("a: empty file (0 bytes); b: empty file (0 bytes); ..."); one
    reason shared is said once, after the names; different reasons are listed each."""
    root = write_class_folders(tmp_path / "faces", {"happy": 2, "sad": 2})
    for i in range(4):
        (root / "sad" / f"empty_{i}.png").write_bytes(b"")
    with pytest.raises(DataError) as caught:
        load_dataset(root, use_cache=False)
    message = str(caught.value)
    assert message.count("empty file (0 bytes)") == 1
    assert (
        "empty_0.png, " in message and "and 1 more: empty file (0 bytes) (use --skip-bad" in message
    )
    (root / "sad" / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    with pytest.raises(DataError, match=r"; .*; .* and 2 more \(use --skip-bad"):
        load_dataset(root, use_cache=False)
