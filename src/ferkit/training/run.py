"""`train(cfg)`: one experiment from a config to a run folder.

A run folder holds `config.yaml` (the resolved config), `metrics.csv` (per epoch, from
Lightning's CSVLogger), `checkpoints/{best,last}.ckpt` (full training state, for --resume),
`best.pt` and `last.pt` (ferkit checkpoints: what inference needs) and `summary.json`.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import logging
import os
import shutil
import signal
import time
import warnings
from datetime import datetime, timedelta
from pathlib import Path

import lightning as L
import numpy as np
import pandas as pd
import torch
from lightning.pytorch.accelerators import CUDAAccelerator
from lightning.pytorch.callbacks import (
    Callback,
    EarlyStopping,
    EMAWeightAveraging,
    LearningRateMonitor,
    ModelCheckpoint,
    Timer,
    TQDMProgressBar,
)
from lightning.pytorch.callbacks.progress.tqdm_progress import convert_inf
from lightning.pytorch.utilities.exceptions import SIGTERMException

from ferkit.data.dataset import FERDataModule
from ferkit.errors import CheckpointError, ConfigError
from ferkit.evaluation.metrics import classification_metrics
from ferkit.evaluation.predict import predict_proba
from ferkit.models import checkpoint_metadata, count_parameters, save_checkpoint
from ferkit.models._weights import safe_load
from ferkit.outputs import json_dumps, replaced_atomically
from ferkit.training.config import TrainConfig, load_config, save_config
from ferkit.training.module import FERClassifier, NonFiniteLossError

log = logging.getLogger(__name__)

RUN_DIR_ENV = "FERKIT_RUN_DIR"  # lets DDP worker processes find the folder rank 0 chose


def new_run_dir(cfg: TrainConfig, overwrite: bool = False) -> Path:
    """The run folder for a new run: never an existing, non-empty one unless `overwrite`."""
    if os.environ.get(RUN_DIR_ENV):
        return Path(os.environ[RUN_DIR_ENV])
    base = Path(cfg.out) if cfg.out else Path("runs") / f"{cfg.name}-{datetime.now():%Y%m%d-%H%M%S}"
    if overwrite or not base.exists() or not any(base.iterdir()):
        return base
    n = 2
    while (candidate := base.with_name(f"{base.name}-{n}")).exists():
        n += 1
    log.warning("%s exists; this run goes to %s (use --overwrite to replace)", base, candidate)
    return candidate


def resume_dir(resume: str | Path) -> Path:
    """The run folder to resume (given the folder or a checkpoint inside it)."""
    path = Path(resume)
    run_dir = path.parent.parent if path.suffix == ".ckpt" else path
    if not (run_dir / "checkpoints" / "last.ckpt").exists():
        raise ConfigError(f"{run_dir}: no checkpoints/last.ckpt to resume from")
    return run_dir


def resume_config(resume: str | Path, overrides: dict | None = None) -> TrainConfig:
    """The config a run was started with, with `overrides` (e.g. more epochs) applied."""
    return load_config(resume_dir(resume) / "config.yaml", overrides)


class Interrupted(KeyboardInterrupt):
    """Training stopped by Ctrl-C or SIGTERM; a resumable last.ckpt was saved."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class _CheckpointOnInterrupt(Callback):
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


class _Throughput(Callback):
    """Training time and images/s, for the summary and `ferkit compare`: the time of the
    training steps finished (validation excluded), summed across resumes."""

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


def _precision(cfg: TrainConfig, accelerator: str) -> str:
    if cfg.precision == "auto" or cfg.precision == "bf16":
        return "bf16-mixed"
    if cfg.precision == "16":
        if accelerator == "cpu":
            raise ConfigError("precision 16 needs a GPU; use bf16 (default) or 32 on the CPU")
        return "16-mixed"
    return "32-true"


def _accelerator(cfg: TrainConfig) -> str:
    if cfg.device == "auto":
        return "gpu" if torch.cuda.is_available() else "cpu"
    if cfg.device in ("gpu", "cuda") and not torch.cuda.is_available():
        raise ConfigError("--device gpu asked for, but PyTorch sees no GPU; use --device cpu")
    return {"cuda": "gpu"}.get(cfg.device, cfg.device)


