"""FER+ labels (microsoft/FERPlus `fer2013new.csv[.gz]`) read with the FER-2013 CSV they re-label.

Ten crowd taggers voted on every FER-2013 face: `Usage, Image name, neutral, happiness,
surprise, sadness, anger, disgust, fear, contempt, unknown, NF`. The label file has no pixels.

Pairing: row i of the label file labels data row i of the FER-2013 CSV (both keep the original
order). The row counts must be equal and every row's Usage must agree; anything else is refused
with both counts, or the first row whose Usage differs. Faces with an empty `Image name` are
the ones FER+ dropped; they are dropped here too.

Labels follow FER+'s own code (`src/ferplus.py`, Barsoum et al. 2016), over FERPLUS_EMOTIONS
(FER-2013's 7 classes in ferkit order, then contempt). Single votes are outliers and removed
first; then:

- `majority`: a face keeps the emotion that has more than half of the votes; faces led by
  `unknown` or `NF` (not a face), or without a majority, are dropped. Hard labels. This is how
  FER+ labels its test splits, so evaluation and validation always use it.
- `votes`: the training split gets FER+'s `crossentropy` targets: the vote shares of the (at
  most 3) most-voted emotions that reach 75% of the votes, as soft labels; a face is dropped
  when they hold no more than half of the votes or `unknown`/`NF` leads. Validation and test
  splits stay `majority`-labelled (FER+ reports majority-vote accuracy).
- `fer2013-votes`: FER-2013's own 7 classes and labels on every split (nothing dropped), the
  training split with soft labels: FER+'s `crossentropy` targets over those 7 classes
  (contempt's share dropped, the rest rescaled to sum to 1), or the FER-2013 label one-hot for
  a face FER+ dropped or voted contempt alone. Training mixes the FER-2013 label back in by
  `hard_label_weight`; validation and evaluation score FER-2013's labels as without FER+.
"""

from __future__ import annotations

import csv
from dataclasses import replace
from pathlib import Path

import numpy as np

from ferkit.data.csv_source import USAGE_TO_SPLIT, _checked, open_text
from ferkit.data.types import FERData, Split
from ferkit.errors import DataError, unknown
from ferkit.labels import EMOTIONS, FERPLUS_EMOTIONS, FERPLUS_LABEL_MODES, label_index

LABEL_MODES = FERPLUS_LABEL_MODES
NOT_EMOTIONS = ("unknown", "nf")  # the last two vote columns, after the 8 emotions


def check_mode(mode: str) -> None:
    """Refuse a label mode that is not one of LABEL_MODES ("votes", "majority", ...)."""
    if mode not in LABEL_MODES:
        raise DataError(unknown("FER+ label mode", mode, LABEL_MODES))


def read_votes(path: Path) -> tuple[list[str], np.ndarray, np.ndarray]:
    """A FER+ label file: split of each row, whether FER+ kept it (a non-empty Image name),
    and its votes (N, 10) int, columns in FERPLUS_EMOTIONS order then unknown, NF."""
    with open_text(path) as f:
        rows = _checked(csv.reader(f), path, "FER+'s label file, fer2013new.csv (or .csv.gz)")
        header = [h.strip().lower() for h in next(rows, None) or []]
        at = {}
        for i, name in enumerate(header):
            index = label_index(name, FERPLUS_EMOTIONS)  # happiness -> happy, ...
            at[FERPLUS_EMOTIONS[index] if index is not None else name] = i
        vote_columns = [*FERPLUS_EMOTIONS, *NOT_EMOTIONS]
        missing = [c for c in ("usage", "image name", *vote_columns) if c not in at]
        if missing:
            swapped = {"emotion", "pixels"} <= set(header)  # the FER-2013 CSV itself
            raise DataError(
                f"{path}: not a FER+ label file: no column {', '.join(missing)} in the header "
                f"({', '.join(header) or 'empty'}); expected microsoft/FERPlus fer2013new.csv "
                "(Usage,Image name,neutral,happiness,...,contempt,unknown,NF)"
                + (
                    ". It is the FER-2013 CSV, the data itself; --ferplus takes FER+'s fer2013new.csv"
                    if swapped
                    else ""
                )
            )
        order = [at[c] for c in vote_columns]
        splits, kept, votes = [], [], []
        for line, row in enumerate(rows, start=2):
            if not row or all(not cell.strip() for cell in row):
                continue
            try:
                splits.append(USAGE_TO_SPLIT[row[at["usage"]].strip().lower()])
                kept.append(bool(row[at["image name"]].strip()))
                votes.append([int(row[i]) for i in order])
            except (IndexError, KeyError, ValueError):
                raise DataError(
                    f"{path}, line {line}: expected a Usage (Training, PublicTest or "
                    f"PrivateTest) and {len(vote_columns)} vote counts, got {','.join(row)[:120]!r}"
                ) from None
    return splits, np.array(kept, bool), np.array(votes, np.int64).reshape(-1, len(vote_columns))


