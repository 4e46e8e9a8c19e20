"""The training configuration: one flat dataclass, loaded from YAML and `--set key=value`.

Every field has a one-line comment; `ferkit train --help-config` prints them. Unknown keys fail
with the valid names and close matches; values of the wrong type name the key and the type. A
recipe may start with `extends: base.yaml` and list only the keys it changes.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ferkit.errors import ConfigError, parse_problem, unknown
from ferkit.labels import FERPLUS_LABEL_MODES
from ferkit.outputs import replaced_atomically
from ferkit.tta import TTA_MODES

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULERS = ("none", "exponential", "step", "cosine", "onecycle", "plateau")
PRECISIONS = ("auto", "32", "bf16", "16")
MONITORS = ("val_acc", "val_loss")


@dataclass
class TrainConfig:
    # --- experiment
    name: str = "run"  # run name: the default folder is runs/NAME-YYYYmmdd-HHMMSS
    out: str | None = None  # run folder (default runs/NAME-YYYYmmdd-HHMMSS); never reused
    seed: int = 0  # seeds Python, NumPy, torch and the data split/sampler
    # --- data
    data: str = "../shared/data/fer2013"  # CSV, msambare/Kaggle folder, or class folders
    extra_train: str | list | None = None  # more training sources (a path or a list); val: data's
    extra_val: str | list | None = None  # more validation sources (val split); val_acc: the mean
    data_size: int = 48  # side of the decoded (cached) gray arrays
    val_fraction: float = 0.1  # held out of train when the source has no val split
    limit: int | None = None  # use at most this many images per split (smoke runs)
    num_workers: int = 0  # DataLoader workers (0: in-process; batches are memory-mapped)
    ferplus: str | None = None  # FER+ label file (fer2013new.csv[.gz]) for the CSV data
    ferplus_labels: str = "votes"  # with ferplus: votes (soft labels), majority or fer2013-votes
    hard_label_weight: float = 0.0  # soft labels: share of the hard label mixed into them
    # --- model
    model: str = "flagship"  # a name from `ferkit models`
    model_kwargs: dict = field(default_factory=dict)  # extra keyword arguments of the model
    image_size: int | None = None  # model input side; None: the model's default
    pretrained: str | None = None  # start from: checkpoint, run, shipped name, or imagenet
    freeze: str | None = None  # transfer models: none, head, last_stage
    body_lr_scale: float = 1.0  # learning-rate factor of a pretrained body (head at lr)
    batch_norm: bool | None = None  # ablation: None keeps the model's default
    dropout: float | None = None  # ablation: None keeps the model's default, 0 disables
    # --- optimisation
    epochs: int = 30  # training epochs, the length of the schedule
    batch_size: int = 64  # images per step (per process under DDP)
    lr: float = 1e-3  # peak learning rate
    optimizer: str = "adamw"  # sgd, adam, adamw
    momentum: float = 0.9  # sgd
    nesterov: bool = False  # sgd
    weight_decay: float = 5e-4  # L2 penalty of the optimizer
    scheduler: str = "cosine"  # none, exponential, step, cosine, onecycle, plateau
    warmup_epochs: float = 0.0  # linear warm-up before cosine
    gamma: float = 0.95  # exponential/step decay factor
    step_size: int = 10  # step: epochs between decays
    plateau_patience: int = 3  # plateau: epochs without improvement before decay
    plateau_factor: float = 0.5  # plateau: decay factor
    label_smoothing: float = 0.0  # cross-entropy label smoothing, e.g. 0.1
    class_weights: bool = False  # weight the loss by inverse class frequency
    balanced_sampler: bool = False  # draw classes equally often instead
    grad_clip: float = 0.0  # clip the gradient norm (0: off)
    precision: str = "auto"  # auto (bf16 where native, else 32 on CPU, 16 on GPU), 32, bf16, 16
    channels_last: bool = True  # faster convolutions on CPU (oneDNN) and GPU
    ema: float = 0.0  # exponential moving average of weights, e.g. 0.999 (0: off)
    # --- augmentation (training batches only; `augment: false` switches all off)
    augment: bool = True  # false switches all augmentation off
    hflip: bool = True  # horizontal flip, p=0.5
    rotation: float = 10.0  # max degrees
    shift: float = 0.1  # max translation, fraction of the side
    scale: float = 0.1  # max zoom in/out, fraction
    crop_scale: float = 0.0  # random resized crop: min area fraction (0: off)
    brightness: float = 0.2  # max brightness change, fraction
    contrast: float = 0.2  # max contrast change, fraction
    erasing: float = 0.0  # random erasing probability
    autocontrast: float = 0.0  # p of stretching contrast to 0-255
    equalize: float = 0.0  # p of histogram equalisation (as the FER-2013 folder copy is)
    blur: float = 0.0  # p of Gaussian blur with sigma from blur_sigma
    blur_sigma: list = field(default_factory=lambda: [0.3, 1.2])  # [min, max] in pixels
    downscale: float = 0.0  # p of shrinking the face and scaling it back (small faces)
    downscale_side: list = field(default_factory=lambda: [12, 32])  # [min, max] shrunk side
    jpeg: float = 0.0  # p of JPEG compression with a quality from jpeg_quality
    jpeg_quality: list = field(default_factory=lambda: [30, 90])  # [min, max] JPEG quality
    mixup: float = 0.0  # mixup alpha (0: off)
    cutmix: float = 0.0  # cutmix alpha (0: off)
    # --- knowledge distillation (off unless a teacher is named)
    teacher: str | list | None = None  # checkpoint or run folder (a list: an ensemble)
    distill_weight: float = 0.5  # share of the teacher term in the loss (the rest: labels)
    distill_temperature: float = 2.0  # softens teacher and student logits in the teacher term
    teacher_tta: str = "none"  # teachers average their views: none, flip, tencrop (10x cost)
    # --- early stopping and checkpoints
    monitor: str = "val_acc"  # val_acc or val_loss: selects the best checkpoint too
    patience: int = 10  # epochs without improvement before stopping (0: never)
    max_time: float = 0.0  # stop after this many minutes of training, validated (0: no limit)
    # --- hardware
    device: str = "auto"  # auto, cpu, gpu
    devices: int | str = 1  # processes/GPUs per node (DDP when > 1)
    num_nodes: int = 1  # machines (multi-node DDP)
    strategy: str = "auto"  # auto, ddp, ddp_spawn, ...
    smoke: bool = False  # shrink to seconds: 1 epoch, 256 images per split

    def resolved(self) -> TrainConfig:
        """The config with `smoke` applied: the values that actually run, `smoke` off."""
        if not self.smoke:
            return self
        return dataclasses.replace(
            self,
            epochs=min(self.epochs, 1),
            limit=min(self.limit or 256, 256),
            batch_size=min(self.batch_size, 32),
            patience=0,
            smoke=False,
        )

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}
_HINTS = typing.get_type_hints(TrainConfig)


@functools.cache
def field_comments() -> dict[str, str]:
    """Each config key's one-line comment in `TrainConfig`'s source ("" where it has none)."""
    comments = dict.fromkeys(FIELDS, "")
    for line in inspect.getsource(TrainConfig).splitlines():
        match = re.match(r"\s+(\w+): [^#]*#\s*(.*)$", line)
        if match and match[1] in comments:
            comments[match[1]] = match[2]
    return comments


EXTENDS = "extends"  # a recipe's key naming the recipe it builds on (not a config field)


def _unknown_key(key: str) -> ConfigError:
    return ConfigError(unknown("config key", key, [*FIELDS, EXTENDS]))


NULLS = ("null", "none", "~")


def _coerce(key: str, value: Any) -> Any:
    """Check `value` against the field's type; strings from --set are parsed as YAML first."""
    hint = _HINTS[key]
    allowed = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    if isinstance(value, str) and (
        str not in allowed or (list in allowed and value.lstrip().startswith("["))
    ):
        try:
            value = yaml.safe_load(value)  # `--set teacher=[a.pt, b.pt]` is a list
        except yaml.YAMLError as exc:
            raise ConfigError(
                f"{key!r}: {value!r} is not valid YAML ({parse_problem(exc)}); "
                "a list is written [a, b]"
            ) from None
    elif isinstance(value, str) and type(None) in allowed and value.strip().lower() in NULLS:
        return None  # `--set pretrained=null` unsets an optional key a recipe sets
    if isinstance(value, str) and (float in allowed or int in allowed):
        value = _number(value, allowed)
    for t in allowed:
        if t is type(None) and value is None:
            return None
        if t is float and isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if (
            t is not type(None)
            and isinstance(value, t)
            and not (t is int and isinstance(value, bool))
        ):
            return value
    names = " or ".join("null" if t is type(None) else t.__name__ for t in allowed)
    raise ConfigError(f"config key {key!r} expects {names}, got {value!r}")


