"""Turn any input (path, file bytes, PIL image, numpy array) into a `Frame`: a bounded-size
working copy.

Detection and cropping run on the working copy, at most `max_side` pixels on its longer side,
so a 20000x20000 photo costs what a 1280-pixel one does; `Frame.scale` maps boxes back to the
input's pixels. Decoding and grayscale conversion are `ferkit.imaging`'s: `read_common` for
the everyday JPEG or PNG photo, `read_image` (as in training) for everything else.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from ferkit.detection.boxes import Box, Detection, clip_box
from ferkit.errors import unknown
from ferkit.imaging import ColorOrder, ImageError, read_common, read_image, to_gray

log = logging.getLogger(__name__)

DEFAULT_MAX_SIDE = 1280  # faces are classified at 48x48; more pixels only cost time
COLOR_ORDERS = ("bgr", "rgb", "gray")


@dataclass
class Frame:
    """An image ready for face detection.

    Attributes:
        image: the working copy as uint8 BGR (H, W, 3), or gray (H, W) for gray inputs;
            what annotations are drawn on.
        gray: the working copy in grayscale, what detectors and crops use.
        scale: input pixels per working pixel (1.0 unless the input was shrunk).
        source: the file name, or "<array>" / "<PIL image>".
        size: the input's (width, height) in its own pixels.
    """

    image: np.ndarray
    gray: np.ndarray
    scale: float
    source: str
    size: tuple[int, int]

    def to_input(self, box: Box) -> Box:
        """A box in the working copy's pixels, in the input's own pixels."""
        if self.scale == 1.0:
            return box
        return clip_box(tuple(round(v * self.scale) for v in box), *self.size)

    def detection_to_input(self, detection: Detection) -> Detection:
        """A Detection in the working copy's pixels (box, landmarks), in the input's own pixels."""
        if self.scale == 1.0:
            return detection
        scaled = detection.scaled(self.scale)
        return Detection(self.to_input(detection.box), scaled.score, scaled.landmarks)


def load_frame(
    image: str | Path | bytes | Image.Image | np.ndarray | Frame,
    *,
    color: ColorOrder = "bgr",
    max_side: int | None = DEFAULT_MAX_SIDE,
    max_pixels: int | None = None,
    name: str | None = None,
) -> Frame:
    """Decode and shrink `image` into a Frame.

    Args:
        image: a file path, the bytes of an image file (an upload), a PIL image (any mode),
            a uint8/uint16/float numpy array, or a Frame (returned as it is).
        color: channel order of a 3/4-channel numpy array: "bgr" (OpenCV), "rgb" (PIL,
            matplotlib) or "gray". Files and PIL images know their own.
        max_side: longer side of the working copy (None: keep full size).
        max_pixels: files and bytes: the most pixels to decode (`ferkit.imaging.open_image`).
        name: files and bytes: what to call the image in messages and `Frame.source`.

    Raises:
        ImageError: unreadable, empty or malformed input; the message names the file.
    """
    if isinstance(image, Frame):
        return image
    if color not in COLOR_ORDERS:
        raise ImageError(unknown("color order", color, COLOR_ORDERS))
    if isinstance(image, str | Path | bytes):
        source = name or ("<bytes>" if isinstance(image, bytes) else str(image))
        limits = {"max_side": max_side, "max_pixels": max_pixels, "name": name}
        pixels = read_common(image, **limits)  # JPEG/PNG photos, by OpenCV
        if pixels is not None:
            gray = pixels if pixels.ndim == 2 else cv2.cvtColor(pixels, cv2.COLOR_BGR2GRAY)
            return _finish(pixels, gray, source, max_side)
        pil = read_image(image, **limits)
        size = pil.info.get("original_size", pil.size)
        return _from_pil(pil, source, size, max_side)
    if isinstance(image, Image.Image):
        if image.width < 1 or image.height < 1:
            raise ImageError(f"empty PIL image ({image.width}x{image.height})")
        # read_image's images remember their size before reduced-scale decoding
        size = image.info.get("original_size", image.size)
        return _from_pil(image, "<PIL image>", size, max_side)
    if not (isinstance(image, list | tuple) or hasattr(image, "__array__")):  # array-likes too
        raise ImageError(
            "expected an image: a file path, image file bytes, a PIL image or a numpy array, "
            f"not {type(image).__name__}"
        )
    arr = np.asarray(image)
    if arr.ndim < 2 or arr.size == 0:
        raise ImageError(f"empty or malformed image array of shape {arr.shape}")
    gray = to_gray(arr, color=color)
    shown = _bgr_or_none(arr, color)
    return _finish(shown if shown is not None else gray, gray, "<array>", max_side)


def _from_pil(pil: Image.Image, source: str, size: tuple[int, int], max_side: int | None) -> Frame:
    if max_side and max(pil.size) >= 2 * max_side:
        # An integer box reduction on the PIL image first, so the conversions below never
        # copy a huge image; modes reduce() refuses (16-bit, palette) are shrunk after.
        with contextlib.suppress(ValueError):
            pil = pil.reduce(max(pil.size) // max_side)
    gray = to_gray(pil)
    if pil.mode in ("1", "L", "LA", "I", "F") or pil.mode.startswith("I;16"):
        shown = gray
    else:
        shown = cv2.cvtColor(np.asarray(pil.convert("RGB")), cv2.COLOR_RGB2BGR)
    frame = _finish(shown, gray, source, max_side)
    if max(size) > 2 * max(frame.gray.shape):
        h, w = frame.gray.shape
        log.info("%s: %dx%d image analysed at %dx%d", source, size[0], size[1], w, h)
    # The scale from the working copy back to the file's own pixels, past draft and reduce.
    frame.scale = max(size[0] / frame.gray.shape[1], size[1] / frame.gray.shape[0])
    frame.size = (int(size[0]), int(size[1]))
    return frame


def _bgr_or_none(arr: np.ndarray, color: str) -> np.ndarray | None:
    """A uint8 BGR copy of a colour array for drawing, or None when gray is all there is."""
    if arr.ndim != 3 or arr.shape[2] not in (3, 4) or color == "gray":
        return None
    if arr.dtype != np.uint8:
        return None  # 16-bit/float colour: drawing on the gray copy is good enough
    code = {
        ("rgb", 3): cv2.COLOR_RGB2BGR,
        ("rgb", 4): cv2.COLOR_RGBA2BGR,
        ("bgr", 4): cv2.COLOR_BGRA2BGR,
    }.get((color, arr.shape[2]))
    return np.ascontiguousarray(arr) if code is None else cv2.cvtColor(arr, code)


def _finish(shown: np.ndarray, gray: np.ndarray, source: str, max_side: int | None) -> Frame:
    h, w = gray.shape[:2]
    scale = 1.0
    if max_side and max(h, w) > max_side:
        scale = max(h, w) / max_side
        size = (max(1, round(w / scale)), max(1, round(h / scale)))
        gray = cv2.resize(gray, size, interpolation=cv2.INTER_AREA)
        shown = gray if shown.ndim == 2 else cv2.resize(shown, size, interpolation=cv2.INTER_AREA)
    return Frame(image=shown, gray=gray, scale=scale, source=source, size=(w, h))
