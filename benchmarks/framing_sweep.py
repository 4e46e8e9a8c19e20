"""How a photo folder's accuracy depends on the framing: one detection, many crops.

    .venv/bin/python benchmarks/framing_sweep.py                     # ../shared/data/tcce-dev
    .venv/bin/python benchmarks/framing_sweep.py --model flagship-ferplus --detector haar

Each photo is decoded and its faces detected once, with the recognizer's defaults; then the
largest face is cropped with every framing of the grid (`Framing(scale, dx=0, dy)`, in box
sides, see `ferkit.detection.crops`) and classified. A photo with no face counts wrong, as in
`ferkit evaluate --data PHOTOS --detect`. The row marked `*` is the framing the recognizer
uses by default (`framing_for`, fitted on FER-2013, never on photos).

This is a check, not a fit: choosing a framing by its score on the same photos would tune the
pipeline to them. Use it to see whether the fitted framing sits near the best one, and how
much accuracy the framing can move at all.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
from tqdm import tqdm

from ferkit import EmotionRecognizer
from ferkit.detection.crops import Framing, crop_faces
from ferkit.evaluation.photos import list_photos
from ferkit.labels import EMOTIONS

DEFAULT_DATA = "../shared/data/tcce-dev"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data", default=DEFAULT_DATA, help="class folders of photos")
    p.add_argument("--model", default=None, help="any model ferkit takes (default: flagship)")
    p.add_argument("--detector", default="yunet", help="detector name (default: yunet)")
    p.add_argument("--scales", default="0.8,0.85,0.91,1.0,1.1,1.2", help="crop side / box side")
    p.add_argument("--dy", default="-0.05,0,0.05", help="vertical offsets, in box sides")
    p.add_argument("--json", action="store_true", help="print the grid as JSON")
    args = p.parse_args()

    rec = EmotionRecognizer(args.model, detector=args.detector)
    files, y = list_photos(args.data)
    grays, boxes = [], []  # the working copies' gray pixels (what crops are cut from), boxes
    for f in tqdm(files, desc="detecting", unit="photo"):
        frame = rec.load(f)
        found = rec.detect(frame)
        grays.append(frame.gray)
        boxes.append(found[0].box if found else None)
    have = [i for i, b in enumerate(boxes) if b is not None]
    n = len(EMOTIONS)
    default = rec.framing
    grid = [(float(s), float(d)) for s in args.scales.split(",") for d in args.dy.split(",")]
    grid += [(default.scale, default.dy)] if (default.scale, default.dy) not in grid else []
    rows = []
    for scale, dy in grid:
        framing = Framing(scale=scale, dx=default.dx, dy=dy)
        crops = np.concatenate(
            [crop_faces(grays[i], [boxes[i]], rec.input_size, framing) for i in have]
        )
        pred = np.full(len(files), -1)
        pred[have] = rec.classify(crops)[:, :n].argmax(1)
        acc = float((pred == y).mean())
        rows.append({"scale": scale, "dy": dy, "accuracy": acc, "default": framing == default})
    if args.json:
        print(json.dumps({"photos": len(files), "faces_found": len(have), "grid": rows}, indent=2))
        return
    print(f"{args.data}: {len(files)} photos, a face in {len(have)}; model {rec.source}")
    print(f"{'scale':>6} {'dy':>6} {'accuracy':>9}")
    for r in sorted(rows, key=lambda r: (r["scale"], r["dy"])):
        mark = " *" if r["default"] else ""
        print(f"{r['scale']:>6.2f} {r['dy']:>6.2f} {100 * r['accuracy']:>8.1f}%{mark}")


if __name__ == "__main__":
    main()