def _number(text: str, allowed: tuple) -> Any:
    """`text` as the number a person wrote, else unchanged. YAML 1.1 (PyYAML) reads `3e-4` and
    `1e3` as strings, in recipes as in `--set`; `float()` reads every way of writing a number."""
    try:
        number = float(text.strip())
    except ValueError:
        return text
    if not math.isfinite(number):
        return text  # refused by the type check, naming the key
    if float in allowed:
        return number
    return int(number) if number.is_integer() else text


def _check_choices(cfg: TrainConfig) -> None:
    from ferkit.models.registry import list_models  # the models' modules import torch: here

    for key, choices in (
        ("model", list_models()),
        ("optimizer", OPTIMIZERS),
        ("scheduler", SCHEDULERS),
        ("precision", PRECISIONS),
        ("monitor", MONITORS),
        ("teacher_tta", TTA_MODES),
        ("ferplus_labels", FERPLUS_LABEL_MODES),
    ):
        value = getattr(cfg, key)
        if value not in choices:
            raise ConfigError(unknown(key, value, choices))
    if cfg.ferplus_labels != "votes" and not cfg.ferplus:
        raise ConfigError(
            f"ferplus_labels {cfg.ferplus_labels!r} needs FER+ labels: set ferplus=FILE "
            "(fer2013new.csv[.gz])"
        )
    if cfg.teacher_tta != "none" and not cfg.teacher:
        raise ConfigError(f"teacher_tta {cfg.teacher_tta!r} needs a teacher: set teacher=PATH")
    for key in ("hard_label_weight", "autocontrast", "equalize", "blur", "downscale", "jpeg"):
        if not 0 <= getattr(cfg, key) <= 1:
            raise ConfigError(f"{key} must be in 0..1, got {getattr(cfg, key)}")
    if cfg.hard_label_weight and (not cfg.ferplus or cfg.ferplus_labels == "majority"):
        raise ConfigError(
            f"hard_label_weight {cfg.hard_label_weight} mixes the label into FER+'s votes: it "
            "needs ferplus=FILE with ferplus_labels votes or fer2013-votes (else it does nothing)"
        )
    _check_range(cfg, "blur_sigma", 0.05, 10.0)
    _check_range(cfg, "downscale_side", 2, 1024, whole=True)
    _check_range(cfg, "jpeg_quality", 1, 100, whole=True)


