"""Draw results on an image: a box per face, its label and probability, and a bar per emotion.

Works on BGR uint8 arrays (OpenCV's order), at any resolution: line widths and text scale
follow the face size so annotations stay readable on a 320-pixel frame and a 4K photo.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from ferkit.inference.results import Face

# One BGR colour per emotion, so a glance at a video tells the label; unknown labels get gray.
COLORS: dict[str, tuple[int, int, int]] = {
    "angry": (40, 40, 220),
    "disgust": (40, 140, 60),
    "fear": (160, 60, 150),
    "happy": (40, 200, 240),
    "sad": (200, 120, 40),
    "surprise": (230, 150, 240),
    "neutral": (190, 190, 190),
    "contempt": (30, 100, 180),  # FER+'s eighth class (flagship-ferplus)
}
FONT = cv2.FONT_HERSHEY_SIMPLEX


def annotate(
    image: np.ndarray, faces: Sequence[Face], *, scale: float = 1.0, bars: bool = True
) -> np.ndarray:
    """A copy of `image` (BGR or gray uint8) with each face's box, label and probability bars.

    Args:
        image: the picture to draw on; gray images are drawn on in colour.
        faces: results whose boxes are in the input's pixels.
        scale: input pixels per pixel of `image` (`Frame.scale` when drawing on a working copy).
        bars: draw one bar per emotion beside the box.
    """
    out = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR) if image.ndim == 2 else image.copy()
    for face in faces:
        x, y, w, h = (round(v / scale) for v in face.box)
        color = COLORS.get(face.label, (200, 200, 200))
        thick = max(1, round(w / 60))
        cv2.rectangle(out, (x, y), (x + w, y + h), color, thick)
        person = "" if face.track is None else f"#{face.track} "  # a video's person id
        _label(out, f"{person}{face.label} {face.confidence:.0%}", x, y, w, color)
        if bars:
            _bars(out, face.scores, x, y, w, h)
    return out


def _label(out: np.ndarray, text: str, x: int, y: int, w: int, color) -> None:
    font_scale = max(0.35, min(1.2, w / 160))
    thick = max(1, round(font_scale * 2))
    (tw, th), base = cv2.getTextSize(text, FONT, font_scale, thick)
    top = y - th - base - 4 if y - th - base - 4 >= 0 else y  # above the box, else inside
    cv2.rectangle(out, (x, top), (x + tw + 4, top + th + base + 4), color, -1)
    cv2.putText(out, text, (x + 2, top + th + 2), FONT, font_scale, (0, 0, 0), thick, cv2.LINE_AA)


def _bars(out: np.ndarray, scores: dict[str, float], x: int, y: int, w: int, h: int) -> None:
    """Horizontal bars beside the box: right of it if there is room, else left, else inside."""
    n = len(scores)
    row = max(9, min(24, h // n))
    width = max(60, min(200, w))
    font_scale = row / 30
    img_h, img_w = out.shape[:2]
    left = x + w + 4 if x + w + 4 + width <= img_w else x - width - 4
    if left < 0:
        left = x + 2
    top = min(max(0, y), max(0, img_h - row * n))
    label_w = cv2.getTextSize("surprise", FONT, font_scale, 1)[0][0] + 4
    # A dark panel behind the bars keeps white text readable on any background.
    y1, x1 = min(img_h, top + row * n), min(img_w, left + width)
    panel = out[top:y1, left:x1]
    panel[:] = (panel * 0.35).astype(np.uint8)
    for i, (name, p) in enumerate(scores.items()):
        y0 = top + i * row
        color = COLORS.get(name, (200, 200, 200))
        cv2.putText(
            out, name, (left, y0 + row - 3), FONT, font_scale, (255, 255, 255), 1, cv2.LINE_AA
        )
        bar_x = left + label_w
        full = max(1, width - label_w)
        cv2.rectangle(out, (bar_x, y0 + 2), (bar_x + full, y0 + row - 2), (60, 60, 60), -1)
        cv2.rectangle(out, (bar_x, y0 + 2), (bar_x + round(full * p), y0 + row - 2), color, -1)
