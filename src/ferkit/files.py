"""Walking a user's folders: every file under them once, in a stable order.

Photo libraries and data sets are often assembled from links (`train/sad/more -> /mnt/b/sad`),
so linked folders are followed; each real folder is read once, and links up to the folder
being read or above it (`photos/all -> ..`, a loop) are not. Entries that cannot be read as
files are yielded too, so that callers name them instead of dropping them unsaid:
`unreadable` says what is wrong with one, `skipped_note` sums up the files of other types.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

log = logging.getLogger(__name__)


def walk_files(root: str | Path, on_error: Callable[[str], None] | None = None) -> Iterator[Path]:
    """Every entry under `root` that is not a folder, sorted by folder and then by name.

    Linked folders are followed, each real folder once (a second link to it adds nothing), and
    never a link up to `root` or a folder above it (a loop, or what lies beside `root`).
    Broken links, FIFOs, sockets and devices are yielded as well: check them with `unreadable`
    before opening them (a FIFO would block a decoder forever). A folder that cannot be listed
    (no permission) is passed to `on_error` as "FOLDER: cannot list it (...)", or logged as a
    warning: never skipped unsaid, as os.walk does by default.
    """

    def unlistable(exc: OSError) -> None:
        said = f"{exc.filename}: cannot list it ({exc.strerror or exc}); skipped"
        if on_error is None:
            log.warning("%s", said)
        else:
            on_error(said)

    top = os.path.realpath(root)
    seen: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(root, onerror=unlistable, followlinks=True):
        real = os.path.realpath(dirpath)
        # read before, or a link up to a folder that holds `root`: a loop
        if real in seen or (real != top and os.path.commonpath([real, top]) == real):
            dirnames.clear()
            continue
        seen.add(real)
        dirnames.sort()
        for name in sorted(filenames):
            yield Path(dirpath, name)


def unreadable(path: Path) -> str | None:
    """Why `path` cannot be read as a file (a phrase), or None when it is a regular file."""
    if path.is_file():
        return None
    if path.is_symlink() and not path.exists():
        return f"a broken link (its target {os.readlink(path)} does not exist)"
    if not path.exists():
        return "no such file or folder"
    return "not a regular file (a FIFO, socket or device)"


def skipped_note(others: Sequence[Path]) -> str:
    """The phrase for files of other types that a walk passed over, counted by kind (suffix,
    or name where there is none), said once: "3 other file(s) skipped (.dng, .txt)"."""
    kinds = Counter(p.suffix.lower() or p.name for p in others)
    shown = ", ".join(k for k, _ in kinds.most_common(6))
    return f"{len(others)} other file(s) skipped ({shown}{', ...' if len(kinds) > 6 else ''})"
