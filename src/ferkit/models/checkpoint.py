"""Checkpoints: the weights plus everything inference needs to use them, as plain primitives.

A checkpoint file is a dict saved with `torch.save` and read back with
`torch.load(..., weights_only=True)`, so opening one cannot run code:

    {"format": "ferkit", "format_version": 1,
     "arch": "flagship", "arch_kwargs": {...},      # create_model(arch, **arch_kwargs, ...)
     "num_classes": 7, "in_channels": 1,
     "input_size": [48, 48], "mean": [0.5], "std": [0.5],
     "labels": ["angry", ...],                       # output order of the logits
     "metrics": {"test_accuracy": 0.71, ...},        # what it was measured at
     "temperature": 1.3 | None,                      # logit scaling for calibrated output
     "extra": {...},                                 # anything else (run config, ...)
     "state_dict": {...}}

`load_checkpoint` rebuilds the architecture from "arch" and "arch_kwargs" and loads the
weights into it strictly.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ferkit.errors import CheckpointError, ConfigError
from ferkit.labels import EMOTIONS
from ferkit.models._weights import (
    FORMAT,
    describe_mismatch,
    is_ferkit_checkpoint,
    is_state_dict,
    safe_load,
)
from ferkit.models.input_spec import InputSpec
from ferkit.models.registry import _primitive, create_model
from ferkit.outputs import refuse_existing, replaced_atomically

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "checkpoint_dict",
    "checkpoint_metadata",
    "load_checkpoint",
    "save_checkpoint",
    "write_torch",
]

FORMAT_VERSION = 1


def save_checkpoint(
    path: str | Path, model: nn.Module, *, overwrite: bool = False, **meta: Any
) -> Path:
    """Write `model` and what inference needs to `path`: the dict `checkpoint_dict` makes.

        save_checkpoint("best.pt", model, input_size=(48, 48), in_channels=1, mean=(0.5,),
                        std=(0.5,), labels=EMOTIONS, metrics={"test_accuracy": 0.71})

    Args:
        path: the file to write; its folder is created if needed.
        model: a model built by `create_model` (it carries `ferkit_arch` and `ferkit_kwargs`).
        overwrite: replace an existing file (refused otherwise).
        **meta: `checkpoint_dict`'s keyword arguments (input_size, mean, std, in_channels,
            labels, metrics, temperature, extra, half).

    Returns:
        The path written.

    Raises:
        CheckpointError: the file exists, or the model or metadata do not fit together.
    """
    path = Path(path)
    refuse_existing(
        [path], error=CheckpointError, hint="pass overwrite=True to replace it", overwrite=overwrite
    )
    ckpt = checkpoint_dict(model, what=f"cannot save {type(model).__name__} to {path}", **meta)
    write_torch(ckpt, path)
    return path


def write_torch(obj: Any, path: Path) -> None:
    """`torch.save` whole or not at all: serialised in memory, then written beside `path` and
    renamed into place (`replaced_atomically`). torch's own file writer turns a full disk into
    a RuntimeError naming no file; one write of the bytes fails as an OSError, which names it."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    with replaced_atomically(path) as tmp:
        tmp.write_bytes(buffer.getbuffer())


def checkpoint_dict(
    model: nn.Module,
    *,
    input_size: Sequence[int],
    mean: Sequence[float],
    std: Sequence[float],
    in_channels: int,
    labels: Sequence[str] = EMOTIONS,
    metrics: Mapping[str, Any] | None = None,
    temperature: float | None = None,
    extra: Mapping[str, Any] | None = None,
    half: bool = False,
    what: str = "cannot make a checkpoint",
) -> dict[str, Any]:
    """The checkpoint dict of `model`, checked: what `save_checkpoint` writes.

    Args:
        model: a model built by `create_model` (it carries `ferkit_arch` and `ferkit_kwargs`).
        input_size, mean, std, in_channels: the input the model was trained on, as
            `ferkit.models.input_spec.InputSpec` holds it (and checks it).
        labels: the class names in logit order; as many as the model has outputs.
        metrics, extra: primitives (numbers, strings, lists and dicts of them).
        temperature: logit temperature from calibration, or None.
        half: store floating-point weights as float16, half the file (a shipped model);
            `load_checkpoint` loads them back into the float32 model.
        what: starts the error messages, e.g. "cannot save Net to best.pt".

    Raises:
        CheckpointError: the model or metadata do not fit together.
    """
    arch = getattr(model, "ferkit_arch", None)
    kwargs = dict(getattr(model, "ferkit_kwargs", None) or {})
    if arch is None:
        raise CheckpointError(
            f"{what}: it was not built by ferkit.models.create_model, so a checkpoint could "
            "not rebuild it"
        )
    num_classes = int(kwargs.pop("num_classes", 7))
    model_channels = int(kwargs.pop("in_channels", 1))
    labels = [str(label) for label in labels]
    if len(labels) != num_classes:
        raise CheckpointError(
            f"{what}: {len(labels)} labels ({', '.join(labels)}) for a model with "
            f"{num_classes} outputs"
        )
    if in_channels != model_channels:
        raise CheckpointError(
            f"{what}: in_channels={in_channels}, but the {arch} model was built for "
            f"{model_channels}"
        )
    try:
        spec = InputSpec(
            input_size=tuple(input_size),  # type: ignore[arg-type]
            in_channels=in_channels,
            mean=tuple(float(m) for m in mean),
            std=tuple(float(s) for s in std),
        )
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "arch": arch,
            "arch_kwargs": _primitive(kwargs, "arch_kwargs"),
            "num_classes": num_classes,
            "in_channels": spec.in_channels,
            "input_size": list(spec.input_size),
            "mean": list(spec.mean),
            "std": list(spec.std),
            "labels": labels,
            "metrics": _primitive(dict(metrics or {}), "metrics"),
            "temperature": None if temperature is None else float(temperature),
            "extra": _primitive(dict(extra or {}), "extra"),
            "state_dict": {k: _stored(v, half) for k, v in model.state_dict().items()},
        }
    except ConfigError as exc:
        raise CheckpointError(f"{what}: {exc}") from exc


