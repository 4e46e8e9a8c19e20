"""Face crops through a face detector, or as they are: why `ferkit predict` hints `--detector none`.

    .venv/bin/python benchmarks/crops_detection.py                  # ../shared/data/fer2013/test
    .venv/bin/python benchmarks/crops_detection.py --per-class 100 --detectors yunet haar none

Takes the first N files (by name) of each class folder of a folder of face crops (FER-2013's
test split by default), runs the shipped model on them with each detector, and prints how
many crops a face was found in and the accuracy of the largest face's label (a crop where no
face is found counts wrong).
"""

from __future__ import annotations

import argparse
import platform
from pathlib import Path

from ferkit.imaging import IMAGE_SUFFIXES
from ferkit.inference import EmotionRecognizer

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=ROOT / ".." / "shared/data/fer2013/test")
    p.add_argument("--per-class", type=int, default=50, metavar="N")
    p.add_argument("--detectors", nargs="+", default=["yunet", "none"])
    args = p.parse_args()
    files, labels = [], []
    for folder in sorted(d for d in args.data.iterdir() if d.is_dir()):
        crops = sorted(f for f in folder.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
        files += crops[: args.per_class]
        labels += [folder.name] * len(crops[: args.per_class])
    print(f"{len(files)} crops from {args.data.resolve()} ({platform.processor() or 'cpu'})")
    for name in args.detectors:
        results = EmotionRecognizer(detector=name).predict(files)
        found = sum(1 for r in results if len(r))
        right = sum(
            1 for r, y in zip(results, labels, strict=True) if r.top_emotion() and r[0].label == y
        )
        print(f"  --detector {name:<6} face found in {found:4d}, accuracy {right / len(files):.1%}")


if __name__ == "__main__":
    main()
