"""The LightningModule: a registry model, its loss, optimizer, schedule and metrics.

Batches arrive as uint8 (N, 1, H, W); augmentation, resizing to the model's input and
normalisation run here on the whole batch (see `ferkit.preprocess`).
"""

from __future__ import annotations

import math
import random
from pathlib import Path

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from ferkit.data.types import source_list
from ferkit.errors import CheckpointError, FerkitError
from ferkit.labels import EMOTIONS, ferplus_classes
from ferkit.models import create_model, get_model_spec, param_groups
from ferkit.models.input_spec import InputSpec
from ferkit.training.augment import BatchAugment, batch_mixer
from ferkit.training.config import FIELDS, TrainConfig
from ferkit.training.distill import distill_loss, load_teachers, teacher_probs


class NonFiniteLossError(FerkitError):
    """The training loss became NaN or infinite."""


def label_names(cfg: TrainConfig) -> tuple[str, ...]:
    """The classes a config trains: those of its `ferplus` labels, else FER-2013's 7."""
    return ferplus_classes(cfg.ferplus_labels) if cfg.ferplus else EMOTIONS


def build_model(cfg: TrainConfig) -> torch.nn.Module:
    """The registry model a config asks for (the top-level keys left unset keep the model's
    defaults; every name in `model_kwargs` must be the model's, set or not)."""
    common = dict(
        pretrained=cfg.pretrained, freeze=cfg.freeze, batch_norm=cfg.batch_norm, dropout=cfg.dropout
    )
    kwargs = {**cfg.model_kwargs, **{k: v for k, v in common.items() if v is not None}}
    return create_model(cfg.model, num_classes=len(label_names(cfg)), **kwargs)


