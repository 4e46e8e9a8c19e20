"""Training and evaluation end to end on a tiny data set: config, augmentation, runs, resume,
reproducibility, NaN and interrupt handling, evaluate/report/compare, 2-process DDP."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from PIL import Image

from conftest import train_args, write_class_folders
from ferkit.cli import main
from ferkit.cli.evaluate import headline
from ferkit.errors import ConfigError
from ferkit.evaluation.plots import training_curves
from ferkit.labels import EMOTIONS
from ferkit.models import checkpoint_metadata
from ferkit.training.augment import BatchAugment
from ferkit.training.config import TrainConfig, load_config, parse_set

REPORT_PNGS = ("curves", "lr", "confusion_matrix", "per_class_accuracy", "predictions")


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    """msambare layout, 7 classes: 16 train + 4 PublicTest + 2 PrivateTest images each."""
    root = tmp_path_factory.mktemp("tiny") / "fer"
    write_class_folders(root / "train", dict.fromkeys(EMOTIONS, 16), prefix="Training")
    write_class_folders(root / "test", dict.fromkeys(EMOTIONS, 4), prefix="PublicTest", seed=7)
    write_class_folders(root / "test", dict.fromkeys(EMOTIONS, 2), prefix="PrivateTest", seed=9)
    return root


def tiny_args(data: Path, out: Path, *extra: str) -> list[str]:
    return train_args(data, out, *extra, epochs=2)


# --- config -----------------------------------------------------------------------------------
def test_config_unknown_key_suggests_close_match(tmp_path):
    (tmp_path / "c.yaml").write_text("model: vgg_13\nlearning_rate: 0.1\n")
    with pytest.raises(ConfigError, match=r"unknown config key .learning_rate..*Valid: "):
        load_config(tmp_path / "c.yaml")
    with pytest.raises(ConfigError, match="Did you mean 'epochs'"):
        parse_set(["epoch=3"])


def test_config_types_and_choices():
    cfg = load_config(
        None, parse_set(["lr=0.01", "hflip=false", "image_size=64", "model_kwargs={width: 8}"])
    )
    assert (cfg.lr, cfg.hflip, cfg.image_size, cfg.model_kwargs) == (0.01, False, 64, {"width": 8})
    recipe = Path(__file__).parents[1] / "configs" / "resnet18_transfer.yaml"
    assert load_config(recipe, parse_set(["pretrained=null"])).pretrained is None
    assert load_config(recipe, parse_set(["pretrained=w.pth"])).pretrained == "w.pth"
    with pytest.raises(ConfigError, match="'epochs' expects int"):
        load_config(None, {"epochs": "many"})
    with pytest.raises(ConfigError, match=r"unknown optimizer .adamx..*Did you mean .adam."):
        load_config(None, {"optimizer": "adamx"})
    with pytest.raises(ConfigError, match="Valid: none, exponential"):
        load_config(None, {"scheduler": "linear"})


def test_help_config_lists_every_key_with_its_default_and_comment(capsys):
    from ferkit.training.config import FIELDS

    assert main(["train", "--help-config"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == list(FIELDS)
    undocumented = [line.split()[0] for line in lines if len(line.split()) < 3]
    assert undocumented == [], "every config key needs a one-line comment in TrainConfig"
    [tta] = [line for line in lines if line.startswith("teacher_tta ")]
    assert "'none'" in tta and "tencrop" in tta
    assert main(["train", "--help"]) == 0
    assert "peak learning rate [config key lr, default 0.001]" in capsys.readouterr().out


def test_config_extends_merges_base_under_recipe(tmp_path):
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "a.yaml").write_text("model: vgg_13\nlr: 0.1\nepochs: 50\n")
    (tmp_path / "b.yaml").write_text("extends: base/a.yaml\nlr: 0.02\n")
    (tmp_path / "c.yaml").write_text("extends: b.yaml\nepochs: 5\n")
    cfg = load_config(tmp_path / "c.yaml", {"epochs": 7})
    assert (cfg.model, cfg.lr, cfg.epochs) == ("vgg_13", 0.02, 7)  # chain, then overrides
    (tmp_path / "loop.yaml").write_text("extends: loop2.yaml\n")
    (tmp_path / "loop2.yaml").write_text("extends: loop.yaml\n")
    with pytest.raises(ConfigError, match="cycle"):
        load_config(tmp_path / "loop.yaml")
    (tmp_path / "typo.yaml").write_text("extend: b.yaml\n")
    with pytest.raises(ConfigError, match="Did you mean 'extends'"):
        load_config(tmp_path / "typo.yaml")
    (tmp_path / "orphan.yaml").write_text("extends: gone.yaml\n")
    with pytest.raises(ConfigError, match=r"gone.yaml \(extended by .*orphan.yaml\): no such"):
        load_config(tmp_path / "orphan.yaml")


def test_recipes_load(capsys):
    for recipe in sorted(Path("configs").glob("*.yaml")):
        cfg = load_config(recipe)
        assert cfg.name and cfg.epochs > 0
        assert main(["train", "--config", str(recipe), "--smoke", "--dry-run"]) == 0
        assert json.loads(capsys.readouterr().out)["epochs"] == 1


def test_recipes_are_indexed():
    """configs/README.md names every recipe, so a newcomer finds what each is for."""
    index = Path("configs/README.md").read_text()
    missing = [r.stem for r in Path("configs").glob("*.yaml") if f"`{r.stem}`" not in index]
    assert not missing, f"configs/README.md does not list {missing}"


def test_cli_bad_model_lists_valid_names(tiny_data, tmp_path, capsys):
    assert main(tiny_args(tiny_data, tmp_path / "r", "--arch", "vgg_99")) == 2
    err = capsys.readouterr().err
    assert "vgg_99" in err and "simple_cnn" in err and "Traceback" not in err


# --- augmentation -----------------------------------------------------------------------------
def test_batch_augment_shapes_range_and_seed():
    x = torch.rand(16, 1, 48, 48)
    aug = BatchAugment(TrainConfig(crop_scale=0.6, erasing=0.5))
    torch.manual_seed(0)
    a = aug(x)
    torch.manual_seed(0)
    b = aug(x)
    assert a.shape == x.shape and a.min() >= 0 and a.max() <= 1
    assert torch.equal(a, b) and not torch.equal(a, x)
    off = TrainConfig(hflip=False, rotation=0, shift=0, scale=0, brightness=0, contrast=0)
    assert torch.allclose(BatchAugment(off)(x), x)


def test_hflip_only_mirrors():
    x = torch.rand(64, 1, 8, 8)
    cfg = TrainConfig(hflip=True, rotation=0, shift=0, scale=0, brightness=0, contrast=0)
    y = BatchAugment(cfg)(x)
    same = torch.isclose(y, x, atol=1e-5).flatten(1).all(1)
    mirrored = torch.isclose(y, x.flip(-1), atol=1e-5).flatten(1).all(1)
    assert (same | mirrored).all() and same.any() and mirrored.any()


# --- end to end -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained_run(tiny_data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "run1"
    assert main(tiny_args(tiny_data, out, "--set", "mixup=0.2")) == 0
    return out


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

    from ferkit.models import load_checkpoint

    _, meta = load_checkpoint(trained_run / "best.pt")
    assert meta["arch"] == "simple_cnn" and meta["labels"] == list(EMOTIONS)
    assert meta["metrics"]["val_accuracy"] == summary["val_accuracy"]


def test_new_run_never_overwrites(trained_run, tiny_data):
    before = (trained_run / "best.pt").read_bytes()
    assert main(tiny_args(tiny_data, trained_run, "--epochs", "1")) == 0
    assert (trained_run / "best.pt").read_bytes() == before
    assert (trained_run.parent / f"{trained_run.name}-2" / "best.pt").is_file()


def test_evaluate_json(trained_run, tiny_data, tmp_path, capsys):
    out = tmp_path / "eval.json"
    assert main(["evaluate", str(trained_run), "--data", str(tiny_data), "--output", str(out)]) == 0
    assert f"wrote {out}" in capsys.readouterr().err
    result = json.loads(out.read_text())
    assert result["n"] == 28 and result["split"] == "val" and 0 <= result["accuracy"] <= 1
    for key in ("loss", "macro_f1", "confusion_matrix", "confusion_matrix_normalized", "source"):
        assert key in result
    assert set(result["per_class"]) == set(EMOTIONS)
    assert set(result["per_class"]["happy"]) >= {"precision", "recall", "f1", "accuracy"}
    assert np.asarray(result["confusion_matrix"]).sum() == 28
    capsys.readouterr()
    assert (
        main(
            [
                "evaluate",
                str(trained_run),
                "--data",
                str(tiny_data),
                "--split",
                "test",
                "--tta",
                "tencrop",
                "--json",
            ]
        )
        == 0
    )
    assert json.loads(capsys.readouterr().out)["n"] == 14
    before = out.read_bytes()
    assert main(["evaluate", str(trained_run), "--data", str(tiny_data), "-o", str(out)]) == 2
    assert "eval.json already exists; pass --overwrite" in capsys.readouterr().err
    assert out.read_bytes() == before
    plots = tmp_path / "plots"  # the figures `ferkit report` draws, for any data set
    args = ["evaluate", str(trained_run), "--data", str(tiny_data), "-o", str(out), "--plots"]
    assert main([*args, str(plots), "--overwrite"]) == 0
    assert f"wrote {plots / 'confusion_matrix.png'}" in capsys.readouterr().err
    assert {p.name for p in plots.iterdir()} == {
        f"{n}.png" for n in ("confusion_matrix", "per_class_accuracy", "predictions")
    }
    assert all(p.read_bytes().startswith(b"\x89PNG") for p in plots.iterdir())
    assert main([*args, str(plots)]) == 2  # both outputs exist: refused, nothing replaced
    assert "per_class_accuracy.png and 1 more already exist" in capsys.readouterr().err
    # refused before any work: a data set that does not exist is not even looked at; the old
    # spelling `--json FILE` still names the file, with a note
    assert main(["evaluate", str(trained_run), "--data", "nowhere", "--json", str(out)]) == 2
    err = capsys.readouterr().err
    assert "eval.json already exists" in err and "--json FILE is deprecated" in err


def test_evaluate_other_data_set_through_aliases(trained_run, tmp_path):
    write_class_folders(tmp_path / "other", {"Anger": 3, "Happiness": 3, "contempt": 3}, size=64)
    assert (
        main(
            [
                "evaluate",
                str(trained_run),
                "--data",
                str(tmp_path / "other"),
                "--json",
                str(tmp_path / "o.json"),
            ]
        )
        == 0
    )
    assert json.loads((tmp_path / "o.json").read_text())["n"] == 6


def test_report_pngs(trained_run, capsys):
    assert main(["report", str(trained_run), "--faces", "8"]) == 0
    said = capsys.readouterr().out
    assert f"wrote {trained_run / 'eval_val.json'}" in said
    for name in REPORT_PNGS:
        assert f"wrote {trained_run / name}.png" in said
        with Image.open(trained_run / f"{name}.png") as img:
            assert img.width >= 300 and img.height >= 150, name


def test_compare(trained_run, tmp_path, capsys):
    plot = tmp_path / "cmp.png"
    assert (
        main(
            ["compare", str(trained_run), str(trained_run), "--format", "csv", "--plot", str(plot)]
        )
        == 0
    )
    table = capsys.readouterr().out.splitlines()
    head = "run,model,parameters,epochs,best_val_acc,val_sets,best_epoch,test_acc"
    assert table[0].startswith(head) and len(table) == 3
    row = dict(zip(table[0].split(","), table[1].split(","), strict=True))
    summary = json.loads((trained_run / "summary.json").read_text())
    assert int(row["best_epoch"]) == summary["best_epoch"]  # the curve's best is the kept one
    assert row["val_sets"] == "1"
    assert float(row["test_acc"]) == round(summary["test_accuracy"], 4)  # from summary.json
    assert Image.open(plot).width > 300

    before = plot.read_bytes()  # an existing plot is refused before any run is read, and kept
    assert main(["compare", str(tmp_path / "no-such-run"), "--plot", str(plot)]) == 2
    assert "--overwrite" in capsys.readouterr().err and plot.read_bytes() == before
    assert main(["compare", str(tmp_path / "no-such-run"), "--plot", "cmp.txt"]) == 2
    assert "cannot write a plot as .txt; use one of" in capsys.readouterr().err
    assert main(["compare", str(trained_run), "--plot", str(plot), "--overwrite"]) == 0
    svg = tmp_path / "cmp.svg"  # the format follows the suffix, which the temporary file keeps
    assert main(["compare", str(trained_run), "--plot", str(svg)]) == 0
    assert svg.read_text().lstrip().startswith("<?xml")
    assert main(["compare", str(trained_run), "--no-plot", "--format", "csv"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cmp.png", "cmp.svg"]


def test_compare_a_run_still_training(trained_run, tmp_path, capsys):
    """A run without summary.json (still training) leaves gaps: '-' in the text table, empty in
    markdown and CSV, and the finished run's counts stay integers beside them."""
    training = tmp_path / "training"
    training.mkdir()
    for name in ("config.yaml", "metrics.csv"):
        shutil.copy(trained_run / name, training)
    parameters = json.loads((trained_run / "summary.json").read_text())["parameters"]
    assert main(["compare", str(trained_run), str(training), "--no-plot"]) == 0
    text = capsys.readouterr().out
    assert f" {parameters} " in text and "NaN" not in text and "None" not in text
    assert text.splitlines()[2].split()[2] == "-"  # the running run's parameters
    assert (
        main(["compare", str(trained_run), str(training), "--no-plot", "--format", "markdown"]) == 0
    )
    assert "<NA>" not in capsys.readouterr().out


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


