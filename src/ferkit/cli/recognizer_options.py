"""Command-line options that build an `EmotionRecognizer`, shared by `predict`, `webcam`,
`serve` (model, backend, detector, TTA, batch size) and `data crop` (the detector alone)."""

from __future__ import annotations

import argparse

from ferkit.cli.vocabulary import add_model_option, add_tta_option
from ferkit.detection.boxes import DEFAULT_MIN_FACE_SCORE, FaceFilter
from ferkit.detection.registry import DEFAULT_DETECTOR, DETECTORS, FACE_DETECTORS, make_detector


def add_model_options(p: argparse.ArgumentParser) -> None:
    """--model/--backend/--detector/--tta/--batch-size: the recognizer a command runs."""
    add_model_option(p)
    p.add_argument(
        "--backend", choices=("torch", "onnx"), help="default: onnx for .onnx, else torch"
    )
    add_detector_options(p)
    add_tta_option(p)
    p.add_argument("--batch-size", type=int, default=64, help="faces per forward pass (64)")


def add_detector_options(p: argparse.ArgumentParser, *, crops: bool = True) -> None:
    """--detector/--detector-model/--detect-side and the face filter (--min-face-score,
    --min-face-size, --max-faces); `crops`: offer "none" (inputs are crops)."""
    names = tuple(DETECTORS) if crops else FACE_DETECTORS
    none = "; none = inputs are face crops" if crops else ""
    p.add_argument(
        "--detector",
        choices=names,
        default=DEFAULT_DETECTOR,
        help=f"face detector (default {DEFAULT_DETECTOR}{none})",
    )
    p.add_argument(
        "--detector-model",
        metavar="PATH",
        help="a YuNet .onnx (default: the one shipped with ferkit) or a Haar cascade XML",
    )
    p.add_argument(
        "--detect-side",
        type=int,
        metavar="PX",
        help="shrink images to PX on the longer side for detection (haar 320, yunet "
        "640); raise it to find small faces in group photos",
    )
    p.add_argument(
        "--min-face-score",
        type=float,
        default=DEFAULT_MIN_FACE_SCORE,
        metavar="S",
        help=f"drop faces the detector scores below S, 0..1 ({DEFAULT_MIN_FACE_SCORE}; haar "
        "gives no scores)",
    )
    p.add_argument(
        "--min-face-size",
        type=float,
        default=0,
        metavar="PX",
        help="drop faces smaller than PX pixels (shorter side, in the image's own pixels)",
    )
    p.add_argument(
        "--max-faces", type=int, metavar="N", help="keep the N largest faces per image (all)"
    )


def face_filter_from_args(args: argparse.Namespace) -> FaceFilter:
    """The FaceFilter of --min-face-score/--min-face-size/--max-faces."""
    return FaceFilter(args.min_face_score, args.min_face_size, args.max_faces)


def detector_from_args(args: argparse.Namespace):
    """The detector the options of `add_detector_options` name (None for "none")."""
    from ferkit.detection.detectors import check_max_side

    name = "none" if getattr(args, "no_detect", False) else args.detector
    check_max_side(args.detect_side, "--detect-side")
    options = {} if args.detect_side is None else {"max_side": args.detect_side}
    return make_detector(
        name, model_path=args.detector_model, min_score=args.min_face_score, **options
    )


def make_recognizer(args: argparse.Namespace):
    """An EmotionRecognizer from the shared model options."""
    from ferkit.inference.recognizer import EmotionRecognizer

    detector = detector_from_args(args)
    ff = face_filter_from_args(args)
    return EmotionRecognizer(
        args.model,
        backend=args.backend,
        detector=detector,
        tta=args.tta,
        batch_size=args.batch_size,
        min_face_score=ff.min_face_score,
        min_face_size=ff.min_face_size,
        max_faces=ff.max_faces,
    )