def _check_range(cfg: TrainConfig, key: str, low: float, high: float, whole: bool = False) -> None:
    """A [min, max] key: two numbers (integers if `whole`) with low <= min <= max <= high."""
    value = getattr(cfg, key)
    numbers = all(
        isinstance(v, int if whole else int | float) and not isinstance(v, bool) for v in value
    )
    if len(value) != 2 or not numbers or not low <= value[0] <= value[1] <= high:
        kind = "integers" if whole else "numbers"
        raise ConfigError(
            f"{key} must be [min, max], {kind} with {low} <= min <= max <= {high}; got {value!r}"
        )


@dataclass(frozen=True)
class Range:
    """The valid values of a numeric key: low..high (None: unbounded), ends open or closed."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def __contains__(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        above = self.low is None or (value > self.low if self.low_open else value >= self.low)
        below = self.high is None or (value < self.high if self.high_open else value <= self.high)
        return above and below

    def __str__(self) -> str:
        low, high = (int(v) if v is not None and v == int(v) else v for v in (self.low, self.high))
        if high is None:
            return f"{'>' if self.low_open else '>='} {low}"
        left, right = "(" if self.low_open else "[", ")" if self.high_open else "]"
        return f"in {left}{low}, {high}{right}"


_AT_LEAST_0, _AT_LEAST_1, _ABOVE_0 = Range(0), Range(1), Range(0, low_open=True)
_FRACTION, _FRACTION_BELOW_1 = Range(0, 1), Range(0, 1, high_open=True)
# Every numeric key's valid values (NaN and infinity never are). `load_config` checks them all,
# so a bad value stops before a run folder is touched instead of inside training.
RANGES: dict[str, Range] = {
    "seed": Range(0, 2**32 - 1),
    "data_size": Range(8, 4096),
    "val_fraction": Range(0, 0.9),
    "limit": _AT_LEAST_1,
    "num_workers": _AT_LEAST_0,
    "image_size": Range(8, 4096),
    "body_lr_scale": _AT_LEAST_0,
    "dropout": _FRACTION_BELOW_1,
    "epochs": _AT_LEAST_1,
    "batch_size": _AT_LEAST_1,
    "lr": _ABOVE_0,
    "momentum": _FRACTION,
    "weight_decay": _AT_LEAST_0,
    "warmup_epochs": _AT_LEAST_0,
    "gamma": Range(0, 1, low_open=True),
    "step_size": _AT_LEAST_1,
    "plateau_patience": _AT_LEAST_0,
    "plateau_factor": Range(0, 1, low_open=True, high_open=True),
    "label_smoothing": _FRACTION_BELOW_1,
    "grad_clip": _AT_LEAST_0,
    "ema": _FRACTION_BELOW_1,
    "rotation": Range(0, 180),
    "shift": _FRACTION,
    "scale": _FRACTION_BELOW_1,
    "crop_scale": _FRACTION,
    "brightness": _AT_LEAST_0,
    "contrast": _AT_LEAST_0,
    "erasing": _FRACTION,
    "mixup": _AT_LEAST_0,
    "cutmix": _AT_LEAST_0,
    "distill_weight": _FRACTION,
    "distill_temperature": _ABOVE_0,
    "patience": _AT_LEAST_0,
    "max_time": _AT_LEAST_0,
    "num_nodes": _AT_LEAST_1,
}


def _check_ranges(cfg: TrainConfig) -> None:
    for key, valid in RANGES.items():
        value = getattr(cfg, key)
        if isinstance(value, int | float) and not isinstance(value, bool) and value not in valid:
            raise ConfigError(f"config key {key!r} must be {valid}, got {value!r}")


RECIPE_MAX_BYTES = 1 << 20  # a recipe is a few hundred bytes; a video passed by mistake is not
MERGE_TAG = "tag:yaml.org,2002:merge"


class _RecipeLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a key given twice in one mapping: PyYAML keeps the last
    one silently, so `lr: 0.1` left above an edited `lr: 0.01` would decide nothing."""

    def construct_mapping(self, node, deep=False):
        first: dict[str, int] = {}
        for key_node, _ in node.value:  # the keys as written; merged ones (<<) may be overridden
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == MERGE_TAG:
                continue
            if key_node.value in first:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"{key_node.value!r} is given twice (first on line {first[key_node.value]})",
                    key_node.start_mark,
                )
            first[key_node.value] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep)