def test_resume_continues_at_next_epoch(tiny_data, tmp_path, capsys):
    run = tmp_path / "r"
    assert main(tiny_args(tiny_data, run, "--epochs", "1")) == 0
    assert main(["train", "--resume", str(run), "--epochs", "2", "--no-progress"]) == 0
    assert list(pd.read_csv(run / "metrics.csv")["epoch"]) == [1, 2]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["epochs"] == 2 and summary["best_epoch"] in (1, 2)
    said = capsys.readouterr().err  # the last run's end: best epoch, files, what next
    assert re.search(rf"best val_acc \d+\.\d\d% at epoch {summary['best_epoch']} of 2", said)
    for name in ("best.pt", "last.pt", "metrics.csv", "summary.json"):
        assert f"wrote {run / name}" in said
    assert f"next: ferkit report {run}" in said


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


def test_report_from_another_folder_and_when_the_data_is_gone(tmp_path, monkeypatch, capsys):
    data = write_class_folders(tmp_path / "d" / "train", dict.fromkeys(EMOTIONS, 4)).parent
    write_class_folders(data / "test", dict.fromkeys(EMOTIONS, 2), prefix="PublicTest", seed=5)
    monkeypatch.chdir(tmp_path)
    assert main(tiny_args(Path("d"), Path("r"), "--epochs", "1")) == 0  # relative paths
    assert json.loads((tmp_path / "r" / "summary.json").read_text())["data"] == str(data)
    monkeypatch.chdir(tmp_path / "r")
    assert main(["report", "."]) == 0
    (tmp_path / "d").rename(tmp_path / "moved")
    assert main(["report", "."]) == 2
    err = capsys.readouterr().err
    assert f"trained on {data}" in err and "--data" in err and "Traceback" not in err
    assert main(["report", ".", "--data", str(tmp_path / "moved")]) == 0


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