def _stored(tensor: torch.Tensor, half: bool) -> torch.Tensor:
    tensor = tensor.detach().cpu().contiguous()
    return tensor.half() if half and tensor.is_floating_point() else tensor


@torch.no_grad()
def round_to_half(model: torch.nn.Module) -> torch.nn.Module:
    """`model` with its floating-point weights rounded, in place, to the float16 values a
    `half=True` checkpoint stores (still float32 tensors, as `load_checkpoint` gives them back):
    what is measured on it before saving is what the file will answer."""
    for tensor in model.state_dict().values():
        if tensor.is_floating_point():
            tensor.copy_(_stored(tensor, half=True))
    return model


def _metadata(ckpt: Mapping[str, Any]) -> dict[str, Any]:
    """Everything in a checkpoint but its weights."""
    return {k: v for k, v in ckpt.items() if k != "state_dict"}


def checkpoint_metadata(path: str | Path) -> dict[str, Any] | None:
    """A ferkit checkpoint's metadata (everything but the weights), or None for other files."""
    ckpt = safe_load(path)
    return _metadata(ckpt) if is_ferkit_checkpoint(ckpt) else None


def load_checkpoint(
    path: str | Path,
    *,
    arch: str | None = None,
    map_location: str | torch.device = "cpu",
) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model saved in `path` and load its weights.

    Args:
        path: a file written by `save_checkpoint`.
        arch: if given, the architecture the caller expects; another one is an error.
        map_location: where the weights go (default CPU).

    Returns:
        (model in eval mode, metadata: the checkpoint dict without "state_dict").

    Raises:
        CheckpointError: not a file, not a torch file, not a ferkit checkpoint (a bare state
            dict, say), another architecture than `arch`, or weights that do not fit.
    """
    path = Path(path)
    ckpt = safe_load(path, map_location=map_location)
    if not is_ferkit_checkpoint(ckpt):
        if is_state_dict(ckpt):
            raise CheckpointError(
                f"{path} is a bare state dict, not a ferkit checkpoint (it does not say its "
                "architecture, input or labels); load it with "
                "create_model(NAME).load_state_dict(torch.load(path, weights_only=True)), or "
                "create_model(NAME, pretrained=path)"
            )
        raise CheckpointError(
            f"{path} is not a ferkit checkpoint (no 'format': 'ferkit' entry); write one with "
            "ferkit.models.save_checkpoint"
        )
    version = ckpt.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format version {version!r}; this ferkit reads up to "
            f"{FORMAT_VERSION}: upgrade ferkit"
        )
    saved_arch = ckpt.get("arch")
    if arch is not None and arch != saved_arch:
        raise CheckpointError(
            f"{path} holds a {saved_arch!r} model, not the {arch!r} asked for; drop arch= or "
            f"use a {arch} checkpoint"
        )
    try:
        model = create_model(
            saved_arch,
            num_classes=int(ckpt["num_classes"]),
            in_channels=int(ckpt["in_channels"]),
            **dict(ckpt.get("arch_kwargs") or {}),
        )
    except (ConfigError, KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: cannot rebuild architecture {saved_arch!r}: {exc}") from exc
    state_dict = ckpt.get("state_dict")
    problem = describe_mismatch(model.state_dict(), state_dict or {})
    if problem:
        raise CheckpointError(
            f"{path}: the weights do not fit architecture {saved_arch!r}: {problem}; the file "
            "was edited or written by a different version of the model"
        )
    model.load_state_dict(state_dict, strict=True)
    model.to(map_location).eval()
    return model, _metadata(ckpt)
