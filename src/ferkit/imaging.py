"""Image decoding and grayscale conversion shared by the data layer and inference.

One place decides how any image (file, PIL image, numpy array of any mode or depth) becomes the
uint8 grayscale array a FER model sees, so training and inference cannot drift apart.
"""

from __future__ import annotations

import functools
import io
import re
import struct
import warnings
import zlib
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ferkit.errors import DataError

ColorOrder = Literal["bgr", "rgb", "gray"]

# The file types read as images wherever folders are searched (data sets, `ferkit predict`).
IMAGE_SUFFIXES = frozenset(
    {
        ".jpg",
        ".jpeg",
        ".png",
        ".bmp",
        ".gif",
        ".tif",
        ".tiff",
        ".webp",
        ".pgm",
        ".ppm",
        ".pbm",
        ".pnm",
        ".jfif",  # JPEG, as browsers on Windows save it
        ".jpe",
        ".avif",
        ".heic",  # HEIC/HEIF: iPhones' photos; read with pillow-heif (see `heif_support`)
        ".heif",
    }
)


# What an error says ferkit reads, when bytes are no image format Pillow knows
READABLE_FORMATS = "JPEG, PNG, WebP, AVIF, HEIC, BMP, GIF, TIFF, ..."

# ISO-BMFF brands of HEIF images (bytes 8-12 after "ftyp"): those Pillow reads only through
# pillow-heif. AVIF, HEIF's AV1 sibling, Pillow reads itself.
HEIF_BRANDS = (b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1")
HEIF_HINT = (
    "a HEIC/HEIF photo (iPhones' format); ferkit reads it with pillow-heif installed "
    "(pip install 'ferkit[heic]'), or convert it to JPEG"
)

EXIF_ORIENTATION = 0x0112  # the EXIF tag saying how a photo is turned for display


class ImageError(DataError):
    """An image file or array cannot be read or is not usable (empty, corrupt, truncated)."""


class NotAnImageError(ImageError):
    """The bytes are no image format PIL knows."""


class HeifSupportError(NotAnImageError):
    """A HEIC/HEIF photo, where pillow-heif (the `ferkit[heic]` extra) is not installed."""


class ImageTooLargeError(ImageError):
    """An image has more pixels than may be decoded (a decompression bomb, or just too big)."""


def pixel_limit() -> int:
    """The most pixels an image may have by its header: Pillow's decompression-bomb guard,
    `PIL.Image.MAX_IMAGE_PIXELS` (89.5 MP unless the application changed it). ferkit keeps it."""
    return Image.MAX_IMAGE_PIXELS or 2**63


@functools.cache
def heif_support() -> bool:
    """Whether HEIC/HEIF images can be read: pillow-heif, when installed, registers them with
    Pillow. It is an extra (`ferkit[heic]`), not a dependency: its wheels bundle an HEVC
    encoder under the GPL."""
    try:
        import pillow_heif
    except ImportError:
        return False
    pillow_heif.register_heif_opener()
    return True


def _is_heif(source: str | Path | bytes) -> bool:
    if isinstance(source, bytes):
        head = source[:12]
    else:
        try:
            with open(source, "rb") as f:
                head = f.read(12)
        except OSError:
            return False
    return head[4:8] == b"ftyp" and head[8:12] in HEIF_BRANDS


def is_url(source) -> bool:
    """True for a string that names a URL (`https://...`, `rtsp://...`), which no file is."""
    return isinstance(source, str) and "://" in source


def open_image(
    source: str | Path | bytes,
    *,
    max_side: int | None = None,
    max_pixels: int | None = None,
    name: str | None = None,
) -> Image.Image:
    """Open an image lazily and check its size from the header, before anything is decoded.

    The one gate every path goes through (CLI, data sets, server): a 29,000 x 29,000 PNG of a
    few MB is refused in milliseconds instead of decoding 3 GB. Nothing is decoded here, not
    even EXIF (a PNG's EXIF may follow its pixels): call `.load()` on the result.

    Args:
        source: an image file, or the bytes of one (an upload).
        max_side: large JPEGs are set to decode at reduced scale (PIL draft mode), the longer
            side at least this, which bounds memory for huge photos. The size before that
            reduction is kept in `img.info["original_size"]` as (w, h).
        max_pixels: the most pixels to decode, after any reduction (default `pixel_limit()`);
            never more than Pillow's guard allows by the header.
        name: what to call the image in messages (default: the file name, or "the image").

    Raises:
        ImageTooLargeError: more pixels than allowed; the message gives the size and the limit.
        NotAnImageError: no image format PIL knows.
        ImageError: no such file, or a header PIL cannot parse.
    """
    label = name or (str(source) if isinstance(source, str | Path) else "the image")
    limit = min(max_pixels or pixel_limit(), pixel_limit())
    if _empty(source):
        raise NotAnImageError(f"{label}: empty file (0 bytes)")
    heif_support()  # registers HEIC with Pillow, once, where pillow-heif is installed
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)
    except FileNotFoundError:
        hint = " (ferkit reads files; download the image first)" if is_url(source) else ""
        raise ImageError(f"{label or repr(str(source))}: no such file{hint}") from None
    except IsADirectoryError:
        raise ImageError(
            f"{label}: a folder, not an image file (for the images in it: `ferkit predict "
            "FOLDER`, or a list of their paths)"
        ) from None
    except UnidentifiedImageError:
        if _is_heif(source):  # which Pillow reads only through pillow-heif
            if heif_support():
                raise ImageError(f"{label}: a corrupt or truncated HEIC/HEIF image") from None
            raise HeifSupportError(f"{label}: {HEIF_HINT}") from None
        raise NotAnImageError(
            f"{label}: not an image format ferkit reads ({READABLE_FORMATS})"
        ) from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        # Pillow checks the header's size inside open(); its message has the pixel count
        found = re.search(r"\((\d+) pixels\)", str(exc))
        size = f"{int(found[1]) / 1e6:.0f} MP" if found else "too large"
        raise ImageTooLargeError(_too_large(label, size, limit)) from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"{label}: corrupt or unreadable image header ({exc})") from None
    w, h = img.size
    if max_side and max(w, h) > 2 * max_side:
        img.draft("L" if img.mode == "L" else "RGB", (max_side, max_side))
    if img.width * img.height > limit:
        img.close()
        raise ImageTooLargeError(_too_large(label, f"{w}x{h} ({w * h / 1e6:.0f} MP)", limit))
    img.info["original_size"] = (w, h)  # before draft, to map boxes back
    return img