# --- knowledge distillation -------------------------------------------------------------------
def test_distill_loss_is_zero_only_when_student_matches_teacher():
    from ferkit.training.distill import distill_loss

    logits = torch.randn(8, 7)
    soft = torch.softmax(logits / 2, dim=1)
    assert distill_loss(logits, soft, 2.0).abs() < 1e-5
    student = torch.randn(8, 7)
    kl = (soft * (soft.log() - torch.log_softmax(student / 2, 1))).sum(1).mean()
    assert torch.allclose(distill_loss(student, soft, 2.0), 4 * kl) and kl > 0.01
    student = torch.zeros(8, 7, requires_grad=True)
    distill_loss(student, soft, 2.0).backward()
    # the gradient pulls each logit towards the teacher: up where the teacher is above uniform
    assert torch.all((student.grad < 0) == (soft > 1 / 7))


def test_teacher_with_its_own_input_size_and_channels(tmp_path):
    from ferkit.models import create_model, save_checkpoint
    from ferkit.training.distill import load_teachers, teacher_probs

    rgb = create_model("fer_model0", in_channels=3)
    save_checkpoint(
        tmp_path / "rgb64.pt",
        rgb,
        input_size=(64, 64),
        mean=(0.5,) * 3,
        std=(0.25,) * 3,
        in_channels=3,
    )
    [teacher] = load_teachers(str(tmp_path / "rgb64.pt"))
    assert not any(p.requires_grad for p in teacher.model.parameters())
    probs = teacher_probs([teacher, teacher], torch.rand(5, 1, 48, 48), temperature=3.0)
    assert probs.shape == (5, 7) and torch.allclose(probs.sum(1), torch.ones(5))


