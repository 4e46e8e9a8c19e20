"""Training end to end on a tiny data set: run folders, resume, reproducibility, NaN and
interrupt handling, more training and validation sources, 2-process DDP."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pandas as pd
import pytest
import torch
import yaml

from conftest import REPORT_PNGS, tiny_args, write_class_folders
from ferkit.cli import main
from ferkit.cli.evaluate import headline
from ferkit.errors import ConfigError
from ferkit.evaluation.plots import training_curves
from ferkit.labels import EMOTIONS
from ferkit.models import checkpoint_metadata
from ferkit.training.config import TrainConfig


def test_progress_in_a_log_is_a_line_per_epoch(tiny_data, tmp_path, capsys):
    """stderr that is no terminal (nohup, CI) gets a line per epoch, not bar redraws."""
    args = [a for a in tiny_args(tiny_data, tmp_path / "run") if a != "--no-progress"]
    assert main(args) == 0
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("epoch ")]
    assert [line.split(":")[0] for line in lines] == ["epoch 1/2", "epoch 2/2"]
    assert re.search(r"train loss \d\.\d{3} acc \d+\.\d% \| val loss \d\.\d{3} acc", lines[0])
    assert re.search(r"\| lr \S+ \| \d+ s$", lines[0]) and "\r" not in err


def test_run_folder_contents(trained_run):
    for name in (
        "config.yaml",
        "metrics.csv",
        "summary.json",
        "best.pt",
        "last.pt",
        "checkpoints/best.ckpt",
        "checkpoints/last.ckpt",
    ):
        assert (trained_run / name).is_file(), name
    metrics = pd.read_csv(trained_run / "metrics.csv")
    assert {"train_loss_epoch", "val_loss", "val_acc", "train_acc"} <= set(metrics.columns)
    assert list(metrics["epoch"]) == [1, 2]  # one row per epoch, counted from 1
    assert metrics[["train_loss_epoch", "val_acc", "lr-AdamW/head"]].notna().all().all()
    summary = json.loads((trained_run / "summary.json").read_text())
    assert summary["epochs"] == 2 and summary["val_n"] == 28 and summary["test_n"] == 14
    assert 0 <= summary["val_accuracy"] <= 1 and summary["train_images_per_s"] > 0
    assert summary["precision"] in ("bf16-mixed", "32-true")  # what auto picked on this CPU

    from ferkit.models import load_checkpoint

    _, meta = load_checkpoint(trained_run / "best.pt")
    assert meta["arch"] == "simple_cnn" and meta["labels"] == list(EMOTIONS)
    assert meta["metrics"]["val_accuracy"] == summary["val_accuracy"]


def test_new_run_never_overwrites(trained_run, tiny_data):
    before = (trained_run / "best.pt").read_bytes()
    assert main(tiny_args(tiny_data, trained_run, "--epochs", "1")) == 0
    assert (trained_run / "best.pt").read_bytes() == before
    assert (trained_run.parent / f"{trained_run.name}-2" / "best.pt").is_file()


def test_stage_from_checkpoint_carries_parent_recipe(trained_run, tiny_data, tmp_path):
    parent = trained_run / "best.pt"
    run = tmp_path / "stage2"
    assert main(tiny_args(tiny_data, run, "--epochs", "1", "--set", f"pretrained={parent}")) == 0
    recipe = checkpoint_metadata(run / "best.pt")["extra"]["recipe"]
    assert recipe["config"]["pretrained"] == str(parent)
    lineage = recipe["parent"]
    assert lineage["checkpoint"] == str(parent)
    assert lineage["recipe"] == checkpoint_metadata(parent)["extra"]["recipe"]
    assert lineage["recipe"]["config"]["mixup"] == 0.2 and "parent" not in lineage["recipe"]
    assert "val_accuracy" in lineage["metrics"]


def test_a_run_folder_or_a_shipped_name_is_a_starting_point(trained_run, tiny_data, tmp_path):
    """`pretrained` names a model as `--model` and `teacher` do: a run folder is its best.pt,
    a shipped name its file in the package (fine-tuning the shipped model on one's own data)."""
    from ferkit.inference.model_io import default_checkpoint
    from ferkit.training.run import _paths_resolved

    run = tmp_path / "stage2"
    assert (
        main(tiny_args(tiny_data, run, "--epochs", "1", "--set", f"pretrained={trained_run}")) == 0
    )
    parent = checkpoint_metadata(run / "best.pt")["extra"]["recipe"]["parent"]
    assert parent["checkpoint"] == str((trained_run / "best.pt").resolve())
    cfg = _paths_resolved(TrainConfig(pretrained="flagship"))
    assert cfg.pretrained == str(default_checkpoint().resolve())
    assert _paths_resolved(TrainConfig(pretrained="imagenet")).pretrained == "imagenet"
    with pytest.raises(ConfigError, match=r"pretrained: nope\.pt: no such file.*\(flagship, "):
        _paths_resolved(TrainConfig(pretrained="nope.pt"))


@pytest.mark.parametrize(
    ("asked", "native", "expected"),
    [
        ("auto", True, "bf16-mixed"),
        ("auto", False, "32-true"),  # emulated bf16 trained ~15x slower than float32
        ("bf16", False, "bf16-mixed"),  # asked for: kept, with a warning
        ("32", True, "32-true"),
    ],
)
def test_auto_precision_is_bf16_only_where_the_cpu_has_it(
    monkeypatch, caplog, asked, native, expected
):
    from ferkit.training import run

    monkeypatch.setattr(run, "native_bf16", lambda: native)
    assert run._precision(TrainConfig(precision=asked), "cpu") == expected
    assert expected in run.PRECISION_NAMES  # the log line names every precision picked
    warned = "emulated" in caplog.text
    assert warned == (asked == "bf16" and not native)
    with pytest.raises(ConfigError, match="needs a GPU"):
        run._precision(TrainConfig(precision="16"), "cpu")


def test_resume_continues_at_next_epoch(tiny_data, tmp_path, capsys):
    run = tmp_path / "r"
    assert main(tiny_args(tiny_data, run, "--epochs", "1")) == 0
    assert main(["train", "--resume", str(run), "--epochs", "2", "--no-progress"]) == 0
    assert list(pd.read_csv(run / "metrics.csv")["epoch"]) == [1, 2]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["epochs"] == 2 and summary["best_epoch"] in (1, 2)
    assert yaml.safe_load((run / "config.yaml").read_text())["epochs"] == 2  # where it ends now
    said = capsys.readouterr().err  # the last run's end: best epoch, files, what next
    assert re.search(rf"best val_acc \d+\.\d\d% at epoch {summary['best_epoch']} of 2", said)
    for name in ("best.pt", "last.pt", "metrics.csv", "summary.json"):
        assert f"wrote {run / name}" in said
    assert f"next: ferkit report {run}" in said
    # finished: resuming again trains nothing and touches nothing
    files = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in run.rglob("*") if p.is_file()}
    assert main(["train", "--resume", str(run), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert f"{run} has finished its 2 epochs: nothing to resume" in err
    assert "--epochs N, with N above 2" in err and "Traceback" not in err
    assert {
        p: (p.stat().st_mtime_ns, p.read_bytes()) for p in run.rglob("*") if p.is_file()
    } == files


def test_max_time_stops_validated(tiny_data, tmp_path):
    run = tmp_path / "t"
    assert main(tiny_args(tiny_data, run, "--epochs", "50", "--set", "max_time=0.0001")) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["stopped"] == "max_time"
    assert summary["epochs"] < 50
    assert summary["val_accuracy"] is not None and (run / "best.pt").is_file()


def test_same_seed_same_metrics(tiny_data, tmp_path):
    for name in ("a", "b"):
        assert main(tiny_args(tiny_data, tmp_path / name, "--epochs", "1")) == 0
    a, b = (pd.read_csv(tmp_path / n / "metrics.csv") for n in "ab")
    pd.testing.assert_frame_equal(a, b)


def test_nan_loss_stops_and_keeps_good_checkpoint(tiny_data, tmp_path, monkeypatch, capsys):
    from ferkit.training.module import FERClassifier

    original = FERClassifier._loss

    def nan_in_second_epoch(self, logits, target):
        loss = original(self, logits, target)
        return loss * float("nan") if self.training and self.current_epoch == 1 else loss

    monkeypatch.setattr(FERClassifier, "_loss", nan_in_second_epoch)
    run = tmp_path / "nan"
    assert main(tiny_args(tiny_data, run)) == 2
    assert "loss is nan" in capsys.readouterr().err
    state = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert state["epoch"] == 0  # the end of the last good epoch
    assert all(
        torch.isfinite(v).all() for v in state["state_dict"].values() if v.is_floating_point()
    )


def test_interrupt_leaves_resumable_checkpoint(tiny_data, tmp_path, monkeypatch):
    from ferkit.training.module import FERClassifier

    original = FERClassifier.training_step

    def interrupt(self, batch, batch_idx):
        if self.current_epoch == 1 and batch_idx == 2:
            raise KeyboardInterrupt
        return original(self, batch, batch_idx)

    monkeypatch.setattr(FERClassifier, "training_step", interrupt)
    run = tmp_path / "int"
    assert main(tiny_args(tiny_data, run)) == 130
    assert (run / "checkpoints" / "last.ckpt").is_file()
    monkeypatch.setattr(FERClassifier, "training_step", original)
    assert main(["train", "--resume", str(run), "--no-progress"]) == 0
    assert json.loads((run / "summary.json").read_text())["epochs"] == 2


@pytest.mark.slow
def test_ddp_two_cpu_processes_with_a_teacher(tiny_data, trained_run, tmp_path):
    """Two ranks, each with its own frozen copy of the teacher (distillation under DDP), and
    two validation sources (`extra_val`: here the same faces again, so both score alike)."""
    run = tmp_path / "ddp"
    cmd = [
        sys.executable,
        "-m",
        "ferkit",
        *tiny_args(tiny_data, run, "--epochs", "1"),
        "--device",
        "cpu",
        "--devices",
        "2",
        "--strategy",
        "ddp",
        "--set",
        f"teacher={trained_run}",
        "--set",
        f"extra_val={tiny_data}",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "rank 0 finished" in proc.stderr and "rank 1 finished" in proc.stderr, proc.stderr[
        -3000:
    ]
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]
    assert [p.name for p in tmp_path.iterdir()] == ["ddp"]
    metrics = pd.read_csv(run / "metrics.csv")
    assert metrics["train_distill_loss"].notna().all()  # the teacher term was computed, logged
    assert (
        metrics["val_acc_0"].tolist()
        == metrics["val_acc_1"].tolist()
        == metrics["val_acc"].tolist()
    )


@pytest.mark.shared_data
def test_smoke_run_on_fer2013(shared_fer, tmp_path):
    run = tmp_path / "smoke"
    assert (
        main(
            [
                "train",
                "--config",
                "configs/flagship.yaml",
                "--data",
                str(shared_fer),
                "--smoke",
                "--out",
                str(run),
                "--no-progress",
            ]
        )
        == 0
    )
    summary = json.loads((run / "summary.json").read_text())
    assert summary["val_n"] == 256 and summary["epochs"] == 1
    # best.pt (19 MB of flagship weights) and small text files; no training state (it was
    # 150 MB: best/last.ckpt with AdamW's moments, and last.pt beside best.pt)
    written = sum(p.stat().st_size for p in run.rglob("*") if p.is_file())
    assert written < 25e6 and not (run / "checkpoints").exists()


def test_quiet_where_a_user_cannot_act(tiny_data, tmp_path, caplog, recwarn):
    caplog.set_level("INFO")
    assert main(tiny_args(tiny_data, tmp_path / "q", "--epochs", "1")) == 0
    assert "finished" not in caplog.text  # "rank 0 finished": single-process runs say nothing
    lightning = [str(w.message) for w in recwarn if "lightning" in w.filename]
    assert lightning == []


def test_smoke_keeps_no_training_state(tiny_data, tmp_path):
    run = tmp_path / "smoke"
    assert main(tiny_args(tiny_data, run, "--smoke")) == 0
    names = sorted(p.name for p in run.iterdir())
    assert names == ["best.pt", "config.yaml", "metrics.csv", "summary.json"]
    assert main(["evaluate", str(run), "--data", str(tiny_data)]) == 0


def test_resume_says_what_it_was_given(tiny_data, tmp_path, capsys):
    """--resume of a missing folder, a file, or a smoke run: one line each, and what to do."""
    run = tmp_path / "smoke"
    assert main(tiny_args(tiny_data, run, "--smoke")) == 0
    capsys.readouterr()
    for given, said in [
        (tmp_path / "nope", "no such run folder; --resume takes the folder `ferkit train` wrote"),
        (run / "best.pt", "not a run folder; --resume takes the folder `ferkit train` wrote"),
        (run, f"(a --smoke run keeps best.pt only); start a new run, or fine-tune its weights: "
              f"--set pretrained={run}/best.pt"),
    ]:  # fmt: skip
        assert main(["train", "--resume", str(given)]) == 2
        err = capsys.readouterr().err
        assert said in err and err.count("\n") == 1, err


def test_toolbox_options_run(tiny_data, tmp_path):
    """EMA, class weights, balanced sampler, OneCycle, clipping, smoothing, cutmix, erasing, fp32."""
    run = tmp_path / "toolbox"
    sets = [
        "ema=0.99",
        "class_weights=true",
        "balanced_sampler=true",
        "scheduler=onecycle",
        "grad_clip=1.0",
        "label_smoothing=0.1",
        "cutmix=1.0",
        "erasing=0.5",
        "precision=32",
        "crop_scale=0.7",
        "batch_norm=false",
    ]
    args = tiny_args(tiny_data, run, "--epochs", "1", "--arch", "vgg_11_half")
    assert main([*args, *[x for s in sets for x in ("--set", s)]]) == 0
    from ferkit.models import load_checkpoint

    model, meta = load_checkpoint(run / "best.pt")
    assert meta["arch_kwargs"].get("batch_norm") is False
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())


def test_extra_train_adds_training_faces_and_is_recorded(tiny_data, tmp_path, monkeypatch):
    """`--set extra_train=DIR` (or a list): 112 + 28 training faces; config.yaml names DIR in full."""
    more = write_class_folders(tmp_path / "more", dict.fromkeys(EMOTIONS, 4), seed=3)
    monkeypatch.chdir(tmp_path)
    run = tmp_path / "extra"
    assert main(tiny_args(tiny_data, run, "--epochs", "1", "--set", "extra_train=more")) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["n_train"] == 7 * 16 + 7 * 4
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["extra_train"] == [str(more)]


def test_extra_val_selects_on_the_mean_of_its_sources(tiny_data, tmp_path, monkeypatch, capsys):
    """`--set extra_val=DIR`: val_acc is the mean of data's and DIR's PublicTest accuracy (each
    logged too, plotted beside it and shown in the epoch line); the best checkpoint is chosen
    by that mean, and best.pt and summary.json score each source."""
    other = tmp_path / "other"
    write_class_folders(other / "train", dict.fromkeys(EMOTIONS, 1), prefix="Training")
    # one class only: its accuracy is not data's (a network this small answers one class)
    write_class_folders(other / "test", {"happy": 5}, prefix="PublicTest", seed=5)
    monkeypatch.chdir(tmp_path)
    run = tmp_path / "both"
    args = [
        a for a in tiny_args(tiny_data, run, "--set", "extra_val=other") if a != "--no-progress"
    ]
    assert main([*args, "--precision", "32"]) == 0
    err = capsys.readouterr().err
    metrics = pd.read_csv(run / "metrics.csv")
    assert metrics["val_acc"].tolist() == pytest.approx(
        ((metrics["val_acc_0"] + metrics["val_acc_1"]) / 2).tolist()
    )
    assert metrics["val_loss"].tolist() == pytest.approx(
        ((metrics["val_loss_0"] + metrics["val_loss_1"]) / 2).tolist()
    )
    summary = json.loads((run / "summary.json").read_text())
    [extra] = summary["extra_val"]
    assert extra["data"] == str(other) and extra["n"] == 5 and summary["val_n"] == 28
    assert (metrics["val_acc_0"] != metrics["val_acc_1"]).all()
    best = metrics.loc[metrics["epoch"] == summary["best_epoch"]].iloc[0]
    assert summary["best_val"] == pytest.approx(metrics["val_acc"].max())
    assert (summary["val_accuracy"], extra["accuracy"]) == pytest.approx(
        (best["val_acc_0"], best["val_acc_1"]), abs=1e-6
    )
    assert checkpoint_metadata(run / "best.pt")["metrics"]["extra_val"] == [extra]
    line = next(line for line in err.splitlines() if line.startswith("epoch 2/2"))
    both = f"({metrics['val_acc_0'].iloc[1]:.1%}, {metrics['val_acc_1'].iloc[1]:.1%})"
    assert f"acc {metrics['val_acc'].iloc[1]:.1%} {both} |" in line
    assert f"(mean of {summary['val_accuracy']:.2%} of n=28; " in err
    accuracy_axes = training_curves(metrics).axes[1]
    assert [line.get_label() for line in accuracy_axes.get_lines()][:4] == [
        "train",
        "val (mean)",
        "val 0 (data)",
        "val 1",
    ]
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["extra_val"] == [str(other)]
    assert main(["compare", str(run), "--no-plot", "--format", "csv"]) == 0
    row = capsys.readouterr().out.splitlines()
    assert dict(zip(row[0].split(","), row[1].split(","), strict=True))["val_sets"] == "2"
    # the report scores the best checkpoint on each source, as training did
    assert main(["report", str(run), "--faces", "4"]) == 0
    said = capsys.readouterr().out.splitlines()
    scored = [json.loads((run / f"eval_val{s}.json").read_text()) for s in ("", "_1")]
    assert [(r["n"], r["source"]) for r in scored] == [(28, str(tiny_data)), (5, str(other))]
    assert [r["accuracy"] for r in scored] == pytest.approx(
        [summary["val_accuracy"], extra["accuracy"]], abs=1e-6
    )
    assert said[:2] == [headline(r) for r in scored]
    for name in ("eval_val_1.json", *(f"{png}_1.png" for png in REPORT_PNGS[2:])):
        assert f"wrote {run / name}" in said


def test_config_names_model_files_absolutely(trained_run, tmp_path, monkeypatch):
    """A run's config.yaml names its starting point and teachers as absolute files, so that
    `--resume` finds them from any folder; a teacher that names nothing is left for the
    teachers' loader to refuse."""
    from ferkit.inference.model_io import default_checkpoint
    from ferkit.training.run import _paths_resolved

    monkeypatch.chdir(trained_run.parent)
    best = str((trained_run / "best.pt").resolve())
    cfg = _paths_resolved(
        TrainConfig(
            pretrained=f"{trained_run.name}/best.pt", teacher=[trained_run.name, "flagship"]
        )
    )
    assert cfg.pretrained == best
    assert cfg.teacher == [best, str(default_checkpoint().resolve())]
    assert _paths_resolved(TrainConfig(teacher=trained_run.name)).teacher == best
    assert _paths_resolved(TrainConfig(teacher="gone.pt")).teacher == "gone.pt"
