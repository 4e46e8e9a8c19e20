"""`ferkit.imaging.read_common`: everyday JPEG/PNG photos through OpenCV, the same pixels as
PIL's `read_image`; everything that needs PIL's handling left to it."""

from __future__ import annotations

import io
import re

import numpy as np
import pytest
from PIL import Image

from conftest import ASTRONAUT
from ferkit.detection.frames import load_frame
from ferkit.imaging import (
    ImageError,
    ImageTooLargeError,
    NotAnImageError,
    read_common,
    read_image,
    to_gray,
)


def _encoded(img: Image.Image, fmt: str, **options) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **options)
    return buf.getvalue()


@pytest.fixture(scope="module")
def photo() -> Image.Image:
    small = Image.open(ASTRONAUT).convert("RGB").resize((160, 120))  # not square: w != h
    return Image.fromarray(np.asarray(small))  # without the file's colour profile


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
@pytest.mark.parametrize("mode", ["RGB", "L"])
def test_common_photos_decode_to_pils_pixels(photo, fmt, mode):
    data = _encoded(photo.convert(mode), fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    pixels = read_common(data)
    assert pixels is not None
    size = pixels.shape[1::-1]  # (w, h)
    pil = read_image(data)
    assert size == pil.size == (160, 120)
    if mode == "L":
        np.testing.assert_array_equal(pixels, np.asarray(pil))
    else:
        np.testing.assert_array_equal(pixels[:, :, ::-1], np.asarray(pil))  # BGR
        frame = load_frame(data)
        # gray: OpenCV's conversion, at most one level from PIL's
        diff = np.abs(frame.gray.astype(int) - to_gray(pil).astype(int))
        assert diff.max() <= 1


def test_a_file_and_its_bytes_give_the_same_frame():
    from_file, from_bytes = load_frame(ASTRONAUT), load_frame(ASTRONAUT.read_bytes())
    np.testing.assert_array_equal(from_file.image, from_bytes.image)
    np.testing.assert_array_equal(from_file.gray, from_bytes.gray)
    assert from_file.size == from_bytes.size == (512, 512)


_ICC = Image.open(ASTRONAUT).info["icc_profile"]  # an RGB colour profile


def _exif_rotated(photo: Image.Image) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 clockwise to display
    return _encoded(photo.rotate(90, expand=True), "JPEG", quality=95, exif=exif)


@pytest.mark.parametrize(
    "make",
    [
        lambda p: _encoded(p.convert("RGBA"), "PNG"),  # alpha: composited on white by PIL
        lambda p: _encoded(p.convert("P"), "PNG"),  # palette
        lambda p: _encoded(p.convert("I;16"), "PNG"),  # 16-bit
        lambda p: _encoded(p, "GIF"),
        lambda p: _encoded(p, "WEBP"),
        lambda p: _encoded(p, "PNG")[:-100],  # truncated
        lambda p: _encoded(p, "JPEG")[:-100],
        _exif_rotated,  # an orientation to apply
        lambda p: _encoded(p.convert("L"), "PNG", icc_profile=_ICC),  # libpng would warn
    ],
    ids=[
        "rgba",
        "palette",
        "16bit",
        "gif",
        "webp",
        "png-cut",
        "jpeg-cut",
        "exif-rotated",
        "gray-with-rgb-profile",
    ],
)
def test_everything_else_is_left_to_pil(photo, make):
    assert read_common(make(photo)) is None


def _png_with_bad_crc(photo: Image.Image) -> bytes:
    data = bytearray(_encoded(photo, "PNG"))
    data[data.find(b"IDAT") + 50] ^= 0xFF  # a byte of the pixel data: its chunk's CRC is wrong
    return bytes(data)


def test_a_corrupt_png_is_named_without_libpngs_stderr_line(photo, capfd):
    data = _png_with_bad_crc(photo)
    assert read_common(data) is None  # left to PIL, which names the problem
    with pytest.raises(ImageError, match="corrupt or truncated image"):
        load_frame(data, name="bad.png")
    assert "libpng" not in capfd.readouterr().err  # OpenCV's libpng would print "CRC error"


def test_a_png_with_bytes_after_its_end_is_left_to_pil(photo):
    assert read_common(_encoded(photo, "PNG") + b"trailing") is None


def test_load_frame_applies_exif_orientation_through_pil(photo):
    frame = load_frame(_exif_rotated(photo))
    assert frame.size == (160, 120)  # stored 120x160, shown upright


def test_huge_jpegs_keep_reduced_scale_decoding():
    big = Image.new("RGB", (3000, 2000), (90, 120, 150))
    data = _encoded(big, "JPEG")
    assert read_common(data, max_side=1280) is None  # PIL's draft mode decodes it smaller
    assert read_common(data, max_side=None) is not None
    frame = load_frame(data, max_side=1280)
    assert frame.size == (3000, 2000) and max(frame.gray.shape) == 1280


def test_the_size_gate_comes_first():
    data = _encoded(Image.new("L", (400, 300)), "PNG")
    with pytest.raises(ImageTooLargeError, match="400x300"):
        read_common(data, max_pixels=100_000)


def test_an_empty_file_says_so(tmp_path):
    empty = tmp_path / "empty.jpg"
    empty.touch()
    for source in (empty, b""):
        with pytest.raises(NotAnImageError, match=r"empty file \(0 bytes\)"):
            load_frame(source)


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (
            None,
            "expected an image: a file path, image file bytes, a PIL image or a numpy array, "
            "not NoneType",
        ),
        ({}, "not dict"),
        ("", "'': no such file"),
        ("https://example.com/a.jpg", "no such file (ferkit reads files; download the image"),
    ],
)
def test_what_is_no_image_says_what_is_expected(source, message):
    with pytest.raises(ImageError, match=re.escape(message)):
        load_frame(source)


