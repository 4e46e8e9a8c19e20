"""Command-line options that build an `EmotionRecognizer`, shared by `predict`, `webcam`,
`serve` (model, backend, detector, TTA, batch size) and `data crop` (the detector alone)."""

from __future__ import annotations

import argparse

from ferkit.cli.vocabulary import add_model_option, add_tta_option
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
    """--detector/--detector-model/--detect-side; `crops`: offer "none" (inputs are crops)."""
    names = tuple(DETECTORS) if crops else FACE_DETECTORS
    none = "; none = inputs are face crops" if crops else ""
    p.add_argument("--detector", choices=names, default=DEFAULT_DETECTOR,
                   help=f"face detector (default {DEFAULT_DETECTOR}{none})")  # fmt: skip
    p.add_argument("--detector-model", help="YuNet .onnx file, or a Haar cascade XML")
    p.add_argument("--detect-side", type=int, metavar="PX",
                   help="shrink images to PX on the longer side for detection (haar 320, yunet "
                   "640); raise it to find small faces in group photos")  # fmt: skip


def detector_from_args(args: argparse.Namespace):
    """The detector the options of `add_detector_options` name (None for "none")."""
    name = "none" if getattr(args, "no_detect", False) else args.detector
    detector = make_detector(name, model_path=args.detector_model)
    if args.detect_side and detector is not None:
        detector.max_side = args.detect_side
    return detector


def make_recognizer(args: argparse.Namespace):
    """An EmotionRecognizer from the shared model options."""
    from ferkit.inference.recognizer import EmotionRecognizer

    detector = detector_from_args(args)
    return EmotionRecognizer(args.model, backend=args.backend, detector=detector, tta=args.tta,
                             batch_size=args.batch_size)  # fmt: skip
