"""`ferkit evaluate`, `ferkit report`, `ferkit compare`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ferkit.cli.data import add_ferplus_option
from ferkit.cli.recognizer_options import add_detector_options, detector_from_args
from ferkit.cli.vocabulary import (
    MODEL_HELP,
    add_json_option,
    add_model_option,
    add_tta_option,
    say_for,
)
from ferkit.errors import FerkitError
from ferkit.outputs import (
    is_stdout,
    json_dumps,
    open_csv,
    refuse_existing,
    refuse_inside,
    replaced_atomically,
)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="score a model on a data set")
    p.add_argument("checkpoint", nargs="?", metavar="MODEL", help=f"{MODEL_HELP} (or --model)")
    add_model_option(p, dest="model")
    p.add_argument(
        "--data", required=True, help="FER-2013 CSV (.csv/.csv.gz), Kaggle folder, or class folders"
    )
    add_ferplus_option(p, modes=False)
    p.add_argument(
        "--split",
        choices=("train", "val", "test", "all"),
        help="split to score (default: val, else test, else the only one)",
    )
    add_tta_option(p)
    p.add_argument("--batch-size", type=int, default=256, help="faces per forward pass (256)")
    # --json takes no value, as everywhere; `--json FILE` (the old spelling) still writes FILE
    p.add_argument(
        "--json",
        nargs="?",
        const=True,
        default=False,
        metavar="",
        help="print the full result as JSON on stdout",
    )
    p.add_argument(
        "--output",
        "-o",
        type=Path,
        metavar="FILE",
        help="also write the full result as JSON to FILE ('-': print it, as --json does)",
    )
    p.add_argument(
        "--detect",
        action="store_true",
        help="--data is class folders of whole photos: detect, classify the largest "
        "face of each, count a photo without a face as wrong (the options below)",
    )
    p.add_argument(
        "--plots",
        type=Path,
        metavar="DIR",
        help="also write confusion_matrix.png, per_class_accuracy.png and predictions.png "
        "(32 faces as the model saw them: green right, red wrong) into DIR",
    )
    p.add_argument(
        "--csv",
        type=Path,
        metavar="FILE",
        help="with --detect: write one row per photo to FILE (file, label, predicted, "
        "confidence, correct, the probabilities), to see which photos were wrong ('-': print "
        "them, and the rest on stderr)",
    )
    p.add_argument(
        "--overwrite", action="store_true", help="replace --output, --csv and --plots files"
    )
    add_detector_options(p, crops=False)
    p.add_argument(
        "--framing",
        metavar="SCALE[,DX,DY]",
        help="with --detect: crop side / box side and the crop centre's offset, in box sides "
        "(default: the checkpoint's, else the detector's framing fitted on FER-2013)",
    )
    p.set_defaults(func=cmd_evaluate)

    r = sub.add_parser("report", help="write plots (curves, confusion matrix, ...) into a run")
    r.add_argument("run", type=Path, help="run folder from `ferkit train`")
    r.add_argument("--data", help="score on this data instead of the run's own validation split")
    r.add_argument("--faces", type=int, default=32, help="faces in the prediction grid")
    add_json_option(r, "the scores and the files written")
    r.set_defaults(func=cmd_report)

    c = sub.add_parser("compare", help="compare runs: a table and a val-accuracy plot")
    c.add_argument("runs", nargs="+", type=Path, help="run folders")
    c.add_argument("--format", choices=("table", "markdown", "csv"), default="table")
    add_json_option(c, "the table (a record per run)")
    c.add_argument(
        "--plot",
        type=Path,
        default=Path("compare_val_acc.png"),
        help="validation-accuracy plot to write (default: %(default)s)",
    )
    c.add_argument("--no-plot", action="store_true", help="print the table only")
    c.add_argument("--overwrite", action="store_true", help="replace an existing plot file")
    c.set_defaults(func=cmd_compare)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from ferkit.evaluation.evaluate import evaluate
    from ferkit.inference.model_io import resolve_model

    if args.model and args.checkpoint and args.model != args.checkpoint:
        raise FerkitError(f"two models: {args.checkpoint} and --model {args.model}; give one")
    args.checkpoint = args.model or args.checkpoint
    if isinstance(args.json, str):  # the old spelling `--json FILE` (`--json -`: stdout)
        note = "use --output FILE (--json alone prints the JSON)"
        print(
            f"ferkit: --json FILE is deprecated and goes in the next release; {note}",
            file=sys.stderr,
        )
        args.output, args.json = (None, True) if args.json == "-" else (Path(args.json), False)
    if args.csv and not args.detect:
        raise FerkitError(
            "--csv writes one row per photo with --detect; for face crops, --plots draws a grid "
            "of them, right and wrong"
        )
    if is_stdout(args.output):  # `--output -`: the JSON on stdout, as --json prints it
        args.output, args.json = None, True
    args.csv_stdout = is_stdout(args.csv)
    if args.csv_stdout and args.json:
        raise FerkitError("--csv - and --json both print on stdout; choose one")

    plots = []
    if args.plots:
        from ferkit.evaluation.report import figure_names

        plots = [args.plots / f"{name}.png" for name in figure_names(faces=True)]
    refuse_existing(
        [args.output, None if args.csv_stdout else args.csv, *plots],
        error=FerkitError,
        hint="pass --overwrite to replace, or choose another --output / --csv / --plots",
        overwrite=args.overwrite,
        inputs=[p for p in (args.data, args.ferplus, resolve_model(args.checkpoint)) if p],
    )
    for out in (args.output, args.csv, args.plots):  # PNGs in a class folder would be data
        if out is not None and not is_stdout(out):
            refuse_inside(out, Path(args.data), error=FerkitError)
    faces = None
    if args.detect:
        result, faces = _evaluate_photos(args)
    else:
        data = args.data
        if args.plots:  # the faces themselves, for the grid
            from ferkit.data import load_dataset

            data = load_dataset(args.data, ferplus=args.ferplus, ferplus_labels="majority")
        result = evaluate(
            args.checkpoint,
            data,
            split=args.split,
            tta=args.tta,
            batch_size=args.batch_size,
            ferplus=args.ferplus,
            with_probs=bool(args.plots),
        )
        if args.plots:
            from ferkit.evaluation.report import scored_faces

            faces = scored_faces(data, result)
    text = json_dumps(result, indent=1)
    if args.output is not None:
        with replaced_atomically(args.output) as tmp:
            tmp.write_text(text)
        print(f"wrote {args.output}", file=sys.stderr)
    if args.plots:
        _write_plots(result, args.plots, faces)
    if args.json:
        print(text)
    else:  # for people: on stderr when stdout carries the CSV
        say = say_for(args)
        say(headline(result))
        say(f"  ({result['protocol']}, n={result['n']:,})")
        if args.detect:
            say(
                f"  a face in {result['faces_found']:,} of {result['photos']:,} photos "
                f"({result['face_found_rate']:.1%}); {result['ms_per_photo']:.1f} ms per photo, "
                f"file to label"
            )
            for path in result["no_face"][:10]:
                say(f"  no face (counted wrong): {path}")
        for name, m in result["per_class"].items():
            acc = f"{m['accuracy']:6.1%}" if m["support"] else "     -"  # no face of it
            say(
                f"  {name:<9} acc {acc}  precision {m['precision']:.3f}  "
                f"f1 {m['f1']:.3f}  n={m['support']}"
            )
    return 0


def headline(result: dict) -> str:
    """One line for what `evaluate` returned: the model, the faces and the figures."""
    name, arch = result.get("model") or result["arch"], result["arch"]
    model = name if name == arch else f"{name} ({arch})"  # flagship-ferplus (flagship)
    return (
        f"{model} on {result['split']} of {result['source']} (n={result['n']:,}, "
        f"tta={result['tta']}): accuracy {result['accuracy']:.2%}, macro-F1 "
        f"{result['macro_f1']:.3f}, loss {result['loss']:.4f}"
    )


def _write_rows(rows: list[dict], path: Path) -> None:
    """The --csv table, into `path`, or on stdout for `-`."""
    import csv

    def write(f) -> None:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)

    if is_stdout(path):
        write(sys.stdout)
        return
    with replaced_atomically(path) as tmp, open_csv(tmp) as f:
        write(f)
    print(f"wrote {path}", file=sys.stderr)


def _write_plots(result: dict, folder: Path, faces: tuple | None) -> None:
    from ferkit.evaluation import plots
    from ferkit.evaluation.report import result_figures

    title = f"{result['arch']} on {Path(result['source']).name} (n={result['n']:,})"
    folder.mkdir(parents=True, exist_ok=True)
    figures = result_figures(result, f"{title}: {result['accuracy']:.1%}", faces)
    for name, fig in figures.items():
        path = folder / f"{name}.png"
        plots.save(fig, path)
        print(f"wrote {path}", file=sys.stderr)


def _evaluate_photos(args: argparse.Namespace) -> tuple[dict, tuple | None]:
    """`evaluate --detect`: whole photos through the recognizer, as `predict` would run them.
    Writes the --csv table; returns the result and, for --plots, the grid's faces."""
    from ferkit.evaluation.photos import evaluate_photos, face_grid, prediction_rows
    from ferkit.inference.model_io import model_name
    from ferkit.inference.recognizer import EmotionRecognizer

    if args.split or args.ferplus:
        raise FerkitError("--detect scores one folder of photos: leave out --split and --ferplus")
    options = {
        k: getattr(args, k)
        for k in ("min_face_score", "min_face_size", "max_faces")
        if getattr(args, k, None) is not None
    }
    rec = EmotionRecognizer(
        args.checkpoint,
        detector=detector_from_args(args),
        tta=args.tta,
        batch_size=min(args.batch_size, 64),
        **options,
    )
    if args.framing:
        rec.framing = _framing(args.framing)
    result = evaluate_photos(rec, args.data, with_probs=bool(args.csv or args.plots))
    result.update(
        split="all",
        source=str(args.data),
        checkpoint=rec.source,
        model=model_name(args.checkpoint),
        arch=rec.meta.get("arch"),
        tta=rec.tta,
        protocol=f"whole photos, {args.detector} detector ({rec.framing}), largest face, "
        "no face counted wrong",
    )
    scored = result.pop("scored", None)  # per photo: for the table and the grid
    if args.csv:
        _write_rows(prediction_rows(scored), args.csv)
    return result, face_grid(rec, scored) if args.plots else None


