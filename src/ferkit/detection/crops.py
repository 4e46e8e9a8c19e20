"""Cut faces out of an image the way the model was trained to see them.

A detector's box is tight around eyes, nose and mouth; FER-2013's crops show a little more
(forehead, chin), so each box becomes a larger square, possibly shifted, as a `Framing` says,
then is resized to the model's input size. The square is moved, not cut, where it sticks out
of the image, so the face keeps its proportions; only a square larger than the image is clipped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from ferkit.detection.boxes import Box
from ferkit.errors import ConfigError
from ferkit.imaging import resize_gray

# Each side grows by this fraction of the box's longer side: the framing of checkpoints that
# carry none (a checkpoint may carry its own in meta["extra"]["crop_margin"]).
DEFAULT_MARGIN = 0.1


@dataclass(frozen=True)
class Framing:
    """How a detector's box becomes the square crop the model sees.

    Lengths are in "box sides", the box's longer side, so one Framing fits faces of any size.

    Attributes:
        scale: crop side / box side (1.2: a margin of 0.1 on every side).
        dx: crop centre minus box centre, horizontally, in box sides (+ is right).
        dy: the same vertically (+ is down).
    """

    scale: float = 1.0 + 2.0 * DEFAULT_MARGIN
    dx: float = 0.0
    dy: float = 0.0

    def __post_init__(self) -> None:
        if not self.scale > 0:
            raise ConfigError(f"framing scale must be positive (got {self.scale})")

    @classmethod
    def from_margin(cls, margin: float) -> Framing:
        """The centred square that grows the box by `margin` of its longer side on every side."""
        return cls(scale=1.0 + 2.0 * float(margin))

    @classmethod
    def from_dict(cls, d: Mapping[str, float]) -> Framing:
        """The inverse of `to_dict`; unknown keys are refused with the valid ones named."""
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ConfigError(
                f"unknown framing key(s) {', '.join(sorted(unknown))}; "
                f"valid: {', '.join(cls.__dataclass_fields__)}"
            )
        return cls(**{k: float(v) for k, v in d.items()})

    def to_dict(self) -> dict[str, float]:
        """Plain numbers, for checkpoint metadata and JSON."""
        return asdict(self)

    def __str__(self) -> str:
        """As people read it in a summary: `framing scale 0.91, dx 0, dy 0.01`."""
        return "framing " + ", ".join(f"{k} {v:g}" for k, v in self.to_dict().items())


# FER-2013's framing as each detector sees it, fitted on FER-2013 itself (never on photos):
# `benchmarks/fit_framing.py` runs the detector on FER-2013 train faces (padded, enlarged)
# and measures crop side / box side and the centre offset. The scale is that fit's lower
# quartile, the tight end of FER-2013's own framings (of the median and the lower quartile,
# the quartile scored higher on real photos); the offsets are the medians. docs/photos.md
# has the figures and the command.
FRAMINGS: dict[str, Framing] = {
    "yunet": Framing(scale=0.91, dx=0.0, dy=0.01),  # quartiles 0.91 .. 1.16, median 1.03
    "haar": Framing(scale=0.96, dx=0.0, dy=0.0),  # quartiles 0.96 .. 1.10, median 1.02
}


def framing_for(detector, meta: Mapping | None = None) -> Framing:
    """How a detector's boxes become crops for a checkpoint: the one rule every path asks.

    In order: the checkpoint's own framing for that detector (`meta["framing"][name]`, or in
    `meta["extra"]`, as `Framing.to_dict()`), its older single `crop_margin`, the detector's
    fitted framing in `FRAMINGS`, else `Framing()` (margin 0.1).

    Args:
        detector: a name ("yunet", "haar", ...) or a detector object (YuNetDetector,
            HaarDetector; any other kind has no fitted framing), or None.
        meta: a checkpoint's metadata, or None.
    """
    name = detector if detector is None or isinstance(detector, str) else _kind(detector)
    found = meta_key(meta, "framing") or {}
    if name in found:
        return Framing.from_dict(found[name])
    margin = meta_key(meta, "crop_margin")
    if margin is not None:
        return Framing.from_margin(margin)
    return FRAMINGS.get(name or "", Framing())


def _kind(detector) -> str | None:
    from ferkit.detection.detectors import HaarDetector, YuNetDetector

    return {YuNetDetector: "yunet", HaarDetector: "haar"}.get(type(detector))


def meta_key(meta: Mapping | None, key: str):
    """A checkpoint's optional framing key (framing, crop_margin): at the top level of its
    metadata, else in `meta["extra"]`, else None."""
    if not meta:
        return None
    if meta.get(key) is not None:
        return meta[key]
    return (meta.get("extra") or {}).get(key)


def square_box(box: Sequence[float], width: int, height: int, framing: Framing = Framing()) -> Box:
    """The square `framing` makes of `box`, moved inside the image.

    Args:
        box: (x, y, w, h) of a face.
        width, height: the image's size.
        framing: the crop's size and centre relative to the box.

    Returns:
        A square (x, y, s, s) inside the image, or a clipped rectangle when the square
        would be larger than the image itself.
    """
    x, y, w, h = (float(v) for v in box[:4])
    unit = max(w, h)
    side = unit * framing.scale
    cx, cy = x + w / 2.0 + framing.dx * unit, y + h / 2.0 + framing.dy * unit
    s = round(side)
    x0, y0 = round(cx - side / 2.0), round(cy - side / 2.0)
    sw, sh = min(s, width), min(s, height)
    x0 = min(max(x0, 0), width - sw)
    y0 = min(max(y0, 0), height - sh)
    return x0, y0, max(sw, 1), max(sh, 1)


def crop_faces(
    gray: np.ndarray,
    boxes: Sequence[Sequence[float]],
    size: Sequence[int],
    framing: Framing = Framing(),
) -> np.ndarray:
    """Square crops around `boxes`, resized to `size` = (height, width): uint8 (N, H, W).

    Resizing here (area interpolation, on the small crop) rather than in `to_model_input`
    keeps a 1000-pixel face from being copied into the batch at full size.
    """
    h, w = gray.shape[:2]
    out = np.empty((len(boxes), int(size[0]), int(size[1])), dtype=np.uint8)
    for i, box in enumerate(boxes):
        x, y, bw, bh = square_box(box, w, h, framing)
        out[i] = resize_gray(gray[y : y + bh, x : x + bw], (int(size[0]), int(size[1])))
    return out
