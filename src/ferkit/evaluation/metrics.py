"""Classification metrics from labels and probabilities (scikit-learn does the counting)."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import confusion_matrix, log_loss, precision_recall_fscore_support


def classification_metrics(
    y_true: np.ndarray, probs: np.ndarray, labels: list[str], *, y_pred: np.ndarray | None = None
) -> dict:
    """Accuracy, loss, per-class precision/recall/F1/accuracy, macro-F1, confusion matrices.

    Args:
        y_true: (N,) int label indices.
        probs: (N, C) predicted class probabilities.
        labels: the C class names.
        y_pred: (N,) predicted indices, where they are not `probs.argmax(1)`; -1 means no
            prediction (a photo without a face), counted wrong everywhere.

    Returns:
        A JSON-ready dict. Per-class accuracy is the recall: the fraction of that class's
        images predicted correctly.
    """
    y_true = np.asarray(y_true)
    classes = list(range(len(labels)))
    y_pred = probs.argmax(1) if y_pred is None else np.asarray(y_pred)
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=classes, zero_division=0
    )
    cm = confusion_matrix(y_true, y_pred, labels=classes)
    rows = np.bincount(y_true, minlength=len(labels))[:, None]  # cm's rows omit y_pred == -1
    return {
        "accuracy": float((y_pred == y_true).mean()) if len(y_true) else 0.0,
        "n": len(y_true),
        "loss": float(log_loss(y_true, np.clip(probs, 1e-7, 1), labels=classes))
        if len(y_true)
        else None,
        "macro_f1": float(f1[support > 0].mean()) if support.any() else 0.0,
        "per_class": {
            name: {
                "precision": float(p),
                "recall": float(r),
                "f1": float(f),
                "accuracy": float(r),
                "support": int(s),
            }
            for name, p, r, f, s in zip(labels, precision, recall, f1, support, strict=True)
        },
        "labels": list(labels),
        "confusion_matrix": cm.tolist(),
        "confusion_matrix_normalized": np.divide(cm, rows, out=np.zeros(cm.shape), where=rows > 0)
        .round(4)
        .tolist(),
    }
