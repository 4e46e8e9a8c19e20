"""Decode image files to fixed-size uint8 grayscale arrays, in parallel processes."""

from __future__ import annotations

import multiprocessing as mp
import os
from concurrent.futures import ProcessPoolExecutor

import numpy as np

from ferkit.imaging import ImageError, read_image, resize_gray, to_gray
from ferkit.progress import bar as progress_bar

# Below this many files a process pool costs more than it saves.
_POOL_MIN_FILES = 2000
_CHUNK = 1024


def _decode_chunk(paths: list[str], size: int) -> tuple[np.ndarray, np.ndarray, int, list[str]]:
    """Decode `paths`; returns images, a mask of the ones that decoded, resized count, errors."""
    out = np.zeros((len(paths), size, size), np.uint8)
    ok = np.zeros(len(paths), bool)
    resized, errors = 0, []
    for i, path in enumerate(paths):
        try:
            gray = to_gray(read_image(path, max_side=4 * size))
        except ImageError as exc:
            errors.append(str(exc))
            continue
        if gray.shape != (size, size):
            gray = resize_gray(gray, size)
            resized += 1
        out[i], ok[i] = gray, True
    return out, ok, resized, errors


def decode_files(
    paths: list[str], size: int, *, workers: int | None = None, desc: str = "decoding"
) -> tuple[np.ndarray, np.ndarray, int, list[str]]:
    """Decode image files to an (N, size, size) uint8 array.

    Returns:
        images, ok (bool mask of files that decoded), number resized, and one error message
        per file that could not be read (each names the file).
    """
    workers = workers or min(os.cpu_count() or 1, 8)
    chunks = [paths[i : i + _CHUNK] for i in range(0, len(paths), _CHUNK)]
    bar = progress_bar(total=len(paths), desc=desc, unit=" img", leave=False)
    results = []
    if workers == 1 or len(paths) < _POOL_MIN_FILES:
        for chunk in chunks:
            results.append(_decode_chunk(chunk, size))
            bar.update(len(chunk))
    else:
        # spawn, not fork: the parent may hold torch/OpenCV thread pools that fork would copy
        with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
            futures = [pool.submit(_decode_chunk, chunk, size) for chunk in chunks]
            for chunk, future in zip(chunks, futures, strict=True):
                results.append(future.result())
                bar.update(len(chunk))
    bar.close()
    if not results:
        return np.zeros((0, size, size), np.uint8), np.zeros(0, bool), 0, []
    images = np.concatenate([r[0] for r in results])
    ok = np.concatenate([r[1] for r in results])
    return images, ok, sum(r[2] for r in results), [e for r in results for e in r[3]]
