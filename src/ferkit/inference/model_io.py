"""Find and open the model a command runs: every kind ferkit writes, by one resolver.

- `resolve_model(spec)`: the model file that `spec` names. Kinds: a ferkit checkpoint (`.pt`,
  `.pth`), a Lightning training checkpoint (`runs/X/checkpoints/best.ckpt`), an ONNX export
  (`.onnx`, `.int8.onnx`), a training run folder, or a shipped model by name (`flagship`);
  None is the shipped default.
- `load_torch_model(spec)`: (nn.Module, meta) of any kind but ONNX.
- `default_checkpoint()`: the model shipped in the package (`ferkit/weights/flagship.pt`).
- `read_onnx_meta(path)`: the checkpoint metadata an exported ONNX file carries with it.
"""

from __future__ import annotations

import json
import logging
import math
from importlib import resources
from pathlib import Path
from typing import Any

from ferkit.errors import CheckpointError, ConfigError, listed

log = logging.getLogger(__name__)

FERKIT_SUFFIXES = (".pt", ".pth")  # ferkit checkpoints (what `ferkit export` writes as pt)
CHECKPOINT_SUFFIXES = (*FERKIT_SUFFIXES, ".ckpt")  # and Lightning's training state
ONNX_SUFFIX = ".onnx"
MODEL_SUFFIXES = (*CHECKPOINT_SUFFIXES, ONNX_SUFFIX)
# In a run folder (or its checkpoints/ subfolder), in this order; then a single *.pt file
PREFERRED_NAMES = ("best.pt", "last.pt")
TRAINING_STATE_NAMES = ("best.ckpt", "last.ckpt")  # a run stopped before it wrote best.pt
# models in ferkit/weights, by the name a user types; flagship: FER-2013's 7 classes,
# flagship-ferplus: FER+'s 8 (contempt last), see docs/MODEL_CARD.md
SHIPPED = {"flagship": "flagship.pt", "flagship-ferplus": "flagship-ferplus.pt"}
DEFAULT_MODEL = "flagship"  # the shipped model used where none is named
DEFAULT_WEIGHTS = SHIPPED[DEFAULT_MODEL]
ONNX_META_KEY = "ferkit_meta"  # metadata_props key holding the checkpoint's meta as JSON
KINDS = (
    "a run folder, a .pt checkpoint, a Lightning .ckpt, an .onnx export or a shipped model "
    f"by name ({', '.join(SHIPPED)})"
)


def resolve_model(spec: str | Path | None) -> Path:
    """The model file that `spec` names (see the module docstring for the kinds).

    A run folder gives, from the folder or its `checkpoints/` subfolder: `best.pt`, then
    `last.pt`, then the single `*.pt` file, then Lightning's `best.ckpt`, then `last.ckpt`.
    A shipped name counts only where no file or folder of that name exists.

    Raises:
        CheckpointError: nothing there, a file of another kind, or no single model to choose.
    """
    if spec is None:
        return default_checkpoint()
    path = Path(spec)
    if not path.exists() and str(spec) in SHIPPED:
        return _shipped(SHIPPED[str(spec)])
    if path.is_file():
        if path.suffix.lower() not in MODEL_SUFFIXES:
            raise CheckpointError(f"{path}: not a model file ferkit reads; pass {KINDS}")
        return path
    if not path.exists():
        raise CheckpointError(f"{path}: no such model file or run folder; pass {KINDS}")
    for folder in (path, path / "checkpoints"):
        for name in PREFERRED_NAMES:
            if (folder / name).is_file():
                return folder / name
        found = sorted(folder.glob("*.pt")) if folder.is_dir() else []
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            names = ", ".join(p.name for p in found)
            raise CheckpointError(
                f"{folder} holds several checkpoints ({names}) and no best.pt or last.pt; "
                "pass the file you want"
            )
    for name in TRAINING_STATE_NAMES:
        if (path / "checkpoints" / name).is_file():
            return path / "checkpoints" / name
    runs = sorted(p for p in path.iterdir() if (p / "best.pt").is_file())
    if runs:  # a folder of runs, such as runs/
        shown = listed((p.name for p in runs), shown=5)
        newest = max(runs, key=lambda p: (p / "best.pt").stat().st_mtime)
        raise CheckpointError(
            f"{path} holds run folders, not a model: pass one of them ({shown}); the newest "
            f"is {newest}"
        )
    raise CheckpointError(
        f"{path} holds no model (looked for best.pt, last.pt or one *.pt, also in "
        f"{path / 'checkpoints'}, and checkpoints/best.ckpt or last.ckpt); pass {KINDS}"
    )


