"""The decoded-array cache: `.npy` files memory-mapped on later loads, plus a manifest.

A cache entry lives in `$FERKIT_CACHE` (default `~/.cache/ferkit`), one folder per source and
image size. Its manifest records a fingerprint of the source (file names, sizes and mtimes) and
one of the code that decoded and labelled it, so a changed source, or a ferkit that reads or
labels data differently, decodes it again. Entries are written to a temporary folder and renamed into
place, so a crash or two processes loading at once never leave a half-written entry.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from ferkit.cache import cache_root
from ferkit.data.types import FERData, Split
from ferkit.files import walk_files
from ferkit.labels import EMOTIONS

CACHE_FORMAT = 1

# File names are bytes to the OS; one that is not UTF-8 reaches Python with surrogates
# (PEP 383), which hash as the bytes they stand for.
NAMES = "surrogateescape"


def fingerprint(source: Path) -> str:
    """Hash of the names, sizes and modification times of every file under `source`."""
    h = hashlib.sha1()
    if source.is_file():
        st = source.stat()
        h.update(f"{source.name}\0{st.st_size}\0{st.st_mtime_ns}".encode(errors=NAMES))
        return h.hexdigest()
    # the files the loaders read, linked folders included; what cannot be listed they name
    for path in walk_files(source, on_error=lambda _: None):
        st = path.stat() if path.exists() else path.lstat()  # a broken link: the link's own
        rel = os.path.relpath(path, source)
        h.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\n".encode(errors=NAMES))
    return h.hexdigest()


@functools.cache
def code_fingerprint() -> str:
    """Hash of the code whose output is cached: this package, `ferkit.labels` and `ferkit.imaging`.

    An entry written by other code (an upgrade, or a fix to how faces are decoded or relabelled)
    is stale even when its source has not changed.
    """
    import ferkit.imaging
    import ferkit.labels

    files = sorted(Path(__file__).parent.glob("*.py"))
    files += [Path(ferkit.imaging.__file__), Path(ferkit.labels.__file__)]
    h = hashlib.sha1()
    for file in files:
        h.update(file.name.encode() + b"\0" + file.read_bytes())
    return h.hexdigest()


def entry_dir(source: Path, image_size: int, variant: str = "") -> Path:
    """The entry of `source` at `image_size`; `variant` names a relabelling (FER+ labels)."""
    key = f"{source}|{image_size}|{CACHE_FORMAT}" + (f"|{variant}" if variant else "")
    key = hashlib.sha1(key.encode(errors=NAMES)).hexdigest()[:16]
    return cache_root() / f"{source.name or 'data'}-{image_size}px-{key}"


def load(source: Path, image_size: int, fp: str, variant: str = "") -> FERData | None:
    """The cached data set for `source`, memory-mapped, or None if absent or stale."""
    folder = entry_dir(source, image_size, variant)
    try:
        manifest = json.loads((folder / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    if (
        manifest.get("format") != CACHE_FORMAT
        or manifest.get("fingerprint") != fp
        or manifest.get("code") != code_fingerprint()
    ):
        return None
    splits = {}
    try:
        for name in manifest["splits"]:
            soft = folder / f"{name}_soft_labels.npy"
            splits[name] = Split(
                images=np.load(folder / f"{name}_images.npy", mmap_mode="r"),
                labels=np.load(folder / f"{name}_labels.npy"),
                soft_labels=np.load(soft) if soft.exists() else None,
            )
    except (OSError, ValueError):
        return None  # a damaged entry is rebuilt, not trusted
    return FERData(
        source=manifest["source"],
        kind=manifest["kind"],
        image_size=image_size,
        splits=splits,
        resized=manifest["resized"],
        skipped=manifest["skipped"],
        ignored_classes=manifest["ignored_classes"],
        notes=manifest["notes"],
        from_cache=True,
        labels=tuple(manifest.get("labels", EMOTIONS)),
        label_mode=manifest.get("label_mode"),
    )


def save(data: FERData, source: Path, fp: str, variant: str = "") -> Path:
    """Write `data` as a cache entry for `source`; returns the entry folder."""
    final = entry_dir(source, data.image_size, variant)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=final.name + ".tmp-", dir=final.parent))
    try:
        for name, split in data.splits.items():
            np.save(tmp / f"{name}_images.npy", np.ascontiguousarray(split.images))
            np.save(tmp / f"{name}_labels.npy", np.asarray(split.labels, np.int64))
            if split.soft_labels is not None:
                np.save(tmp / f"{name}_soft_labels.npy", split.soft_labels)
        summary = data.summary()
        manifest = {
            "format": CACHE_FORMAT,
            "fingerprint": fp,
            "code": code_fingerprint(),
            "splits": list(data.splits),
            "counts": {name: s["classes"] for name, s in summary["splits"].items()},
            **{
                k: summary[k]
                for k in (
                    "source",
                    "kind",
                    "resized",
                    "skipped",
                    "ignored_classes",
                    "notes",
                    "labels",
                    "label_mode",
                )
            },
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1))
        if final.exists():
            shutil.rmtree(final, ignore_errors=True)
        try:
            os.rename(tmp, final)
        except OSError:  # another process renamed its identical entry first
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final
