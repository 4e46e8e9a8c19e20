"""Writing a user's outputs: never replace one silently, never leave half a file behind.

Every command that writes a user's files (data convert, data crop, predict, export, evaluate
--json, compare --plot, checkpoints) checks its outputs with `refuse_existing` before any work
starts (an output that is one of the command's inputs is refused even with --overwrite, and
`refuse_inside` keeps outputs out of the data), and writes each finished file through
`replaced_atomically`, so an error or a crash mid-write keeps the old file whole. A long job
stopped by Ctrl-C (predict's CSV, a video's annotated copy) keeps what it wrote so far under a
name of its own (`partial_name`).
"""

from __future__ import annotations

import errno
import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

from ferkit.errors import DataError, FerkitError, OutputError, disk_full, listed

STDOUT = "-"  # as a file name: standard output, where the options that say so take it
# The options whose output is a file or folder that stdout cannot be (a picture, a model, a
# run), by their argparse name; `-` there would make a file named "-".
FILE_ONLY = {"out": "the output", "plot": "--plot", "plots": "--plots",
             "annotate": "--annotate", "timeline": "--timeline"}  # fmt: skip


def is_stdout(path: str | Path | None) -> bool:
    """Whether an output option names standard output (`--csv -`)."""
    return path is not None and str(path) == STDOUT


def refuse_stdout(options: dict[str, Any]) -> None:
    """Raise FerkitError if an option of FILE_ONLY (in a command's parsed `options`) is `-`:
    standard output takes text (--json, --csv -), not pictures, models or runs."""
    for name, label in FILE_ONLY.items():
        if is_stdout(options.get(name)):
            raise FerkitError(
                f"{label} -: '-' names standard output, which takes text only (--json, "
                "--csv -); this output is a file or folder, name one"
            )


def open_csv(path: str | Path) -> TextIO:
    """A CSV file to write, opened as every CSV ferkit writes is: UTF-8 on every system
    (Windows' code page cannot hold an emoji in a file name), and a name that is no UTF-8 (the
    bytes of an old file system or a zip archive, which Python holds as surrogates) written with
    backslash escapes (`bad\\udcff.jpg`) instead of stopping the run with its table unwritten."""
    return open(path, "w", newline="", encoding="utf-8", errors="backslashreplace")


def json_dumps(obj: Any, **kwargs: Any) -> str:
    """`json.dumps` for every JSON ferkit writes or prints: standard JSON only. NaN and
    infinity are no JSON numbers (`NaN` breaks JavaScript, jq, strict parsers): they are
    written as null, and `allow_nan=False` keeps any other path to them out."""
    return json.dumps(_finite(obj), allow_nan=False, **kwargs)