def test_float_arrays_scale_by_their_finite_values():
    """0..1 floats are scaled to 0..255 and NaN is black, whatever else is NaN; an array with
    no finite value is an error, not a warning and a black image."""
    face = np.full((8, 8), 0.5, np.float32)
    face[0, 0] = np.nan
    assert load_frame(face).gray[1, 1] == 127 and load_frame(face).gray[0, 0] == 0
    with pytest.raises(ImageError, match="holds no finite value"):
        load_frame(np.full((8, 8, 3), np.nan))


def test_a_folder_is_no_image(tmp_path):
    with pytest.raises(ImageError, match=r"a folder, not an image file .*ferkit predict FOLDER"):
        load_frame(tmp_path)


@pytest.mark.parametrize(
    "array",
    [np.zeros((8, 8), complex), np.full((8, 8), "a"), np.full((8, 8), None, object)],
    ids=["complex", "strings", "objects"],
)
def test_arrays_of_no_pixel_type_are_refused(array):
    with pytest.raises(ImageError, match=f"an image array of {array.dtype} values holds no pixels"):
        load_frame(array)


def test_a_channels_first_array_says_how_to_turn_it():
    """(3, H, W) is how torch and torchvision hold an image; the message says the fix."""
    with pytest.raises(
        ImageError, match=r"got shape \(3, 64, 48\); channels first\? move them last"
    ):
        load_frame(np.zeros((3, 64, 48), np.uint8))
    with pytest.raises(ImageError, match=r"got shape \(5, 64, 48\)$"):
        load_frame(np.zeros((5, 64, 48), np.uint8))


def test_a_truncated_heic_is_named_corrupt_not_unknown():
    """With pillow-heif installed (the dev extra), bytes that start as HEIC but break off are a
    corrupt HEIC, not 'not an image format ferkit reads' nor a hint to install what is there."""
    from ferkit.imaging import heif_support

    assert heif_support()
    buf = io.BytesIO()
    Image.open(ASTRONAUT).convert("RGB").save(buf, "HEIF")
    with pytest.raises(ImageError, match=r"photo\.heic: a corrupt or truncated HEIC/HEIF image"):
        read_image(buf.getvalue()[:64], name="photo.heic")
    assert read_image(buf.getvalue()).size == (512, 512)
