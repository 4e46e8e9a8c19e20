"""The run folder: where a new run goes, what `--resume` continues, and how `--overwrite`
keeps the old run until the new one has trained.

A run folder holds `config.yaml` (the resolved config), `metrics.csv` (one row per epoch),
`checkpoints/{best,last}.ckpt` (full training state, for --resume), `best.pt` and `last.pt`
(ferkit checkpoints: what inference needs) and `summary.json`.
"""

from __future__ import annotations

import logging
import os
import shutil
from datetime import datetime
from pathlib import Path

from ferkit.data.types import source_list
from ferkit.errors import CheckpointError, ConfigError
from ferkit.models._weights import safe_load
from ferkit.outputs import refuse_stdout, refuse_unplaceable
from ferkit.training.config import TrainConfig, load_config
from ferkit.training.distill import teacher_paths

log = logging.getLogger(__name__)

RUN_DIR_ENV = "FERKIT_RUN_DIR"  # lets DDP worker processes find the folder rank 0 chose


def new_run_dir(cfg: TrainConfig, overwrite: bool = False) -> Path:
    """The run folder for a new run: never an existing, non-empty one unless `overwrite`."""
    if os.environ.get(RUN_DIR_ENV):
        return Path(os.environ[RUN_DIR_ENV])
    base = Path(cfg.out) if cfg.out else Path("runs") / f"{cfg.name}-{datetime.now():%Y%m%d-%H%M%S}"
    refuse_stdout({"out": cfg.out})  # `--out -` (or --set out=-): a run folder named "-"
    if base.is_file():
        raise ConfigError(f"{base}: is a file; --out names the run's folder, choose another")
    refuse_unplaceable(base / "config.yaml")  # now, not once the data has loaded
    if not base.exists() or not any(base.iterdir()):
        return base
    if overwrite:  # replacing the folder deletes it once the new run has trained
        if not is_run_folder(base):
            raise ConfigError(
                f"{base} is not a ferkit run (no config.yaml of one): --overwrite replaces an "
                "earlier run, and would delete what this folder holds; choose another --out"
            )
        inside = [
            (k, p) for k, p in run_inputs(cfg) if Path(p).resolve().is_relative_to(base.resolve())
        ]
        if inside:
            key, path = inside[0]
            raise ConfigError(
                f"{base} holds {path}, this run's {key}: --overwrite would delete it once the "
                "run has trained; choose another --out"
            )
        return base
    n = 2
    while (candidate := base.with_name(f"{base.name}-{n}")).exists():
        n += 1
    log.warning("%s exists; this run goes to %s (use --overwrite to replace)", base, candidate)
    return candidate


def run_inputs(cfg: TrainConfig) -> list[tuple[str, str]]:
    """(config key, path) of every file or folder a run reads: data, labels, starting point
    and teachers (`pretrained: imagenet` aside: torchvision's weights, no path)."""
    found = [(key, getattr(cfg, key)) for key in ("data", "ferplus") if getattr(cfg, key)]
    found += [
        (key, p) for key in ("extra_train", "extra_val") for p in source_list(getattr(cfg, key))
    ]
    found += [("teacher", p) for p in teacher_paths(cfg.teacher)]
    if cfg.pretrained and str(cfg.pretrained).lower() != "imagenet":
        found.append(("pretrained", cfg.pretrained))
    return found


def is_run_folder(path: Path) -> bool:
    """Whether `path` holds a run `ferkit train` started: a config.yaml it can read."""
    if not (path / "config.yaml").is_file():
        return False
    try:
        load_config(path / "config.yaml")
    except ConfigError:
        return False
    return True


def resume_dir(resume: str | Path) -> Path:
    """The run folder to resume (given the folder or a checkpoint inside it)."""
    path = Path(resume)
    run_dir = path.parent.parent if path.suffix == ".ckpt" else path
    if (run_dir / "checkpoints" / "last.ckpt").exists():
        return run_dir
    if not run_dir.is_dir():
        why = "no such run folder" if not run_dir.exists() else "not a run folder"
        raise ConfigError(f"{run_dir}: {why}; --resume takes the folder `ferkit train` wrote")
    said = f"{run_dir}: no checkpoints/last.ckpt to resume from"
    if (run_dir / "best.pt").is_file():  # a finished --smoke run keeps its weights only
        said += (
            " (a --smoke run keeps best.pt only); start a new run, or fine-tune its weights: "
            f"--set pretrained={run_dir}/best.pt"
        )
    raise ConfigError(said)


def resume_config(resume: str | Path, overrides: dict | None = None) -> TrainConfig:
    """The config a run was started with, with `overrides` (e.g. more epochs) applied."""
    return load_config(resume_dir(resume) / "config.yaml", overrides)


def check_training_state(ckpt: Path) -> int:
    """Refuse a last.ckpt that is not plain training state (before anything is touched);
    returns how many epochs it has finished (trained and validated)."""
    state = safe_load(ckpt)  # weights_only: a planted pickle is refused, never run
    if not isinstance(state, dict) or "state_dict" not in state:
        raise CheckpointError(f"{ckpt} is not a Lightning training checkpoint (no state_dict)")
    try:  # Lightning's count; an interrupted epoch is not in it
        return int(state["loops"]["fit_loop"]["epoch_progress"]["total"]["processed"])
    except (KeyError, TypeError, ValueError):
        return 0  # another layout: Lightning decides where to go on


def set_aside(run_dir: Path) -> Path | None:
    """Move an existing run (`--overwrite`) beside `run_dir`; None if there is none."""
    if not run_dir.is_dir() or not any(run_dir.iterdir()):
        return None
    aside = run_dir.with_name(f"{run_dir.name}.replaced-{datetime.now():%Y%m%d-%H%M%S-%f}")
    return run_dir.rename(aside)


def put_back(aside: Path, run_dir: Path) -> None:
    """Undo `set_aside`: the new run failed before its first step."""
    shutil.rmtree(run_dir, ignore_errors=True)
    aside.rename(run_dir)
