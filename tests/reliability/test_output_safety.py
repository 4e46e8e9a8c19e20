"""Outputs never collide, and writing one never follows a link planted beside it."""

from __future__ import annotations

import os
import shutil

import pytest
from hostile import snapshot

from conftest import ASTRONAUT, make_checkpoint
from ferkit.cli import main
from ferkit.outputs import replaced_atomically


def test_annotate_refuses_two_inputs_with_one_output(tmp_path, capsys):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    for name in ("a/x.png", "b/x.png"):
        shutil.copy(ASTRONAUT, tmp_path / name)
    shutil.copy(ASTRONAUT, tmp_path / "a" / "x.gif")  # the suffix is wrong; PIL reads it
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    before = snapshot(tmp_path)
    ckpt = str(make_checkpoint(tmp_path.parent / f"{tmp_path.name}-m.pt"))
    inputs = [str(tmp_path / n) for n in ("a/x.png", "b/x.png", "a/x.gif")]
    for extra in ([], ["--overwrite"]):
        rc = main(["predict", *inputs, "--annotate", str(out), "--model", ckpt, *extra])
        assert rc == 2
        err = capsys.readouterr().err
        assert f"{inputs[0]} and {inputs[1]} would both be written to {out / 'x.png'}" in err
        assert snapshot(tmp_path) == before
    # two kinds of output named alike: the table would replace the picture at the end
    one = tmp_path / "a" / "x.png"
    rc = main(["predict", str(one), "--annotate", str(out / "x.png"), "--csv", str(out / "x.png"),
               "--model", ckpt])  # fmt: skip
    assert rc == 2
    assert f"--csv and {one} would both be written to {out / 'x.png'}" in capsys.readouterr().err
    assert snapshot(tmp_path) == before


def test_temporary_file_never_follows_a_planted_link(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    folder = tmp_path / "out"
    folder.mkdir()
    target = folder / "result.json"
    for planted in (".partial-result.json", ".partial-result-x.json"):
        (folder / planted).symlink_to(victim)
    with replaced_atomically(target) as tmp:
        assert not tmp.is_symlink()
        tmp.write_text("new")
    assert victim.read_text() == "precious"
    assert target.read_text() == "new" and not target.is_symlink()
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        ["result.json", ".partial-result.json", ".partial-result-x.json"]
    )
    umask = os.umask(0o022)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask


def test_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "result.json"
    target.write_text("old")
    try:
        with replaced_atomically(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("disk full")
    except RuntimeError:
        pass
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]


def test_json_written_is_standard_json():
    """NaN and infinity are no JSON numbers; what ferkit writes parses anywhere."""
    import json

    from ferkit.outputs import json_dumps

    def refuse(name):
        raise ValueError(f"non-standard JSON constant {name}")

    text = json_dumps({"loss": float("nan"), "best": [float("inf"), 0.5], "n": 3})
    assert json.loads(text, parse_constant=refuse) == {"loss": None, "best": [None, 0.5], "n": 3}


def test_a_run_that_reads_nothing_writes_no_csv(tmp_path, capsys):
    """Every input unreadable: exit 2, no CSV of a header alone, an old CSV kept as it was."""
    bad = tmp_path / "clip.mp4"
    bad.write_bytes(b"not a video")
    ckpt = str(make_checkpoint(tmp_path / "m.pt"))
    fresh, old = tmp_path / "new.csv", tmp_path / "old.csv"
    old.write_text("mine\n")
    assert main(["predict", str(bad), "--csv", str(fresh), "--model", ckpt]) == 2
    assert main(["predict", str(bad), "--csv", str(old), "--overwrite", "--model", ckpt]) == 2
    out = capsys.readouterr().out
    assert not fresh.exists() and old.read_text() == "mine\n" and "wrote" not in out
    assert "0 images" not in out  # no summary of nothing


def test_video_stopped_midway_keeps_old_outputs_whole(tmp_path, monkeypatch):
    """Ctrl-C in the middle of a video: the annotated video and the CSV being replaced are
    left as they were; what was written so far is kept under names of its own (a finished
    file each), and no hidden temporary file is left beside them."""
    import cv2
    import numpy as np

    from ferkit.inference import video
    from ferkit.inference.recognizer import EmotionRecognizer

    clip = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 10, (64, 64))
    for i in range(6):
        writer.write(np.full((64, 64, 3), 40 * i, np.uint8))
    writer.release()
    out = tmp_path / "out"
    out.mkdir()
    (out / "annotated.mp4").write_bytes(b"old video")
    (out / "timeline.csv").write_text("old rows\n")
    before = snapshot(out)

    original = video.analyse_video

    def frames(*args, **kwargs):  # two frames, then the user presses Ctrl-C
        analysed = original(*args, **kwargs)
        yield next(analysed)
        yield next(analysed)
        raise KeyboardInterrupt

    monkeypatch.setattr(video, "analyse_video", frames)
    rec = EmotionRecognizer(make_checkpoint(tmp_path / "m.pt"), detector=None)
    with pytest.raises(KeyboardInterrupt):
        video.process_video(
            rec, clip, annotate_to=out / "annotated.mp4", csv_to=out / "timeline.csv"
        )
    kept = {"annotated.partial.mp4", "timeline.partial.csv"}
    assert {p.name for p in out.iterdir()} == {"annotated.mp4", "timeline.csv", *kept}
    for name in kept:
        (out / name).unlink()
    assert snapshot(out) == before