def _empty(source: str | Path | bytes) -> bool:
    if isinstance(source, bytes):
        return not source
    try:
        return Path(source).is_file() and Path(source).stat().st_size == 0
    except OSError:  # a missing or unreadable file is reported when it is opened
        return False


def _too_large(label: str, size: str, limit: int) -> str:
    return (
        f"{label}: the image is {size}; the limit is {limit / 1e6:.1f} MP "
        "(a guard against decompression bombs); shrink it first"
    )


def read_image(
    source: str | Path | bytes,
    *,
    max_side: int | None = None,
    max_pixels: int | None = None,
    name: str | None = None,
) -> Image.Image:
    """Open and fully decode an image file (or its bytes), upright, naming it in any error.

    The one reader of image files and uploads (`ferkit predict`, data sets, `ferkit serve`).
    EXIF orientation is applied, so a phone photo stored sideways is read as it is shown,
    and boxes found in it match what people see.

    Args:
        source: the image file, or the bytes of one (an upload).
        max_side: if given, large JPEGs are decoded at reduced scale (see `open_image`).
        max_pixels: the most pixels to decode (see `open_image`).
        name: what to call the image in messages (default: the file name, or "the image").

    Returns:
        The decoded image; `img.info["original_size"]` is its upright (w, h) before any
        reduced-scale decoding.

    Raises:
        ImageTooLargeError: more pixels than allowed, refused from the header.
        NotAnImageError: no image format PIL knows.
        ImageError: missing, corrupt or truncated.
    """
    label = name or (str(source) if isinstance(source, str | Path) else "the image")
    img = open_image(source, max_side=max_side, max_pixels=max_pixels, name=name)
    w, h = img.info["original_size"]
    try:
        img.load()
        if img.getexif().get(EXIF_ORIENTATION, 1) != 1:
            turned = ImageOps.exif_transpose(img)
            if turned.size != img.size:  # a quarter turn swaps width and height
                w, h = h, w
            img = turned
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"{label}: corrupt or truncated image ({exc})") from None
    if img.width < 1 or img.height < 1:
        raise ImageError(f"{label}: empty image ({img.width}x{img.height})")
    img.info["original_size"] = (w, h)
    return img