def test_teacher_tta_averages_the_views_of_the_batch(tmp_path):
    from ferkit.models import create_model, save_checkpoint
    from ferkit.training.distill import load_teachers, teacher_probs
    from ferkit.tta import tta_views

    torch.manual_seed(0)
    path = tmp_path / "t.pt"
    save_checkpoint(
        path,
        create_model("simple_cnn").eval(),
        input_size=(48, 48),
        mean=(0.5,),
        std=(0.5,),
        in_channels=1,
    )
    [teacher] = load_teachers(str(path))
    faces = torch.rand(4, 1, 48, 48)
    views = tta_views(faces, "tencrop")
    expected = torch.stack([teacher_probs([teacher], v, 2.0) for v in views]).mean(0)
    tencrop = teacher_probs([teacher], faces, 2.0, tta="tencrop")
    assert torch.allclose(tencrop, expected, atol=1e-6)
    assert not torch.allclose(tencrop, teacher_probs([teacher], faces, 2.0), atol=1e-4)
    with pytest.raises(ConfigError, match=r"unknown teacher_tta 'tencrops'.*Valid: none, flip"):
        load_config(None, {"teacher": "t.pt", "teacher_tta": "tencrops"})
    with pytest.raises(ConfigError, match="teacher_tta 'flip' needs a teacher"):
        load_config(None, {"teacher_tta": "flip"})


