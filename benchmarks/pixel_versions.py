"""How the processed FER-2013 folder copy differs from the original CSV's pixels, and what it
costs a model: the same PublicTest faces from both sources, paired by content.

    .venv/bin/python benchmarks/pixel_versions.py                 # the shipped model
    .venv/bin/python benchmarks/pixel_versions.py --model runs/x --json out.json

1. **Pairing.** The folder's file names are not the CSV's row numbers, so each folder face is
   paired with the CSV face whose 16x16 thumbnail correlates best with it (both zero-mean,
   unit-norm). The share of pairs whose labels agree says how well that worked.
2. **Which processing makes the folder copy.** Each candidate is applied to the CSV face of
   every pair and compared with the folder face: mean absolute difference in grey levels
   (the folder copy is also JPEG-compressed, so no candidate reaches 0), and the share of
   pixels at 255.
   The folder's JPEG quality is read from its files' quantisation tables (the quality at which
   OpenCV's encoder writes the same luminance table), so the processings include that JPEG,
   alone and after equalisation.
3. **What a model scores** on the CSV pixels after each processing (how much of the gap to the
   folder copy each step explains), and on the folder copy as it is and after the
   best-matching processing (no TTA, n = all PublicTest faces).
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps

from ferkit.training.augment import jpeg_compress

ROOT = Path(__file__).resolve().parents[1]
SHARED = (ROOT / ".." / "shared" / "data").resolve()


def thumbnails(faces: np.ndarray) -> np.ndarray:
    """Zero-mean, unit-norm 16x16 thumbnails (N, 256), for pairing by correlation."""
    small = np.stack([cv2.resize(f, (16, 16), interpolation=cv2.INTER_AREA) for f in faces])
    v = small.reshape(len(faces), -1).astype(np.float32)
    v -= v.mean(1, keepdims=True)
    return v / (np.linalg.norm(v, axis=1, keepdims=True) + 1e-6)


def stretch(face: np.ndarray, cut: float) -> np.ndarray:
    """Contrast stretching: the `cut` and 100 - `cut` percentiles to 0 and 255."""
    lo, hi = np.percentile(face, [cut, 100 - cut])
    out = (face.astype(np.float32) - lo) * 255 / max(hi - lo, 1)
    return np.clip(out, 0, 255).round().astype(np.uint8)


def jpeg_quality(folder: Path, files: int = 50) -> int | None:
    """The JPEG quality most of the folder's first `files` images were saved at (OpenCV's
    scale), or None where none matches a quality's luminance table."""
    import io
    from collections import Counter

    def table(quality: int) -> list[int]:
        _, data = cv2.imencode(
            ".jpg", np.zeros((8, 8), np.uint8), [cv2.IMWRITE_JPEG_QUALITY, quality]
        )
        return list(Image.open(io.BytesIO(data.tobytes())).quantization[0])

    tables = {tuple(table(q)): q for q in range(1, 101)}
    found = Counter(
        tables.get(tuple(Image.open(f).quantization[0]))
        for f in sorted(folder.rglob("*.jpg"))[:files]
    )
    return found.most_common(1)[0][0] if found else None


def processings(quality: int | None) -> dict:
    """Candidate processings of a CSV face, by name."""
    out = {
        "none": lambda f: f,
        "min-max stretch": lambda f: stretch(f, 0),
        "1% stretch": lambda f: stretch(f, 1),
        "equalisation (OpenCV)": cv2.equalizeHist,
        "equalisation (PIL)": lambda f: np.asarray(ImageOps.equalize(Image.fromarray(f))),
    }
    if quality:
        out[f"JPEG {quality}"] = lambda f: jpeg_compress(f, quality)
        out[f"equalisation (OpenCV) + JPEG {quality}"] = lambda f: jpeg_compress(
            cv2.equalizeHist(f), quality
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--csv", default=str(SHARED / "fer2013-csv" / "fer2013.csv.gz"))
    parser.add_argument("--folder", default=str(SHARED / "fer2013"))
    parser.add_argument("--model", help="checkpoint, run folder or shipped name (default: shipped)")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = parser.parse_args()

    import torch

    from ferkit.data import load_dataset
    from ferkit.evaluation.predict import predict_proba
    from ferkit.inference.model_io import load_torch_model, resolve_model
    from ferkit.models.input_spec import InputSpec

    torch.set_num_threads(2)
    csv, folder = load_dataset(args.csv)["val"], load_dataset(args.folder)["val"]
    pair = (thumbnails(folder.images) @ thumbnails(csv.images).T).argmax(1)
    agree = float(np.mean(np.asarray(folder.labels) == np.asarray(csv.labels)[pair]))
    print(f"paired {len(pair)} folder faces with CSV faces; labels agree for {agree:.2%}")

    quality = jpeg_quality(Path(args.folder))
    print(f"the folder's JPEG files were saved at quality {quality} (their quantisation tables)")
    candidates = processings(quality)
    matches = {}
    for name, fn in candidates.items():
        made = np.stack([fn(csv.images[j]) for j in pair])
        diff = np.abs(made.astype(np.int16) - folder.images.astype(np.int16)).mean()
        matches[name] = {
            "mean_abs_diff": round(float(diff), 2),
            "at_255": float(np.mean(made == 255)),
        }
        print(
            f"  CSV + {name:24s} vs folder: {diff:5.2f} grey levels apart, {np.mean(made == 255):.2%} at 255"
        )
    print(f"  the folder copy itself: {np.mean(folder.images == 255):.2%} at 255")
    best = min(matches, key=lambda k: matches[k]["mean_abs_diff"])

    model, meta = load_torch_model(resolve_model(args.model or "flagship"))
    spec = InputSpec.from_meta(meta)
    scores = {}
    runs = [("csv", csv, name) for name in candidates] + [
        ("folder", folder, n) for n in ("none", best)
    ]
    for source, split, name in runs:
        faces = np.stack([candidates[name](f) for f in split.images])
        probs = predict_proba(model, faces, spec=spec)
        acc = float(np.mean(probs.argmax(1) == np.asarray(split.labels)))
        scores[f"{source}, {name}"] = acc
        print(f"{source:6s} pixels, processing {name:36s}: {acc:.2%} (n={len(faces)})")
    report = {
        "model": args.model or "flagship (shipped)",
        "pairs": len(pair),
        "labels_agree": agree,
        "processing_vs_folder": matches,
        "closest": best,
        "folder_jpeg_quality": quality,
        "accuracy": scores,
        "machine": f"{platform.processor() or platform.machine()}, torch {torch.__version__}",
    }
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
