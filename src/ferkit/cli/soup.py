"""`ferkit soup MODEL MODEL... --out FILE`: average the weights of several fine-tunes of one
start into one model (a "model soup", Wortsman et al., ICML 2022): often more accurate than
each of them, at the cost of one model at inference.

    ferkit soup runs/a runs/b runs/c --out soup.pt                  # the uniform soup
    ferkit soup runs/a runs/b --out soup.pt --data ../shared/data/fer2013   # and its accuracy
    ferkit soup flagship runs/a runs/b runs/c --out soup.pt --greedy \\
        --data fer2013.csv --data ../shared/data/fer2013              # the greedy soup

Only models fine-tuned from one checkpoint average well (the runs trained with
`--set pretrained=flagship`, say); the members must share architecture, input and labels
(checked), and independently trained networks average to noise. `--data` (repeatable) scores
every member and the soup on each data set's validation split (FER-2013's PublicTest); with
several, their mean decides and each one's figure is shown beside it. `--ferplus FILE` scores
8-class FER+ models on FER+'s majority labels of the CSV's PublicTest, as `ferkit evaluate`
does. `--greedy` orders the members by that score and adds each only if the soup's score does
not fall. The soup is written in float32, uncalibrated; export it as a
shipped model is next: `ferkit export soup.pt small.pt --half --calibrate --data D`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ferkit.cli.data import add_ferplus_option
from ferkit.cli.vocabulary import MODEL_HELP, add_json_option, say_for
from ferkit.errors import ConfigError
from ferkit.outputs import refuse_existing


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "soup",
        help="average the weights of fine-tunes of one model into one (a model soup)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("members", nargs="+", metavar="MODEL", help=MODEL_HELP.split("; default")[0])
    p.add_argument("--out", type=Path, required=True, help="the soup: a .pt checkpoint")
    p.add_argument(
        "--data",
        action="append",
        help="labelled faces to score on (validation split); repeat for several, averaged",
    )
    add_ferplus_option(p, modes=False)
    p.add_argument("--greedy", action="store_true", help="keep only members that help (--data)")
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    add_json_option(p, "the members' and the soup's scores")
    p.set_defaults(func=cmd_soup)


def cmd_soup(args: argparse.Namespace) -> int:
    from ferkit.cli.export import _save_pt, output_format
    from ferkit.inference.model_io import load_torch_model, resolve_model
    from ferkit.models.soup import average_models, greedy_soup

    if output_format(args.out, None) != "pt":
        raise ConfigError(f"{args.out}: a soup is a ferkit checkpoint; name it .pt")
    if len(args.members) < 2:
        raise ConfigError("a soup needs at least two models to average")
    if len(set(args.members)) != len(args.members):
        raise ConfigError("a model is named twice; a weighted soup is not supported")
    if args.greedy and not args.data:
        raise ConfigError("--greedy needs --data: the validation faces that decide")
    if args.ferplus and not args.data:
        raise ConfigError("--ferplus labels the faces of --data: name the FER-2013 CSV with --data")
    refuse_existing(
        [args.out],
        error=ConfigError,
        hint="pass --overwrite to replace",
        overwrite=args.overwrite,
        inputs=[resolve_model(m) for m in args.members],
    )
    say = say_for(args)  # stdout: the JSON, with --json
    members = [load_torch_model(m) for m in args.members]
    score = _scorer(args.data, members[0][1], args.ferplus) if args.data else None

    scores = {}
    if score is not None:
        for name, (model, _) in zip(args.members, members, strict=True):
            scores[name] = score(model)
            say(f"{_figures(scores[name])}  {name}")
    trace, soup_score = None, None
    if args.greedy:  # the members' scores are known: score only the soups
        alone = [scores[name] for name in args.members]
        model, meta, trace = greedy_soup(members, score, args.members, alone)
        for step in trace[1:]:
            verdict = "kept" if step["kept"] else "dropped"
            say(f"{_figures(step['score'])}  soup of {' + '.join(step['tried'])}: {verdict}")
        soup_score = [step["score"] for step in trace if step["kept"]][-1]
    else:
        model, meta = average_models(members, args.members)
        if score is not None:
            soup_score = score(model)
            meta["metrics"] = {"score": float(soup_score)}
    kept = meta["extra"]["soup"]["members"]
    if soup_score is not None:
        meta["extra"]["soup"].update(data=args.data, ferplus=args.ferplus)
        say(f"{_figures(soup_score)}  the soup of {' + '.join(kept)}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    _save_pt(model, meta, args.out)
    say(f"wrote {args.out}")
    if args.json:
        doc = {
            "out": str(args.out),
            "members": [
                {"model": m, "score": scores.get(m), "per_data": _parts(scores.get(m))}
                for m in args.members
            ],
            "kept": kept,
            "score": soup_score,
            "per_data": _parts(soup_score),
            "data": args.data,
            "ferplus": args.ferplus,
            "greedy": trace and [dict(step, per_data=_parts(step["score"])) for step in trace],
        }
        print(json.dumps(doc, indent=1))
    return 0


class Score(float):
    """A mean accuracy that keeps its parts: one accuracy per --data source, in order."""

    parts: tuple[float, ...] = ()

    def __new__(cls, parts: list[float]) -> Score:
        import numpy as np

        score = super().__new__(cls, float(np.mean(parts)))
        score.parts = tuple(parts)
        return score


def _parts(score: float | None) -> list[float] | None:
    return list(score.parts) if isinstance(score, Score) else None


def _figures(score: float) -> str:
    """'70.84%' for one source; '70.84% (71.33%, 70.35%)', the mean first, for several."""
    parts = getattr(score, "parts", ())
    detail = f" ({', '.join(f'{p:.2%}' for p in parts)})" if len(parts) > 1 else ""
    return f"{score:7.2%}{detail}"


def _scorer(data: list[str], meta: dict, ferplus: str | None = None):
    """score(model) -> a Score: the mean accuracy over the validation splits of the `data`
    sources (FER+ majority labels of a FER-2013 CSV with `ferplus`), each source's kept."""
    import numpy as np

    from ferkit.data import load_dataset
    from ferkit.evaluation.evaluate import check_labels
    from ferkit.evaluation.predict import predict_proba
    from ferkit.models.input_spec import InputSpec

    spec = InputSpec.from_meta(meta)
    sets = []
    for source in data:
        dataset = load_dataset(
            source, image_size=spec.input_size[0], ferplus=ferplus, ferplus_labels="majority"
        )
        check_labels(meta, "the soup's members", dataset.labels)
        split = dataset.splits[dataset.scoring_split()]
        sets.append((split.images, np.asarray(split.labels)))

    def score(model) -> Score:
        return Score(
            [
                float((predict_proba(model, faces, spec=spec).argmax(1) == labels).mean())
                for faces, labels in sets
            ]
        )

    return score
