"""`ferkit export MODEL OUT`: a deployable model, checked. OUT's suffix says the format: .onnx
(ONNX Runtime), .pt or .pth (a ferkit checkpoint); ferkit loads models by that suffix.

    ferkit export flagship model.onnx                    # the shipped model
    ferkit export runs/exp1/checkpoints/best.ckpt model.onnx
    ferkit export runs/exp1 model.onnx --int8 --data ../shared/data/fer2013
    ferkit export runs/exp1 calibrated.pt --calibrate --data ../shared/data/fer2013
    ferkit export runs/exp1 small.pt --half              # float16 weights, half the file
    ferkit export flagship-ferplus fp.pt --calibrate --data fer2013.csv --ferplus fer2013new.csv

ONNX files have a dynamic batch axis and are compared with PyTorch (max |difference| of the
logits must stay under 1e-4). `--calibrate` fits a temperature on the validation split of
`--data` and stores it with the model, reporting the calibration error before and after (with
`--half`, of the float16 weights the file holds).
`--int8` also writes OUT.int8.onnx, statically quantised with `--data` faces, and reports its
accuracy next to the fp32 model's. The model's labels must be the data's: a FER+ model (8
classes) is calibrated and checked on FER+'s majority labels, `--ferplus FILE` beside the CSV.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from ferkit.cli.data import add_ferplus_option
from ferkit.cli.vocabulary import MODEL_HELP, add_format_option, add_json_option, say_for
from ferkit.errors import CheckpointError, ConfigError
from ferkit.outputs import refuse_existing

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger(__name__)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="export a checkpoint to ONNX (fp32/int8), optionally temperature-calibrated",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("checkpoint", metavar="MODEL", help=MODEL_HELP.split("; default")[0])
    p.add_argument("out", type=Path, help="output file: .onnx, or .pt / .pth (a checkpoint)")
    add_format_option(
        p, ("onnx", "pt"), required=False, what="output format (OUT's suffix; must match it)"
    )
    p.add_argument("--data", help="labelled faces (FER-2013 folder/CSV) for --calibrate / --int8")
    add_ferplus_option(p, modes=False)
    p.add_argument("--calibrate", action="store_true", help="fit and store a temperature on --data")
    p.add_argument("--int8", action="store_true", help="also write an int8-quantised OUT.int8.onnx")
    p.add_argument("--half", action="store_true", help=".pt output: store weights as float16")
    p.add_argument("--limit", type=int, default=None, help="use at most N faces of --data")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (17)")
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    add_json_option(p, "what was written and measured (files, ONNX parity, calibration, int8)")
    p.set_defaults(func=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    from ferkit.data import validation_faces
    from ferkit.evaluation.evaluate import check_labels
    from ferkit.inference.calibration import calibrate
    from ferkit.inference.model_io import load_torch_model, resolve_model
    from ferkit.inference.recognizer import EmotionRecognizer
    from ferkit.labels import EMOTIONS, FERPLUS_EMOTIONS
    from ferkit.models.checkpoint import round_to_half
    from ferkit.models.input_spec import InputSpec
    from ferkit.outputs import json_dumps

    args.format = output_format(args.out, args.format)
    if args.half and args.format != "pt":
        raise ConfigError(
            "--half stores a .pt checkpoint's weights as float16; an ONNX export is float32 "
            "(--int8 writes a smaller, quantised one)"
        )
    if args.calibrate and not args.data:
        raise ConfigError("--calibrate needs --data: a labelled validation set to fit on")
    if args.ferplus and not args.data:
        raise ConfigError("--ferplus labels the faces of --data: name the FER-2013 CSV with --data")
    if args.int8 and args.format != "onnx":
        raise ConfigError("--int8 applies to --format onnx")
    if args.int8 and not args.data:
        # Dynamic quantisation (no data) leaves convolutions in float and runs ~5x slower
        # than fp32 on CNNs; static quantisation needs a few hundred real faces.
        raise ConfigError("--int8 needs --data: a few hundred labelled faces to calibrate on")
    int8 = _int8_path(args.out) if args.int8 else None
    refuse_existing(
        [args.out, int8],
        error=ConfigError,
        hint="pass --overwrite to replace",
        overwrite=args.overwrite,
        inputs=[resolve_model(args.checkpoint)],
    )
    model, meta = load_torch_model(args.checkpoint)
    if args.half:  # calibrate on, and report the accuracy of, the weights the file will hold
        round_to_half(model)
    faces = labels = None
    if args.data:
        check_labels(meta, args.checkpoint, FERPLUS_EMOTIONS if args.ferplus else EMOTIONS)
        size = InputSpec.from_meta(meta).input_size[0]
        faces, labels = validation_faces(
            args.data, image_size=size, limit=args.limit, ferplus=args.ferplus
        )
    say = say_for(args)  # stdout: the JSON, with --json
    doc = {"out": str(args.out), "format": args.format, "half": args.half, "data": args.data}
    if args.calibrate:
        rec = EmotionRecognizer.from_model(model, meta, detector=None, temperature=1.0, bf16=False)
        report = calibrate(rec.logits(faces), labels)
        say(report)
        meta["temperature"] = report.temperature
        meta["extra"] = {**(meta.get("extra") or {}), "calibration": report.to_dict()}
        doc["calibration"] = report.to_dict()
    if args.format == "pt":
        _save_pt(model, meta, args.out, half=args.half)
        say(f"wrote {args.out}")
    else:
        doc.update(_export_onnx(model, meta, args, faces, labels, say))
    if args.json:
        print(json_dumps(doc, indent=1))
    return 0


FORMAT_NAMES = {"onnx": "an ONNX file", "pt": "a ferkit checkpoint"}


def output_format(out: Path, given: str | None) -> str:
    """The format OUT is written in: its suffix's, which `--format`, if given, must match, so
    that the file's name says how ferkit (`model_io`, by suffix) will load it."""
    from ferkit.inference.model_io import FERKIT_SUFFIXES, is_onnx

    by_name = "onnx" if is_onnx(out) else "pt" if out.suffix.lower() in FERKIT_SUFFIXES else None
    if by_name is None:
        raise ConfigError(
            f"{out}: name the output .onnx (ONNX) or .pt (a ferkit checkpoint); "
            "ferkit tells models apart by their suffix"
        )
    if given is not None and given != by_name:
        suffix = ".onnx" if given == "onnx" else ".pt"
        raise ConfigError(
            f"{out} is named as {FORMAT_NAMES[by_name]} but --format is {given}: name it {suffix}"
        )
    return by_name