def _without_outliers(votes: np.ndarray) -> np.ndarray:
    """FER+ removes single votes (one tagger of ten) before anything else."""
    v = votes.astype(np.float64)
    v[v <= 1] = 0
    return v


def majority_labels(votes: np.ndarray) -> np.ndarray:
    """FER+ `majority` labels (N,): the index in FERPLUS_EMOTIONS of the emotion with more
    than half of the votes (single votes removed), or -1 where FER+ drops the face."""
    v = _without_outliers(votes)
    top = v.argmax(1)
    has_majority = v.max(1) > 0.5 * v.sum(1)
    return np.where(has_majority & (top < len(FERPLUS_EMOTIONS)), top, -1)


def vote_targets(votes: np.ndarray) -> np.ndarray:
    """FER+ `crossentropy` targets (N, 8) float32, rows summing to 1, or all zero where FER+
    drops the face (see the module docstring)."""
    v = _without_outliers(votes)
    out = np.zeros((len(v), len(FERPLUS_EMOTIONS)), np.float32)
    for n, row in enumerate(v):
        kept = _top_emotions(row.copy())
        if kept is not None and kept.argmax() < len(FERPLUS_EMOTIONS):
            emotions = kept[: len(FERPLUS_EMOTIONS)]
            out[n] = emotions / emotions.sum()
    return out


def _top_emotions(raw: np.ndarray) -> np.ndarray | None:
    """FERPlus `_process_data(..., "crossentropy")` for one face, as written there."""
    total = raw.sum()
    emotion = np.zeros_like(raw)
    sum_part, count, valid = 0.0, 0, True
    while sum_part < 0.75 * total and count < 3 and valid:
        top = raw.max()
        for i in range(len(raw)):
            if raw[i] == top:
                emotion[i], raw[i] = top, 0
                sum_part += top
                count += 1
                if i >= len(FERPLUS_EMOTIONS):  # unknown/NF tie the lead: stop there
                    valid = False
                    if emotion.sum() > top:  # emotions came first: drop unknown/NF
                        emotion[i] = 0
                        count -= 1
                    break
    if emotion.sum() <= 0.5 * total or count > 3:
        return None
    return emotion


