"""Measure how FER-2013 frames a face relative to each detector's box, and how level it is.

    .venv/bin/python benchmarks/fit_framing.py                     # 28,709 train faces
    .venv/bin/python benchmarks/fit_framing.py --limit 3000 --json fit.json

A FER-2013 face fills its 48x48 image, so a detector cannot fire on it as it is. Each face is
padded on every side by --pad of its side with its own border pixels (cv2.BORDER_REPLICATE),
enlarged --upscale times (bicubic), and given to ferkit's detectors exactly as photos are
(`ferkit.detection.make_detector`). The largest detection's box, mapped back to the 48x48
face, gives per face and detector, in the units of `ferkit.detection.Framing` (the box's
longer side):

    scale = 48 / box side          dx = (24 - box centre x) / box side    dy = the same in y

Their medians are the Framing that cuts FER-2013's framing out of a photo; the quartiles say
how much the framing varies within FER-2013. YuNet's eye landmarks give each face's eye-line
angle (0: level; + : the person's left eye lower in the image), which says whether FER-2013's
faces were levelled, and two other measures of the face's size (eye distance, eyes to mouth),
whose spread says whether they would predict FER-2013's frame better than the box does. Last, the photometrics: how much cv2.equalizeHist changes a face (a face
that is already equalised barely changes), on the folder copy and, if given, the CSV.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
DATA = (ROOT / ".." / "shared" / "data" / "fer2013").resolve()
CSV = (ROOT / ".." / "shared" / "data" / "fer2013-csv" / "fer2013.csv.gz").resolve()
DETECTOR_NAMES = ("yunet", "haar")
PERCENTILES = (5, 25, 50, 75, 95)


def place(face: np.ndarray, pad: float, upscale: int) -> tuple[np.ndarray, int]:
    """The 48x48 face padded by `pad` of its side (border replicated) and enlarged, as BGR;
    and the padding in face pixels, to map boxes back."""
    p = round(pad * face.shape[0])
    big = cv2.copyMakeBorder(face, p, p, p, p, cv2.BORDER_REPLICATE)
    big = cv2.resize(big, None, fx=upscale, fy=upscale, interpolation=cv2.INTER_CUBIC)
    return cv2.cvtColor(big, cv2.COLOR_GRAY2BGR), p


def largest(found) -> tuple[tuple[float, ...], tuple | None] | None:
    """(box, landmarks or None) of the largest detection, or None when there is none."""
    if not found:
        return None
    best = max(found, key=lambda d: _box(d)[2] * _box(d)[3])
    return tuple(float(v) for v in _box(best)), getattr(best, "landmarks", None)


def _box(d) -> tuple:
    return getattr(d, "box", d)


def measure(faces: np.ndarray, detectors: dict, pad: float, upscale: int) -> dict:
    """Per detector: (N, 3) scale/dx/dy of the faces it fired on, and eye angles in degrees."""
    side = faces.shape[1]
    out = {
        name: {"fit": [], "eye_angle": [], "by_eyes": [], "by_eye_mouth": []} for name in detectors
    }
    for face in tqdm(faces, desc="detecting", unit="face", file=sys.stderr):
        image, p = place(face, pad, upscale)
        for name, det in detectors.items():
            hit = largest(det.detect(image))
            if hit is None:
                continue
            (x, y, w, h), points = hit
            x, y, w, h = x / upscale - p, y / upscale - p, w / upscale, h / upscale
            unit = max(w, h)
            cx, cy = x + w / 2, y + h / 2
            out[name]["fit"].append((side / unit, (side / 2 - cx) / unit, (side / 2 - cy) / unit))
            if points is not None:
                (rx, ry), (lx, ly) = points[0], points[1]  # the person's right eye, left eye
                out[name]["eye_angle"].append(float(np.degrees(np.arctan2(ly - ry, lx - rx))))
                # the face's size from landmarks instead of the box, in face pixels
                eyes, mouth = np.mean(points[:2], axis=0), np.mean(points[3:5], axis=0)
                out[name]["by_eyes"].append(side * upscale / np.hypot(lx - rx, ly - ry))
                out[name]["by_eye_mouth"].append(side * upscale / np.hypot(*(mouth - eyes)))
    return out


def summary(values) -> dict:
    v = np.asarray(values, dtype=np.float64)
    q = np.percentile(v, PERCENTILES) if len(v) else [float("nan")] * len(PERCENTILES)
    return {f"p{p}": round(float(x), 4) for p, x in zip(PERCENTILES, q, strict=True)}


def equalize_change(faces: np.ndarray) -> float:
    """Mean absolute change (gray levels) that cv2.equalizeHist makes to the faces."""
    diffs = [np.abs(cv2.equalizeHist(f).astype(np.int16) - f).mean() for f in faces]
    return round(float(np.mean(diffs)), 2)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join(__doc__.splitlines()[1:]),
    )
    parser.add_argument("--data", default=str(DATA), help="FER-2013 folders or CSV (%(default)s)")
    parser.add_argument("--split", default="train", help="split to measure (default: train)")
    parser.add_argument(
        "--csv",
        default=str(CSV),
        help="the FER-2013 CSV, for the photometric comparison ('' to skip)",
    )
    parser.add_argument(
        "--limit", type=int, default=0, help="measure this many faces, drawn at random (0: all)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the --limit draw")
    parser.add_argument(
        "--pad",
        type=float,
        default=0.5,
        help="padding on each side, in face sides (default: %(default)s)",
    )
    parser.add_argument(
        "--upscale", type=int, default=4, help="enlargement before detection (default: %(default)s)"
    )
    parser.add_argument(
        "--detectors",
        default=",".join(DETECTOR_NAMES),
        help="comma-separated detector names (default: %(default)s)",
    )
    parser.add_argument("--json", metavar="OUT", help="also write the figures as JSON to OUT")
    args = parser.parse_args()

    from ferkit.data import load_dataset
    from ferkit.detection import make_detector

    data = load_dataset(args.data)
    faces = np.asarray(data.splits[args.split].images)
    if args.limit and args.limit < len(faces):
        pick = np.sort(np.random.default_rng(args.seed).choice(len(faces), args.limit, False))
        faces = faces[pick]
    names = [n.strip() for n in args.detectors.split(",") if n.strip()]
    detectors = {name: make_detector(name) for name in names}
    start = time.perf_counter()
    found = measure(faces, detectors, args.pad, args.upscale)
    result = {
        "data": str(args.data),
        "split": args.split,
        "faces": len(faces),
        "pad": args.pad,
        "upscale": args.upscale,
        "seconds": round(time.perf_counter() - start, 1),
        "machine": f"{platform.processor() or platform.machine()}, {platform.python_version()}",
        "detectors": {},
    }
    print(
        f"{len(faces):,} faces of {args.data} ({args.split}), padded {args.pad} of a side on "
        f"each side, enlarged {args.upscale}x; units: the box's longer side"
    )
    for name, m in found.items():
        fit = np.asarray(m["fit"]).reshape(-1, 3)
        entry = {
            "fired": len(fit),
            "fired_rate": round(len(fit) / max(len(faces), 1), 4),
            "scale": summary(fit[:, 0]),
            "dx": summary(fit[:, 1]),
            "dy": summary(fit[:, 2]),
        }
        if m["by_eyes"]:  # how well each measure of a face's size predicts FER-2013's frame
            entry["size_spread"] = {
                key: round(float(np.subtract(*np.percentile(v, [75, 25])) / np.median(v)), 3)
                for key, v in (
                    ("box", fit[:, 0]),
                    ("eyes", m["by_eyes"]),
                    ("eye_mouth", m["by_eye_mouth"]),
                )
            }
        if m["eye_angle"]:
            angles = np.asarray(m["eye_angle"])
            entry["eye_angle_deg"] = summary(angles)
            entry["eye_angle_abs_over_5deg"] = round(float((np.abs(angles) > 5).mean()), 4)
        result["detectors"][name] = entry
        print(
            f"\n{name}: fired on {len(fit):,} of {len(faces):,} faces ({entry['fired_rate']:.1%})"
        )
        for key in ("scale", "dx", "dy", "eye_angle_deg"):
            if key in entry:
                q = entry[key]
                print(
                    f"  {key:<14} median {q['p50']:+.3f}   quartiles {q['p25']:+.3f} .. "
                    f"{q['p75']:+.3f}   5-95% {q['p5']:+.3f} .. {q['p95']:+.3f}"
                )
        if "size_spread" in entry:
            s = entry["size_spread"]
            print(
                "  spread of 48 / the face's size (quartile range / median): box side "
                f"{s['box']:.3f}, eye distance {s['eyes']:.3f}, eyes-to-mouth {s['eye_mouth']:.3f}"
            )
        if "eye_angle_abs_over_5deg" in entry:
            print(f"  faces tilted more than 5 degrees: {entry['eye_angle_abs_over_5deg']:.1%}")
        print(
            f"  -> Framing(scale={entry['scale']['p50']:.2f}, dx={entry['dx']['p50']:.2f}, "
            f"dy={entry['dy']['p50']:.2f})"
        )

    sample = faces[:2000]
    result["equalize_change"] = {"data": equalize_change(sample)}
    line = f"\ncv2.equalizeHist changes a face by {result['equalize_change']['data']} gray levels"
    line += f" on average in {args.data}"
    if args.csv and Path(args.csv).exists() and Path(args.csv) != Path(args.data):
        csv_faces = np.asarray(load_dataset(args.csv).splits[args.split].images[:2000])
        result["equalize_change"]["csv"] = equalize_change(csv_faces)
        line += f", {result['equalize_change']['csv']} in {args.csv}"
    print(line + f" (up to {len(sample):,} faces of {args.split} from each)")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
