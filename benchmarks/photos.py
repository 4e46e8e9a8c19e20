"""ferkit against the `fer` package on whole photos, in one run: accuracy, faces found, time.

    .venv/bin/python benchmarks/photos.py                        # ../shared/data/tcce-dev
    .venv/bin/python benchmarks/photos.py --large 1920 --json out.json

Each photo of a folder of class subfolders goes through each system as a user would call it,
one photo at a time, file to label: `EmotionRecognizer().predict(path)` with ferkit's defaults
and `FER().detect_emotions(cv2.imread(path))` with fer's. The largest face's top label
counts; a photo where no face is found counts wrong. Time is the median per photo after one
warm-up photo. Then the same photos enlarged to --large pixels on the longer side (bicubic,
JPEG quality 95, in a temporary folder), where the detectors' own downscaling matters.

`fer` needs TensorFlow and an older setuptools, so it runs in its own virtual environment,
called as a subprocess (--fer-python). Create it once with:

    python3 -m venv /work/fer-venv
    /work/fer-venv/bin/pip install "setuptools<80" tensorflow-cpu "opencv-python-headless<5" fer
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
DATA = (ROOT / ".." / "shared" / "data" / "tcce-dev").resolve()
FER_PYTHON = os.environ.get("FER_PYTHON", "/work/fer-venv/bin/python")
FER_VENV_HELP = (
    "create it with: python3 -m venv /work/fer-venv && /work/fer-venv/bin/pip install "
    '"setuptools<80" tensorflow-cpu "opencv-python-headless<5" fer'
)

# Run inside fer's interpreter: argv[1] is a JSON list of files; prints one JSON line.
FER_SCRIPT = r"""
import json, logging, os, sys, time
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import cv2
from fer.fer import FER
logging.getLogger("fer").setLevel(logging.ERROR)
files = json.load(open(sys.argv[1]))
det = FER()
det.detect_emotions(cv2.imread(files[0]))  # warm-up
labels, ms = [], []
for i, f in enumerate(files):
    t = time.perf_counter()
    faces = det.detect_emotions(cv2.imread(f))
    ms.append(1000 * (time.perf_counter() - t))
    if faces:
        best = max(faces, key=lambda d: int(d["box"][2]) * int(d["box"][3]))
        labels.append(max(best["emotions"], key=best["emotions"].get))
    else:
        labels.append(None)
    print(f"\rfer {i + 1}/{len(files)}", end="", file=sys.stderr, flush=True)
print(file=sys.stderr)
print(json.dumps({"labels": labels, "ms": ms}))
"""


def run_ferkit(files: list[str]) -> dict:
    """ferkit's defaults, one photo per call: labels (None: no face) and ms per photo."""
    from ferkit import EmotionRecognizer

    rec = EmotionRecognizer()
    rec.predict(files[0])  # warm-up
    labels, ms = [], []
    for f in tqdm(files, desc="ferkit", unit="photo", file=sys.stderr):
        t = time.perf_counter()
        faces = rec.predict(f)
        ms.append(1000 * (time.perf_counter() - t))
        labels.append(faces[0].label if len(faces) else None)
    return {"labels": labels, "ms": ms}


def run_fer(python: str, files: list[str], tmp: Path) -> dict:
    """The `fer` package in its own interpreter, or {"skipped": why}."""
    if not Path(python).is_file():
        return {"skipped": f"no Python with `fer` at {python} (--fer-python); {FER_VENV_HELP}"}
    listing = tmp / "files.json"
    listing.write_text(json.dumps(files))
    done = subprocess.run(
        [python, "-c", FER_SCRIPT, str(listing)], stdout=subprocess.PIPE, text=True
    )
    if done.returncode != 0:
        return {"skipped": f"fer exited with {done.returncode} (its messages are above)"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def score(run: dict, truth: list[str]) -> dict:
    if "skipped" in run:
        return run
    labels = run["labels"]
    found = [lab is not None for lab in labels]
    right = [lab == t for lab, t in zip(labels, truth, strict=True)]
    return {
        "accuracy": round(float(np.mean(right)), 4),
        "face_found_rate": round(float(np.mean(found)), 4),
        "ms_per_photo_median": round(statistics.median(run["ms"]), 2),
        "ms_per_photo_mean": round(statistics.fmean(run["ms"]), 2),
        "n": len(labels),
    }


def enlarge(files: list[str], side: int, folder: Path) -> list[str]:
    """Copies of `files` with the longer side at `side` pixels, as JPEG, in `folder`."""
    out = []
    for i, f in enumerate(tqdm(files, desc=f"enlarging to {side} px", file=sys.stderr)):
        img = cv2.imread(f)
        k = side / max(img.shape[:2])
        big = cv2.resize(img, None, fx=k, fy=k, interpolation=cv2.INTER_CUBIC)
        path = folder / f"{i:05d}.jpg"
        cv2.imwrite(str(path), big, [cv2.IMWRITE_JPEG_QUALITY, 95])
        out.append(str(path))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join(__doc__.splitlines()[1:]),
    )
    parser.add_argument("--data", default=str(DATA), help="class folders of photos (%(default)s)")
    parser.add_argument(
        "--fer-python",
        default=FER_PYTHON,
        help="Python of the venv with `fer` (default: %(default)s; $FER_PYTHON)",
    )
    parser.add_argument(
        "--large",
        type=int,
        default=1920,
        help="also score the photos enlarged to this longer side (0: skip)",
    )
    parser.add_argument("--limit", type=int, default=0, help="score the first N photos (0: all)")
    parser.add_argument("--json", metavar="OUT", help="also write the figures as JSON to OUT")
    args = parser.parse_args()

    from ferkit.evaluation.photos import list_photos
    from ferkit.labels import EMOTIONS

    files, y = list_photos(args.data)
    if args.limit:
        files, y = files[: args.limit], y[: args.limit]
    truth = [EMOTIONS[i] for i in y]
    result = {
        "data": str(args.data),
        "photos": len(files),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}",
        "runs": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        sets = {"as given": files}
        if args.large:
            sets[f"enlarged to {args.large} px"] = enlarge(files, args.large, Path(tmp))
        for name, paths in sets.items():
            ours = score(run_ferkit(paths), truth)
            theirs = score(run_fer(args.fer_python, paths, Path(tmp)), truth)
            result["runs"][name] = {"ferkit": ours, "fer": theirs}

    print(f"\n{len(files)} photos of {args.data}; {result['machine']}")
    print(f"{'photos':<24} {'system':<7} {'accuracy':>9} {'face found':>11} {'ms/photo':>9}")
    for name, run in result["runs"].items():
        for system, r in run.items():
            if "skipped" in r:
                print(f"{name:<24} {system:<7} skipped: {r['skipped']}")
                continue
            print(
                f"{name:<24} {system:<7} {r['accuracy']:>9.1%} {r['face_found_rate']:>11.1%} "
                f"{r['ms_per_photo_median']:>9.1f}"
            )
        if "skipped" not in run["fer"]:
            ratio = run["ferkit"]["ms_per_photo_median"] / run["fer"]["ms_per_photo_median"]
            run["time_ratio_ferkit_to_fer"] = round(ratio, 3)
            print(f"{name:<24} ferkit's time / fer's: {ratio:.2f}x")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
