"""`ferkit report RUN` and `ferkit compare RUN...`: PNGs and tables from run folders."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from ferkit.data import load_dataset
from ferkit.data.types import source_list
from ferkit.errors import DataError, parse_problem
from ferkit.evaluation import plots
from ferkit.evaluation.evaluate import evaluate
from ferkit.outputs import json_dumps, replaced_atomically


def read_metrics(run: str | Path) -> pd.DataFrame:
    """A run's metrics.csv (one row per epoch), epochs counted from 1.

    Raises:
        DataError: there is none, or it is not a table with a numeric `epoch` column.
    """
    path = Path(run) / "metrics.csv"
    if not path.exists():
        raise DataError(f"{run}: no metrics.csv; is it a `ferkit train` run folder?")
    try:
        table = pd.read_csv(path)
    except (ValueError, OSError) as exc:  # not text, not CSV, empty, unreadable
        problem = f"cannot be read as a table ({type(exc).__name__}: {parse_problem(exc)})"
    else:
        if "epoch" in table and pd.api.types.is_numeric_dtype(table["epoch"]):
            return plots.epochs_from_one(table)
        problem = "has no numeric 'epoch' column"
    raise DataError(
        f"{path} {problem}: it is not the table `ferkit train` writes; restore it, or move it "
        "aside (training starts a new one)"
    )


def run_config(run: Path) -> dict:
    path = run / "config.yaml"
    if not path.exists():
        raise DataError(f"{run}: no config.yaml; is it a `ferkit train` run folder?")
    return _run_file(path, yaml.safe_load)


def _run_file(path: Path, parse) -> dict:
    """A run's YAML or JSON file (`parse` = yaml.safe_load or json.loads) as a mapping.

    Raises:
        DataError: it cannot be read or parsed, or holds no mapping; named, with what to do.
    """
    try:
        value = parse(path.read_text())
    except (ValueError, yaml.YAMLError, OSError) as exc:  # JSON and UTF-8 errors are ValueErrors
        problem = f"cannot be parsed ({parse_problem(exc)})"
    else:
        if isinstance(value, dict):
            return value
        problem = f"holds a {type(value).__name__}, not a mapping"
    raise DataError(f"{path} {problem}: it is not the file `ferkit train` writes; restore it")


def make_report(
    run: str | Path, *, data: str | None = None, n_faces: int = 32, seed: int = 0
) -> dict[str, Path]:
    """Write the report PNGs into `run` and its scores (eval_val.json); returns {name: path},
    the scores under "scores" (source i's under "scores_i").

    The confusion matrix, per-class bars and prediction grid come from the run's best
    checkpoint scored on its validation split (or `data`, if given). A run with `extra_val`
    is scored on each of its validation sources: the first as above, source i (from 1, as
    metrics.csv's val_acc_i) into eval_val_i.json, confusion_matrix_i.png, and so on.
    """
    run = Path(run)
    metrics = read_metrics(run)
    cfg = run_config(run)
    sources = [data] if data else [cfg["data"], *source_list(cfg.get("extra_val"))]
    for i, source in enumerate(sources):
        if data is None and not Path(source).expanduser().exists():
            raise DataError(
                f"{run} was {'validated' if i else 'trained'} on {source}, which is not there "
                f"(looked from {Path.cwd()}); pass the data with --data PATH"
            )
    written = {}
    for i, source in enumerate(sources):
        suffix = f"_{i}" if i else ""
        # a FER+ run is scored as it was validated: FER+ majority labels, or FER-2013's own
        ferplus = cfg.get("ferplus") if i == 0 else None
        mode = "fer2013-votes" if cfg.get("ferplus_labels") == "fer2013-votes" else "majority"
        dataset = load_dataset(source, ferplus=ferplus, ferplus_labels=mode)
        result = evaluate(run, dataset, split="val" if i else None, with_probs=True)
        faces = scored_faces(dataset, result)
        written[f"scores{suffix}"] = run / f"eval_{result['split']}{suffix}.json"
        with replaced_atomically(written[f"scores{suffix}"]) as tmp:  # a second report
            tmp.write_text(json_dumps(result, indent=1))
        title = (
            f"{cfg['model']} on {result['split']} of {Path(source).name} (n={result['n']:,}): "
            f"{result['accuracy']:.1%}"
        )
        figures = result_figures(result, title, faces, n_faces=n_faces, seed=seed)
        if i == 0:
            figures = {
                "curves": plots.training_curves(metrics, title=f"{cfg['model']}: {run.name}"),
                "lr": plots.lr_curve(metrics),
                **figures,
            }
        for name, fig in figures.items():
            written[name + suffix] = run / f"{name}{suffix}.png"
            plots.save(fig, written[name + suffix])
    return written


def scored_faces(dataset, result: dict) -> tuple:
    """(images, y_true, probs) of the split `evaluate(..., with_probs=True)` scored, for
    `result_figures`; the arrays leave `result`, which stays JSON-ready."""
    return dataset.splits[result["split"]].images, result.pop("y_true"), result.pop("probs")


def figure_names(faces: bool) -> tuple[str, ...]:
    """The names `result_figures` gives its figures, with or without the grid of faces."""
    return ("confusion_matrix", "per_class_accuracy", *(("predictions",) if faces else ()))


def result_figures(
    result: dict, title: str, faces: tuple | None = None, *, n_faces: int = 32, seed: int = 0
) -> dict[str, plots.Figure]:
    """The figures of a scored model, by name: the files `ferkit report` and `ferkit evaluate
    --plots` write (NAME.png).

    Args:
        result: what `evaluate` or `evaluate_photos` returned.
        faces: (images, y_true, probs) of the scored split: adds "predictions", a grid of
            `n_faces` faces drawn at random (`seed`), green where right and red where wrong.
    """
    labels = list(result["labels"])
    figures = [
        plots.confusion_heatmap(result["confusion_matrix_normalized"], labels, title=title),
        plots.per_class_bars(result["per_class"], result["accuracy"], title=title),
    ]
    if faces is not None:
        images, y_true, probs = faces
        rng = np.random.default_rng(seed)
        pick = np.sort(rng.choice(len(y_true), min(n_faces, len(y_true)), replace=False))
        figures.append(
            plots.prediction_grid(np.asarray(images[pick]), y_true[pick], probs[pick], labels)
        )
    return dict(zip(figure_names(faces is not None), figures, strict=True))


def compare_runs(runs: list[str | Path]) -> tuple[pd.DataFrame, plots.Figure]:
    """A table (one row per run) and a plot overlaying their val-accuracy curves. A run with
    `extra_val` validates on `val_sets` sources, and its val accuracy is their mean."""
    rows, curves = [], {}
    for run in map(Path, runs):
        metrics = read_metrics(run)
        summary_path = run / "summary.json"
        summary = _run_file(summary_path, json.loads) if summary_path.exists() else {}
        val = (
            metrics.groupby("epoch")["val_acc"].mean().dropna()
            if "val_acc" in metrics
            else pd.Series()
        )
        curves[run.name] = val
        test = next(
            (_run_file(p, json.loads).get("accuracy") for p in run.glob("eval_test.json")),
            summary.get("test_accuracy"),  # the best checkpoint on the test split, if any
        )
        rows.append(
            {
                "run": run.name,
                "model": summary.get("model") or run_config(run)["model"],
                "parameters": summary.get("parameters"),
                "epochs": int(val.index.max()) if len(val) else 0,
                "best_val_acc": round(float(val.max()), 4) if len(val) else None,
                # validation sources: with extra_val, val_acc is the mean over them
                "val_sets": max(1, len(plots.per_source(metrics, "val_acc"))),
                "best_epoch": int(val.idxmax()) if len(val) else None,
                "test_acc": round(test, 4) if test is not None else None,
                "train_min": round(summary["train_seconds"] / 60, 1)
                if summary.get("train_seconds")
                else None,
                "images_per_s": summary.get("train_images_per_s"),
            }
        )
    # Nullable types: a run still training (no summary.json) leaves gaps, and counts stay
    # integers beside them instead of turning into floats (4844775.0) and NaN.
    table = pd.DataFrame(rows).astype(
        {"parameters": "Int64", "epochs": "Int64", "best_epoch": "Int64", "best_val_acc": "Float64",
         "val_sets": "Int64", "test_acc": "Float64", "train_min": "Float64",
         "images_per_s": "Float64"}
    )  # fmt: skip
    return table, plots.val_accuracy_overlay(curves)