def _finite(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj


def refuse_existing(
    paths: Iterable[Path | None],
    *,
    hint: str = "pass --overwrite to replace",
    error: type[FerkitError] = DataError,
    overwrite: bool = False,
    inputs: Iterable[Path] = (),
) -> None:
    """Raise `error` if any of the files `paths` exists, naming the first few and counting the
    rest; with `overwrite`, only if one of them is a folder or one of the command's `inputs`:
    replacing an earlier output is what overwrite asks for, a folder or the user's own
    photo, video or model never is.

    Args:
        paths: the files a command is about to write; None entries are skipped.
        hint: what the user can do, appended to the message.
        error: the error type to raise (the caller's domain).
        overwrite: existing files may be replaced (folders and inputs still may not).
        inputs: the files the command reads (through links too: compared resolved).

    Two of `paths` naming one file are refused too: the second write would replace the first.
    And an output that cannot be placed (a file where its folder goes, a folder ferkit may not
    write in) is refused here, before the work, not when the finished result is written.
    """
    given = [Path(p) for p in paths if p is not None]
    for p in given:
        refuse_unplaceable(p)
    real = [p.resolve() for p in given]
    if len(set(real)) < len(real):  # the second write would replace the first
        twice = next(p for i, p in enumerate(given) if real[i] in real[:i])
        raise error(f"{twice} is named for two outputs of this command; name them apart")
    read = {Path(p).resolve() for p in inputs}
    clash = [str(p) for p, r in zip(given, real, strict=True) if r in read]
    if clash:
        verb = "is an input" if len(clash) == 1 else "are inputs"
        raise error(
            f"{listed(clash)} {verb} of this command: an output never replaces an input, "
            "--overwrite or not; write the output elsewhere"
        )
    folders = [str(p) for p in given if p.is_dir()]
    if folders:
        verb, it = ("is a folder", "it") if len(folders) == 1 else ("are folders", "them")
        raise error(
            f"{listed(folders)} {verb} where a file is to be written; "
            f"move {it} or choose another output"
        )
    taken = [str(p) for p in given if p.exists()]
    if taken and not overwrite:
        verb = "exists" if len(taken) == 1 else "exist"
        raise error(f"{listed(taken)} already {verb}; {hint}")


def refuse_unplaceable(path: Path) -> None:
    """Raise `OutputError` if `path` cannot be written: the nearest part of its folder that
    exists is a file (or a broken link), or a folder this process may not write in."""
    missing = _missing_folders(Path(path))
    folder = missing[-1].parent if missing else Path(path).parent
    if folder.is_symlink() and not folder.exists():
        raise OutputError(f"{path}: cannot be written, {folder} is a link to nothing")
    if not folder.is_dir():
        raise OutputError(f"{path}: cannot be written, a part of its folder is a file")
    if not os.access(folder, os.W_OK | os.X_OK):
        read_only = hasattr(os, "statvfs") and os.statvfs(folder).f_flag & os.ST_RDONLY
        why = "a read-only file system" if read_only else f"no permission to write in {folder}"
        raise OutputError(f"{path}: cannot be written there ({why})")


def _missing_folders(path: Path) -> list[Path]:
    """The folders of `path` that do not exist yet, innermost first; the walk stops at the
    first that does (or at a broken link, which is in the way as a file is)."""
    missing = []
    for folder in (path.parent, *path.parent.parents):
        if folder.exists() or folder.is_symlink():
            break
        missing.append(folder)
    return missing


def refuse_inside(out: Path, source: Path, error: type[FerkitError] = DataError) -> None:
    """Nothing is written into the data: raise `error` if `out` is the source, or inside it
    (a folder), compared resolved."""
    out_real, source_real = Path(out).resolve(), Path(source).resolve()
    if out_real == source_real or (source_real.is_dir() and out_real.is_relative_to(source_real)):
        raise error(
            f"{out}: the output must be outside the source {source} (nothing is written into "
            "the data); choose another place"
        )


@contextmanager
def replaced_atomically(
    path: str | Path, *, keep_interrupted: Path | None = None
) -> Iterator[Path]:
    """Yield a temporary path beside `path` to write to; when the block ends without an error,
    the temporary file replaces `path` in one step. On an error it is removed and `path` is
    left as it was. The folder is created if needed (and removed again, when the write fails,
    if it is still empty). A full disk is said as such, naming `path` (`errors.disk_full`):
    numpy, for one, says "N requested and M written" and names no file.

    `keep_interrupted`: where what was written so far goes when the block is interrupted
    (Ctrl-C), instead of being removed: the rows of a long batch job are worth keeping, under
    a name of their own (`partial_name`), while `path` still stays as it was.

    The temporary file is created exclusively under a name nobody can guess (`mkstemp`), so
    a link planted beside `path` is never written through. It is hidden and keeps the suffix
    (`.partial-plot-k2j4x9.png` for `plot.png`), so writers that go by it (np.save,
    matplotlib) write what the name asks for; the result gets the permissions a new file gets.
    """
    path = Path(path)
    new_folders = _missing_folders(path)  # made here: removed again if the write fails
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(
            prefix=f".partial-{path.stem}-", suffix=path.suffix, dir=path.parent
        )
    except OSError as exc:  # the place changed since the command's checks, or a special one
        _remove_empty(new_folders)
        refuse_unplaceable(path)
        raise OutputError(f"{path}: cannot be written there ({exc.strerror or exc})") from None
    os.close(fd)
    tmp = Path(name)
    written = False
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp's file is 0600; a plain new file is not
        os.replace(tmp, path)
        written = True
    except KeyboardInterrupt:
        if keep_interrupted is not None and tmp.stat().st_size:
            os.chmod(tmp, 0o666 & ~_UMASK)
            os.replace(tmp, keep_interrupted)
        raise
    except OSError as exc:
        named = isinstance(exc, OutputError) or exc.filename not in (None, str(tmp))
        if not named and _disk_full(exc, path.parent):
            raise OutputError(disk_full(path, kept=True)) from exc
        raise
    finally:
        tmp.unlink(missing_ok=True)
        if not written:
            _remove_empty(new_folders)


FULL_BELOW = 1 << 20  # bytes free under which a failed write is put down to a full disk


def _disk_full(exc: OSError, folder: Path) -> bool:
    """Whether a failed write (its partial file still there) was for want of space: the
    errno says so, or, from writers that give none (numpy), next to nothing is left."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    try:
        return shutil.disk_usage(folder).free < FULL_BELOW
    except OSError:
        return False


def _remove_empty(folders: list[Path]) -> None:
    """Remove the folders a failed write created (innermost first), those still empty."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:  # not empty (another output went there), or gone
            return


@contextmanager
def new_folder_atomically(
    path: str | Path, *, error: type[FerkitError] = FerkitError
) -> Iterator[Path]:
    """Yield a hidden temporary folder beside `path` to fill; when the block ends without an
    error it becomes `path` in one rename, else it is removed. `path` must be new or an empty
    folder (else `error`): a folder of many outputs is never merged into or replaced, as that
    would leave stale files of an earlier run among the new ones."""
    path = Path(path)
    if path.is_symlink() or (path.exists() and (not path.is_dir() or any(path.iterdir()))):
        what = (
            "a link"
            if path.is_symlink()
            else "a folder with files in it"
            if path.is_dir()
            else "a file"
        )
        raise error(f"{path}: is {what}; choose a new or empty folder, or remove it")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".partial-{path.name}-", dir=path.parent))
    except OSError as e:
        raise error(f"{path}: cannot be created in {path.parent} ({e.strerror})") from e
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_UMASK)  # mkdtemp's folder is 0700; a plain new one is not
        if path.exists():
            path.rmdir()  # empty, checked above
        tmp.rename(path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def partial_name(path: str | Path) -> Path:
    """A name beside `path` for an interrupted job's partial output that names no file yet:
    `out.partial.csv` for `out.csv`, else `out.partial-2.csv`, `out.partial-3.csv`, ..."""
    path = Path(path)
    for n in range(1, 10_000):
        tag = ".partial" if n == 1 else f".partial-{n}"
        candidate = path.with_name(f"{path.stem}{tag}{path.suffix}")
        if not candidate.exists():
            return candidate
    raise FerkitError(f"{path.parent} holds 9,999 partial outputs of {path.name}; clear them")


def _read_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _read_umask()  # read once: os.umask can only be read by setting it
