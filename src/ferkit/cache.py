"""Where ferkit keeps what it computes once: `$FERKIT_CACHE`, else `~/.cache/ferkit`.

The decoded data sets (`ferkit.data.cache`) and the `ferkit models` table live there. This
module imports nothing heavy, so the CLI can ask before it loads NumPy or PyTorch.
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """The cache folder (not created here)."""
    return Path(os.environ.get("FERKIT_CACHE") or Path.home() / ".cache" / "ferkit")