def read_recipe(path: str | Path, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A YAML recipe's keys, with `extends: other.yaml` (relative to the file) merged under them.

    A recipe that extends another states only what it changes; chains are followed, cycles fail.
    """
    path = Path(path)
    if path.resolve() in _seen:
        chain = " -> ".join(str(p) for p in (*_seen, path.resolve()))
        raise ConfigError(f"{path}: recipes extend each other in a cycle ({chain})")
    try:
        if path.is_file() and path.stat().st_size > RECIPE_MAX_BYTES:
            raise ConfigError(
                f"{path}: {path.stat().st_size / 2**20:,.0f} MiB, not a recipe (a small YAML "
                "file of key: value lines, as in configs/)"
            )
        loaded = yaml.load(path.read_text(encoding="utf-8"), _RecipeLoader) or {}
    except FileNotFoundError:
        where = f" (extended by {_seen[-1]})" if _seen else ""
        raise ConfigError(
            f"{path}{where}: no such config file (see configs/ for recipes)"
        ) from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text file; a recipe is YAML (see configs/)") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({parse_problem(exc)})") from None
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: expected a mapping of key: value")
    base = loaded.pop(EXTENDS, None)
    if base is None:
        return loaded
    if not isinstance(base, str):
        raise ConfigError(f"{path}: {EXTENDS!r} expects the path of another recipe, got {base!r}")
    return read_recipe(path.parent / base, (*_seen, path.resolve())) | loaded


def load_config(path: str | Path | None = None, overrides: dict | None = None) -> TrainConfig:
    """Build a config from a YAML recipe (optional) and overrides (`--set` and CLI flags)."""
    values: dict[str, Any] = read_recipe(path) if path is not None else {}
    values.update(overrides or {})
    for key in values:
        if key not in FIELDS:
            raise _unknown_key(key)
    cfg = TrainConfig(**{k: _coerce(k, v) for k, v in values.items()})
    _check_choices(cfg)
    _check_ranges(cfg)
    return cfg


def parse_set(items: list[str]) -> dict[str, Any]:
    """`["lr=0.01", "hflip=false"]` -> {"lr": "0.01", "hflip": "false"} (typed by load_config)."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--set {item!r}: expected key=value, for example --set lr=0.01")
        key = key.strip()
        if key not in FIELDS:
            raise _unknown_key(key)
        out[key] = value
    return out


def save_config(cfg: TrainConfig, path: Path) -> None:
    """Write the run's recipe, whole or not at all (`replaced_atomically`)."""
    with replaced_atomically(path) as tmp:
        tmp.write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
