"""Inputs a hostile or careless user sends, built cheaply, and a way to prove nothing changed.

Used by the tests in this folder and by `benchmarks/serve_load.py --soak`.
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from pathlib import Path

BLOCK = 1 << 20  # bytes of zeros per repeated deflate block


def _chunk(tag: bytes, data: bytes) -> bytes:
    body = tag + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))


def bomb_png(width: int = 29_000, height: int = 29_000) -> bytes:
    """A valid all-zero RGBA PNG of `width` x `height` (29,000 x 29,000 decodes to 3.4 GB).

    Built in well under a second: after a full flush, deflate encodes each 1 MiB run of zeros
    as the same bytes, so one block is repeated; the Adler-32 of n zeros is (n % 65521) << 16 | 1.
    """
    raw = height * (width * 4 + 1)  # every scanline: filter byte 0, then zeros
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)  # raw deflate: header and checksum are ours
    blocks, rest = divmod(raw, BLOCK)
    body = b""
    if blocks:
        comp.compress(bytes(BLOCK))
        body = comp.flush(zlib.Z_FULL_FLUSH)
        comp.compress(bytes(BLOCK))
        body += comp.flush(zlib.Z_FULL_FLUSH) * (blocks - 1)  # every later 1 MiB of zeros
    body += comp.compress(bytes(rest)) + comp.flush()
    adler = ((raw % 65521) << 16) | 1
    stream = b"\x78\xda" + body + struct.pack(">I", adler)
    header = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)  # 8-bit RGBA
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", stream)
        + _chunk(b"IEND", b"")
    )


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under `folder` (relative path -> SHA-256), to show that nothing changed."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() or p.is_symlink()
    }
