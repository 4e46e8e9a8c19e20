"""Figures people would rather look at than read: each function takes data, returns a Figure."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.text import Text
from matplotlib.ticker import MaxNLocator

from ferkit.errors import FerkitError
from ferkit.outputs import replaced_atomically

RIGHT, WRONG = "#1a9850", "#d73027"


def _subplots(nrows: int = 1, ncols: int = 1, *, figsize: tuple[float, float]):
    """A Figure and its axes, without pyplot: no global backend or figure registry is touched,
    so these functions are safe in notebooks, servers and threads."""
    fig = Figure(figsize=figsize, layout="constrained")
    return fig, fig.subplots(nrows, ncols)


def epochs_from_one(metrics: pd.DataFrame) -> pd.DataFrame:
    """`metrics` with epochs counted from 1, as ferkit writes metrics.csv; the files of runs
    made before that (Lightning's CSVLogger: from 0, a row per step) are renumbered."""
    if "epoch" in metrics and len(metrics) and metrics["epoch"].min() == 0:
        metrics = metrics.assign(epoch=metrics["epoch"] + 1)
    return metrics


def per_source(keys, name: str) -> list[str]:
    """NAME_0, NAME_1, ... among `keys` (metrics.csv's columns, logged metrics): a run with
    `extra_val` logs val_acc and val_loss per validation source, data's first."""
    found = []
    while f"{name}_{len(found)}" in keys:
        found.append(f"{name}_{len(found)}")
    return found


def _epoch_frame(metrics: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """One row per epoch (from 1) with the given columns (older files hold several per epoch)."""
    present = [c for c in columns if c in metrics]
    if not present:
        return pd.DataFrame()
    metrics = epochs_from_one(metrics)
    frame = metrics.dropna(subset=["epoch"]).groupby("epoch")[present].mean()
    frame.index = frame.index.astype(int)
    return frame


def training_curves(metrics: pd.DataFrame, title: str = "") -> Figure:
    """Loss and accuracy per epoch, train vs val, from a run's metrics.csv.

    A distillation run's training loss mixes the label loss with the teachers' KL term, which
    is not on the validation loss's scale, so its two parts are plotted apart instead. A run
    with `extra_val` has each validation source's curve beside their mean ("val").
    """
    sources = {
        name: [(c, f"val {i}" + (" (data)" if i == 0 else "")) for i, c in enumerate(found)]
        for name in ("val_loss", "val_acc")
        for found in [per_source(metrics, name)]
    }
    dashed = [column for pairs in sources.values() for column, _ in pairs]
    columns = [
        "train_loss_epoch",
        "train_label_loss",
        "train_distill_loss",
        "val_loss",
        "train_acc",
        "val_acc",
        *dashed,
    ]
    frame = _epoch_frame(metrics, columns)
    if "train_label_loss" in frame:
        train_losses = [
            ("train_label_loss", "train (labels)"),
            ("train_distill_loss", "train (teachers, T²·KL)"),
        ]
    else:
        train_losses = [("train_loss_epoch", "train")]
    val = "val (mean)" if sources["val_acc"] else "val"
    fig, (ax_loss, ax_acc) = _subplots(1, 2, figsize=(10, 4))
    for ax, pairs, ylabel in (
        (ax_loss, [*train_losses, ("val_loss", val), *sources["val_loss"]], "loss"),
        (ax_acc, [("train_acc", "train"), ("val_acc", val), *sources["val_acc"]], "accuracy"),
    ):
        for column, label in pairs:
            if column in frame:
                series = frame[column].dropna()
                marker = dict(ls="--", marker=".") if column in dashed else dict(marker="o")
                ax.plot(series.index, series.values, ms=3, label=label, **marker)
        ax.set(xlabel="epoch", ylabel=ylabel)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend()
    if "val_acc" in frame and frame["val_acc"].notna().any():
        best = frame["val_acc"].idxmax()
        ax_acc.axvline(best, color="grey", ls=":", lw=1)
        ax_acc.set_title(f"best val {frame['val_acc'].max():.2%} at epoch {best}", fontsize=9)
    fig.suptitle(title or "training curves")
    return fig


def lr_curve(metrics: pd.DataFrame) -> Figure:
    """Learning rate over training (one line per parameter group), in epochs.

    metrics.csv has the rate at the end of each epoch. Older files have it by step, without
    an epoch (Lightning's LearningRateMonitor); their epoch rows give the steps per epoch.
    """
    columns = [c for c in metrics if c.startswith("lr-")]
    fig, ax = _subplots(figsize=(6, 3.5))
    metrics = epochs_from_one(metrics)
    last_step = metrics.dropna(subset=["epoch"]).groupby("epoch")["step"].max()
    per_epoch = float(last_step.iloc[0] + 1) if len(last_step) else 1.0
    for column in columns:
        rows = metrics.dropna(subset=[column])
        by_epoch = rows["epoch"].notna().all()
        x = rows["epoch"] if by_epoch else rows["step"] / per_epoch
        marker = "o" if by_epoch else None
        ax.plot(x, rows[column], marker=marker, ms=3, label=column.removeprefix("lr-"))
    ax.set(xlabel="epoch", ylabel="learning rate", title="learning rate")
    ax.grid(alpha=0.3)
    if len(columns) > 1:
        ax.legend()
    return fig


def confusion_heatmap(matrix: list[list[float]], labels: list[str], title: str = "") -> Figure:
    """Row-normalised confusion matrix: each row shows where a true class's images went."""
    cm = np.asarray(matrix, dtype=float)
    fig, ax = _subplots(figsize=(6.5, 5.5))
    sns.heatmap(
        cm,
        annot=True,
        fmt=".2f",
        cmap="Blues",
        vmin=0,
        vmax=1,
        square=True,
        xticklabels=labels,
        yticklabels=labels,
        cbar_kws={"shrink": 0.8},
        ax=ax,
    )
    ax.set(xlabel="predicted", ylabel="true", title=title or "confusion matrix (row-normalised)")
    return fig


def per_class_bars(per_class: dict[str, dict], overall: float, title: str = "") -> Figure:
    """Accuracy (recall) per class, with the number of images, against overall accuracy."""
    names = list(per_class)
    acc = [per_class[n]["accuracy"] for n in names]
    fig, ax = _subplots(figsize=(7, 3.8))
    bars = ax.bar(names, acc, color=sns.color_palette("deep", len(names)))
    for bar, name in zip(bars, names, strict=True):
        ax.annotate(
            f"{bar.get_height():.0%}\nn={per_class[name]['support']}",
            (bar.get_x() + bar.get_width() / 2, bar.get_height()),
            ha="center",
            va="bottom",
            fontsize=8,
        )
    ax.axhline(overall, color="grey", ls="--", lw=1, label=f"overall {overall:.1%}")
    ax.set(ylim=(0, 1.15), ylabel="accuracy", title=title or "per-class accuracy")
    ax.legend(loc="upper right")
    return fig


def prediction_grid(
    images: np.ndarray, y_true: np.ndarray, probs: np.ndarray, labels: list[str], cols: int = 8
) -> Figure:
    """Faces with true and predicted label: green when right, red when wrong."""
    n = len(images)
    rows = max(1, -(-n // cols))
    fig, axes = _subplots(rows, cols, figsize=(cols * 1.45, rows * 1.75))
    for ax in np.atleast_1d(axes).ravel():
        ax.axis("off")
    for ax, image, truth, p in zip(
        np.atleast_1d(axes).ravel(), images, y_true, probs, strict=False
    ):
        pred = int(p.argmax())
        ax.imshow(image, cmap="gray", vmin=0, vmax=255)
        ax.set_title(
            f"{labels[pred]} {p[pred]:.0%}\n(true: {labels[truth]})",
            fontsize=7,
            color=RIGHT if pred == truth else WRONG,
        )
    correct = int((probs.argmax(1) == y_true).sum())
    fig.suptitle(f"{correct}/{n} right (green), {n - correct} wrong (red)", fontsize=10)
    return fig


def val_accuracy_overlay(curves: dict[str, pd.Series]) -> Figure:
    """Validation accuracy per epoch of several runs on one plot."""
    fig, ax = _subplots(figsize=(7, 4))
    for name, series in curves.items():
        ax.plot(series.index, series.values, marker="o", ms=3, label=name)
    ax.set(xlabel="epoch", ylabel="val accuracy", title="validation accuracy")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def emotion_timeline(
    rows: pd.DataFrame, labels: list[str], title: str = "", most_people: int = 6
) -> Figure:
    """Each tracked person's emotion probabilities over a video's time, stacked: one panel per
    person (the `most_people` seen longest), coloured as annotated videos colour the labels.

    Args:
        rows: a video's table, `VideoAnalysis.to_pandas()`: time_s, track and one (smoothed)
            probability column per label, a row per person per analysed frame.
        labels: the probability columns, in the model's order.
    """
    from ferkit.inference.draw import COLORS  # one colour per emotion, BGR

    tracked = rows.dropna(subset=["track"]) if len(rows) else rows
    counts = tracked["track"].value_counts() if len(tracked) else pd.Series(dtype=int)
    shown = list(counts.index[:most_people])
    fig, axes = _subplots(max(1, len(shown)), 1, figsize=(9, 1.0 + 1.7 * max(1, len(shown))))
    axes = np.atleast_1d(axes)
    bgr = [COLORS.get(e, (200, 200, 200)) for e in labels]
    colors = [(r / 255, g / 255, b / 255) for b, g, r in bgr]
    for ax, track in zip(axes, shown, strict=False):
        person = tracked[tracked["track"] == track].sort_values("time_s")
        ax.stackplot(person["time_s"], *(person[e] for e in labels), labels=labels, colors=colors)
        top = person["label"].value_counts().idxmax()  # as `VideoAnalysis.people()` says
        ax.set(ylim=(0, 1), xlim=(rows["time_s"].min(), rows["time_s"].max() or 1), ylabel="p")
        ax.set_title(f"person {int(track)}: mostly {top} ({len(person)} frames)", fontsize=9)
    if not shown:
        axes[0].text(0.5, 0.5, "no face tracked", ha="center", va="center")
        axes[0].axis("off")
    else:
        axes[-1].set_xlabel("time (s)")
        axes[0].legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    more = len(counts) - len(shown)
    note = f" ({more} more not shown)" if more > 0 else ""
    fig.suptitle((title or "emotions over time") + note, fontsize=10)
    return fig


def plot_format_of(path: Path) -> str:
    """The image format `path`'s suffix names (png without one): what `save` writes, and a
    check to make before any work. (Given no format, matplotlib would add ".png" to a name
    without a suffix.)

    Raises:
        FerkitError: a suffix matplotlib cannot write, with the ones it can.
    """
    from matplotlib.backend_bases import FigureCanvasBase

    fmt = Path(path).suffix.lstrip(".").lower() or "png"
    formats = FigureCanvasBase.get_supported_filetypes()
    if fmt not in formats:
        raise FerkitError(
            f"{path}: cannot write a plot as .{fmt}; use one of "
            f"{', '.join('.' + f for f in sorted(formats))}"
        )
    return fmt


def save(fig: Figure, path, dpi: int = 110) -> None:
    """Write `fig` to `path` in the format its suffix names (png without one), replacing an
    existing file in one step: a failed write leaves it as it was."""
    fmt = plot_format_of(path)
    for text in fig.findobj(Text):  # a name in no UTF-8 (a surrogate) stops matplotlib's draw
        shown = text.get_text()
        if (escaped := shown.encode("utf-8", "backslashreplace").decode()) != shown:
            text.set_text(escaped)
    with replaced_atomically(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format=fmt)
