"""Score ensembles of 7-class models (their probabilities averaged, as a distillation's
teachers are) beside each member, on the sets the ship rules read: which runs would teach
well together, and how much their errors differ.

    .venv/bin/python benchmarks/ensemble.py shipped runs/flagship-deep-mixed
    .venv/bin/python benchmarks/ensemble.py shipped runs/a runs/b --subsets \\
        --sets csv folder photos --json out.json

Each set (`--sets`: PublicTest from the CSV's pixels, `csv`, and from the image folders,
`folder`, n=3,589 each; tcce-dev end to end, `photos`, n=410, as `benchmarks/candidate.py`
scores it) gets:

- each member's accuracy (`shipped` names the shipped model; else a run folder, .pt, .ckpt
  or .onnx);
- for each pair of members, the faces they answer differently and the faces only one of them
  gets right (the more, the more an ensemble of the two can gain);
- the ensemble of all members, and with `--subsets` every subset of two or more, best first.

Members are scored once per set; the ensembles are computed from their stored probabilities.
"""

from __future__ import annotations

import argparse
import itertools
import json
import platform
from pathlib import Path

import numpy as np
from candidate import SETS, right, scores  # benchmarks/candidate.py

SHIPPED = "shipped"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "members", nargs="+", help=f"models to average ({SHIPPED!r}: the shipped one)"
    )
    parser.add_argument("--tta", choices=["none", "tencrop"], default="none")
    kinds = [kind for kind, _, _ in SETS.values()]
    parser.add_argument(
        "--sets", nargs="+", choices=kinds, default=["csv", "folder"], help="default csv folder"
    )
    parser.add_argument("--subsets", action="store_true", help="every subset of 2+ members")
    for kind, default, _ in SETS.values():
        parser.add_argument(f"--{kind}", type=Path, default=default, help=f"default {default}")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    if len(set(args.members)) != len(args.members):
        parser.error("a member is named twice")

    sets = []
    for name, (kind, _, _) in SETS.items():
        if kind not in args.sets:
            continue
        tta = "none" if kind == "photos" else args.tta
        path = getattr(args, kind)
        scored = {m: scores(None if m == SHIPPED else m, kind, path, tta) for m in args.members}
        sets.append(score_set(name, tta, scored, args.subsets))
    if args.json:
        doc = {"members": args.members, "sets": sets, "machine": platform.platform()}
        args.json.write_text(json.dumps(doc, indent=1))
        print(f"wrote {args.json}")


def score_set(name: str, tta: str, scored: dict, subsets: bool) -> dict:
    """One set's figures (and its lines on stdout) from each member's `scores`."""
    members = list(scored)
    y_true = scored[members[0]][1]
    # each member's answer per face (-1 where it gave none: a photo without a face)
    tops = {m: np.where(scored[m][2], scored[m][0].argmax(1), -1) for m in members}
    rights = {m: tops[m] == y_true for m in members}
    print(f"{name} (n={len(y_true)}, tta {tta})")
    for m in members:
        print(f"  {rights[m].mean():7.2%}  {m}")

    pairs = []
    for a, b in itertools.combinations(members, 2):
        pair = {
            "members": [a, b],
            "answer_differently": int((tops[a] != tops[b]).sum()),
            "only_first_right": int((rights[a] & ~rights[b]).sum()),
            "only_second_right": int((rights[b] & ~rights[a]).sum()),
        }
        pairs.append(pair)
        print(
            f"  {a} and {b}: answer {pair['answer_differently']} differently; right only "
            f"with the first {pair['only_first_right']}, only with the second "
            f"{pair['only_second_right']}"
        )

    # every subset of two or more members, or else all of them together (if two or more)
    smallest = 2 if subsets else max(2, len(members))
    sizes = range(smallest, len(members) + 1)
    groups = [list(g) for k in sizes for g in itertools.combinations(members, k)]
    ensembles = sorted(
        ({"members": g, "accuracy": float(averaged(scored, g, y_true).mean())} for g in groups),
        key=lambda e: -e["accuracy"],
    )
    for e in ensembles[:10]:
        print(f"  {e['accuracy']:7.2%}  ensemble of {' + '.join(e['members'])}")
    if len(ensembles) > 10:
        print(f"  ... {len(ensembles) - 10} more (all in --json)")
    return {
        "set": name,
        "tta": tta,
        "n": len(y_true),
        "members": {m: float(rights[m].mean()) for m in members},
        "pairs": pairs,
        "ensembles": ensembles,
    }


def averaged(scored: dict, group: list[str], y_true: np.ndarray) -> np.ndarray:
    """Per face, whether the mean of `group`'s probabilities ranks the true label first; a
    face any member left unanswered (a photo without a face) stays wrong."""
    probs = np.mean([scored[m][0] for m in group], axis=0)
    answered = np.logical_and.reduce([scored[m][2] for m in group])
    return right(probs, y_true, answered)


if __name__ == "__main__":
    main()
