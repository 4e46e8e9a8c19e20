"""What a training run does besides training: checkpoints, metrics.csv, the progress bar (a
line per epoch where stderr is no terminal), training time, early stopping and the weight
average (`training_callbacks`), and how checkpoints are written (`WholeCheckpoints`).
"""

from __future__ import annotations

import importlib.util
import sys
import time
from pathlib import Path

import pandas as pd
from lightning.fabric.plugins import TorchCheckpointIO
from lightning.pytorch.callbacks import (
    Callback,
    EarlyStopping,
    EMAWeightAveraging,
    LearningRateMonitor,
    ModelCheckpoint,
    TQDMProgressBar,
)
from lightning.pytorch.callbacks.progress.tqdm_progress import convert_inf
from lightning.pytorch.utilities.exceptions import SIGTERMException

from ferkit.evaluation.plots import per_source
from ferkit.evaluation.report import read_metrics
from ferkit.models.checkpoint import write_torch
from ferkit.outputs import replaced_atomically
from ferkit.training.config import TrainConfig


def training_callbacks(
    cfg: TrainConfig, run_dir: Path, progress: bool, checkpoints: bool = True
) -> list[Callback]:
    """The callbacks of a run in `run_dir`. `checkpoints=False` (a smoke run): no training
    state is written, only best.pt."""
    mode = "max" if cfg.monitor == "val_acc" else "min"
    ckpt_dir = run_dir / "checkpoints"
    callbacks: list[Callback] = [EpochMetrics(run_dir / "metrics.csv"), Throughput()]
    if loggers(run_dir):  # it logs to them: TensorBoard when installed
        callbacks.append(LearningRateMonitor(logging_interval="step"))
    if checkpoints:
        callbacks[:0] = [
            # best by the monitored value; first, so it is trainer.checkpoint_callback
            ModelCheckpoint(
                ckpt_dir,
                filename="best",
                monitor=cfg.monitor,
                mode=mode,
                save_top_k=1,
                enable_version_counter=False,
            ),
            # the latest epoch, every epoch, for --resume (monitor=None keeps the newest)
            ModelCheckpoint(ckpt_dir, filename="last", save_top_k=1, enable_version_counter=False),
            CheckpointOnInterrupt(ckpt_dir / "last.ckpt"),
        ]
    if progress_bars(progress):
        callbacks.append(ProgressBar(refresh_rate=10))
    elif progress:
        callbacks.append(EpochLines())
    if cfg.patience > 0:
        callbacks.append(EarlyStopping(cfg.monitor, patience=cfg.patience, mode=mode))
    if cfg.ema > 0:
        callbacks.append(EMAWeightAveraging(decay=cfg.ema))
    return callbacks


def loggers(run_dir: Path) -> list:
    """TensorBoard event files (run_dir/tensorboard) if it is installed; metrics.csv is written
    by EpochMetrics."""
    found = []
    if importlib.util.find_spec("tensorboard") is not None:
        from lightning.pytorch.loggers import TensorBoardLogger

        found.append(TensorBoardLogger(run_dir, name="", version="tensorboard"))
    return found


class WholeCheckpoints(TorchCheckpointIO):
    """Writes each checkpoint beside its file and renames it into place (`write_torch`).
    Lightning's own writer copies a temporary file from /tmp onto the checkpoint's name (the
    copy truncates the previous one first), so a disk that filled up mid-run left a truncated
    checkpoint there (seen: 57 KB of a 28 MB best.ckpt) and said "[Errno 28] ... '/tmp/tmpx'
    -> 'PATH'"; now a failed write keeps the previous checkpoint whole, for --resume, and names
    the file it could not write."""

    def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:
        if storage_options is not None:  # Lightning's own refusal, with its message
            return super().save_checkpoint(checkpoint, path, storage_options)
        write_torch(checkpoint, Path(path))
        return None


class CheckpointOnInterrupt(Callback):
    """Saves a resumable `last.ckpt` when training is interrupted (Ctrl-C, SIGTERM), and only
    then: an error (a bad value, NaN weights) must not replace a good checkpoint, and neither
    may an interrupt that came before this session trained a single step."""

    def __init__(self, path: Path):
        self.path, self.first_step = path, None

    def on_train_start(self, trainer, pl_module) -> None:
        self.first_step = trainer.global_step

    def on_exception(self, trainer, pl_module, exception) -> None:
        interrupt = isinstance(exception, KeyboardInterrupt | SIGTERMException)
        if interrupt and self.first_step is not None and trainer.global_step > self.first_step:
            trainer.save_checkpoint(self.path)