def train(
    cfg: TrainConfig, *, resume: str | None = None, overwrite: bool = False, progress: bool = True
) -> Path:
    """Train a model as `cfg` says; returns the run folder.

    Args:
        cfg: the experiment (see TrainConfig). To resume, pass the run's own config
            (`resume_config`), possibly with more epochs.
        resume: a run folder (or its last.ckpt) to continue from its last checkpoint.
        overwrite: reuse an existing run folder instead of creating a new one.
        progress: show a progress bar.
    """
    smoke = cfg.smoke and not resume  # resolved() turns it off
    if resume:
        run_dir = resume_dir(resume)
        ckpt = run_dir / "checkpoints" / "last.ckpt"
        _check_training_state(ckpt)
    else:
        cfg = _data_resolved(cfg.resolved())
        run_dir, ckpt = new_run_dir(cfg, overwrite), None
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    data = FERDataModule(
        cfg.data,
        image_size=cfg.data_size,
        batch_size=cfg.batch_size,
        num_workers=cfg.num_workers,
        balanced=cfg.balanced_sampler,
        val_fraction=cfg.val_fraction,
        limit=cfg.limit,
        seed=cfg.seed,
        ferplus=cfg.ferplus,
        ferplus_labels=cfg.ferplus_labels,
        hard_label_weight=cfg.hard_label_weight,
    )
    data.setup()
    counts = list(data.splits["train"].class_counts(data.data.labels).values())
    module = FERClassifier(cfg.to_dict(), class_counts=counts)
    if module.spec.input_size != (cfg.data_size, cfg.data_size):
        log.info(
            "faces are %dx%d; each batch is resized to %s's %dx%d input",
            cfg.data_size,
            cfg.data_size,
            cfg.model,
            *module.spec.input_size,
        )
    accelerator = _accelerator(cfg)

    trainer = L.Trainer(
        default_root_dir=run_dir,
        max_epochs=cfg.epochs,
        max_time=timedelta(minutes=cfg.max_time) if cfg.max_time else None,
        accelerator=accelerator,
        devices=cfg.devices,
        num_nodes=cfg.num_nodes,
        strategy=cfg.strategy,
        precision=_precision(cfg, accelerator),
        gradient_clip_val=cfg.grad_clip or None,
        logger=_loggers(run_dir),
        callbacks=_callbacks(cfg, run_dir, progress, checkpoints=not smoke),
        deterministic=accelerator == "cpu",
        enable_progress_bar=progress,
        enable_checkpointing=not smoke,
        enable_model_summary=False,
        # every 10 steps, or once an epoch when an epoch is shorter (Lightning warns otherwise)
        log_every_n_steps=max(1, min(10, len(data.splits["train"]) // cfg.batch_size)),
    )
    replaced = None
    if trainer.is_global_zero and not resume:
        replaced = _set_aside(run_dir)  # --overwrite: the old run waits until this one trains
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, run_dir / "config.yaml")
    os.environ[RUN_DIR_ENV] = str(run_dir)  # DDP workers started by fit() inherit it
    earlier = _set_aside_metrics(run_dir) if resume and trainer.is_global_zero else None
    started = time.perf_counter()
    try:
        with warnings.catch_warnings():
            # the run folder holds config.yaml already: that is expected, not a stale log
            warnings.filterwarnings("ignore", message="Experiment logs directory")
            # Lightning's own use of a torch API torch deprecated: nothing a user can change
            warnings.filterwarnings("ignore", message=r".*LeafSpec.* is deprecated")
            # --resume writes into the run's own checkpoints/ folder: expected
            warnings.filterwarnings("ignore", message=r"Checkpoint directory .* not empty")
            # weights_only whatever TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD says: no pickled code runs
            trainer.fit(module, datamodule=data, ckpt_path=ckpt, weights_only=True)
    except NonFiniteLossError:
        _finish(trainer, module, data, cfg, run_dir, time.perf_counter() - started, stopped="nan")
        raise
    except SystemExit as exc:
        # Lightning turns Ctrl-C into sys.exit(1) and SIGTERM into SIGTERMException after
        # on_exception saved last.ckpt, and leaves SIGINT ignored; restore it and report an
        # interrupt the caller can handle
        signal.signal(signal.SIGINT, signal.default_int_handler)
        if trainer.interrupted:
            log.warning("interrupted: resume with `ferkit train --resume %s`", run_dir)
            if replaced is not None and trainer.global_step > 0:
                log.warning("the run --overwrite replaces is kept in %s", replaced)
            sigterm = isinstance(exc, SIGTERMException)
            raise Interrupted(signal.SIGTERM if sigterm else signal.SIGINT) from None
        raise
    finally:
        os.environ.pop(RUN_DIR_ENV, None)
        if earlier is not None:
            _merge_metrics(run_dir / "metrics.csv", earlier)
        if replaced is not None and trainer.global_step == 0:
            _put_back(replaced, run_dir)  # failed before its first step: as if never started
    _finish(trainer, module, data, cfg, run_dir, time.perf_counter() - started)
    if replaced is not None:
        shutil.rmtree(replaced)
    if trainer.world_size > 1:
        log.info("rank %d finished", trainer.global_rank)
    return run_dir


def _check_training_state(ckpt: Path) -> None:
    """Refuse a last.ckpt that is not plain training state (before anything is touched)."""
    state = safe_load(ckpt)  # weights_only: a planted pickle is refused, never run
    if not isinstance(state, dict) or "state_dict" not in state:
        raise CheckpointError(f"{ckpt} is not a Lightning training checkpoint (no state_dict)")


def _set_aside(run_dir: Path) -> Path | None:
    """Move an existing run (`--overwrite`) beside `run_dir`; None if there is none."""
    if not run_dir.is_dir() or not any(run_dir.iterdir()):
        return None
    aside = run_dir.with_name(f"{run_dir.name}.replaced-{datetime.now():%Y%m%d-%H%M%S-%f}")
    return run_dir.rename(aside)


def _put_back(aside: Path, run_dir: Path) -> None:
    shutil.rmtree(run_dir, ignore_errors=True)
    aside.rename(run_dir)


def _data_resolved(cfg: TrainConfig) -> TrainConfig:
    """`cfg` with its data files as absolute paths, so the run's config.yaml and summary name
    them from any folder (`ferkit report RUN`); a path that does not exist is left for the data
    module to refuse."""
    paths = {}
    for key in ("data", "ferplus"):
        value = getattr(cfg, key, None)
        if value and Path(value).expanduser().exists():
            paths[key] = str(Path(value).expanduser().resolve())
    return dataclasses.replace(cfg, **paths)


class _EpochMetrics(Callback):
    """metrics.csv: one row per epoch, epochs counted from 1 (as the progress bar and the
    plots count them): the epoch's logged metrics, the step and the learning rate(s) at its end.
    Lightning's CSVLogger writes a row per logging step and per validation, epochs from 0."""

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
        old = pd.read_csv(self.path) if self.path.exists() else None
        table = pd.DataFrame([row]) if old is None else pd.concat([old, pd.DataFrame([row])])
        with replaced_atomically(self.path) as tmp:
            table.to_csv(tmp, index=False)


class _ProgressBar(TQDMProgressBar):
    """Lightning's bar, with epochs counted from 1 as in metrics.csv and the plots."""

    def on_train_epoch_start(self, trainer, *_) -> None:
        # Lightning's own, but for the description (calling it would show "Epoch 0" first)
        if self._leave:
            self.train_progress_bar = self.init_train_tqdm()
        self.train_progress_bar.reset(total=convert_inf(self.total_train_batches))
        self.train_progress_bar.initial = 0
        epoch = f"Epoch {trainer.current_epoch + 1}/{trainer.max_epochs}"
        self.train_progress_bar.set_description(epoch)


def _loggers(run_dir: Path) -> list:
    """TensorBoard event files (run_dir/tensorboard) if it is installed; metrics.csv is written
    by _EpochMetrics."""
    loggers = []
    if importlib.util.find_spec("tensorboard") is not None:
        from lightning.pytorch.loggers import TensorBoardLogger

        loggers.append(TensorBoardLogger(run_dir, name="", version="tensorboard"))
    return loggers


def _set_aside_metrics(run_dir: Path) -> Path | None:
    """A resumed run's metrics.csv starts afresh; keep the earlier epochs to merge back."""
    path = run_dir / "metrics.csv"
    if not path.exists():
        return None
    return path.rename(run_dir / "metrics.before-resume.csv")


def _merge_metrics(path: Path, earlier: Path) -> None:
    old = pd.read_csv(earlier)
    new = pd.read_csv(path) if path.exists() else old.iloc[:0]
    if "epoch" in new and len(new):
        old = old[old["epoch"] < new["epoch"].min()]
    pd.concat([old, new], ignore_index=True).to_csv(path, index=False)
    earlier.unlink()


def _callbacks(
    cfg: TrainConfig, run_dir: Path, progress: bool, checkpoints: bool = True
) -> list[Callback]:
    """`checkpoints=False` (a smoke run): no training state is written, only best.pt."""
    mode = "max" if cfg.monitor == "val_acc" else "min"
    ckpt_dir = run_dir / "checkpoints"
    callbacks: list[Callback] = [_EpochMetrics(run_dir / "metrics.csv"), _Throughput()]
    if _loggers(run_dir):  # it logs to them: TensorBoard when installed
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
            _CheckpointOnInterrupt(ckpt_dir / "last.ckpt"),
        ]
    if progress:
        callbacks.append(_ProgressBar(refresh_rate=10))
    if cfg.patience > 0:
        callbacks.append(EarlyStopping(cfg.monitor, patience=cfg.patience, mode=mode))
    if cfg.ema > 0:
        callbacks.append(EMAWeightAveraging(decay=cfg.ema))
    return callbacks


