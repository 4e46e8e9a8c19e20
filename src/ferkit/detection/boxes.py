"""Face boxes: (x, y, w, h) in pixels, sorted largest first and clipped to an image."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

Box = tuple[int, int, int, int]  # x, y, width, height in pixels


def largest_first(boxes: Iterable[Sequence[float]]) -> list[Box]:
    """Integer boxes sorted by area, largest first (ties: top-left first, so the order is stable)."""
    out = [tuple(round(v) for v in b[:4]) for b in boxes]
    return sorted(out, key=lambda b: (-b[2] * b[3], b[1], b[0]))  # type: ignore[return-value]


def clip_box(box: Sequence[int], width: int, height: int) -> Box:
    """Clip an (x, y, w, h) box to an image of `width` x `height` (may leave w or h at 0)."""
    x0, y0 = max(0, int(box[0])), max(0, int(box[1]))
    x1, y1 = min(width, int(box[0] + box[2])), min(height, int(box[1] + box[3]))
    return x0, y0, max(0, x1 - x0), max(0, y1 - y0)
