"""Progress bars: drawn on a terminal only, and never when the user asks for none.

Every long loop's bar comes from `bar` (a tqdm bar), so one switch turns them all off: the
CLI's `--no-progress`, before or after any command, calls `set_enabled(False)`. Where stderr
is no terminal (a pipe, a log file, CI) no bar is drawn anyway.
"""

from __future__ import annotations

from tqdm import tqdm

_enabled = True


def set_enabled(on: bool) -> None:
    """Turn every progress bar of this process on (the default) or off."""
    global _enabled
    _enabled = on


def bar(*args, show: bool = True, **kwargs) -> tqdm:
    """A tqdm bar (same arguments), drawn only on a terminal, where `show` (the caller's own
    `progress` argument) and no `--no-progress`."""
    return tqdm(*args, disable=None if _enabled and show else True, **kwargs)
