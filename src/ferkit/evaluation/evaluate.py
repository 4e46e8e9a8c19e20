"""Score a checkpoint on any supported data source: accuracy, loss, per-class metrics."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ferkit.data import FERData, load_dataset
from ferkit.data.csv_source import SPLIT_TO_USAGE
from ferkit.evaluation.metrics import classification_metrics
from ferkit.evaluation.predict import predict_proba
from ferkit.inference.model_io import (
    is_onnx,
    load_torch_model,
    model_name,
    read_onnx_meta,
    resolve_model,
)
from ferkit.labels import EMOTIONS, FERPLUS_EMOTIONS, check_model_labels
from ferkit.models.input_spec import InputSpec
from ferkit.progress import bar as progress_bar

log = logging.getLogger(__name__)


def check_labels(meta: dict, checkpoint: Path | str, data_labels=EMOTIONS) -> None:
    """Refuse a model whose labels are not the data's (names and order)."""
    ferplus = list(meta.get("labels") or []) == list(FERPLUS_EMOTIONS)
    hint = "; it is a FER+ model: score it on FER+ labels (--ferplus fer2013new.csv[.gz])"
    check_model_labels(
        meta.get("labels"),
        data_labels,
        model=checkpoint,
        against="the data is labelled",
        then=f"it cannot be scored on them{hint if ferplus else ''}",
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
    ferplus: str | Path | None = None,
) -> dict:
    """Evaluate a model on a data source.

    Args:
        checkpoint: any model `ferkit.inference.model_io.resolve_model` takes (a run folder,
            .pt, Lightning .ckpt, .onnx export, a shipped name; None: the shipped model).
            ONNX exports run on ONNX Runtime, the others on PyTorch in float32.
        progress: a progress bar on stderr (where that is a terminal).
        ferplus: FER+ labels for the FER-2013 CSV `data`: scored as the FER+ papers do, by
            majority-vote accuracy over the faces FER+'s filtering keeps (8 classes).

    Returns:
        classification_metrics(...) plus `split`, `source`, `checkpoint` (the file), `model`
        (as given), `arch`, `tta` and
        `protocol` (FER-2013 labels, or FER+ majority votes);
        with `with_probs`, also `probs` (N, C) and `y_true` as arrays (not JSON-ready).
    """
    path = resolve_model(checkpoint)
    if is_onnx(path):
        meta, model = read_onnx_meta(path), None
    else:
        model, meta = load_torch_model(path)
    if isinstance(data, FERData):
        dataset = data
    else:  # refuse a label mismatch before reading the data
        check_labels(meta, path, FERPLUS_EMOTIONS if ferplus else EMOTIONS)
        dataset = load_dataset(data, ferplus=ferplus, ferplus_labels="majority")
    check_labels(meta, path, dataset.labels)
    _hint_photos(dataset)
    name = dataset.scoring_split(split)
    images = dataset.splits[name].images
    spec = InputSpec.from_meta(meta)
    size = list(spec.input_size)
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
            return predict_proba(model, faces, spec=spec, tta=tta, batch_size=batch_size)

    starts = range(0, len(images), batch_size)
    bar = progress_bar(starts, desc=f"evaluate {name}", unit="batch", show=progress)
    probs = np.concatenate([score(images[i : i + batch_size]) for i in bar])
    y_true = np.asarray(dataset.splits[name].labels)
    result = classification_metrics(y_true, probs, list(dataset.labels))
    result.update(
        split=name,
        source=dataset.source,
        checkpoint=str(path),
        model=model_name(checkpoint),
        arch=meta["arch"],
        tta=tta,
        protocol=_protocol(dataset, name),
    )
    if with_probs:
        result.update(probs=probs, y_true=y_true)
    return result


def _hint_photos(data: FERData) -> None:
    """Whole photos scored as crops measure nothing; say so when most images were resized."""
    total = sum(len(s) for s in data.splits.values())
    if data.resized and data.resized >= total / 2:
        side = data.image_size
        log.warning(
            "%s: %d of %d images were not %dx%d and were resized whole, as face crops are; "
            "if they are photos, score them end to end (`ferkit evaluate --detect`, "
            "evaluation.photos.evaluate_photos)",
            data.source,
            data.resized,
            total,
            side,
            side,
        )


def _protocol(data: FERData, split: str) -> str:
    """How a score on `split` of `data` is read, for reports."""
    usage = SPLIT_TO_USAGE.get(split, split)
    if data.kind == "ferplus" and data.label_mode == "majority":
        return (
            f"FER+ majority-vote accuracy ({len(data.labels)} classes) on FER+ {usage}: the "
            "faces with a majority emotion after FER+'s filtering"
        )
    return f"accuracy against the data's labels ({len(data.labels)} classes) on {usage}"
