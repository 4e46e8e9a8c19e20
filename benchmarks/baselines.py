"""The comparison table: the literature baselines and the flagship, trained under one budget.

    .venv/bin/python benchmarks/baselines.py                 # 5 minutes of training each
    .venv/bin/python benchmarks/baselines.py --minutes 10 --out runs/baselines-10
    .venv/bin/python benchmarks/baselines.py --table-only    # reprint from finished runs
    .venv/bin/python benchmarks/baselines.py --table-only --add "flagship, 50 epochs=runs/flagship"

Protocol, the same for every row: each recipe in configs/ as published (its optimizer,
schedule, augmentation and early stopping), trained on FER-2013 `train` (28,709 images) with
`ferkit train --set max_time=MINUTES`: Lightning stops the run after that much training,
validates it, and the best epoch on PublicTest (3,589 images, the val split) is kept. The
budget is wall-clock, so a model that trains slower gets fewer epochs: this is the question a
laptop user asks ("what is the best I can get in N minutes?"). Keep the machine otherwise
idle: another process taking a core takes epochs away from the run.

No ImageNet weights can be downloaded here, so the transfer recipes (ResNet-18, EfficientNet-
B0) start from torchvision's random initialisation (`pretrained=null`); the head-only row is
then a linear probe of random features, which is what it measures. `fer_model0` runs at the
data's own 48x48 instead of its published 128x128 (7x the compute for no new pixels).

Runs already finished under --out are not trained again (delete one to redo it). Faces/s:
the trained model through ferkit's default inference path (`TorchRunner`: eval mode, batch
norm folded, bf16 autocast, channels-last), batch 64, 2 threads, median of 10 batches.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import torch
from models import cpu_name, median_seconds  # benchmarks/models.py

from ferkit.inference.backends import TorchRunner
from ferkit.models import load_checkpoint

ROOT = Path(__file__).resolve().parents[1]
FERKIT = [sys.executable, "-m", "ferkit"]

# row name -> (recipe, overrides)
RECIPES: dict[str, tuple[str, dict[str, str]]] = {
    "simple_cnn": ("simple_cnn.yaml", {}),
    "fer_model0": ("fer_model0.yaml", {"image_size": "48"}),
    "vgg_13": ("vgg.yaml", {}),
    "resnet18 (head only)": ("resnet18_transfer.yaml", {"pretrained": "null"}),
    "resnet18 (full)": ("resnet18_transfer.yaml", {"pretrained": "null", "freeze": "none"}),
    "efficientnet_b0 (full)": ("efficientnet_b0_transfer.yaml", {"pretrained": "null"}),
    "flagship": ("flagship.yaml", {}),
}


def folder(name: str) -> str:
    return name.replace(" (", "-").replace(")", "").replace(" ", "-")


def train(name: str, out: Path, minutes: float, data: str) -> Path:
    recipe, overrides = RECIPES[name]
    run = out / folder(name)
    if (run / "summary.json").exists():
        print(f"{name}: done before ({run})", file=sys.stderr)
        return run
    sets = [f"{k}={v}" for k, v in {**overrides, "max_time": str(minutes), "data": data}.items()]
    cmd = [
        *FERKIT,
        "train",
        "--config",
        str(ROOT / "configs" / recipe),
        "--out",
        str(run),
        "--no-progress",
        "--overwrite",
        *(a for s in sets for a in ("--set", s)),
    ]
    print(f"{name}: {' '.join(cmd[2:])}", file=sys.stderr, flush=True)
    subprocess.run(cmd, check=True)
    return run


def row(name: str, run: Path) -> dict:
    summary = json.loads((run / "summary.json").read_text())
    model, meta = load_checkpoint(run / "best.pt")
    runner = TorchRunner(model, bf16=True)  # what EmotionRecognizer runs: BN folded, NHWC
    x = torch.randn(64, meta["in_channels"], *meta["input_size"])
    return {
        "model": name,
        "params": summary["parameters"],
        "input": "x".join(map(str, summary["input_size"])),
        # a time budget ends mid-epoch: count the epochs' worth of images actually seen
        "epochs": summary["train_images_per_s"] * summary["train_seconds"] / summary["n_train"]
        if summary["stopped"] == "max_time"
        else summary["epochs"],
        "train_min": summary["train_seconds"] / 60,
        "val_accuracy": summary["val_accuracy"],
        "val_n": summary["val_n"],
        "faces_per_s": len(x) / median_seconds(lambda: runner(x), 2, 10),
        "stopped": summary["stopped"],
    }


def markdown(rows: list[dict]) -> str:
    lines = [
        "| model | params | input | epochs | train time | PublicTest acc | faces/s |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['params'] / 1e6:.2f}M | {r['input']} | {r['epochs']:.1f} "
            f"| {r['train_min']:.1f} min | {100 * r['val_accuracy']:.1f}% (n={r['val_n']}) "
            f"| {r['faces_per_s']:,.0f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=5.0, help="training budget per model")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "baselines")
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "fer2013"))
    parser.add_argument("--models", help="comma-separated row names (default: all)")
    parser.add_argument("--table-only", action="store_true", help="only finished runs")
    parser.add_argument(
        "--add",
        action="append",
        default=[],
        metavar="NAME=RUN",
        help="also list this finished run folder as row NAME (repeatable)",
    )
    parser.add_argument("--json", action="store_true", help="JSON lines instead of a table")
    args = parser.parse_args(argv)
    names = args.models.split(",") if args.models else list(RECIPES)
    unknown = [n for n in names if n not in RECIPES]
    if unknown:
        parser.error(f"unknown rows {unknown}; valid: {', '.join(RECIPES)}")
    runs = {}
    for name in names:
        if args.table_only:
            run = args.out / folder(name)
            if (run / "summary.json").exists():
                runs[name] = run
        else:
            runs[name] = train(name, args.out, args.minutes, args.data)
    for item in args.add:
        name, sep, run = item.rpartition("=")
        if not sep or not (Path(run) / "summary.json").exists():
            parser.error(f"--add {item!r}: expected NAME=RUN with a finished run folder")
        runs[name] = Path(run)
    torch.set_num_threads(2)
    rows = [row(name, run) for name, run in runs.items()]
    if args.json:
        for r in rows:
            print(json.dumps(r))
    else:
        print(f"# {cpu_name()}, torch {torch.__version__}, budget {args.minutes:g} min each")
        print(markdown(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
