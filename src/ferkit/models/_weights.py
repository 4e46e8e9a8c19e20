"""Reading weight files safely, and fitting a state dict to a model with a clear error.

Every file goes through `torch.load(..., weights_only=True)`: tensors and primitives only, so
a weight file or checkpoint cannot run code when it is opened.
"""

from __future__ import annotations

import logging
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ferkit.errors import CheckpointError, listed

log = logging.getLogger(__name__)

FORMAT = "ferkit"  # a ferkit checkpoint's "format" entry (models/checkpoint.py writes them)


def is_ferkit_checkpoint(obj: Any) -> bool:
    """Whether a loaded file is a ferkit checkpoint (a dict with "format": "ferkit")."""
    return isinstance(obj, Mapping) and obj.get("format") == FORMAT


_SHOW_KEYS = 5  # mismatching keys named in a message; the rest are counted


def safe_load(path: str | Path, *, map_location: str | torch.device = "cpu") -> Any:
    """`torch.load` of `path` with weights_only=True, failures turned into CheckpointError."""
    path = Path(path)
    if not path.is_file():
        what = "is a folder" if path.is_dir() else "does not exist"
        raise CheckpointError(f"{path} {what}; expected a weight or checkpoint file")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        text = str(exc)
        # weights_only refuses pickled Python objects (classes, functions): such a file could
        # run code when opened, and a ferkit file never holds any. Any other unpickling
        # failure means the bytes are not a pickle at all.
        # torch names a refused object "Unsupported global: GLOBAL x" or "unsupported GLOBAL
        # posix.system", depending on the version; other refusals ("Unsupported operand")
        # are bytes that are no pickle torch writes
        lines = [ln.strip() for ln in text.splitlines()]
        reason = next((ln for ln in lines if "unsupported global" in ln.lower()), "")
        if not reason:
            raise CheckpointError(
                f"{path} is not a readable torch file ({_first_line(text)}); expected a file "
                "written by torch.save"
            ) from exc
        raise CheckpointError(
            f"{path} holds Python objects that cannot be loaded safely "
            f"({_first_line(reason)}); save only tensors and "
            "primitives (model.state_dict() or ferkit's save_checkpoint)"
        ) from exc
    except (RuntimeError, EOFError, ValueError, KeyError, OSError) as exc:
        raise CheckpointError(
            f"{path} is not a readable torch file ({type(exc).__name__}: "
            f"{_first_line(str(exc)) or 'empty or truncated'}); expected a file written by "
            "torch.save"
        ) from exc


def _first_line(text: str, limit: int = 160) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= limit else line[: limit - 3] + "..."


def is_state_dict(obj: Any) -> bool:
    """Whether `obj` looks like a bare state dict: a non-empty mapping of names to tensors."""
    return (
        isinstance(obj, Mapping)
        and len(obj) > 0
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())
    )


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The state dict in `path`: a bare state dict, or the weights of a ferkit checkpoint."""
    obj = safe_load(path)
    if is_ferkit_checkpoint(obj):
        obj = obj.get("state_dict")
    if not is_state_dict(obj):
        raise CheckpointError(
            f"{path} holds no state dict (a mapping of parameter names to tensors); got "
            f"{type(obj).__name__}"
        )
    return dict(obj)


def describe_mismatch(
    expected: Mapping[str, torch.Tensor], state_dict: Mapping[str, torch.Tensor]
) -> str:
    """Why `state_dict` does not fit `expected` (a model's state dict), naming a few keys;
    "" if it fits exactly."""
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    shapes = [
        f"{k} {tuple(state_dict[k].shape)} vs {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state_dict and tuple(state_dict[k].shape) != tuple(v.shape)
    ]
    parts = []
    for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", shapes)):
        if keys:
            parts.append(f"{len(keys)} {label} ({listed(keys, _SHOW_KEYS)})")
    return "; ".join(parts)


def with_new_head(
    model: nn.Module, state_dict: Mapping[str, torch.Tensor], *, source: str
) -> dict[str, torch.Tensor]:
    """`state_dict` with the model's own freshly initialised classifier where the file's has
    another number of classes (a 7-class model fine-tuned on FER+'s 8); unchanged otherwise.

    Only the model's last linear layer is replaced, and only when it is the one thing that
    does not fit; any other mismatch is left for `load_weights` to refuse.
    """
    expected = model.state_dict()
    if set(expected) != set(state_dict):
        return dict(state_dict)
    wrong = {k for k, v in expected.items() if tuple(state_dict[k].shape) != tuple(v.shape)}
    linears = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not wrong or not linears:
        return dict(state_dict)
    name, head = linears[-1]
    head_keys = {f"{name}.{k}" for k, _ in head.named_parameters(recurse=False)}
    if wrong != head_keys:
        return dict(state_dict)
    log.warning(
        "pretrained: %s has a %d-class classifier; %s re-initialised for %d classes, the rest "
        "of the network loaded",
        source,
        state_dict[f"{name}.weight"].shape[0],
        name,
        head.out_features,
    )
    return {**state_dict, **{k: expected[k] for k in head_keys}}


def load_weights(
    model: nn.Module, state_dict: Mapping[str, torch.Tensor], *, arch: str, source: str
) -> None:
    """Load `state_dict` into `model` strictly, or raise CheckpointError naming `arch`, the
    `source` file and the keys that do not fit."""
    problem = describe_mismatch(model.state_dict(), state_dict)
    if problem:
        raise CheckpointError(
            f"the weights in {source} do not fit architecture {arch!r}: {problem}; were they "
            "saved from another architecture or with other options (num_classes, in_channels, "
            "widths)?"
        )
    model.load_state_dict(state_dict, strict=True)
