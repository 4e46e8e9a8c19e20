"""`train(cfg)`: one experiment from a config to a run folder (`ferkit.training.run_folder`
says what it holds): seeds, data, model, Lightning's Trainer with ferkit's callbacks, and at
the end the ferkit checkpoints best.pt and last.pt, scored, and summary.json.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import signal
import time
import warnings
from datetime import timedelta
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.accelerators import CUDAAccelerator
from lightning.pytorch.callbacks import ModelCheckpoint, Timer
from lightning.pytorch.utilities.exceptions import SIGTERMException

from ferkit.data.dataset import FERDataModule
from ferkit.data.types import source_list
from ferkit.errors import CheckpointError, ConfigError
from ferkit.evaluation.metrics import classification_metrics
from ferkit.evaluation.predict import predict_proba
from ferkit.evaluation.report import read_metrics
from ferkit.inference.backends import native_bf16
from ferkit.inference.model_io import SHIPPED, resolve_model
from ferkit.models import checkpoint_metadata, count_parameters, save_checkpoint
from ferkit.outputs import json_dumps, replaced_atomically
from ferkit.training.callbacks import (
    Throughput,
    WholeCheckpoints,
    loggers,
    progress_bars,
    training_callbacks,
)
from ferkit.training.config import TrainConfig, save_config
from ferkit.training.distill import teacher_paths
from ferkit.training.module import FERClassifier, NonFiniteLossError
from ferkit.training.run_folder import (
    RUN_DIR_ENV,
    check_training_state,
    new_run_dir,
    put_back,
    resume_config,
    resume_dir,
    set_aside,
)

log = logging.getLogger(__name__)


class Interrupted(KeyboardInterrupt):
    """Training stopped by Ctrl-C or SIGTERM; a resumable last.ckpt was saved."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


# Lightning's precision names, as a log line says them.
PRECISION_NAMES = {
    "32-true": "float32",
    "bf16-mixed": "bfloat16 autocast",
    "16-mixed": "float16 autocast",
}


