"""Classification metrics from labels and probabilities (scikit-learn does the counting)."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import confusion_matrix, log_loss, precision_recall_fscore_support


def classification_metrics(y_true: np.ndarray, probs: np.ndarray, labels: list[str]) -> dict:
    """Accuracy, loss, per-class precision/recall/F1/accuracy, macro-F1, confusion matrices.

    Args:
        y_true: (N,) int label indices.
        probs: (N, C) predicted class probabilities.
        labels: the C class names.

    Returns:
        A JSON-ready dict. Per-class accuracy is the recall: the fraction of that class's
        images predicted correctly.
    """
    y_true = np.asarray(y_true)
    classes = list(range(len(labels)))
    y_pred = probs.argmax(1)
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=classes, zero_division=0
    )
    cm = confusion_matrix(y_true, y_pred, labels=classes)
    rows = cm.sum(1, keepdims=True)
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
