"""Outputs are never replaced silently, and a failed write leaves the old file whole."""

import os

import pytest

from conftest import ASTRONAUT, face, make_checkpoint, write_fer_csv
from ferkit.cli import main
from ferkit.errors import CheckpointError, DataError, FerkitError
from ferkit.outputs import new_folder_atomically, refuse_existing, replaced_atomically


def test_refuse_existing_names_the_first_few_and_counts_the_rest(tmp_path):
    paths = [tmp_path / f"{i}.png" for i in range(5)]
    refuse_existing(paths)  # none exists yet
    for p in paths:
        p.touch()
    with pytest.raises(DataError) as exc:
        refuse_existing([tmp_path / "new.png", *paths, None])
    msg = str(exc.value)
    assert "0.png" in msg and "2.png" in msg and "3.png" not in msg
    assert "and 2 more already exist; pass --overwrite" in msg and "new.png" not in msg


@pytest.mark.parametrize(
    "argv",
    [
        ["predict", "{photo}", "--annotate", "-"],
        ["predict", "{photo}", "--timeline", "-"],
        ["evaluate", "--data", "{data}", "--plots", "-"],
        ["compare", "{photo}", "--plot", "-"],
        ["data", "convert", "{data}", "-"],
        ["data", "crop", "{data}", "-"],
        ["train", "--data", "{data}", "--out", "-", "--smoke"],
        ["export", "{model}", "-"],
        ["soup", "{model}", "{model}", "--out", "-"],
    ],
    ids=lambda argv: " ".join(a for a in argv if not a.startswith("{")),
)
def test_standard_output_is_no_file_name(tmp_path, monkeypatch, capsys, argv):
    """`-` names stdout: `--csv -` and evaluate's `--output -` print there. Where an output
    is a picture, a model or a folder, `-` made a file or folder named "-" (`predict
    --annotate -`: "wrote -/clip.mp4"); it is refused before any work."""
    monkeypatch.chdir(tmp_path)
    photo = tmp_path / "photo.png"
    photo.write_bytes(ASTRONAUT.read_bytes())
    data = write_fer_csv(tmp_path / "fer.csv", [(3, face(i), "Training") for i in range(4)])
    model = make_checkpoint(tmp_path / "m.pt")
    paths = {"{photo}": str(photo), "{data}": str(data), "{model}": str(model)}
    assert main([paths.get(a, a) for a in argv]) == 2
    err = capsys.readouterr().err
    assert "-: '-' names standard output, which takes text only" in err
    assert not (tmp_path / "-").exists()


def test_refuse_existing_raises_the_callers_error_with_its_hint(tmp_path):
    (tmp_path / "m.pt").touch()
    with pytest.raises(CheckpointError, match=r"m\.pt already exists; use overwrite=True$"):
        refuse_existing([tmp_path / "m.pt"], error=CheckpointError, hint="use overwrite=True")


def test_two_outputs_never_share_a_file(tmp_path, capsys):
    """`evaluate --csv r.json --output r.json`: the scores would replace the table."""
    with pytest.raises(DataError, match=r"a\.csv is named for two outputs of this command"):
        refuse_existing([tmp_path / "a.csv", tmp_path / "b.png", tmp_path / "x" / ".." / "a.csv"])
    model = str(make_checkpoint(tmp_path / "m.pt"))
    data = write_fer_csv(tmp_path / "fer.csv", [(3, face(0), "PublicTest")])
    plots = tmp_path / "plots"
    argv = ["evaluate", model, "--data", str(data), "--plots", str(plots), "--output"]
    assert main([*argv, str(plots / "confusion_matrix.png")]) == 2  # a plot's own name
    assert "confusion_matrix.png is named for two outputs" in capsys.readouterr().err
    assert not plots.exists()
    assert main([*argv, str(tmp_path / "r.json")]) == 0  # apart: fine


def test_overwrite_replaces_files_never_folders(tmp_path):
    (tmp_path / "old.csv").touch()
    refuse_existing([tmp_path / "old.csv"], overwrite=True)  # a file: overwrite allows it
    (tmp_path / "out").mkdir()
    for overwrite in (False, True):
        with pytest.raises(DataError, match=r"out is a folder where a file is to be written"):
            refuse_existing([tmp_path / "old.csv", tmp_path / "out"], overwrite=overwrite)


@pytest.mark.parametrize(
    "argv",
    [
        ["predict", "PHOTO", "--csv", "OUT.csv", "--overwrite"],
        ["export", "MODEL", "OUT.onnx", "--overwrite"],
    ],
    ids=["predict-csv", "export"],
)
def test_a_folder_named_as_an_output_file_is_refused_with_overwrite(tmp_path, argv, capsys):
    """Was `[Errno 21] Is a directory` after the work (exit 1 or 2); the folder stays as it was."""
    name = next(a for a in argv if a.startswith("OUT"))  # a folder named as the file would be
    out = tmp_path / name.replace("OUT", "out")
    (out / "keep").mkdir(parents=True)
    ckpt = make_checkpoint(tmp_path / "m.pt")
    subst = {"PHOTO": str(ASTRONAUT), name: str(out), "MODEL": str(ckpt)}
    argv = [subst.get(a, a) for a in argv]
    if argv[0] == "predict":
        argv += ["--model", str(ckpt)]
    assert main(argv) == 2
    assert f"{out} is a folder where a file is to be written" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["keep"]


