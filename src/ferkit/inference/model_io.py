"""Find and open the model an `EmotionRecognizer` runs: a checkpoint, a run folder, or ONNX.

- `resolve_checkpoint(path)`: a checkpoint file as it is; in a training run folder `best.pt`,
  then `last.pt`, then the only `*.pt` (also looked for in a `checkpoints/` subfolder).
- `default_checkpoint()`: the model shipped in the package (`ferkit/weights/flagship.pt`).
- `read_onnx_meta(path)`: the checkpoint metadata an exported ONNX file carries with it.
"""

from __future__ import annotations

import json
import logging
from importlib import resources
from pathlib import Path
from typing import Any

from ferkit.errors import CheckpointError

log = logging.getLogger(__name__)

CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt")
PREFERRED_NAMES = ("best.pt", "last.pt")
DEFAULT_WEIGHTS = "flagship.pt"
ONNX_META_KEY = "ferkit_meta"  # metadata_props key holding the checkpoint's meta as JSON


def resolve_checkpoint(path: str | Path) -> Path:
    """The checkpoint file that `path` names: a file as it is, or the best one of a run folder.

    In a folder (or its `checkpoints/` subfolder): `best.pt`, then `last.pt`, then the single
    `*.pt` file. Several candidates and no `best.pt`/`last.pt` is an error listing them.

    Raises:
        CheckpointError: nothing there, or no single checkpoint to choose.
    """
    path = Path(path)
    if path.is_file():
        return path
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint file or run folder")
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
    hint = "pass a checkpoint file"
    if any((path / "checkpoints").glob("*.ckpt")):
        # A run stopped before it exported best.pt/last.pt holds only Lightning's state.
        hint = "its checkpoints/*.ckpt are training state: `ferkit train --resume RUN` finishes it"
    raise CheckpointError(
        f"{path} holds no checkpoint (looked for best.pt, last.pt or one *.pt, also in "
        f"{path / 'checkpoints'}); {hint}"
    )


def default_checkpoint() -> Path:
    """The model shipped with ferkit, ferkit/weights/flagship.pt.

    Raises:
        CheckpointError: this install ships no model (yet); the message says what to pass.
    """
    ref = resources.files("ferkit").joinpath("weights", DEFAULT_WEIGHTS)
    if not ref.is_file():
        raise CheckpointError(
            f"no model is shipped in this install of ferkit (ferkit/weights/{DEFAULT_WEIGHTS} "
            "is missing); pass a checkpoint file or training run folder, e.g. "
            "EmotionRecognizer('runs/exp1') or `ferkit predict --model runs/exp1 ...`"
        )
    return Path(str(ref))


def load_torch_model(path: str | Path) -> tuple[Any, dict]:
    """(nn.Module in eval mode, meta) from a checkpoint file or run folder."""
    from ferkit.models import load_checkpoint  # imported late: torch and the zoo are heavy

    ckpt = resolve_checkpoint(path)
    model, meta = load_checkpoint(ckpt)
    log.debug("loaded %s (%s, input %s)", ckpt, meta.get("arch"), meta.get("input_size"))
    return model.eval(), dict(meta)


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
            "with `ferkit export CHECKPOINT --format onnx OUT.onnx`"
        )
    return json.loads(props[ONNX_META_KEY])


def meta_value(meta: dict, key: str, default: Any = None) -> Any:
    """meta[key], else meta["extra"][key], else default (optional keys live in "extra")."""
    if meta.get(key) is not None:
        return meta[key]
    extra = meta.get("extra") or {}
    return extra.get(key, default)