resolve_checkpoint = resolve_model  # the name before ONNX, .ckpt and shipped names resolved


def is_onnx(path: str | Path) -> bool:
    """Whether `path` is an ONNX export (by its suffix: .onnx, .int8.onnx)."""
    return Path(path).suffix.lower() == ONNX_SUFFIX


def _shipped(name: str) -> Path:
    ref = resources.files("ferkit").joinpath("weights", name)
    if not ref.is_file():
        raise CheckpointError(
            f"no model is shipped in this install of ferkit (ferkit/weights/{name} "
            "is missing); pass a checkpoint file or training run folder, e.g. "
            "EmotionRecognizer('runs/exp1') or `ferkit predict --model runs/exp1 ...`"
        )
    return Path(str(ref))


def default_checkpoint() -> Path:
    """The model shipped with ferkit, ferkit/weights/flagship.pt.

    Raises:
        CheckpointError: this install ships no model (yet); the message says what to pass.
    """
    return _shipped(DEFAULT_WEIGHTS)


def model_name(spec: str | Path | None) -> str:
    """The model as the user named it (a shipped name or a path); the default's name if none."""
    return str(spec if spec is not None else DEFAULT_MODEL)


def load_torch_model(spec: str | Path | None) -> tuple[Any, dict]:
    """(nn.Module in eval mode, meta) of a model of any kind `resolve_model` takes but ONNX.

    Raises:
        CheckpointError: an ONNX export (PyTorch cannot load one back), or a file that does
            not load.
    """
    path = resolve_model(spec)
    if is_onnx(path):
        raise CheckpointError(
            f"{path} is an ONNX export, which PyTorch cannot load back; pass the checkpoint "
            "or run folder it was exported from"
        )
    if path.suffix.lower() == ".ckpt":
        # Lightning's training state: the training module knows its config (imported late:
        # Lightning is heavy)
        from ferkit.training.module import load_training_checkpoint

        model, meta = load_training_checkpoint(path)
    else:
        from ferkit.models import load_checkpoint  # imported late: torch and the zoo are heavy

        model, meta = load_checkpoint(path)
    log.debug("loaded %s (%s, input %s)", path, meta.get("arch"), meta.get("input_size"))
    return model.eval(), check_meta(dict(meta), path)


def read_onnx_meta(path: str | Path) -> dict:
    """The ferkit metadata stored in an ONNX file by `ferkit export`.

    Raises:
        CheckpointError: not an ONNX file, or one exported by something else.
    """
    import onnx

    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError, OSError, ... depending on the damage
        raise CheckpointError(f"{path}: not an ONNX model onnx can read ({exc})") from None
    props = {p.key: p.value for p in proto.metadata_props}
    if ONNX_META_KEY not in props:
        raise CheckpointError(
            f"{path} has no ferkit metadata (input size, normalisation, labels); export it "
            "with `ferkit export CHECKPOINT OUT.onnx`"
        )
    try:
        meta = json.loads(props[ONNX_META_KEY])
    except ValueError as exc:
        raise CheckpointError(f"{path}: its ferkit metadata is not valid JSON ({exc})") from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path}: its ferkit metadata is not a JSON object")
    return check_meta(meta, path)


def check_meta(meta: dict, source: str | Path) -> dict:
    """`meta` if it holds what inference needs, sane; else a CheckpointError naming the key.

    A checkpoint or export edited by hand (or damaged) must fail on load with its file and
    key named, not give NaN probabilities later: the input (size, channels, mean/std) as
    `ferkit.models.input_spec.InputSpec` requires it, labels distinct names, temperature (if
    any) finite and > 0.
    """
    from ferkit.models.input_spec import InputSpec  # imported late: torch and the zoo are heavy

    hint = "re-export it from its training run"
    try:
        InputSpec.from_meta(meta)
    except ConfigError as exc:
        raise CheckpointError(f"{source}: metadata {exc}; {hint}") from None

    def bad(key: str, rule: str) -> CheckpointError:
        return CheckpointError(
            f"{source}: metadata {key!r} must be {rule}, got {meta.get(key)!r}; {hint}"
        )

    labels = meta.get("labels")
    if (
        not isinstance(labels, list | tuple)
        or len(labels) < 2
        or len(set(labels)) != len(labels)
        or not all(isinstance(v, str) and v for v in labels)
    ):
        raise bad("labels", "a list of at least two distinct names")
    t = meta.get("temperature")
    if t is not None and (
        isinstance(t, bool) or not isinstance(t, int | float) or not math.isfinite(t) or t <= 0
    ):
        raise bad("temperature", "a finite number > 0 (or absent)")
    return meta
