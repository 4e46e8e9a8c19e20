"""Score a candidate 7-class model as the ship rules of docs/MODEL_CARD.md read, beside the
shipped model, in one run: PublicTest from both pixel versions and tcce-dev end to end.

    .venv/bin/python benchmarks/candidate.py runs/candidate/flagship.pt
    .venv/bin/python benchmarks/candidate.py runs/x --min-csv 70.8 --min-folder 70.8 \\
        --min-photos 55.1 --json out.json

Rows, each scored for the candidate and the shipped model (no TTA; `--tta tencrop` adds the
ten-crop figures on the two crop sets):

- FER-2013 PublicTest from the original CSV's pixels (n=3,589);
- the same faces from the processed image folders (n=3,589);
- tcce-dev, whole photos with the default pipeline (YuNet, fitted framing; n=410; no face is
  wrong), as `ferkit evaluate MODEL --data PHOTOS --detect`.

Each row also pairs the two models on the same faces: how many only the candidate gets right,
how many only the shipped model, and the exact McNemar test's p on those (is the difference
more than sampling?).

A `--min-*` bound (in %) makes its row pass or fail; the exit code is 1 if any bound fails.
Write the bounds down before the run (in the recipe): this script only reads them.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

import numpy as np
from scipy.stats import binomtest

ROOT = Path(__file__).resolve().parents[1]
SHARED = (ROOT / ".." / "shared" / "data").resolve()
SETS = {  # row -> (argument holding its path, default path, its --min-* bound)
    "PublicTest, CSV pixels": ("csv", SHARED / "fer2013-csv" / "fer2013.csv.gz", "min_csv"),
    "PublicTest, folder copy": ("folder", SHARED / "fer2013", "min_folder"),
    "tcce-dev photos, end to end": ("photos", SHARED / "tcce-dev", "min_photos"),
}


def scores(model: str | None, kind: str, path: Path, tta: str) -> tuple[np.ndarray, ...]:
    """Per face (per photo): `model`'s probabilities (None: the shipped model), the label,
    and whether it answered with one of the set's labels (always, on crops; on a photo, not
    where no face was found or its top label is one the folders lack: then it is wrong)."""
    if kind == "photos":
        from ferkit import EmotionRecognizer
        from ferkit.evaluation.photos import evaluate_photos

        recognizer = EmotionRecognizer(model, tta=tta)
        scored = evaluate_photos(recognizer, path, progress=False, with_probs=True)["scored"]
        return scored.probs, scored.y_true, scored.y_pred >= 0
    from ferkit.evaluation.evaluate import evaluate

    result = evaluate(model, path, tta=tta, progress=False, with_probs=True)
    probs = np.asarray(result["probs"])
    return probs, np.asarray(result["y_true"]), np.ones(len(probs), bool)


def right(probs: np.ndarray, y_true: np.ndarray, answered: np.ndarray) -> np.ndarray:
    """Per face, whether the top label is the true one (never where it did not answer)."""
    return answered & (probs.argmax(1) == y_true)


def correct(model: str | None, kind: str, path: Path, tta: str) -> np.ndarray:
    """Per face (per photo), whether `model` (None: the shipped one) gets it right."""
    return right(*scores(model, kind, path, tta))


def paired(candidate: np.ndarray, shipped: np.ndarray) -> dict:
    """Faces right with only one of the two models, and the exact McNemar test's p."""
    only_candidate = int((candidate & ~shipped).sum())
    only_shipped = int((shipped & ~candidate).sum())
    n = only_candidate + only_shipped
    p = binomtest(only_candidate, n).pvalue if n else 1.0
    return {"only_candidate": only_candidate, "only_shipped": only_shipped, "mcnemar_p": p}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="the candidate: a run folder, .pt, .ckpt or .onnx")
    parser.add_argument("--tta", choices=["none", "tencrop"], default="none")
    for kind, default, bound in SETS.values():
        parser.add_argument(f"--{kind}", type=Path, default=default, help=f"default {default}")
        flag = "--" + bound.replace("_", "-")
        parser.add_argument(flag, type=float, help="least accuracy in %% that passes")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    rows, failed = [], False
    for name, (kind, _, bound) in SETS.items():
        path = getattr(args, kind)
        tta = "none" if kind == "photos" else args.tta
        right = {m: correct(m, kind, path, tta) for m in (args.model, None)}
        candidate, shipped = (float(right[m].mean()) for m in (args.model, None))
        pair = paired(right[args.model], right[None])
        least = getattr(args, bound)
        verdict = "" if least is None else ("pass" if candidate * 100 >= least else "FAIL")
        failed |= verdict == "FAIL"
        rows.append(
            {
                "set": name,
                "tta": tta,
                "candidate": candidate,
                "shipped": shipped,
                "least": least,
                "verdict": verdict,
                "n": len(right[None]),
                **pair,
            }
        )
        print(
            f"{name:<30} {tta:<8} candidate {candidate:7.2%}   shipped {shipped:7.2%}"
            + (f"   least {least:.1f}%: {verdict}" if verdict else "")
            + f"\n{'':<39} n {len(right[None])}: right only with the candidate "
            f"{pair['only_candidate']}, only shipped {pair['only_shipped']} "
            f"(McNemar p {pair['mcnemar_p']:.3f})"
        )
    if args.json:
        doc = {"model": args.model, "rows": rows, "machine": platform.platform()}
        args.json.write_text(json.dumps(doc, indent=1))
        print(f"wrote {args.json}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
