"""The in-memory form of a loaded data set: uint8 face arrays and labels per split."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ferkit.errors import DataError
from ferkit.labels import EMOTIONS

# The splits a model is scored on when none is named, in order: val (FER-2013's PublicTest),
# test, or "all", the one split of a source without splits. Training is never scored on.
SCORING_SPLITS = ("val", "test", "all")


def source_list(value: str | Sequence[str] | None) -> list[str]:
    """A config's `extra_train` or `extra_val`, one source path or a list of them, as a list
    (None: none)."""
    if not value:
        return []
    return [value] if isinstance(value, str) else list(value)


@dataclass
class Split:
    """One split: `images` (N, H, W) uint8, `labels` (N,) int64 indices into the data set's
    label names (EMOTIONS, or FERPLUS_EMOTIONS for FER+).

    `soft_labels` (N, C) float32 holds label distributions (FER+ vote shares, rows summing to
    1); None for hard-labelled data.
    """

    images: np.ndarray
    labels: np.ndarray
    soft_labels: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.labels)

    def class_counts(self, labels: Sequence[str] = EMOTIONS) -> dict[str, int]:
        counts = np.bincount(np.asarray(self.labels), minlength=len(labels))
        return {e: int(c) for e, c in zip(labels, counts, strict=True)}


@dataclass
class FERData:
    """A data set as loaded from any source, with what happened while loading it."""

    source: str  # the path given, resolved
    kind: str  # "csv", "ferplus", "msambare", "train_validation" or "class_folders"
    image_size: int
    splits: dict[str, Split]  # "train", "val", "test"; "all" where the source has no splits
    resized: int = 0  # images whose size differed from image_size
    skipped: list[str] = field(default_factory=list)  # bad rows/files skipped (--skip-bad)
    ignored_classes: list[str] = field(default_factory=list)  # folders mapping to no emotion
    notes: list[str] = field(default_factory=list)
    from_cache: bool = False
    labels: tuple[str, ...] = EMOTIONS  # the label names, in index order
    label_mode: str | None = None  # FER+: "votes" or "majority" (see data/ferplus.py)
    # CSV only, not cached: the split of every row in file order, to pair FER+ rows with it
    row_splits: list[str] | None = field(default=None, repr=False)

    def __getitem__(self, name: str) -> Split:
        return self.splits[name]

    def scoring_split(self, split: str | None = None) -> str:
        """The split to score a model on (evaluation, calibration): `split` if given, else the
        first non-empty of SCORING_SPLITS (so, unless asked for, never the training split).

        Raises:
            DataError: the split asked for is empty or absent, or there is none to score on
                (the message lists the splits and their sizes).
        """
        have = ", ".join(f"{k} ({len(v)})" for k, v in self.splits.items())
        if split:
            if split not in self.splits or not len(self.splits[split]):
                raise DataError(
                    f"{self.source}: split {split!r} is empty or absent (splits: {have})"
                )
            return split
        for name in SCORING_SPLITS:
            if name in self.splits and len(self.splits[name]):
                return name
        raise DataError(
            f"{self.source}: no val, test or unsplit images to score a model on (splits: {have})"
        )

    def summary(self) -> dict:
        """A JSON-ready description: per split and per class counts, size, balance, notes."""
        splits = {}
        for name, split in self.splits.items():
            counts = split.class_counts(self.labels)
            n = len(split)
            present = [c for c in counts.values() if c]
            splits[name] = {
                "n": n,
                "classes": counts,
                "fraction": {e: round(c / n, 4) if n else 0.0 for e, c in counts.items()},
                # largest class over smallest non-empty class: 1.0 is perfectly balanced
                "imbalance_ratio": round(max(present) / min(present), 2) if present else None,
            }
        return {
            "source": self.source,
            "kind": self.kind,
            "image_size": [self.image_size, self.image_size],
            "labels": list(self.labels),
            "label_mode": self.label_mode,
            "splits": splits,
            "total": sum(len(s) for s in self.splits.values()),
            "resized": self.resized,
            "skipped": self.skipped,
            "ignored_classes": self.ignored_classes,
            "notes": self.notes,
            "from_cache": self.from_cache,
        }


def empty_split(image_size: int) -> Split:
    return Split(
        images=np.zeros((0, image_size, image_size), np.uint8), labels=np.zeros(0, np.int64)
    )
