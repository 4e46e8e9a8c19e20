"""Cut faces out of an image the way the model was trained to see them.

A detector's box is tight around eyes, nose and mouth; FER-2013's crops show a little more
(forehead, chin), so each box is grown by a margin and made square, then resized to the
model's input size. The square is moved, not cut, where it sticks out of the image, so the
face keeps its proportions; only a square larger than the image is clipped.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ferkit.imaging import resize_gray
from ferkit.inference.faces import Box

# Each side grows by this fraction of the box's longer side. Checkpoints may carry their own
# value in meta["extra"]["crop_margin"] (a model trained on other crops wants other margins).
DEFAULT_MARGIN = 0.1


def square_box(box: Sequence[int], width: int, height: int, margin: float = DEFAULT_MARGIN) -> Box:
    """Grow `box` by `margin` on each side, make it square, and fit it inside the image.

    Args:
        box: (x, y, w, h) of a face.
        width, height: the image's size.
        margin: fraction of the box's longer side added on every side.

    Returns:
        A square (x, y, s, s) inside the image, or a clipped rectangle when the square
        would be larger than the image itself.
    """
    x, y, w, h = (float(v) for v in box[:4])
    side = max(w, h) * (1.0 + 2.0 * margin)
    cx, cy = x + w / 2.0, y + h / 2.0
    s = round(side)
    x0, y0 = round(cx - side / 2.0), round(cy - side / 2.0)
    sw, sh = min(s, width), min(s, height)
    x0 = min(max(x0, 0), width - sw)
    y0 = min(max(y0, 0), height - sh)
    return x0, y0, max(sw, 1), max(sh, 1)


def crop_faces(
    gray: np.ndarray,
    boxes: Sequence[Sequence[int]],
    size: Sequence[int],
    margin: float = DEFAULT_MARGIN,
) -> np.ndarray:
    """Square crops around `boxes`, resized to `size` = (height, width): uint8 (N, H, W).

    Resizing here (area interpolation, on the small crop) rather than in `to_model_input`
    keeps a 1000-pixel face from being copied into the batch at full size.
    """
    h, w = gray.shape[:2]
    out = np.empty((len(boxes), int(size[0]), int(size[1])), dtype=np.uint8)
    for i, box in enumerate(boxes):
        x, y, bw, bh = square_box(box, w, h, margin)
        out[i] = resize_gray(gray[y : y + bh, x : x + bw], (int(size[0]), int(size[1])))
    return out
