"""Score a checkpoint on any supported data source: accuracy, loss, per-class metrics."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ferkit.data import FERData, load_dataset
from ferkit.errors import CheckpointError, DataError
from ferkit.evaluation.metrics import classification_metrics
from ferkit.evaluation.predict import predict_proba
from ferkit.inference.model_io import is_onnx, load_torch_model, read_onnx_meta, resolve_model
from ferkit.labels import EMOTIONS

log = logging.getLogger(__name__)


def pick_split(data: FERData, split: str | None) -> str:
    """The split to score: the one asked for, else val, test, or the only one, if not empty."""
    if split:
        if split not in data.splits or not len(data.splits[split]):
            have = ", ".join(f"{k} ({len(v)})" for k, v in data.splits.items())
            raise DataError(f"{data.source}: split {split!r} is empty or absent (splits: {have})")
        return split
    for name in ("val", "test", "all"):
        if name in data.splits and len(data.splits[name]):
            return name
    raise DataError(f"{data.source}: no val, test or unsplit images to evaluate on")


def check_labels(meta: dict, checkpoint: Path | str) -> None:
    labels = list(meta.get("labels") or [])
    if labels != list(EMOTIONS):
        raise CheckpointError(
            f"{checkpoint} predicts labels {labels}, but ferkit data sets are labelled "
            f"{list(EMOTIONS)}; it cannot be scored on them"
        )


def evaluate(
    checkpoint: str | Path | None,
    data: str | Path | FERData,
    *,
    split: str | None = None,
    tta: str = "none",
    batch_size: int = 256,
    with_probs: bool = False,
    progress: bool = True,
) -> dict:
    """Evaluate a model on a data source.

    Args:
        checkpoint: any model `ferkit.inference.model_io.resolve_model` takes (a run folder,
            .pt, Lightning .ckpt, .onnx export, a shipped name; None: the shipped model).
            ONNX exports run on ONNX Runtime, the others on PyTorch in float32.
        progress: a progress bar on stderr (where that is a terminal).

    Returns:
        classification_metrics(...) plus `split`, `source`, `checkpoint`, `arch`, `tta`;
        with `with_probs`, also `probs` (N, C) and `y_true` as arrays (not JSON-ready).
    """
    path = resolve_model(checkpoint)
    if is_onnx(path):
        meta, model = read_onnx_meta(path), None
    else:
        model, meta = load_torch_model(path)
    check_labels(meta, path)
    dataset = data if isinstance(data, FERData) else load_dataset(data)
    name = pick_split(dataset, split)
    images = dataset.splits[name].images
    size = list(meta["input_size"])
    if list(images.shape[1:]) != size:
        log.info("faces are %sx%s; resized to the model's %sx%s", *images.shape[1:], *size)
    if model is None:
        from ferkit.inference.recognizer import EmotionRecognizer

        # uncalibrated, as the PyTorch path scores: the loss is the model's own
        rec = EmotionRecognizer(path, detector=None, tta=tta, temperature=1.0)

        def score(faces: np.ndarray) -> np.ndarray:
            return rec.classify(np.array(faces))  # a copy: memmaps are read-only
    else:

        def score(faces: np.ndarray) -> np.ndarray:
            return predict_proba(
                model, faces, input_size=size, mean=meta["mean"], std=meta["std"],
                in_channels=meta["in_channels"], tta=tta, batch_size=batch_size,
            )  # fmt: skip

    starts = range(0, len(images), batch_size)
    bar = tqdm(starts, desc=f"evaluate {name}", unit="batch", disable=None if progress else True)
    probs = np.concatenate([score(images[i : i + batch_size]) for i in bar])
    y_true = np.asarray(dataset.splits[name].labels)
    result = classification_metrics(y_true, probs, list(EMOTIONS))
    result.update(
        split=name, source=dataset.source, checkpoint=str(path), arch=meta["arch"], tta=tta
    )
    if with_probs:
        result.update(probs=probs, y_true=y_true)
    return result