def attach_ferplus(data: FERData, path: Path, mode: str) -> FERData:
    """FER-2013 `data` (as `load_csv` read it) relabelled with the FER+ votes in `path`.

    Args:
        data: a FER-2013 CSV read by `load_csv`, with no bad rows skipped.
        path: the FER+ label file (`fer2013new.csv` or `.csv.gz`).
        mode: "votes", "majority" or "fer2013-votes" (module docstring).

    Raises:
        DataError: the files do not pair (row counts, Usage), or `mode` is unknown.
    """
    check_mode(mode)
    if data.row_splits is None or data.skipped:
        why = f"{len(data.skipped)} bad row(s) were skipped" if data.skipped else "not a CSV"
        raise DataError(
            f"{data.source}: FER+ labels pair with the FER-2013 CSV row by row, but {why}; use "
            "the complete fer2013.csv[.gz] the labels were made for"
        )
    splits, kept, votes = read_votes(path)
    if len(splits) != len(data.row_splits):
        raise DataError(
            f"{path} has {len(splits):,} label rows but {data.source} has "
            f"{len(data.row_splits):,} face rows; FER+ labels pair row by row with the same "
            "FER-2013 CSV (the same rows, in the original order)"
        )
    differ = next(
        (i for i, (a, b) in enumerate(zip(splits, data.row_splits, strict=True)) if a != b), None
    )
    if differ is not None:
        raise DataError(
            f"row {differ + 1} is {splits[differ]!r} in {path} but {data.row_splits[differ]!r} "
            f"in {data.source}: the files are not in the same order; FER+ labels pair row by "
            "row with the original fer2013.csv"
        )
    row_splits = np.array(splits)
    if mode == "fer2013-votes":
        return _fer2013_with_votes(data, path, row_splits, kept, votes)
    majority = majority_labels(votes)
    targets = vote_targets(votes) if mode == "votes" else None
    out = {}
    for name, split in data.splits.items():
        rows = row_splits == name
        if mode == "votes" and name == "train":
            soft = targets[rows]
            keep = kept[rows] & (soft.sum(1) > 0)
            out[name] = Split(
                np.asarray(split.images)[keep], soft[keep].argmax(1).astype(np.int64), soft[keep]
            )
        else:
            keep = kept[rows] & (majority[rows] >= 0)
            out[name] = Split(np.asarray(split.images)[keep], majority[rows][keep])
    dropped = {n: int((row_splits == n).sum()) - len(s) for n, s in out.items()}
    notes = [
        *data.notes,
        f"FER+ {mode} labels from {path}; dropped as FER+ does (no majority, "
        f"unknown/not a face, or removed by FER+): "
        + ", ".join(f"{n} {d:,}" for n, d in dropped.items()),
    ]
    return FERData(
        source=f"{data.source} + {path}",
        kind="ferplus",
        image_size=data.image_size,
        splits=out,
        resized=data.resized,
        notes=notes,
        labels=FERPLUS_EMOTIONS,
        label_mode=mode,
    )


def _fer2013_with_votes(
    data: FERData, path: Path, row_splits: np.ndarray, kept: np.ndarray, votes: np.ndarray
) -> FERData:
    """`data` as it is, with `fer2013-votes` soft labels on its training split (module
    docstring): rows summing to 1 over EMOTIONS."""
    train = data.splits["train"]
    labels = np.asarray(train.labels)
    rows = row_splits == "train"
    seven = vote_targets(votes[rows])[:, : len(EMOTIONS)]
    total = seven.sum(1)
    voted = kept[rows] & (total > 0)
    soft = np.eye(len(EMOTIONS), dtype=np.float32)[labels]
    soft[voted] = seven[voted] / total[voted, None]
    notes = [
        f"FER-2013 labels, with FER+ votes over its 7 classes from {path} as soft training "
        f"targets for {int(voted.sum()):,} of {len(labels):,} training faces (the rest, which "
        "FER+ dropped or voted contempt alone, keep their FER-2013 label)"
    ]
    majority = np.where(kept, majority_labels(votes), -1)
    for name, split in data.splits.items():
        theirs = majority[row_splits == name]
        has = theirs >= 0
        if has.any():
            same = float((theirs[has] == np.asarray(split.labels)[has]).mean())
            notes.append(
                f"{name}: the FER-2013 label is FER+'s majority label for {same:.1%} of the "
                f"{int(has.sum()):,} faces that have one"
            )
    return replace(
        data,
        source=f"{data.source} + {path}",
        splits={**data.splits, "train": Split(train.images, labels, soft)},
        notes=[*data.notes, *notes],
        label_mode="fer2013-votes",
    )
