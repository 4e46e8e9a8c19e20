"""One input description per checkpoint: what its model takes and how faces become that.

    spec = InputSpec.from_meta(meta)          # a checkpoint's (or ONNX file's) metadata
    x = spec.to_input(gray_uint8_faces)       # (N, H, W) uint8 -> normalised (N, C, h, w)
    spec.framing_for("yunet")                 # how that detector's boxes become crops

Training, evaluation, inference (PyTorch and ONNX Runtime), export and the server ask this
object; none of them reads the four keys (input_size, in_channels, mean, std) on its own.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import torch

from ferkit.detection.crops import Framing, framing_for, meta_key
from ferkit.errors import ConfigError
from ferkit.preprocess import to_model_input


@dataclass(frozen=True)
class InputSpec:
    """What a model takes, as its checkpoint says.

    Attributes:
        input_size: (height, width) of the model's input.
        in_channels: 1 (gray), or 3 for RGB models, which see the gray face repeated.
        mean, std: per-channel normalisation of values in 0..1.
        framing: detector name -> the checkpoint's own `Framing` for that detector's boxes
            (empty for checkpoints that carry none: `framing_for` then falls back).
        crop_margin: the older single crop margin some checkpoints carry, or None.
    """

    input_size: tuple[int, int] = (48, 48)
    in_channels: int = 1
    mean: tuple[float, ...] = (0.5,)
    std: tuple[float, ...] = (0.5,)
    framing: Mapping[str, Framing] = field(default_factory=dict)
    crop_margin: float | None = None

    def __post_init__(self) -> None:
        # The one home of these rules: checkpoint and ONNX metadata are checked here too
        # (`ferkit.inference.model_io.check_meta`); messages name the metadata key.
        size = tuple(self.input_size)
        if len(size) != 2 or not all(float(v).is_integer() and 1 <= v <= 4096 for v in size):
            raise ConfigError(
                f"'input_size' must be [height, width], whole numbers in 1..4096, got {size}"
            )
        if isinstance(self.in_channels, bool) or self.in_channels not in (1, 3):
            raise ConfigError(f"'in_channels' must be 1 or 3, got {self.in_channels!r}")
        if len(self.mean) != self.in_channels or len(self.std) != self.in_channels:
            raise ConfigError(
                f"need {self.in_channels} mean and std value(s), got {self.mean} and {self.std}"
            )
        if not all(math.isfinite(v) for v in self.mean):
            raise ConfigError(f"'mean' must be finite numbers, got {self.mean}")
        if not all(math.isfinite(v) and v > 0 for v in self.std):
            raise ConfigError(f"'std' must be numbers > 0, got {self.std}")
        object.__setattr__(self, "input_size", (int(size[0]), int(size[1])))
        object.__setattr__(self, "in_channels", int(self.in_channels))

    @classmethod
    def from_meta(cls, meta: Mapping) -> InputSpec:
        """The spec in a checkpoint's metadata (`ferkit.models.checkpoint` keys; framing and
        crop_margin at the top level or in `extra`). Missing in_channels means gray.

        Raises:
            ConfigError: a value missing, of the wrong type or out of range, naming its key.
        """
        framing = meta_key(meta, "framing") or {}
        margin = meta_key(meta, "crop_margin")
        return cls(
            input_size=_numbers(meta, "input_size"),  # type: ignore[arg-type]
            in_channels=meta.get("in_channels", 1),
            mean=_numbers(meta, "mean"),
            std=_numbers(meta, "std"),
            framing={str(k): Framing.from_dict(v) for k, v in framing.items()},
            crop_margin=None if margin is None else float(margin),
        )

    def to_meta(self) -> dict:
        """Plain values for checkpoint and ONNX metadata: the inverse of `from_meta`."""
        out = {
            "input_size": list(self.input_size),
            "in_channels": self.in_channels,
            "mean": list(self.mean),
            "std": list(self.std),
        }
        if self.framing:
            out["framing"] = {k: f.to_dict() for k, f in self.framing.items()}
        if self.crop_margin is not None:
            out["crop_margin"] = self.crop_margin
        return out

    def framing_for(self, detector) -> Framing:
        """How `detector`'s (a name or a detector object) boxes become this model's crops:
        `ferkit.detection.crops.framing_for`'s rule on this checkpoint's values."""
        return framing_for(detector, self.to_meta())

    def to_input(self, faces: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Gray faces, uint8 (N, H, W) or float (N, 1, H, W) in 0..1, any size -> the model's
        normalised float input (N, in_channels, height, width)."""
        return to_model_input(
            faces,
            input_size=self.input_size,
            mean=self.mean,
            std=self.std,
            in_channels=self.in_channels,
        )

    @property
    def shape(self) -> tuple[int, int, int]:
        """(channels, height, width) of one input."""
        return (self.in_channels, *self.input_size)


def _numbers(meta: Mapping, key: str) -> tuple[float, ...]:
    """meta[key] as a tuple of floats; a ConfigError naming the key for anything else."""
    value = meta.get(key)
    if (
        not isinstance(value, list | tuple)
        or not value
        or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
    ):
        raise ConfigError(f"{key!r} must be a list of numbers, got {value!r}")
    return tuple(float(v) for v in value)
