"""Knowledge distillation: the loss, teachers with their own input, ten-crop teachers, teacher
errors, and a distillation run end to end."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from conftest import tiny_args
from ferkit.cli import main
from ferkit.errors import ConfigError
from ferkit.evaluation.plots import training_curves
from ferkit.models import checkpoint_metadata
from ferkit.training.config import load_config, parse_set


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