@pytest.mark.parametrize(
    "argv",
    [
        ["predict", "DIR/a.png", "--annotate", "DIR", "--overwrite", "--model", "MODEL"],
        ["predict", "DIR/a.png", "--csv", "DIR/a.png", "--overwrite", "--model", "MODEL"],
        ["export", "MODEL", "MODEL", "--half", "--overwrite"],
        ["soup", "MODEL", "OTHER", "--out", "MODEL", "--overwrite"],
        ["export", "LINK", "MODEL", "--overwrite"],  # the same file through a link
        ["evaluate", "MODEL", "--data", "CSV", "--output", "CSV", "--overwrite"],
    ],
    ids=[
        "annotate-into-the-photos",
        "csv-over-a-photo",
        "export",
        "soup",
        "export-link",
        "evaluate-over-the-data",
    ],
)
def test_an_output_never_replaces_an_input_even_with_overwrite(tmp_path, argv, capsys):
    """`ferkit predict photos/ --annotate photos/ --overwrite` drew over the user's own photos;
    exporting or souping a model onto itself replaced it. Refused before any work."""
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "a.png").write_bytes(ASTRONAUT.read_bytes())
    model, other = make_checkpoint(tmp_path / "m.pt"), make_checkpoint(tmp_path / "o.pt", seed=1)
    (tmp_path / "link.pt").symlink_to(model)
    subst = {"DIR": str(photos), "MODEL": str(model), "OTHER": str(other)}
    subst["LINK"] = str(tmp_path / "link.pt")
    subst["CSV"] = str(write_fer_csv(tmp_path / "fer.csv", [(3, face(0), "PublicTest")]))
    argv = [subst.get(a, a.replace("DIR", str(photos))) for a in argv]
    before = {p: p.read_bytes() for p in (photos / "a.png", model, tmp_path / "fer.csv")}
    assert main(argv) == 2
    assert "an output never replaces an input, --overwrite or not" in capsys.readouterr().err
    assert {p: p.read_bytes() for p in before} == before


def test_nothing_is_written_into_the_data(msambare, tmp_path, capsys):
    """Arrays converted into the data folder, PNG plots into a class folder (where the next
    load reads them as faces), or annotated copies into a folder of photos (where the next
    predict reads them as photos) are refused before any work."""
    before = sorted(msambare.rglob("*"))
    for out in (msambare, msambare / "annotated"):
        assert main(["predict", str(msambare), "--annotate", str(out), "--overwrite"]) == 2
        assert "the output must be outside the source" in capsys.readouterr().err
    for out in (msambare, msambare / "npy", msambare / "train" / "faces.csv"):
        assert main(["data", "convert", str(msambare), str(out)]) == 2
        assert "the output must be outside the source" in capsys.readouterr().err
    model = str(make_checkpoint(tmp_path / "m.pt"))
    for flag, out in (("--plots", "train/happy"), ("--output", "scores.json")):
        assert main(["evaluate", model, "--data", str(msambare), flag, str(msambare / out)]) == 2
        assert "the output must be outside the source" in capsys.readouterr().err
    assert sorted(msambare.rglob("*")) == before


def test_replaced_atomically_replaces_only_when_the_write_succeeds(tmp_path):
    out = tmp_path / "sub" / "results.csv"
    with replaced_atomically(out) as tmp:
        assert tmp.suffix == ".csv"  # writers that go by the suffix see the real one
        tmp.write_text("first")
        assert not out.exists()  # nothing visible until the block ends
    assert out.read_text() == "first"

    with pytest.raises(RuntimeError), replaced_atomically(out) as tmp:
        tmp.write_text("half of the seco")
        raise RuntimeError("crash mid-write")
    assert out.read_text() == "first" and sorted(p.name for p in out.parent.iterdir()) == [
        "results.csv"
    ]


def test_new_folder_atomically_fills_a_new_folder_or_leaves_nothing(tmp_path):
    with new_folder_atomically(tmp_path / "out") as tmp:
        (tmp / "a.txt").write_text("a")
        assert not (tmp_path / "out").exists()  # in place only when the block ends
    assert (tmp_path / "out" / "a.txt").read_text() == "a"
    with pytest.raises(RuntimeError), new_folder_atomically(tmp_path / "new") as tmp:
        (tmp / "b.txt").write_text("b")
        raise RuntimeError("interrupted")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no half-written folder
    (tmp_path / "file").write_text("mine")
    (tmp_path / "link").symlink_to(tmp_path / "empty", target_is_directory=True)
    (tmp_path / "empty").mkdir()
    for name, what in (
        ("out", "a folder with files in it"),
        ("file", "a file"),
        ("link", "a link"),
    ):
        refused = pytest.raises(FerkitError, match=f"{name}: is {what}; choose a new or empty")
        with refused, new_folder_atomically(tmp_path / name):
            pass
    assert (tmp_path / "file").read_text() == "mine" and (tmp_path / "out" / "a.txt").exists()
    with new_folder_atomically(tmp_path / "empty") as tmp:  # an empty folder is replaced
        (tmp / "c.txt").write_text("c")
    assert [p.name for p in (tmp_path / "empty").iterdir()] == ["c.txt"]