def read_common(
    source: str | Path | bytes,
    *,
    max_side: int | None = None,
    max_pixels: int | None = None,
    name: str | None = None,
) -> np.ndarray | None:
    """Decode the common case, an upright 8-bit RGB or gray JPEG or PNG, with OpenCV; None
    for any other image, which `read_image` reads.

    Inference (`ferkit predict`, the server, `data crop`) reads photos here first: OpenCV
    decodes them faster than PIL and gives the BGR and gray arrays that detection wants
    without conversions (astronaut.png, a 512x512 PNG, into a Frame on one thread: 5.2-7.0 ms
    against 7.4-9.2 ms through PIL, five interleaved pairs). The pixels are the same as
    through PIL, except that gray from colour is OpenCV's conversion, which differs from PIL's
    by at most one level on 0.1% of pixels (as for numpy arrays given to `to_gray`). The size
    gate is `open_image`'s, before any
    decoding. Anything that needs PIL's handling goes there: other formats and modes (alpha,
    palette, 16-bit, CMYK), an EXIF orientation to apply, a JPEG large enough for reduced-scale
    decoding (see `open_image`), or bytes OpenCV cannot decode (PIL then names the problem).

    Returns:
        uint8 BGR (H, W, 3) or gray (H, W) pixels at the image's full size; or None.

    Raises:
        ImageTooLargeError, NotAnImageError, ImageError: as `open_image`.
    """
    with open_image(source, max_pixels=max_pixels, name=name) as img:
        w, h = img.size
        fmt, mode = img.format, img.mode
        # PNG raw modes say the bit depth: "RGB;16B" (48-bit), "L;4" (4-bit gray), "RGB" 8-bit
        raw = img.tile[0][3] if fmt == "PNG" and img.tile else mode
        if fmt not in ("JPEG", "PNG") or mode not in ("RGB", "L") or raw != mode:
            return None
        if max_side and max(w, h) > 2 * max_side and fmt == "JPEG":
            return None  # read_image decodes it at reduced scale
        if fmt == "JPEG" and img.getexif().get(EXIF_ORIENTATION, 1) != 1:
            return None
        if fmt == "PNG" and mode == "L" and "icc_profile" in img.info:
            return None  # often an RGB profile, which libpng warns about on stderr
    data = source if isinstance(source, bytes) else Path(source).read_bytes()
    if fmt == "JPEG" and not data.endswith(b"\xff\xd9"):  # no end marker: truncated
        return None  # PIL says how (OpenCV's decoder would print to stderr)
    if fmt == "PNG":
        chunks = _png_chunks(data)
        if chunks is None:  # truncated or corrupt: PIL says how (libpng would print to stderr)
            return None
        if b"eXIf" in chunks:  # EXIF, maybe an orientation, possibly after the pixels
            return None
    flags = cv2.IMREAD_IGNORE_ORIENTATION | (
        cv2.IMREAD_GRAYSCALE if mode == "L" else cv2.IMREAD_COLOR
    )
    pixels = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    if pixels is None or pixels.shape[:2] != (h, w):  # corrupt or truncated: PIL says how
        return None
    return pixels


