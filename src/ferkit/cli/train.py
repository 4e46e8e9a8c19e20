"""`ferkit train`: an experiment from a YAML recipe, `--set key=value` and common flags."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ferkit.cli.vocabulary import add_deprecated, add_json_option
from ferkit.outputs import json_dumps
from ferkit.training.config import FIELDS, TrainConfig, field_comments, load_config, parse_set

# Flags for the common settings: flag -> config key. The architecture is --arch (config key
# `model`): --model means a trained model in every command (docs/cli.md).
FLAGS = {
    "--arch": "model",
    "--data": "data",
    "--epochs": "epochs",
    "--batch-size": "batch_size",
    "--lr": "lr",
    "--optimizer": "optimizer",
    "--scheduler": "scheduler",
    "--augment": "augment",
    "--image-size": "image_size",
    "--data-size": "data_size",
    "--seed": "seed",
    "--out": "out",
    "--device": "device",
    "--devices": "devices",
    "--strategy": "strategy",
    "--precision": "precision",
    "--name": "name",
}


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train a model from a config",
        description="Train a model. Precedence: defaults < --config YAML < --set < flags.",
    )
    p.add_argument(
        "--config",
        help="YAML recipe, e.g. configs/flagship.yaml; a recipe may "
        "start with `extends: base.yaml` and list only what it changes",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override any config key (repeatable); see --help-config",
    )
    comments = field_comments()
    for flag, key in FLAGS.items():
        p.add_argument(
            flag,
            dest=f"flag_{key}",
            metavar=flag[2:].upper().replace("-", "_"),
            help=f"{comments[key]} [config key {key}, default {FIELDS[key].default}]",
        )
    add_deprecated(
        p, "--model", "--arch (--model names a trained model in every command)", dest="flag_model"
    )
    p.add_argument("--smoke", action="store_true", help="shrink to seconds: 1 epoch, 256 images")
    p.add_argument("--resume", metavar="RUN", help="continue a run folder from its last checkpoint")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the earlier run in --out once this one has trained (a folder that is no "
        "run is refused)",
    )
    p.add_argument("--dry-run", action="store_true", help="print the resolved config and exit")
    p.add_argument("--help-config", action="store_true", help="list every config key and exit")
    add_json_option(p, "the run summary, at the end")
    p.set_defaults(func=cmd_train)


def _config_help() -> str:
    defaults, comments = TrainConfig(), field_comments()
    rows = [(name, repr(getattr(defaults, name))) for name in FIELDS]
    width = max(len(default) for _, default in rows)
    return "\n".join(
        f"{name:<20} {default:<{width}}  {comments[name]}".rstrip() for name, default in rows
    )


def cmd_train(args: argparse.Namespace) -> int:
    if args.help_config:
        print(_config_help())
        return 0
    overrides = parse_set(args.set)
    overrides.update(
        {
            key: getattr(args, f"flag_{key}")
            for key in FLAGS.values()
            if getattr(args, f"flag_{key}") is not None
        }
    )
    if args.smoke:
        overrides["smoke"] = True
    if args.resume:
        from ferkit.training.run_folder import resume_config

        cfg = resume_config(args.resume, overrides)
    else:
        cfg = load_config(args.config, overrides)
    if args.dry_run:
        print(json_dumps(cfg.resolved().to_dict(), indent=1))
        return 0
    from ferkit.training.run import train  # Lightning is heavy: import only when training

    run = train(cfg, resume=args.resume, overwrite=args.overwrite, progress=not args.no_progress)
    summary = run / "summary.json"
    if args.json and summary.exists():
        print(summary.read_text())
    elif summary.exists():
        print(_summary_lines(run, json.loads(summary.read_text())), file=sys.stderr)
    return 0


def _summary_lines(run: Path, s: dict) -> str:
    """What a finished run says: its best epoch, its speed, the files it wrote, what next."""
    best = s.get("best_val")
    if best is None:
        best = "n/a"
    elif s["monitor"].endswith("acc"):
        best = f"{best:.2%}"
    else:
        best = f"{best:.4f}"
    at = f" at epoch {s['best_epoch']} of {s['epochs']}" if s.get("best_epoch") else ""
    of = f"val n={s.get('val_n')}"
    if s.get("extra_val"):  # best_val is the mean over the validation sources
        each = [f"{s['val_accuracy']:.2%} of n={s['val_n']}"]
        each += [f"{e['accuracy']:.2%} of n={e['n']} in {e['data']}" for e in s["extra_val"]]
        of = "mean of " + "; ".join(each)
    speed = s.get("train_images_per_s")
    speed = f", {speed:,.0f} images/s" if speed else ""
    files = [run / n for n in ("best.pt", "last.pt", "metrics.csv", "summary.json")]
    return "\n".join(
        [
            f"run: {run} ({s['model']}, {s['epochs']} epoch(s), {s['train_seconds']} s of "
            f"training{speed}, stopped: {s['stopped']})",
            f"best {s['monitor']} {best}{at} ({of})",
            *(f"wrote {p}" for p in files if p.exists()),
            f"next: ferkit report {run}   (curves, confusion matrix, predictions)",
        ]
    )