def test_an_output_that_cannot_be_placed_names_itself(tmp_path, capsys):
    """`--csv photo.jpg/x.csv` said "[Errno 17] File exists: 'photo.jpg'", and an unwritable
    place named ferkit's temporary file; both now name the output and why, before any work."""
    from ferkit.errors import OutputError

    photo = tmp_path / "photo.png"
    photo.write_bytes(ASTRONAUT.read_bytes())
    cannot = r"x\.csv: cannot be written, a part of its folder is a file"
    with pytest.raises(OutputError, match=cannot), replaced_atomically(photo / "x.csv"):
        pass
    model = str(make_checkpoint(tmp_path / "m.pt"))
    assert main(["predict", str(photo), "--csv", str(photo / "x.csv"), "--model", model]) == 2
    err = capsys.readouterr().err
    assert f"{photo / 'x.csv'}: cannot be written, a part of its folder is a file" in err
    assert ".partial" not in err


def test_an_unplaceable_output_is_refused_before_the_work(tmp_path, monkeypatch, capsys):
    """`evaluate --output afile/r.json` evaluated every face and then failed to write; `train
    --out` named a file loaded the data and then failed with "[Errno 20] Not a directory". Where
    an output cannot go (a file or a link to nothing in its folder, no permission) is found
    before any work."""
    import ferkit.outputs

    data = write_fer_csv(tmp_path / "fer.csv", [(3, face(i), "PublicTest") for i in range(4)])
    model = str(make_checkpoint(tmp_path / "m.pt"))
    afile = tmp_path / "afile"
    afile.write_text("a user's file\n")
    (tmp_path / "gone").symlink_to(tmp_path / "nothing")
    evaluate = ["evaluate", model, "--data", str(data), "--output"]
    for out, why in [
        (afile / "r.json", "a part of its folder is a file"),
        (tmp_path / "gone" / "sub" / "r.json", f"{tmp_path / 'gone'} is a link to nothing"),
    ]:
        assert main([*evaluate, str(out)]) == 2
        captured = capsys.readouterr()
        assert captured.out == ""  # no evaluation ran
        assert captured.err.strip().endswith(f"{out}: cannot be written, {why}")

    def no_write(path, mode):  # the refusal simulated: the tests run as root
        return mode & os.W_OK == 0

    monkeypatch.setattr(ferkit.outputs.os, "access", no_write)
    assert main([*evaluate, str(tmp_path / "r.json")]) == 2
    assert f"cannot be written there (no permission to write in {tmp_path})" in (
        capsys.readouterr().err
    )
    monkeypatch.undo()

    assert main(["train", "--data", str(data), "--out", str(afile), "--smoke"]) == 2
    assert f"{afile}: is a file; --out names the run's folder" in capsys.readouterr().err
    assert main(["train", "--data", str(data), "--out", str(afile / "run"), "--smoke"]) == 2
    assert "a part of its folder is a file" in capsys.readouterr().err
    assert afile.read_text() == "a user's file\n"


def test_a_full_disk_is_named_and_leaves_no_folder_behind(tmp_path, monkeypatch):
    """numpy says "N requested and M written" on a full disk, naming no file, and the CLI's
    catch-all printed "[Errno 28] No space left on device: '/tmp/tmpx' -> 'PATH'"; `data
    convert` also left the empty folder it had made. Now the output and the cause are named,
    and a folder made for a write that failed is removed."""
    import errno
    import shutil
    from collections import namedtuple

    from ferkit.errors import OutputError, os_problem

    out = tmp_path / "new" / "npy" / "train_images.npy"
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda _: usage(10**9, 10**9, 4096))
    full = r"train_images\.npy: cannot be written, the disk is full \(nothing was replaced\); free"
    with pytest.raises(OutputError, match=full), replaced_atomically(out) as tmp:
        tmp.write_bytes(b"partial")
        raise OSError("1000 requested and 8 written")  # numpy's, with no errno
    assert list(tmp_path.iterdir()) == []  # neither the partial file nor new/npy/
    monkeypatch.undo()
    with pytest.raises(OSError, match=r"^a reader's own error$"), replaced_atomically(out):
        raise OSError("a reader's own error")  # space left: not put down to the disk

    move = OSError(errno.ENOSPC, "No space left on device", "/tmp/tmpx", None, "run/best.ckpt")
    assert os_problem(move) == (
        "run/best.ckpt: cannot be written, the disk is full; free some space and run it again"
    )
    missing = FileNotFoundError(errno.ENOENT, "No such file or directory", "a.jpg")
    assert os_problem(missing) == "a.jpg: no such file or directory"