def _png_chunks(data: bytes) -> set[bytes] | None:
    """The chunk types of a whole PNG whose every chunk's CRC is right, ending in IEND;
    None for any other bytes. (0.4 ms for astronaut.png, 0.8 MB.)"""
    view, pos, types = memoryview(data), 8, set()  # after the signature, which PIL checked
    while pos + 12 <= len(data):
        (length,) = struct.unpack_from(">I", data, pos)
        end = pos + 8 + length
        if end + 4 > len(data):
            return None
        (crc,) = struct.unpack_from(">I", data, end)
        if zlib.crc32(view[pos + 4 : end]) != crc:
            return None
        kind = bytes(view[pos + 4 : pos + 8])
        types.add(kind)
        pos = end + 4
        if kind == b"IEND":
            return types if pos == len(data) else None
    return None


def to_gray(image: Image.Image | np.ndarray, *, color: ColorOrder = "rgb") -> np.ndarray:
    """Convert a PIL image or numpy array of any mode or bit depth to a uint8 grayscale array.

    Args:
        image: a PIL image, or an array (H, W), (H, W, 1), (H, W, 3) or (H, W, 4).
        color: channel order of a 3/4-channel array: "rgb" (PIL, matplotlib), "bgr" (OpenCV),
            or "gray" for an array already single-channel. Ignored for PIL images.
    """
    if isinstance(image, Image.Image):
        return _pil_to_gray(image)
    arr = np.asarray(image)
    if arr.size == 0:
        raise ImageError(f"empty image array of shape {arr.shape}")
    if arr.dtype != np.uint8:
        arr = _to_uint8(arr)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim == 2:
        return np.ascontiguousarray(arr)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        # a tensor's layout (C, H, W), as torchvision and PyTorch models keep images
        first = arr.ndim == 3 and arr.shape[0] in (1, 3, 4) and arr.shape[2] > 4
        hint = "; channels first? move them last: arr.transpose(1, 2, 0)" if first else ""
        raise ImageError(f"expected an image array (H, W[, 1|3|4]), got shape {arr.shape}{hint}")
    if color == "gray":
        raise ImageError(f"color='gray' given for an array with {arr.shape[2]} channels")
    code = {
        ("rgb", 3): cv2.COLOR_RGB2GRAY,
        ("rgb", 4): cv2.COLOR_RGBA2GRAY,
        ("bgr", 3): cv2.COLOR_BGR2GRAY,
        ("bgr", 4): cv2.COLOR_BGRA2GRAY,
    }[(color, arr.shape[2])]
    return cv2.cvtColor(np.ascontiguousarray(arr), code)


def _pil_to_gray(img: Image.Image) -> np.ndarray:
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        return _to_uint8(np.asarray(img))
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        img = img.convert("RGBA")
        background = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, img)  # transparent areas become white
    return np.asarray(img.convert("L"))


def _to_uint8(arr: np.ndarray) -> np.ndarray:
    """Scale integer or float data of any range to uint8 (16-bit PNGs, float arrays in 0..1)."""
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8) * 255
    if not np.issubdtype(arr.dtype, np.integer) and not np.issubdtype(arr.dtype, np.floating):
        raise ImageError(
            f"an image array of {arr.dtype} values holds no pixels; give uint8 (or other "
            "integer), float or bool values"
        )
    if np.issubdtype(arr.dtype, np.floating):
        finite = np.isfinite(arr)
        if not finite.any():
            raise ImageError(f"the image array ({arr.dtype}) holds no finite value: all NaN or inf")
        hi = 1.0 if float(np.max(arr, where=finite, initial=-np.inf)) <= 1.0 else 255.0
        return np.clip(np.nan_to_num(arr) * (255.0 / hi), 0, 255).astype(np.uint8)
    if arr.dtype == np.uint16 or arr.max() > 255:
        top = 65535.0 if arr.dtype == np.uint16 or arr.max() > 4095 else 4095.0
        return np.clip(arr.astype(np.float32) * (255.0 / top), 0, 255).astype(np.uint8)
    return np.clip(arr, 0, 255).astype(np.uint8)


def resize_gray(gray: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """Resize a grayscale uint8 array to `size` (an int for square, or (height, width)).

    Area interpolation when shrinking (no aliasing), bilinear when enlarging.
    """
    h, w = (size, size) if isinstance(size, int) else size
    if gray.shape[:2] == (h, w):
        return gray
    shrink = gray.shape[0] > h or gray.shape[1] > w
    return cv2.resize(gray, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