class Throughput(Callback):
    """Training time and images/s, for the summary and `ferkit compare`: the time of the
    training steps finished (validation excluded), summed across resumes."""

    # The key its state is saved under in a checkpoint; runs saved before the class had
    # this name keep their training time on --resume.
    state_key = "_Throughput"

    def __init__(self):
        self.seconds, self.images, self._t0 = 0.0, 0, None

    def on_train_epoch_start(self, trainer, pl_module):
        self._t0 = time.perf_counter()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if self._t0 is None:  # resumed in the middle of an epoch
            self._t0 = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        now = time.perf_counter()
        self.seconds += now - self._t0
        self._t0 = now
        self.images += len(batch[0]) * trainer.world_size

    def on_train_epoch_end(self, trainer, pl_module):
        self._t0 = None

    def state_dict(self):
        return {"seconds": self.seconds, "images": self.images}

    def load_state_dict(self, state):
        self.seconds, self.images = state["seconds"], state["images"]


class EpochMetrics(Callback):
    """metrics.csv: one row per epoch, epochs counted from 1 (as the progress bar and the
    plots count them): the epoch's logged metrics, the step and the learning rate(s) at its end.
    Lightning's CSVLogger writes a row per logging step and per validation, epochs from 0.
    The file is replaced whole at each epoch's end, so a run killed at any moment, resumed
    or not, keeps every epoch it finished."""

    def __init__(self, path: Path):
        self.path = path

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if not trainer.is_global_zero or trainer.sanity_checking:
            return
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
        row = {"epoch": trainer.current_epoch + 1, "step": trainer.global_step}
        for key, value in metrics.items():
            # "train_loss" logged per step and per epoch: keep the epoch's mean, train_loss_epoch
            if not key.endswith("_step") and f"{key}_epoch" not in metrics:
                row[key] = value
        for optimizer in trainer.optimizers:
            groups, prefix = optimizer.param_groups, f"lr-{type(optimizer).__name__}"
            for i, group in enumerate(groups):
                # named as LearningRateMonitor names them
                name = (
                    f"{prefix}/{group.get('name') or f'pg{i + 1}'}" if len(groups) > 1 else prefix
                )
                row[name] = float(group["lr"])
        table = pd.DataFrame([row])
        if self.path.exists():
            # the rows before this epoch: a resumed run redoes the epochs after its checkpoint
            old = read_metrics(self.path.parent)
            table = pd.concat([old[old["epoch"] < row["epoch"]], table])
        with replaced_atomically(self.path) as tmp:
            table.to_csv(tmp, index=False)


def progress_bars(progress: bool) -> bool:
    """Progress bars only where someone watches them: on a terminal. In a log file (nohup, a
    batch job, CI) their redraws are carriage returns, tens of kB per epoch; `EpochLines`
    writes a line per epoch there instead."""
    return progress and sys.stderr.isatty()


class EpochLines(Callback):
    """One line per epoch on stderr, for logs: `epoch 3/30: train loss 1.214 acc 53.8% | val
    loss 1.135 acc 57.2% | lr 0.00946 | 82 s`; with `extra_val`, `val loss 1.135 acc 57.2%
    (57.9%, 56.5%)`: the mean, then each source's."""

    def __init__(self):
        self._t0 = time.perf_counter()

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._t0 = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if not trainer.is_global_zero or trainer.sanity_checking:
            return
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
        parts = [f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs}:"]
        for split in ("train", "val"):
            loss = metrics.get(f"{split}_loss_epoch", metrics.get(f"{split}_loss"))
            acc = metrics.get(f"{split}_acc")
            shown = [f"loss {loss:.3f}" if loss is not None else "",
                     f"acc {acc:.1%}" if acc is not None else ""]  # fmt: skip
            sources = [metrics[k] for k in per_source(metrics, f"{split}_acc")]
            if sources:  # extra_val: the accuracy is their mean; each source's too
                shown.append("(" + ", ".join(f"{a:.1%}" for a in sources) + ")")
            if any(shown):
                parts.append(" ".join([split, *filter(None, shown)]) + " |")
        if trainer.optimizers:
            parts.append(f"lr {trainer.optimizers[0].param_groups[0]['lr']:.3g} |")
        parts.append(f"{time.perf_counter() - self._t0:.0f} s")
        print(" ".join(parts), file=sys.stderr, flush=True)


class ProgressBar(TQDMProgressBar):
    """Lightning's bar, with epochs counted from 1 as in metrics.csv and the plots."""

    def on_train_epoch_start(self, trainer, *_) -> None:
        # Lightning's own, but for the description (calling it would show "Epoch 0" first)
        if self._leave:
            self.train_progress_bar = self.init_train_tqdm()
        self.train_progress_bar.reset(total=convert_inf(self.total_train_batches))
        self.train_progress_bar.initial = 0
        epoch = f"Epoch {trainer.current_epoch + 1}/{trainer.max_epochs}"
        self.train_progress_bar.set_description(epoch)