def _precision(cfg: TrainConfig, accelerator: str) -> str:
    """Lightning's precision for `cfg.precision`. auto: bf16 autocast where the hardware has
    bf16 (a GPU that supports it; a CPU with AVX512-BF16 or AMX, `native_bf16`), else float16
    autocast on a GPU and float32 on a CPU. Emulated bf16 is no saving: on a 2-core AVX2-only
    AMD EPYC, a flagship training step at batch 64 ran at 8-9 images/s in bf16 autocast and
    116-138 in float32 (4 December 2026), where AVX512-BF16 makes bf16 3-4x faster."""
    if cfg.precision == "32":
        return "32-true"
    if cfg.precision == "16":
        if accelerator == "cpu":
            raise ConfigError("precision 16 needs a GPU; use auto (default), bf16 or 32 on the CPU")
        return "16-mixed"
    native = torch.cuda.is_bf16_supported() if accelerator == "gpu" else native_bf16()
    if cfg.precision == "auto" and not native:
        return "16-mixed" if accelerator == "gpu" else "32-true"
    if not native:
        log.warning(
            "precision bf16: this %s has no native bfloat16, so it is emulated and slower than "
            "float32 (on an AVX2-only CPU about 15x); precision auto picks float32 here",
            accelerator.upper(),
        )
    return "bf16-mixed"


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
        progress: show progress: bars on a terminal, else a line per epoch on stderr.
    """
    smoke = cfg.smoke and not resume  # resolved() turns it off
    if resume:
        run_dir = resume_dir(resume)
        ckpt = run_dir / "checkpoints" / "last.ckpt"
        if check_training_state(ckpt) >= cfg.epochs and (run_dir / "summary.json").exists():
            raise ConfigError(
                f"{run_dir} has finished its {cfg.epochs} epochs: nothing to resume, and its "
                f"files are as they were; to train it longer, ferkit train --resume {run_dir} "
                f"--epochs N, with N above {cfg.epochs}"
            )
        if (run_dir / "metrics.csv").exists():
            read_metrics(run_dir)  # refused now, not after an epoch of training
    else:
        cfg = _paths_resolved(cfg.resolved())
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
        extra_train=cfg.extra_train or (),
        extra_val=cfg.extra_val or (),
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
    precision = _precision(cfg, accelerator)
    if cfg.precision == "auto":
        log.info(
            "precision auto: %s on this %s (Lightning's %s)",
            PRECISION_NAMES[precision],
            accelerator.upper(),
            precision,
        )

    trainer = L.Trainer(
        default_root_dir=run_dir,
        plugins=[WholeCheckpoints()],
        max_epochs=cfg.epochs,
        max_time=timedelta(minutes=cfg.max_time) if cfg.max_time else None,
        accelerator=accelerator,
        devices=cfg.devices,
        num_nodes=cfg.num_nodes,
        strategy=cfg.strategy,
        precision=precision,
        gradient_clip_val=cfg.grad_clip or None,
        logger=loggers(run_dir),
        callbacks=training_callbacks(cfg, run_dir, progress, checkpoints=not smoke),
        deterministic=accelerator == "cpu",
        enable_progress_bar=progress_bars(progress),
        enable_checkpointing=not smoke,
        enable_model_summary=False,
        # every 10 steps, or once an epoch when an epoch is shorter (Lightning warns otherwise)
        log_every_n_steps=max(1, min(10, len(data.splits["train"]) // cfg.batch_size)),
    )
    replaced = None
    if trainer.is_global_zero and not resume:
        replaced = set_aside(run_dir)  # --overwrite: the old run waits until this one trains
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, run_dir / "config.yaml")
    elif trainer.is_global_zero and cfg != resume_config(run_dir):
        # resumed with more epochs (or another override): the run's recipe says so, so that
        # the next --resume goes on to the same end
        save_config(cfg, run_dir / "config.yaml")
    os.environ[RUN_DIR_ENV] = str(run_dir)  # DDP workers started by fit() inherit it
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
    except OSError:  # a full disk, a folder gone: the last checkpoint written is whole
        if (run_dir / "checkpoints" / "last.ckpt").is_file():
            log.warning(
                "the run stopped at epoch %d; once the cause is mended, resume it with "
                "`ferkit train --resume %s`",
                trainer.current_epoch + 1,
                run_dir,
            )
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
        if replaced is not None and trainer.global_step == 0:
            put_back(replaced, run_dir)  # failed before its first step: as if never started
    _finish(trainer, module, data, cfg, run_dir, time.perf_counter() - started)
    if replaced is not None:
        shutil.rmtree(replaced)
    if trainer.world_size > 1:
        log.info("rank %d finished", trainer.global_rank)
    return run_dir


def _paths_resolved(cfg: TrainConfig) -> TrainConfig:
    """`cfg` with its data files as absolute paths, so the run's config.yaml and summary name
    them from any folder (`ferkit report RUN`, `ferkit train --resume RUN`), and `pretrained`
    and the teachers as the model files they name: a shipped model's name (`flagship`) or a
    run folder, as `--model` is named, becomes its file. A data path or teacher that does not
    exist is left for the data module or the teachers' loader to refuse; a `pretrained` that
    names nothing is refused here, before the data loads."""
    paths = {}
    for key in ("data", "ferplus", "extra_train", "extra_val"):
        if value := getattr(cfg, key):
            many = key.startswith("extra")
            paths[key] = (
                [_absolute(str(p)) for p in source_list(value)] if many else _absolute(value)
            )
    if cfg.teacher:  # the files they name, as for pretrained below
        found = [_model_file(t) for t in teacher_paths(cfg.teacher)]
        paths["teacher"] = found if isinstance(cfg.teacher, list) else found[0]
    start = cfg.pretrained
    if start and Path(start).is_file():
        paths["pretrained"] = _absolute(start)
    elif start and str(start).lower() != "imagenet":
        if not Path(start).exists() and str(start) not in SHIPPED:
            raise ConfigError(
                f"pretrained: {start}: no such file or folder; pass a checkpoint (.pt, .ckpt), "
                f"a run folder, a shipped model's name ({', '.join(SHIPPED)}), or imagenet "
                "(the transfer models)"
            )
        paths["pretrained"] = str(resolve_model(start).resolve())
    return dataclasses.replace(cfg, **paths)


def _absolute(path: str) -> str:
    """A data path that exists as an absolute path; one that does not as it is."""
    found = Path(path).expanduser()
    return str(found.resolve()) if found.exists() else path


def _model_file(name: str) -> str:
    """The model file a path, run folder or shipped name stands for, as an absolute path;
    `name` as it is where it names none (the teachers' loader says why)."""
    try:
        return str(resolve_model(name).resolve())
    except CheckpointError:
        return name


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
    throughput = next(c for c in trainer.callbacks if isinstance(c, Throughput))
    meta = module.inference_meta()
    hardware = _hardware(trainer)
    recipe = {
        "config": cfg.to_dict(),
        "train_seconds": round(throughput.seconds, 1),
        "n_train": len(data.splits["train"]),
        "data": cfg.data,
        "hardware": hardware,
        "precision": trainer.precision,
        "torch": torch.__version__,
        **_parent(cfg),
    }
    if module.teachers:
        recipe["teachers"] = [t.record() for t in module.teachers]
    scores = {}
    # scored where it trained (Lightning's teardown has moved it to the CPU): on a GPU, the
    # CPU would take longer to score a wide network than some of its epochs took to train
    module = module.float().to(trainer.strategy.root_device)
    best_epoch = trainer.current_epoch  # 1-based: the epochs done, the last of them
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
            saved = torch.load(path, map_location="cpu", weights_only=True)
            module.load_state_dict(saved["state_dict"])
            if name == "best":
                best_epoch = saved["epoch"] + 1  # Lightning counts from 0
        val = _score(module, data.splits["val"])
        metrics = {
            "val_accuracy": val["accuracy"],
            "val_loss": val["loss"],
            "val_macro_f1": val["macro_f1"],
            "val_n": val["n"],
        }
        if data.extra_val_splits:  # each extra_val source's val split, in the config's order
            extra_val = [_score(module, split) for split in data.extra_val_splits]
            metrics["extra_val"] = [
                {"data": path, "accuracy": m["accuracy"], "n": m["n"]}
                for path, m in zip(data.extra_val, extra_val, strict=True)
            ]
        test = data.splits.get("test")
        if name == "best" and test is not None and len(test):
            scores["test"] = _score(module, test)
            metrics.update(test_accuracy=scores["test"]["accuracy"], test_n=scores["test"]["n"])
        scores[name] = val
        if name == "best" and "extra_val" in metrics:
            scores["extra_val"] = metrics["extra_val"]
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
        "best_epoch": best_epoch,
        "val_accuracy": best.get("accuracy"),
        "val_loss": best.get("loss"),
        "val_n": best.get("n"),
        "extra_val": scores.get("extra_val"),
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
        "precision": trainer.precision,
    }
    with replaced_atomically(run_dir / "summary.json") as tmp:  # a --resume rewrites it
        tmp.write_text(json_dumps(summary, indent=1))


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
