"""Knowledge distillation: a student learns from the labels and from teachers' soft predictions.

The loss (Hinton, Vinyals & Dean 2015) is

    (1 - w) * cross_entropy(student, labels) + w * T^2 * KL(teacher_T || student_T)

where `_T` is a softmax at temperature T (`distill_temperature`) and w is `distill_weight`.
The T^2 keeps the soft term's gradients on the scale of the hard one's as T changes.

Teachers are ferkit checkpoints of any architecture, input size or normalisation: each one sees
the same augmented (and mixed) batch through its own preprocessing, so a 112x112 RGB ResNet can
teach a 48x48 gray student. Several teachers are averaged in probability space (an ensemble).
They run frozen, in eval mode, with batch norm folded into the convolutions, under the
trainer's autocast. With `teacher_tta` each teacher's softmax is also averaged over the TTA views
of the batch (`ferkit.tta`): a ten-crop teacher is a stronger teacher than the same network on
one view, and the student learns to give the averaged answer from one view.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ferkit.errors import ConfigError
from ferkit.inference.model_io import load_torch_model, resolve_model
from ferkit.labels import EMOTIONS, check_model_labels
from ferkit.models.fold import fold_batch_norm
from ferkit.models.input_spec import InputSpec
from ferkit.tta import tta_mean

__all__ = ["Teacher", "distill_loss", "load_teachers", "teacher_probs"]


@dataclass
class Teacher:
    """A frozen model and the preprocessing its checkpoint asks for."""

    model: nn.Module
    spec: InputSpec
    path: str
    metrics: dict = field(default_factory=dict)

    def logits(self, faces: torch.Tensor) -> torch.Tensor:
        """Logits for gray faces (N, 1, H, W) in 0..1."""
        x = self.spec.to_input(faces)
        return self.model(x.to(memory_format=torch.channels_last))

    def to(self, device: torch.device | str) -> Teacher:
        self.model.to(device)
        return self

    def record(self) -> dict:
        """What a student's recipe stores about this teacher."""
        return {"checkpoint": self.path, "metrics": self.metrics}


def teacher_paths(teacher: str | Sequence[str] | None) -> list[str]:
    """The config's `teacher` (one path or a list) as a list of paths."""
    if teacher is None:
        return []
    paths = [teacher] if isinstance(teacher, str) else list(teacher)
    bad = [p for p in paths if not isinstance(p, str) or not p]
    if bad:
        raise ConfigError(
            f"config key 'teacher' expects checkpoint paths or run folders, got {bad!r}"
        )
    return paths


def load_teachers(teacher: str | Sequence[str] | None) -> list[Teacher]:
    """Load the teachers a config names (checkpoint files or run folders), frozen.

    Raises:
        ConfigError: a teacher cannot be found or loaded, or predicts other classes than
            ferkit's seven in ferkit's order.
    """
    teachers = []
    for path in teacher_paths(teacher):
        try:
            path = resolve_model(path)
            model, meta = load_torch_model(path)
            check_model_labels(
                meta.get("labels"),
                EMOTIONS,
                model=path,
                against="ferkit's are",
                then="a teacher must have the student's classes in the same order",
            )
        except Exception as exc:  # CheckpointError and its causes: say which teacher
            raise ConfigError(f"teacher: {exc}") from None
        for p in model.parameters():
            p.requires_grad_(False)
        model = fold_batch_norm(model.eval()).to(memory_format=torch.channels_last)
        teachers.append(
            Teacher(model, InputSpec.from_meta(meta), str(path), dict(meta.get("metrics") or {}))
        )
    return teachers


@torch.no_grad()
def teacher_probs(
    teachers: Sequence[Teacher], faces: torch.Tensor, temperature: float, tta: str = "none"
) -> torch.Tensor:
    """The teachers' mean softmax at `temperature` for faces (N, 1, H, W) in 0..1, float32,
    averaged over the views of `tta` (a `ferkit.tta` mode) too."""
    probs = [
        tta_mean(lambda x, t=t: F.softmax(t.logits(x).float() / temperature, dim=1), faces, tta)
        for t in teachers
    ]
    return torch.stack(probs).mean(0)


def distill_loss(
    student_logits: torch.Tensor, soft_targets: torch.Tensor, temperature: float
) -> torch.Tensor:
    """T^2 * KL(soft_targets || softmax(student / T)), averaged over the batch."""
    log_student = F.log_softmax(student_logits.float() / temperature, dim=1)
    return F.kl_div(log_student, soft_targets, reduction="batchmean") * temperature**2