def _score(module: FERClassifier, split) -> dict:
    """Accuracy, loss and per-class metrics of the module's current weights on a split."""
    probs = predict_proba(module.model.eval(), split.images, spec=module.spec)
    return classification_metrics(np.asarray(split.labels), probs, list(module.labels))


def _parent(cfg: TrainConfig) -> dict:
    """{"parent": ...}: the ferkit checkpoint training started from, with its own recipe, so a
    model trained in stages carries every stage's recipe (nested); {} for any other start."""
    if not cfg.pretrained or not Path(cfg.pretrained).is_file():
        return {}
    meta = checkpoint_metadata(cfg.pretrained)
    if meta is None:
        return {}
    recipe = (meta.get("extra") or {}).get("recipe")
    return {
        "parent": {
            "checkpoint": str(cfg.pretrained),
            "metrics": meta.get("metrics"),
            "recipe": recipe,
        }
    }


def _finish(trainer, module, data, cfg, run_dir, seconds, stopped: str | None = None) -> None:
    """Export ferkit checkpoints (best.pt, last.pt), scored on val (and test), and summary.json.

    Rank 0 only. `best` is the checkpoint with the best monitored validation value.
    """
    if not trainer.is_global_zero:
        return
    ckpt_cb = next((c for c in trainer.callbacks if isinstance(c, ModelCheckpoint)), None)
    throughput = next(c for c in trainer.callbacks if isinstance(c, _Throughput))
    meta = module.inference_meta()
    hardware = _hardware(trainer)
    recipe = {
        "config": cfg.to_dict(),
        "train_seconds": round(throughput.seconds, 1),
        "n_train": len(data.splits["train"]),
        "data": cfg.data,
        "hardware": hardware,
        "torch": torch.__version__,
        **_parent(cfg),
    }
    if module.teachers:
        recipe["teachers"] = [t.record() for t in module.teachers]
    scores = {}
    module = module.float().cpu()
    if ckpt_cb is None:  # a smoke run keeps no training state: its weights now are the best
        sources = {"best": None}
        best_score = trainer.callback_metrics.get(cfg.monitor)
    else:
        sources = {
            "last": Path(ckpt_cb.dirpath) / "last.ckpt",
            "best": Path(ckpt_cb.best_model_path or "-"),
        }
        best_score = ckpt_cb.best_model_score
    for name, path in sources.items():
        if path is not None and not path.is_file():
            continue
        if path is not None:
            state = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
            module.load_state_dict(state)
        val = _score(module, data.splits["val"])
        metrics = {
            "val_accuracy": val["accuracy"],
            "val_loss": val["loss"],
            "val_macro_f1": val["macro_f1"],
            "val_n": val["n"],
        }
        test = data.splits.get("test")
        if name == "best" and test is not None and len(test):
            scores["test"] = _score(module, test)
            metrics.update(test_accuracy=scores["test"]["accuracy"], test_n=scores["test"]["n"])
        scores[name] = val
        save_checkpoint(
            run_dir / f"{name}.pt",
            module.model,
            overwrite=True,
            metrics=metrics,
            extra={"recipe": recipe},
            **meta,
        )
    best = scores.get("best", {})
    summary = {
        "model": cfg.model,
        "parameters": count_parameters(module.model),
        "input_size": list(module.spec.input_size),
        "epochs": trainer.current_epoch,
        "monitor": cfg.monitor,
        "best_val": None if best_score is None else float(best_score),
        "val_accuracy": best.get("accuracy"),
        "val_loss": best.get("loss"),
        "val_n": best.get("n"),
        "test_accuracy": scores["test"]["accuracy"] if "test" in scores else None,
        "test_n": scores["test"]["n"] if "test" in scores else None,
        "train_seconds": round(throughput.seconds, 1),
        "wall_seconds": round(seconds, 1),
        "train_images_per_s": round(throughput.images / throughput.seconds, 1)
        if throughput.seconds
        else None,
        "data": cfg.data,
        "n_train": len(data.splits["train"]),
        "stopped": stopped or _stop_reason(trainer),
        "hardware": hardware,
    }
    (run_dir / "summary.json").write_text(json_dumps(summary, indent=1))


def _stop_reason(trainer) -> str:
    timer = next((c for c in trainer.callbacks if isinstance(c, Timer)), None)
    remaining = timer.time_remaining() if timer is not None else None
    if remaining is not None and remaining <= 0:
        return "max_time"
    return "early" if trainer.should_stop else "max_epochs"


def _hardware(trainer) -> str:
    if isinstance(trainer.accelerator, CUDAAccelerator):
        return f"{trainer.world_size} x {torch.cuda.get_device_name(0)}"
    return f"{trainer.world_size} process(es) x CPU ({os.cpu_count()} cores, {torch.get_num_threads()} threads)"
