"""Garbage in, one clear line out: bad metadata, data folders and CSVs, and config values."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from hostile import snapshot
from PIL import Image

from conftest import ASTRONAUT, face, make_checkpoint, write_class_folders, write_fer_csv
from ferkit.cli import main


def _edit_meta(src: Path, dst: Path, **changes) -> Path:
    ckpt = torch.load(src, weights_only=True)
    for key, value in changes.items():
        if value is None:
            ckpt.pop(key)
        else:
            ckpt[key] = value
    torch.save(ckpt, dst)
    return dst


BAD_META = [
    ({"temperature": float("nan")}, "'temperature' must be a finite number > 0"),
    ({"temperature": 0.0}, "'temperature' must be a finite number > 0"),
    ({"std": [0.0]}, "'std' must be numbers > 0"),
    ({"labels": None}, "'labels' must be a list of at least two distinct names"),
    ({"input_size": None}, "'input_size' must be a list of numbers"),
]


@pytest.mark.parametrize(("changes", "message"), BAD_META)
def test_checkpoint_with_bad_metadata_is_refused_on_load(tmp_path, changes, message, capsys):
    bad = _edit_meta(make_checkpoint(tmp_path / "ok.pt"), tmp_path / "bad.pt", **changes)
    assert main(["predict", str(ASTRONAUT), "--model", str(bad), "--json"]) == 2
    out, err = capsys.readouterr()
    assert out == ""  # no JSON at all, let alone NaN
    assert f"{bad}: metadata {message}" in err


def test_onnx_with_nan_temperature_is_refused(tmp_path, capsys):
    from ferkit.inference.export import export_onnx
    from ferkit.inference.model_io import ONNX_META_KEY, load_torch_model

    model, meta = load_torch_model(make_checkpoint(tmp_path / "ok.pt"))
    path = export_onnx(model, meta, tmp_path / "m.onnx")
    proto = onnx.load(str(path))
    for prop in proto.metadata_props:
        if prop.key == ONNX_META_KEY:
            prop.value = json.dumps(json.loads(prop.value) | {"temperature": float("nan")})
    onnx.save(proto, str(path))
    assert main(["predict", str(ASTRONAUT), "--model", str(path), "--json"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and f"{path}: metadata 'temperature' must be" in err


def test_non_utf8_file_name_in_a_data_folder(tmp_path, capsys):
    root = tmp_path / "faces"
    write_class_folders(root, {"happy": 2, "sad": 2})
    name = os.fsdecode(b"caf\xe9.png")  # Latin-1 bytes: not UTF-8
    Image.fromarray(np.zeros((48, 48), np.uint8)).save(root / "happy" / name)
    for extra in ([], ["--no-cache"]):
        assert main(["data", "info", str(root), "--json", *extra]) == 0
        assert json.loads(capsys.readouterr().out)["splits"]["all"]["n"] == 5


def test_fifo_in_a_data_folder_is_skipped_not_waited_for(tmp_path):
    root = tmp_path / "faces"
    write_class_folders(root, {"happy": 2, "sad": 2})
    os.mkfifo(root / "happy" / "pipe.png")
    done = subprocess.run(
        [sys.executable, "-m", "ferkit", "data", "info", str(root), "--json", "--no-cache"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert f"{root / 'happy' / 'pipe.png'}: not a regular file" in done.stderr
    assert json.loads(done.stdout)["splits"]["all"]["n"] == 4


@pytest.mark.parametrize(
    "content",
    [
        os.urandom(4096),  # binary
        b"emotion,pixels,Usage\n0,caf\xe9,Training\n",  # Latin-1
        gzip.compress(os.urandom(4096)),  # .csv.gz of garbage
        b'emotion,pixels,Usage\n3,"' + b"1 " * 100_000 + b'",Training\n',  # a 200 kB field
    ],
    ids=["binary", "latin1", "gzip", "huge-field"],
)
def test_unreadable_csv_names_the_file(tmp_path, content, capsys):
    path = tmp_path / "faces.csv"
    path.write_bytes(content)
    assert main(["data", "info", str(path), "--no-cache"]) == 2
    lines = capsys.readouterr().err.replace("\r", "\n").strip().splitlines()  # after the bar
    assert lines[-1].startswith(f"ferkit data: error: {path}: not a readable CSV")


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--batch-size", "0"], "'batch_size' must be >= 1, got 0"),
        (["--epochs", "-3"], "'epochs' must be >= 1, got -3"),
        (["--set", "lr=.nan"], "'lr' must be > 0, got nan"),
        (["--set", "val_fraction=2"], "'val_fraction' must be in [0, 0.9], got 2.0"),
        (["--arch", "flagshp"], "unknown model 'flagshp'. Did you mean 'flagship'?"),
        (["--set", "teacher=[a.pt, b.pt"], "'teacher': '[a.pt, b.pt' is not valid YAML (line 1"),
        (["--set", "pretrained=gone.pt"], "pretrained: gone.pt: no such file or folder"),
    ],
)
def test_bad_config_value_is_one_line_before_any_work(tmp_path, flags, message, capsys):
    data = write_fer_csv(tmp_path / "fer.csv", [(3, face(i), "Training") for i in range(4)])
    before = snapshot(tmp_path)
    out = tmp_path / "run"
    assert main(["train", "--data", str(data), "--out", str(out), *flags]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert snapshot(tmp_path) == before  # no run folder, nothing else written


def test_fifo_given_to_predict_is_refused_by_name(tmp_path, capsys):
    pipe = tmp_path / "pipe.png"
    os.mkfifo(pipe)
    assert main(["predict", str(pipe)]) == 2
    assert f"{pipe}: not a regular file" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["serve", "--port", "99999"], "--port 99999: a port is 0..65535"),
        (["webcam", "--port", "-1"], "--port -1: a port is 0..65535"),
        (["predict", str(ASTRONAUT), "--detect-side", "-5"], "--detect-side -5: an image"),
        (["predict", str(ASTRONAUT), "--detect-side", "0"], "--detect-side 0: an image"),
    ],
)
def test_bad_command_line_values_are_one_line(tmp_path, argv, message, capsys):
    ckpt = make_checkpoint(tmp_path / "m.pt")
    assert main([*argv, "--model", str(ckpt)]) == 2
    err = capsys.readouterr().err
    assert message in err and "internal error" not in err and "Traceback" not in err


def test_annotate_to_a_file_is_refused_before_any_work(tmp_path, capsys):
    """`--annotate out` where out is a file: one line, exit 2, no results printed, file kept."""
    out = tmp_path / "out"
    out.write_text("mine")
    ckpt = make_checkpoint(tmp_path / "m.pt")
    assert main(["predict", str(ASTRONAUT), "--model", str(ckpt), "--annotate", str(out)]) == 2
    captured = capsys.readouterr()
    assert f"--annotate {out} is a file" in captured.err and "face" not in captured.out
    assert out.read_text() == "mine"


def test_dry_run_checks_the_model_name(capsys):
    """`--dry-run` says whether a run would start: an unknown model is exit 2, not 0."""
    assert main(["train", "--arch", "bogus", "--dry-run"]) == 2
    assert "unknown model 'bogus'" in capsys.readouterr().err


RUN_FILES = [  # (file, damaged content, the message, the commands that read it)
    ("config.yaml", ": [", "cannot be parsed (line 1, column 1: expected <block end>", ["report"]),
    ("config.yaml", "- a list\n", "holds a list, not a mapping", ["report"]),
    ("summary.json", '{"model": ', "cannot be parsed (line 1, column 11: Expecting", ["compare"]),
    ("eval_test.json", b"\xff\xfe", "cannot be parsed (", ["compare"]),
    ("metrics.csv", "a,b\n1,2\n", "has no numeric 'epoch' column", ["report", "compare"]),
]


@pytest.mark.parametrize(("name", "content", "message", "commands"), RUN_FILES)
def test_damaged_run_files_are_named(tmp_path, name, content, message, commands, capsys):
    """`ferkit report` and `ferkit compare` read a run's config, summary, scores and metrics:
    a damaged one is one line naming it, exit 2, and nothing in the run is written."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("model: simple_cnn\n")
    (run / "summary.json").write_text('{"model": "simple_cnn"}')
    (run / "eval_test.json").write_text('{"accuracy": 0.5}')
    (run / "metrics.csv").write_text("epoch,val_acc\n1,0.5\n")
    path = run / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    before = snapshot(tmp_path)
    flags = {"report": [], "compare": ["--no-plot"]}
    for command in commands:
        assert main([command, str(run), *flags[command]]) == 2
        err = capsys.readouterr().err
        assert f"{path} {message}" in err and len(err.strip().splitlines()) == 1
    assert snapshot(tmp_path) == before