class FERClassifier(L.LightningModule):
    def __init__(self, cfg: dict, class_counts: list[int] | None = None):
        super().__init__()
        self.save_hyperparameters()
        self.cfg = TrainConfig(**cfg)
        self.model = build_model(self.cfg)
        self.labels = label_names(self.cfg)
        num_classes = len(self.labels)
        spec = get_model_spec(self.cfg.model)
        side = self.cfg.image_size
        # What the model takes: saved in every checkpoint, read back by inference and export.
        self.spec = InputSpec(
            input_size=(side, side) if side else tuple(spec.input_size),
            in_channels=spec.in_channels,
            mean=tuple(spec.mean),
            std=tuple(spec.std),
        )
        self.augment = BatchAugment(self.cfg) if self.cfg.augment else None
        self.mixer = batch_mixer(self.cfg, num_classes) if self.cfg.augment else None
        weight = None
        if self.cfg.class_weights and class_counts:
            counts = torch.tensor(class_counts, dtype=torch.float32).clamp(min=1)
            weight = counts.sum() / (len(counts) * counts)
        self.register_buffer("class_weight", weight, persistent=False)
        # a plain list: teachers are not part of the student's state dict or checkpoints
        self.teachers = load_teachers(self.cfg.teacher)
        self.train_acc = MulticlassAccuracy(num_classes, average="micro")
        self.test_acc = MulticlassAccuracy(num_classes, average="micro")
        # one accuracy and mean loss per validation source: data's, then each extra_val's
        n_val = 1 + len(source_list(self.cfg.extra_val))
        self.val_acc = torch.nn.ModuleList(
            MulticlassAccuracy(num_classes, average="micro") for _ in range(n_val)
        )
        self.val_loss = torch.nn.ModuleList(MeanMetric() for _ in range(n_val))

    # --- forward ------------------------------------------------------------------------------
    def prepare(self, images: torch.Tensor, train: bool = False) -> torch.Tensor:
        return self.to_input(self.faces(images, train))

    def faces(self, images: torch.Tensor, train: bool = False) -> torch.Tensor:
        """uint8 faces -> float faces in 0..1, augmented when training."""
        x = images.float() / 255.0
        if train and self.augment is not None:
            x = self.augment(x)
        return x

    def to_input(self, faces: torch.Tensor) -> torch.Tensor:
        """Faces in 0..1 -> the model's normalised input."""
        x = self.spec.to_input(faces)
        return x.contiguous(memory_format=torch.channels_last) if self.cfg.channels_last else x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def inference_meta(self) -> dict:
        """What inference needs to feed the model: `save_checkpoint`'s input arguments."""
        return dict(**self.spec.to_meta(), labels=list(self.labels))

    def _loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(
            logits.float(),
            target,
            weight=self.class_weight,
            label_smoothing=self.cfg.label_smoothing,
        )

    # --- steps --------------------------------------------------------------------------------
    def training_step(self, batch, batch_idx):
        images, target = batch
        faces = self.faces(images, train=True)
        # soft targets (FER+ votes) are scored against their largest share
        hard = target if target.ndim == 1 else target.argmax(1)
        if self.mixer is not None and target.ndim == 1:
            faces, target = self.mixer(faces, hard)
        logits = self(self.to_input(faces))
        loss = self._loss(logits, target)
        if self.teachers:
            t, w = self.cfg.distill_temperature, self.cfg.distill_weight
            soft_targets = teacher_probs(self.teachers, faces, t, self.cfg.teacher_tta)
            soft = distill_loss(logits, soft_targets, t)
            self.log("train_label_loss", loss, on_step=False, on_epoch=True)
            self.log("train_distill_loss", soft, on_step=False, on_epoch=True)
            loss = (1 - w) * loss + w * soft
        if not torch.isfinite(loss):
            raise NonFiniteLossError(
                f"training loss is {loss.item()} at epoch {self.current_epoch + 1}, batch {batch_idx}; "
                "stopped. The last good checkpoint is kept: lower --lr, set grad_clip, or "
                "use precision 32"
            )
        self.log("train_loss", loss, prog_bar=True, on_step=True, on_epoch=True)
        self.train_acc(logits.detach(), hard)
        self.log("train_acc", self.train_acc, prog_bar=True, on_step=False, on_epoch=True)
        return loss

    def _eval_logits(self, batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(logits, loss, hard labels) of an evaluation batch."""
        images, target = batch
        logits = self(self.prepare(images))
        hard = target if target.ndim == 1 else target.argmax(1)
        return logits, self._loss(logits, target), hard

    def validation_step(self, batch, batch_idx, dataloader_idx: int = 0):
        logits, loss, hard = self._eval_logits(batch)
        self.val_acc[dataloader_idx].update(logits, hard)
        self.val_loss[dataloader_idx].update(loss, weight=len(hard))

    def on_validation_epoch_end(self) -> None:
        """val_acc and val_loss: data's, or with `extra_val` the mean over the sources (each
        counts once, whatever its size), which also selects the best checkpoint; each source's
        own as val_acc_0 (data's), val_acc_1, ... and val_loss_I."""
        accs = torch.stack([m.compute() for m in self.val_acc])
        losses = torch.stack([m.compute() for m in self.val_loss])
        for metric in [*self.val_acc, *self.val_loss]:
            metric.reset()
        # computed metrics are already reduced over processes: sync_dist averages equal values
        self.log("val_acc", accs.mean(), prog_bar=True, sync_dist=True)
        self.log("val_loss", losses.mean(), prog_bar=True, sync_dist=True)
        if len(accs) > 1:
            for i, (acc, loss) in enumerate(zip(accs, losses, strict=True)):
                self.log(f"val_acc_{i}", acc, sync_dist=True)
                self.log(f"val_loss_{i}", loss, sync_dist=True)

    def test_step(self, batch, batch_idx):
        logits, loss, hard = self._eval_logits(batch)
        self.log("test_loss", loss, prog_bar=True, sync_dist=True)
        self.test_acc(logits, hard)
        self.log("test_acc", self.test_acc, prog_bar=True)

    def on_fit_start(self) -> None:
        for teacher in self.teachers:
            teacher.to(self.device)

    # --- optimisation -------------------------------------------------------------------------
    def configure_optimizers(self):
        c = self.cfg
        groups = param_groups(self.model, c.lr, c.body_lr_scale)
        if c.optimizer == "sgd":
            opt = torch.optim.SGD(
                groups,
                lr=c.lr,
                momentum=c.momentum,
                nesterov=c.nesterov,
                weight_decay=c.weight_decay,
            )
        else:
            cls = torch.optim.Adam if c.optimizer == "adam" else torch.optim.AdamW
            opt = cls(groups, lr=c.lr, weight_decay=c.weight_decay)
        if c.scheduler == "none":
            return opt
        total = max(1, int(self.trainer.estimated_stepping_batches))
        per_epoch = max(1, total // max(1, c.epochs))
        if c.scheduler == "exponential":
            sched = {"scheduler": torch.optim.lr_scheduler.ExponentialLR(opt, c.gamma)}
        elif c.scheduler == "step":
            sched = {"scheduler": torch.optim.lr_scheduler.StepLR(opt, c.step_size, c.gamma)}
        elif c.scheduler == "onecycle":
            max_lr = [g["lr"] for g in opt.param_groups]
            sched = {
                "scheduler": torch.optim.lr_scheduler.OneCycleLR(opt, max_lr, total_steps=total),
                "interval": "step",
            }
        elif c.scheduler == "plateau":
            mode = "max" if c.monitor == "val_acc" else "min"
            plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(
                opt, mode=mode, factor=c.plateau_factor, patience=c.plateau_patience
            )
            sched = {"scheduler": plateau, "monitor": c.monitor}
        else:  # cosine with linear warm-up, stepped per batch
            warmup = int(c.warmup_epochs * per_epoch)

            def factor(step: int) -> float:
                if step < warmup:
                    return (step + 1) / warmup
                progress = (step - warmup) / max(1, total - warmup)
                return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

            sched = {
                "scheduler": torch.optim.lr_scheduler.LambdaLR(opt, factor),
                "interval": "step",
            }
        return {"optimizer": opt, "lr_scheduler": sched}

    # --- resumable randomness -----------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        kind, keys, pos, has_gauss, cached = np.random.get_state()
        checkpoint["ferkit_rng"] = {
            "torch": torch.get_rng_state(),
            "numpy": [kind, keys.tolist(), pos, has_gauss, cached],
            "python": list(random.getstate()[1]),
            "python_version": random.getstate()[0],
        }

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        rng = checkpoint.get("ferkit_rng")
        if not rng:
            return
        torch.set_rng_state(rng["torch"])
        kind, keys, pos, has_gauss, cached = rng["numpy"]
        np.random.set_state((kind, np.array(keys, np.uint32), pos, has_gauss, cached))
        random.setstate((rng["python_version"], tuple(rng["python"]), None))


def load_training_checkpoint(path: str | Path) -> tuple[torch.nn.Module, dict]:
    """The network in a Lightning checkpoint of `ferkit train` (runs/X/checkpoints/best.ckpt).

    Returns:
        (model in eval mode, metadata as `load_checkpoint` gives it for a ferkit checkpoint;
        `metrics` holds the epoch, `extra["recipe"]["config"]` the run's config).

    Raises:
        CheckpointError: another kind of Lightning checkpoint, or weights that do not fit.
    """
    from ferkit.models import checkpoint_dict
    from ferkit.models._weights import describe_mismatch, safe_load

    ckpt = safe_load(path)
    cfg = ((ckpt.get("hyper_parameters") or {}) if isinstance(ckpt, dict) else {}).get("cfg")
    if not isinstance(cfg, dict) or not isinstance(ckpt.get("state_dict"), dict):
        raise CheckpointError(
            f"{path} is not a training checkpoint of `ferkit train` (no hyper_parameters.cfg "
            "and state_dict); pass a ferkit .pt checkpoint, a run folder or an .onnx export"
        )
    known = {k: v for k, v in cfg.items() if k in FIELDS}
    # the weights come from the file: no pretrained start, no teachers to load
    known.update(pretrained=None, teacher=None, teacher_tta="none")
    module = FERClassifier(known)
    problem = describe_mismatch(module.state_dict(), ckpt["state_dict"])
    if problem:
        raise CheckpointError(f"{path}: the weights do not fit its own config: {problem}")
    module.load_state_dict(ckpt["state_dict"])
    model = module.model.float().eval()
    meta = checkpoint_dict(
        model,
        **module.inference_meta(),
        metrics={"epoch": int(ckpt.get("epoch", -1)) + 1},
        extra={"recipe": {"config": cfg}},
        what=f"cannot read {path}",
    )
    meta.pop("state_dict")
    return model, meta