def _save_pt(model, meta: dict, out: Path, half: bool = False) -> None:
    from ferkit.models import save_checkpoint
    from ferkit.models.input_spec import InputSpec

    out.parent.mkdir(parents=True, exist_ok=True)
    spec = InputSpec.from_meta(meta)
    save_checkpoint(
        out,
        model,
        input_size=spec.input_size,
        mean=spec.mean,
        std=spec.std,
        in_channels=spec.in_channels,
        labels=tuple(meta["labels"]),
        metrics=meta.get("metrics"),
        temperature=meta.get("temperature"),
        extra=meta.get("extra"),
        overwrite=True,
        half=half,
    )


def _export_onnx(model, meta: dict, args, faces, labels, say) -> dict:
    """Write and check the ONNX file (and its int8 copy); what was measured, for --json."""
    from ferkit.inference.export import TOLERANCE, export_onnx, max_abs_diff, quantize_int8

    out = export_onnx(model, meta, args.out, opset=args.opset)
    diff = max_abs_diff(model, out, meta)
    say(f"wrote {out}: max |onnx - torch| = {diff:.2e} on batches of 1, 7 and 64")
    if diff >= TOLERANCE:
        raise CheckpointError(
            f"{out}: ONNX logits differ from PyTorch by {diff:.2e} (>= {TOLERANCE})"
        )
    measured = {"max_abs_diff": diff, "opset": args.opset}
    if not args.int8:
        return measured
    x = _inputs(meta, faces[:: max(1, len(faces) // 512)][:512])  # spread over the classes
    int8 = quantize_int8(out, _int8_path(out), calibration=x)
    say(f"wrote {int8}: int8 (static, calibrated on {len(x)} faces of --data)")
    acc32, acc8, agree = compare_accuracy(out, int8, faces, labels)
    say(
        f"accuracy on {len(labels)} faces: fp32 {acc32:.2%}, int8 {acc8:.2%} "
        f"(change {acc8 - acc32:+.2%}); same label on {agree:.2%} of faces"
    )
    measured["int8"] = {
        "out": str(int8),
        "calibration_faces": len(x),
        "n": len(labels),
        "fp32_accuracy": acc32,
        "int8_accuracy": acc8,
        "same_label": agree,
    }
    return measured


def _int8_path(out: Path) -> Path:
    return out.with_suffix(".int8.onnx")


def _inputs(meta: dict, faces: np.ndarray) -> np.ndarray:
    from ferkit.models.input_spec import InputSpec

    return InputSpec.from_meta(meta).to_input(faces).numpy()


def compare_accuracy(fp32: Path, int8: Path, faces: np.ndarray, labels: np.ndarray):
    """(fp32 accuracy, int8 accuracy, label agreement) of two ONNX models on labelled faces."""
    import numpy as np

    from ferkit.inference.recognizer import EmotionRecognizer

    preds = [EmotionRecognizer(p, detector=None).classify(faces).argmax(1) for p in (fp32, int8)]
    labels = np.asarray(labels)
    return (
        float((preds[0] == labels).mean()),
        float((preds[1] == labels).mean()),
        float((preds[0] == preds[1]).mean()),
    )