def _framing(text: str):
    from ferkit.detection.crops import Framing

    try:
        values = [float(v) for v in text.split(",")]
        if len(values) not in (1, 3):
            raise ValueError
    except ValueError:
        raise FerkitError(
            f"--framing {text!r}: give SCALE or SCALE,DX,DY as numbers (e.g. 0.91,0.01,0.01)"
        ) from None
    return Framing(*values)


def cmd_report(args: argparse.Namespace) -> int:
    from ferkit.evaluation.report import make_report

    written = make_report(args.run, data=args.data, n_faces=args.faces)
    scores = [json.loads(p.read_text()) for n, p in written.items() if n.startswith("scores")]
    say = say_for(args)  # stdout: the JSON, with --json
    for result in scores:  # each validation source's figures first
        say(headline(result))
    for path in written.values():
        say(f"wrote {path}")
    if args.json:
        files = {name: str(path) for name, path in written.items()}
        print(json_dumps({"run": str(args.run), "scores": scores, "written": files}, indent=1))
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from ferkit.evaluation import plots
    from ferkit.evaluation.report import compare_runs

    plot = None if args.no_plot else args.plot
    if plot is not None:
        plots.plot_format_of(plot)  # a suffix matplotlib cannot write: refused before any work
    refuse_existing(
        [plot],
        error=FerkitError,
        hint="pass --overwrite to replace it, --plot FILE or --no-plot",
        overwrite=args.overwrite,
    )
    table, fig = compare_runs(args.runs)
    if args.json:  # nullable columns: a gap (a run still training) is null
        print(json_dumps(json.loads(table.to_json(orient="records")), indent=1))
    elif args.format == "csv":
        print(table.to_csv(index=False), end="")
    elif args.format == "markdown":
        print(_markdown(table))
    else:
        print(table.astype(object).where(table.notna(), "-").to_string(index=False))
    if plot is not None:
        plots.save(fig, plot)
        print(f"wrote {plot}", file=sys.stderr)  # stdout holds the table (csv: for machines)
    return 0


def _markdown(table) -> str:
    import pandas as pd

    head = "| " + " | ".join(map(str, table.columns)) + " |"
    rule = "|" + "---|" * len(table.columns)
    rows = [
        "| " + " | ".join("" if pd.isna(v) else str(v) for v in row) + " |"
        for row in table.itertuples(index=False)
    ]
    return "\n".join([head, rule, *rows])
