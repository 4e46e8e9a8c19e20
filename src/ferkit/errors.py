"""Typed errors. Each message says what is wrong, where, and what to do; the CLI prints it as one
line and exits with code 2."""

from __future__ import annotations

import difflib
import errno
from collections.abc import Iterable, Sequence


class FerkitError(Exception):
    """Base class of the errors ferkit raises for bad input or configuration."""


class DataError(FerkitError):
    """A data source is missing, empty, malformed, or holds unreadable files."""


class ConfigError(FerkitError):
    """A configuration key, value, or name (model, optimizer, ...) is not valid."""


class CheckpointError(FerkitError):
    """A checkpoint cannot be read or does not match the architecture or labels asked for."""


class OutputError(FerkitError, OSError):
    """An output cannot be written where it is named (a file in the way, no permission). An
    OSError too, so code that tolerates an unwritable place (a cache) still does."""


def unknown(what: str, value: object, choices: Iterable[str], *, most: int = 3) -> str:
    """The one wording for a name that is not among its choices: what it is, the closest
    choices (difflib), and all of them.

    >>> unknown("optimizer", "adamx", ["sgd", "adam", "adamw"])
    "unknown optimizer 'adamx'. Did you mean 'adam', 'adamw'? Valid: sgd, adam, adamw"
    """
    choices = [str(c) for c in choices]
    close = difflib.get_close_matches(str(value), choices, n=most)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    return f"unknown {what} {value!r}.{hint} Valid: {', '.join(choices) or 'none'}"


def listed(names: Iterable[object], shown: int = 3, sep: str = ", ") -> str:
    """The one wording for a list too long to print whole: the first `shown`, then a count.

    >>> listed(["a.jpg", "b.jpg", "c.jpg", "d.jpg", "e.jpg"])
    'a.jpg, b.jpg, c.jpg and 2 more'
    """
    names = [str(n) for n in names]
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return sep.join(names[:shown]) + more


def listed_problems(messages: Sequence[str], shown: int = 3) -> str:
    """Messages "NAME: reason" listed as `listed` does ("; " between them); when they share one
    reason (a folder of HEIC photos without the extra) it is said once, after the names:
    "a.heic, b.heic, c.heic and 4 more: a HEIC/HEIF photo ..."."""
    split = [m.partition(": ")[::2] for m in messages]
    reasons = {reason for _, reason in split}
    if len(split) > 1 and len(reasons) == 1 and "" not in reasons:
        return f"{listed((name for name, _ in split), shown)}: {reasons.pop()}"
    return listed(messages, shown, sep="; ")


def os_problem(exc: OSError, where: object = None) -> str:
    """One line for an OSError from below ferkit (a library's write, a move): the file first
    (`where`, else the error's), then what is wrong, and for a full disk what to do, instead
    of "[Errno 28] ...: 'PATH'". A move or copy names its target second, and that is the file
    a full disk did not take."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return disk_full(where or exc.filename2 or exc.filename)
    if where is None and exc.filename is not None and exc.filename2 is not None:
        where = f"{exc.filename} -> {exc.filename2}"
    where = where or exc.filename
    if where is None or not exc.strerror:
        return f"{where}: {exc}" if where else str(exc)
    return f"{where}: {exc.strerror[0].lower()}{exc.strerror[1:]}"


def disk_full(where: object = None, *, kept: bool = False) -> str:
    """The one wording for a write that a full disk refused; `kept`: the file of that name, if
    any, is as it was."""
    what = f"{where}: cannot be written" if where else "a file cannot be written"
    left = " (nothing was replaced)" if kept else ""
    return f"{what}, the disk is full{left}; free some space and run it again"


def parse_problem(exc: Exception) -> str:
    """One line for a YAML or JSON parse error: where in the text, and what is wrong."""
    mark = getattr(exc, "problem_mark", None)  # PyYAML's MarkedYAMLError
    if mark is not None:
        return f"line {mark.line + 1}, column {mark.column + 1}: {exc.problem}"
    if all(hasattr(exc, a) for a in ("lineno", "colno", "msg")):  # json.JSONDecodeError
        return f"line {exc.lineno}, column {exc.colno}: {exc.msg}"
    return (str(exc).splitlines() or [type(exc).__name__])[0]
