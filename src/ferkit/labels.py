"""The one source of truth for emotion labels, their order, and the names data sets use.

`EMOTIONS` is in FER-2013 order: the integer label of a FER-2013 CSV row is an index into it.
"""

from __future__ import annotations

import logging
import re

from ferkit.errors import CheckpointError, DataError

log = logging.getLogger(__name__)

EMOTIONS: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
NUM_CLASSES = len(EMOTIONS)
# FER+'s 8 classes: FER-2013's 7 in EMOTIONS order, then contempt (which FER-2013 lacks), so
# index i means the same emotion in both sets and a 7-class model's outputs are a prefix.
FERPLUS_EMOTIONS: tuple[str, ...] = (*EMOTIONS, "contempt")
# How FER+'s ten votes per face become labels (ferkit.data.ferplus): vote shares or majority
# (8 classes), or FER-2013's own labels with the votes over its 7 classes as soft targets
FERPLUS_LABEL_MODES = ("votes", "majority", "fer2013-votes")


def ferplus_classes(mode: str) -> tuple[str, ...]:
    """The classes of FER+ labels in `mode`: FER-2013's 7 for fer2013-votes, else FER+'s 8."""
    return EMOTIONS if mode == "fer2013-votes" else FERPLUS_EMOTIONS


# Folder and column names seen in public FER data sets (FER-2013, FER+, RAF-DB, AffectNet,
# CK+, JAFFE, KDEF exports), mapped onto EMOTIONS. Keys are lower case.
ALIASES: dict[str, str] = {
    **{e: e for e in EMOTIONS},
    "anger": "angry",
    "mad": "angry",
    "disgusted": "disgust",
    "disgusting": "disgust",
    "fearful": "fear",
    "afraid": "fear",
    "scared": "fear",
    "happiness": "happy",
    "joy": "happy",
    "happy_face": "happy",
    "sadness": "sad",
    "unhappy": "sad",
    "surprised": "surprise",
    "surprising": "surprise",
    "neutrality": "neutral",
    "calm": "neutral",
    "contempt": "contempt",  # FER+ only: no counterpart in EMOTIONS
    "contemptuous": "contempt",
}

_NUMBER_PREFIX = re.compile(r"^\d+[_\-\s.]*")


def canonical(name: str) -> str | None:
    """Map a data set's class name onto an emotion name (of FERPLUS_EMOTIONS), or None.

    Case, surrounding space, and a leading numeric prefix (`0_angry`, `3-happy`) are ignored.
    """
    key = _NUMBER_PREFIX.sub("", name.strip().lower()).replace(" ", "_")
    return ALIASES.get(key)


def label_index(name: str, labels: tuple[str, ...] = EMOTIONS) -> int | None:
    """Index in `labels` of a data set's class name, or None if it maps to none of them."""
    emotion = canonical(name)
    return labels.index(emotion) if emotion in labels else None


def map_class_names(names: list[str], *, strict: bool = False, where: str = "") -> dict[str, int]:
    """Map folder names onto label indices; unknown names are skipped with a warning.

    Args:
        names: class folder names as found on disk.
        strict: refuse (DataError) instead of skipping names that map to no emotion.
        where: the folder the names come from, for messages.

    Returns:
        A dict from each known folder name to its index in EMOTIONS.
    """
    known = {n: idx for n in names if (idx := label_index(n)) is not None}
    unknown = sorted(set(names) - set(known))
    if unknown:
        msg = (
            f"class folder(s) {', '.join(map(repr, unknown))} in {where or 'the data'} map to no "
            f"emotion of {', '.join(EMOTIONS)}"
        )
        if strict:
            raise DataError(msg + "; rename them or drop --strict to skip them")
        log.warning("%s; skipping them (--strict refuses instead)", msg)
    return known


def check_model_labels(model_labels, expected, *, model, against: str, then: str) -> None:
    """The one label-order rule: a model's labels must be `expected`, names and order.

    Args:
        model_labels: the labels a model's metadata names, in logit order (None: none).
        expected: the labels it must have, e.g. the data's or the student's.
        model: the model's file or name, for the message.
        against: what `expected` are, completing "but ...": "the data is labelled".
        then: what follows for the user, e.g. "it cannot be scored on them".

    Raises:
        CheckpointError: "MODEL predicts [...], but AGAINST [...]; THEN".
    """
    got = list(model_labels or [])
    if got != list(expected):
        raise CheckpointError(f"{model} predicts {got}, but {against} {list(expected)}; {then}")