def test_teacher_errors_name_the_problem(tmp_path):
    from ferkit.models import create_model, save_checkpoint
    from ferkit.training.distill import load_teachers

    with pytest.raises(ConfigError, match=r"no_such.pt: no such model file or run folder"):
        load_teachers(["no_such.pt"])
    other = [f"class{i}" for i in range(7)]
    save_checkpoint(
        tmp_path / "other.pt",
        create_model("simple_cnn"),
        input_size=(48, 48),
        mean=(0.5,),
        std=(0.5,),
        in_channels=1,
        labels=other,
    )
    with pytest.raises(ConfigError, match=r"predicts .'class0'.*must have the student's classes"):
        load_teachers(str(tmp_path / "other.pt"))
    with pytest.raises(ConfigError, match=r"'distill_weight' must be in \[0, 1\], got 1.5"):
        load_config(None, {"distill_weight": 1.5})
    with pytest.raises(ConfigError, match="'distill_temperature' must be > 0, got 0"):
        load_config(None, {"distill_temperature": 0})
    listed = load_config(None, parse_set(["teacher=[a.pt, runs/b]"]))
    assert listed.teacher == ["a.pt", "runs/b"]
    assert load_config(None, parse_set(["teacher=runs/b"])).teacher == "runs/b"


def test_distillation_run_records_teachers_and_keeps_them_out_of_weights(
    trained_run, tiny_data, tmp_path, capsys
):
    teacher = trained_run / "best.pt"
    run = tmp_path / "student"
    args = tiny_args(
        tiny_data,
        run,
        "--epochs",
        "1",
        "--set",
        f"teacher={trained_run}",
        "--set",
        "mixup=0.2",
        "--set",
        "distill_weight=0.7",
    )
    assert main(args) == 0
    meta = checkpoint_metadata(run / "best.pt")
    [record] = meta["extra"]["recipe"]["teachers"]
    assert record["checkpoint"] == str(teacher)
    assert record["metrics"] == checkpoint_metadata(teacher)["metrics"]
    student = torch.load(run / "best.pt", weights_only=True)["state_dict"]
    assert student.keys() == torch.load(teacher, weights_only=True)["state_dict"].keys()
    metrics = pd.read_csv(run / "metrics.csv")
    distill, labels = metrics["train_distill_loss"].dropna(), metrics["train_label_loss"].dropna()
    assert len(distill) == 1 and distill.iloc[0] > 0 and len(labels) == 1
    combined = metrics["train_loss_epoch"].dropna().iloc[0]
    assert combined == pytest.approx(0.3 * labels.iloc[0] + 0.7 * distill.iloc[0], rel=1e-4)
    loss_axes = training_curves(metrics).axes[0]
    assert [line.get_label() for line in loss_axes.get_lines()] == [
        "train (labels)",
        "train (teachers, T²·KL)",
        "val",
    ]
    missing = tiny_args(tiny_data, tmp_path / "none", "--set", "teacher=nowhere/best.pt")
    assert main(missing) == 2
    err = capsys.readouterr().err
    assert "teacher: nowhere/best.pt: no such model file or run folder" in err
    assert "Traceback" not in err


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
