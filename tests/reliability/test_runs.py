"""Runs are never destroyed: bad values stop before a run folder is touched, only a real
interruption (Ctrl-C, SIGTERM) saves a checkpoint, --overwrite keeps the old run until the new
one has started, and resuming never runs code planted in a checkpoint."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest
import torch
from hostile import snapshot

from conftest import train_args, write_class_folders
from ferkit.cli import main
from ferkit.labels import EMOTIONS

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tiny") / "fer"
    write_class_folders(root / "train", dict.fromkeys(EMOTIONS, 8), prefix="Training")
    write_class_folders(root / "test", dict.fromkeys(EMOTIONS, 2), prefix="PublicTest", seed=7)
    return root


@pytest.fixture(scope="module")
def finished_run(tiny_data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "run"
    assert main(train_args(tiny_data, out)) == 0
    return out


@pytest.fixture
def run(finished_run, tmp_path) -> Path:
    """A copy of a finished run, for a test to attack."""
    return Path(shutil.copytree(finished_run, tmp_path / "run"))


BAD_VALUES = [
    (["--lr", "-1"], "'lr' must be > 0, got -1"),
    (["--set", "lr=.nan"], "'lr' must be > 0, got nan"),
    (["--batch-size", "0"], "'batch_size' must be >= 1, got 0"),
    (["--epochs", "-3"], "'epochs' must be >= 1, got -3"),
]


@pytest.mark.parametrize(("flags", "message"), BAD_VALUES)
def test_resume_with_bad_value_touches_nothing(run, flags, message, capsys):
    before = snapshot(run)
    assert main(["train", "--resume", str(run), "--no-progress", *flags]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert snapshot(run) == before


@pytest.mark.parametrize(("flags", "message"), BAD_VALUES[:2])
def test_overwrite_with_bad_value_touches_nothing(run, tiny_data, flags, message, capsys):
    before = snapshot(run)
    assert main(train_args(tiny_data, run, "--overwrite", *flags)) == 2
    assert message in capsys.readouterr().err
    assert snapshot(run) == before


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"\x00\xff\xfe not text", "cannot be read as a table (UnicodeDecodeError"),
        (b"", "cannot be read as a table (EmptyDataError"),
        (b"step,val_acc\n1,0.5\n", "has no numeric 'epoch' column"),
    ],
)
def test_unreadable_metrics_refused_before_training(run, content, problem, capsys):
    """A damaged metrics.csv is refused by --resume before anything trains or is written
    (it used to fail after a whole epoch), and by `ferkit report` with the same words."""
    (run / "metrics.csv").write_bytes(content)
    before = snapshot(run)
    assert main(["train", "--resume", str(run), "--epochs", "2", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert f"{run / 'metrics.csv'} {problem}" in err and "move it aside" in err
    assert snapshot(run) == before
    assert main(["report", str(run)]) == 2
    assert problem in capsys.readouterr().err


def test_error_inside_training_saves_no_checkpoint(run, monkeypatch, capsys):
    """A configuration error found while training (not an interruption) leaves last.ckpt as
    it was: only Ctrl-C and SIGTERM save one."""
    from ferkit.errors import ConfigError
    from ferkit.training.module import FERClassifier

    def refuse(self):
        raise ConfigError("test: optimizer refused")

    monkeypatch.setattr(FERClassifier, "configure_optimizers", refuse)
    before = snapshot(run / "checkpoints")
    assert main(["train", "--resume", str(run), "--epochs", "2", "--no-progress"]) == 2
    assert "optimizer refused" in capsys.readouterr().err
    assert snapshot(run / "checkpoints") == before


def test_overwrite_keeps_old_run_until_new_one_started(run, tiny_data, monkeypatch, capsys):
    """A failure before the first training step: the old run stays where it was, whole."""
    from ferkit.training.module import FERClassifier

    def broken(self):
        raise RuntimeError("test: broken before training")

    monkeypatch.setattr(FERClassifier, "configure_optimizers", broken)
    before = snapshot(run)
    assert main(train_args(tiny_data, run, "--overwrite")) == 1
    assert snapshot(run) == before
    assert not list(run.parent.glob("run.replaced-*"))


def test_overwrite_replaces_once_finished(run, tiny_data):
    old_config = (run / "config.yaml").read_text()
    assert main(train_args(tiny_data, run, "--overwrite", "--set", "seed=5")) == 0
    assert (run / "config.yaml").read_text() != old_config
    assert (run / "summary.json").is_file()
    assert not list(run.parent.glob("run.replaced-*"))  # removed once the new run finished


def test_overwrite_never_replaces_a_folder_that_is_no_run(tiny_data, tmp_path, capsys):
    """`--out ~/thesis --overwrite` set the folder aside and deleted it once the new run had
    trained. Only an earlier run (a config.yaml train can read) is replaced; anything else is
    refused before training, and stays as it was."""
    for mine in ("thesis.txt", "config.yaml"):  # a project's own config.yaml is no run's either
        folder = tmp_path / f"mine-{mine}"
        folder.mkdir()
        (folder / mine).write_text("nothing ferkit wrote: keys: [1, 2]")
        before = snapshot(folder)
        assert main(train_args(tiny_data, folder, "--overwrite")) == 2
        assert "is not a ferkit run (no config.yaml of one)" in capsys.readouterr().err
        assert snapshot(folder) == before and not list(tmp_path.glob("*.replaced-*"))


@pytest.mark.parametrize("key", ["pretrained", "teacher"])
def test_overwrite_never_deletes_what_the_run_reads(run, tiny_data, key, capsys):
    """Fine-tuning a run in place (`--set pretrained=RUN/best.pt --out RUN --overwrite`) would
    train, then delete its own starting point with the old run: refused before training."""
    before = snapshot(run)
    assert main(train_args(tiny_data, run, "--overwrite", "--set", f"{key}={run}/best.pt")) == 2
    assert f"this run's {key}: --overwrite would delete it" in capsys.readouterr().err
    assert snapshot(run) == before


class Planted:
    """Unpickling this runs `touch FILE`: what a planted checkpoint would do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_resume_never_runs_a_planted_pickle(run, tmp_path, monkeypatch, capsys):
    marker = tmp_path / "pwned"
    torch.save({"state_dict": Planted(marker)}, run / "checkpoints" / "last.ckpt")
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    before = snapshot(run)
    assert main(["train", "--resume", str(run), "--epochs", "2", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert not marker.exists()
    assert "last.ckpt holds Python objects that cannot be loaded safely" in err
    assert snapshot(run) == before


SLOW_TRAINING = """
import os, signal, sys, time
from ferkit.cli import main
from ferkit.training.module import FERClassifier

step = FERClassifier.training_step

def slow_step(self, batch, batch_idx):
    time.sleep(0.3)
    if self.global_step == {kill_at}:
        os.kill(os.getpid(), signal.{signal})  # SIGTERM: what `kill PID` does
    return step(self, batch, batch_idx)

FERClassifier.training_step = slow_step
sys.exit(main(sys.argv[1:]))
"""


def test_sigterm_saves_and_resume_finishes(tiny_data, tmp_path):
    """`kill` during the last epoch: the step finishes, last.ckpt is saved, the process exits
    143; `--resume` then finishes the run, and the summary's training time is the time spent
    training (not the machine's uptime)."""
    out = tmp_path / "run"
    script = textwrap.dedent(SLOW_TRAINING.format(kill_at=9, signal="SIGTERM"))  # epoch 2 of 2
    args = train_args(tiny_data, out, "--epochs", "2", "--batch-size", "8")
    killed = subprocess.run(
        [sys.executable, "-c", script, *args], capture_output=True, text=True, timeout=300
    )
    assert killed.returncode == 128 + signal.SIGTERM, killed.stderr[-3000:]
    assert "resume with `ferkit train --resume" in killed.stderr
    assert (out / "checkpoints" / "last.ckpt").is_file()
    resumed = subprocess.run(
        [sys.executable, "-m", "ferkit", "train", "--resume", str(out), "--no-progress"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["epochs"] == 2
    assert 0 < summary["train_seconds"] < 60, summary


def test_resume_killed_outright_loses_no_epochs(tiny_data, tmp_path):
    """A resumed run killed with no chance to clean up (SIGKILL, power loss), then resumed
    again: metrics.csv still holds every epoch, those before the first resume included."""
    out = tmp_path / "run"
    assert main(train_args(tiny_data, out, "--epochs", "1", "--batch-size", "8")) == 0
    script = textwrap.dedent(SLOW_TRAINING.format(kill_at=15, signal="SIGKILL"))  # in epoch 3
    resume = ["train", "--resume", str(out), "--epochs", "3", "--no-progress"]
    killed = subprocess.run(
        [sys.executable, "-c", script, *resume], capture_output=True, text=True, timeout=300
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert main(resume) == 0
    metrics = pd.read_csv(out / "metrics.csv")
    assert list(metrics["epoch"]) == [1, 2, 3]
    assert metrics["val_acc"].notna().all()


def test_a_full_disk_keeps_the_last_checkpoint_whole(tiny_data, tmp_path, monkeypatch, capsys):
    """Lightning copied each checkpoint over the old one from /tmp, so a disk filling up
    mid-run left half a last.ckpt and nothing to resume. Now the write that fails (here the
    first of the second epoch, cut off half-way as a full disk does) names its file, the
    checkpoints of the first epoch stay whole, and the run resumes from them."""
    import errno

    real_write = Path.write_bytes
    ckpt_writes = []

    def full_disk_at_the_third_checkpoint(self, data):
        if self.suffix == ".ckpt":
            ckpt_writes.append(self)
            if len(ckpt_writes) == 3:
                real_write(self, bytes(data)[: len(data) // 2])
                raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(self, data)

    out = tmp_path / "run"
    monkeypatch.setattr(Path, "write_bytes", full_disk_at_the_third_checkpoint)
    assert main(train_args(tiny_data, out, epochs=3)) == 2
    monkeypatch.undo()
    err = capsys.readouterr().err
    assert f"{out / 'checkpoints'}/" in err and ".ckpt: cannot be written, the disk is full" in err
    assert f"resume it with `ferkit train --resume {out}`" in err
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]
    assert torch.load(out / "checkpoints" / "last.ckpt", weights_only=False)["epoch"] == 0
    assert main(["train", "--resume", str(out), "--no-progress"]) == 0
    assert (out / "best.pt").is_file()
