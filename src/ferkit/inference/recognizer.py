"""`EmotionRecognizer`: images in, faces with emotion probabilities out.

    from ferkit import EmotionRecognizer
    rec = EmotionRecognizer("runs/exp1")            # or EmotionRecognizer() for the shipped model
    faces = rec.predict("photo.jpg")                # [Face(box=(x, y, w, h), label, scores, ...)]
    [f.to_dict() for f in faces]                    # [{"box": [...], "emotions": {...}, ...}]
    rec.predict(["a.jpg", "b.png"])                 # one list of faces per image
    rec.predict_faces(crops)                        # faces already cropped: no detection

Every face of every image given in one call goes through the model in batches of
`batch_size`, never one forward pass per face. Input size, normalisation, labels and
temperature come from the checkpoint, never from guesses here.
"""

from __future__ import annotations

import inspect
import logging
import os
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ferkit.detection.boxes import (
    DEFAULT_MIN_FACE_SCORE,
    Detection,
    FaceFilter,
    clip_box,
)
from ferkit.detection.crops import Framing, crop_faces
from ferkit.detection.detectors import Detector, FixedBoxes, find_faces
from ferkit.detection.frames import DEFAULT_MAX_SIDE, Frame, load_frame
from ferkit.detection.registry import DEFAULT_DETECTOR, make_detector
from ferkit.errors import ConfigError
from ferkit.imaging import ColorOrder, resize_gray
from ferkit.inference import model_io
from ferkit.inference.backends import OnnxRunner, Runner, TorchRunner, check_backend
from ferkit.inference.results import Face, Result
from ferkit.models.input_spec import InputSpec
from ferkit.tta import TTA_VIEWS, check_tta, tta_mean

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _InMemory:
    """A model already in memory with its checkpoint meta (`EmotionRecognizer.from_model`)."""

    module: torch.nn.Module
    meta: dict


class EmotionRecognizer:
    """Detects faces and classifies their expression with a ferkit checkpoint.

    Args:
        model: any kind `model_io.resolve_model` takes: a run folder, a .pt checkpoint, a
            Lightning .ckpt, an exported .onnx file, a shipped model's name ("flagship"), or
            None for the model shipped with ferkit.
        backend: "torch" or "onnx" (ONNX Runtime; a checkpoint is exported in memory). None:
            "onnx" for .onnx files, else "torch".
        detector: a name in `ferkit.detection.DETECTORS`: "yunet" (default, shipped with
            ferkit), "haar", "none" (every image is one face); or any object with
            `detect(image) -> [Detection or (x, y, w, h), ...]` (see `ferkit.detection`).
        tta: test-time augmentation, averaging the probabilities of several views of each
            face: "flip" (or True) the face and its mirror image, 2x the compute; "tencrop"
            four corner crops and a centre crop at 7/8 of the side and their mirror images,
            10x the compute (the most accurate; see docs/MODEL_CARD.md); "none" (or False).
        temperature: divide logits by this before the softmax; None uses the checkpoint's
            calibrated temperature (1.0 if it has none).
        batch_size: faces per forward pass.
        margin: crop margin around detected boxes (a centred square, this fraction of the
            box's longer side added on every side); None: the checkpoint's framing for the
            detector, else the detector's framing fitted on FER-2013
            (`ferkit.detection.crops.framing_for`). Set `recognizer.framing` to any `Framing`.
        max_side: longer side of the working copy of each image (huge images are shrunk).
        min_face_score: drop faces the detector scores below this, 0..1 (Haar gives no
            scores); see `ferkit.detection.FaceFilter`.
        min_face_size: drop faces whose shorter side is below this many input pixels.
        max_faces: keep at most this many faces per image, the largest (None: all).
        bf16: bfloat16 autocast for the torch backend; None: where the CPU has native bf16
            (see `backends.TorchRunner`). False gives exact fp32 results.
        threads: ONNX Runtime intra-op threads (None: all cores).
        workers: threads detecting faces in several images at once (None: one per core).
    """

    def __init__(
        self,
        model: str | Path | _InMemory | None = None,
        *,
        backend: str | None = None,
        detector: str | Detector | None = DEFAULT_DETECTOR,
        tta: bool | str = False,
        temperature: float | None = None,
        batch_size: int = 64,
        margin: float | None = None,
        max_side: int | None = DEFAULT_MAX_SIDE,
        min_face_score: float = DEFAULT_MIN_FACE_SCORE,
        min_face_size: float = 0,
        max_faces: int | None = None,
        bf16: bool | None = None,
        threads: int | None = None,
        workers: int | None = None,
    ) -> None:
        if isinstance(model, _InMemory):  # from_model: a module and its meta, not a file
            path, source, is_onnx = None, "<model>", False
        else:
            path = model_io.resolve_model(model)
            source, is_onnx = str(path), model_io.is_onnx(path)
        backend = check_backend(backend or ("onnx" if is_onnx else "torch"))
        if is_onnx and backend != "onnx":
            raise ConfigError(f"{path} is an ONNX model; use backend='onnx' (or leave it unset)")
        if is_onnx:
            meta = model_io.read_onnx_meta(path)
            runner: Runner = OnnxRunner(path, threads=threads)
        else:
            if isinstance(model, _InMemory):
                torch_model, meta = model.module, dict(model.meta)
            else:
                torch_model, meta = model_io.load_torch_model(path)
            if backend == "onnx":
                from ferkit.inference.export import onnx_bytes

                runner = OnnxRunner(onnx_bytes(torch_model, meta), threads=threads)
            else:
                runner = TorchRunner(torch_model, bf16=bf16)
        self.source = source
        if batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1 (got {batch_size})")
        self.runner = runner
        self.meta = meta
        self.labels: tuple[str, ...] = tuple(meta["labels"])
        self.spec = InputSpec.from_meta(meta)  # what the model takes, from its checkpoint
        self.input_size: tuple[int, int] = self.spec.input_size
        self.face_filter = FaceFilter(min_face_score, min_face_size, max_faces)
        self.detector = make_detector(detector, min_score=min_face_score)
        self.tta = check_tta(tta)
        t = temperature if temperature is not None else meta.get("temperature")
        self.temperature = float(t) if t else 1.0
        if self.temperature <= 0:
            raise ConfigError(f"temperature must be positive (got {self.temperature})")
        self.batch_size = batch_size
        # How boxes become crops: margin= if given, else the checkpoint's framing for this
        # detector, else the detector's framing fitted on FER-2013 (detection.crops.framing_for).
        self.framing = (
            Framing.from_margin(margin)
            if margin is not None
            else self.spec.framing_for(self.detector)
        )
        self.max_side = max_side
        self.workers = max(1, workers or os.cpu_count() or 1)
        self._pool: ThreadPoolExecutor | None = None

    @classmethod
    def from_model(cls, model: torch.nn.Module, meta: dict, **options) -> EmotionRecognizer:
        """A recognizer around an in-memory model and its checkpoint meta.

        `options` are the constructor's keyword arguments (backend "torch" unless given).

        Raises:
            ConfigError: an option the constructor does not take, with the valid ones.
        """
        params = inspect.signature(cls).parameters
        valid = [name for name, p in params.items() if p.kind is inspect.Parameter.KEYWORD_ONLY]
        unknown = sorted(set(options) - set(valid))
        if unknown:
            raise ConfigError(
                f"unknown option(s) {', '.join(unknown)}; valid: {', '.join(sorted(valid))}"
            )
        return cls(_InMemory(model, meta), **options)

    @property
    def backend(self) -> str:
        """The runner in use: "torch", "torch-bf16" or "onnx"."""
        return self.runner.name

    def __repr__(self) -> str:
        return (
            f"EmotionRecognizer({self.source!r}, backend={self.backend!r}, "
            f"arch={self.meta.get('arch')!r}, input_size={self.input_size}, tta={self.tta})"
        )

    # -- the batched core -------------------------------------------------------------------

    def logits(self, crops: np.ndarray) -> np.ndarray:
        """Raw logits (N, classes) of uint8 face crops (N, H, W), in batches, without
        temperature."""
        crops = np.asarray(crops)
        out = np.empty((len(crops), len(self.labels)), np.float32)
        for i in range(0, len(crops), self.batch_size):
            x = self._input(_as_tensor(crops[i : i + self.batch_size]))
            out[i : i + len(x)] = self.runner(x).numpy()
        return out

    def classify(self, crops: np.ndarray) -> np.ndarray:
        """Probabilities (N, classes) for uint8 gray face crops (N, H, W) of any size.

        With TTA each batch holds all views of its crops side by side, so the model still
        runs about `batch_size` inputs per pass.
        """
        crops = np.asarray(crops)
        if crops.ndim != 3:
            raise ValueError(f"expected gray face crops (N, H, W), got shape {crops.shape}")
        out = np.empty((len(crops), len(self.labels)), np.float32)
        views = TTA_VIEWS[self.tta]
        step = max(1, self.batch_size // views)
        for i in range(0, len(crops), step):
            chunk = _as_tensor(crops[i : i + step]).unsqueeze(1).float() / 255
            probs = tta_mean(self._probs, chunk, self.tta)
            out[i : i + len(chunk)] = probs.numpy()
        return out

    def _probs(self, crops: torch.Tensor) -> torch.Tensor:
        """Calibrated probabilities for gray crops (N, 1, H, W) in 0..1."""
        return torch.softmax(self.runner(self._input(crops)) / self.temperature, dim=1)

    def _input(self, crops: torch.Tensor) -> torch.Tensor:
        return self.spec.to_input(crops)

    def _faces(self, probs: np.ndarray, found: Sequence[Detection]) -> list[Face]:
        out = []
        for p, d in zip(probs, found, strict=True):
            k = int(p.argmax())
            scores = {name: float(v) for name, v in zip(self.labels, p, strict=True)}
            label, confidence = self.labels[k], float(p[k])
            out.append(Face(d.box, label, scores, confidence, score=d.score, landmarks=d.landmarks))
        return out

    # -- public entry points ----------------------------------------------------------------

    def load(self, image, *, color: ColorOrder = "bgr") -> Frame:
        """Decode `image` (path, file bytes, PIL image, array) into a Frame; raises ImageError
        naming it.

        Loading separately lets a caller report a bad file and go on with the others, then
        pass the Frames to `predict` together.
        """
        return load_frame(image, color=color, max_side=self.max_side)

    def detect(self, frame: Frame, face_filter: FaceFilter | None = None) -> list[Detection]:
        """Faces in a Frame's working pixels, largest first, as `face_filter` (default: the
        recognizer's) selects them; the whole frame if there is no detector."""
        if self.detector is None:
            h, w = frame.gray.shape[:2]
            return [Detection((0, 0, w, h))]
        return find_faces(self.detector, frame, face_filter or self.face_filter)

    def crop(self, frame: Frame, detections: Sequence[Detection]) -> np.ndarray:
        """The model's crops of a Frame's detections, framed as `self.framing` says: uint8
        (N, H, W) at the model's input size. What `predict` classifies."""
        return crop_faces(frame.gray, [d.box for d in detections], self.input_size, self.framing)

    def predict(
        self, images, *, color: ColorOrder = "bgr", boxes=None, face_filter=None
    ) -> Result | list[Result]:
        """Faces and their emotions in one image, or in each image of a list.

        Args:
            images: a path, image file bytes, PIL image, numpy array or Frame; or a list/tuple
                of them.
            color: channel order of colour numpy arrays: "bgr" (OpenCV, the default), "rgb"
                or "gray".
            boxes: faces already located, (x, y, w, h) in input pixels, instead of detection;
                for a list of images, one list of boxes (or None) per image.
            face_filter: a `ferkit.detection.FaceFilter` for this call (minimum face score
                and size, maximum number of faces) instead of the recognizer's.

        Returns:
            A `Result` (`ferkit.inference.results`): the image's faces, largest first (none
            when there is no face), its size, timings, and `to_dict`/`rows`/`plot`/`save`. A
            Result is a sequence of its Faces. For a list of images, a list of Results.

        Raises:
            ImageError: an image cannot be read (its name is in the message).
        """
        single = not isinstance(images, list | tuple)
        batch = [images] if single else list(images)
        per_image_boxes = [boxes] if single else (boxes or [None] * len(batch))
        if len(per_image_boxes) != len(batch):
            raise ConfigError(f"boxes: {len(per_image_boxes)} lists for {len(batch)} images")
        if not batch:
            return []
        frames, decode_ms = [], []
        for im in batch:
            t0 = time.perf_counter()
            frames.append(self.load(im, color=color))
            decode_ms.append(_ms_since(t0))
        found, detect_ms = self._locate(frames, per_image_boxes, face_filter)
        crops = [
            _whole(f, self.input_size)
            if given is None and self.detector is None
            else self.crop(f, bx)
            for f, bx, given in zip(frames, found, per_image_boxes, strict=True)
        ]
        t0 = time.perf_counter()
        probs = self.classify(np.concatenate(crops))
        per_face_ms = _ms_since(t0) / max(1, len(probs))  # the batch's time, shared by faces
        results, start = [], 0
        for i, (f, bx) in enumerate(zip(frames, found, strict=True)):
            p = probs[start : start + len(bx)]
            start += len(bx)
            timings = {"decode": decode_ms[i], "detect": detect_ms[i]}
            timings["classify"] = per_face_ms * len(bx)
            faces = self._faces(p, [f.detection_to_input(d) for d in bx])
            result = Result(f.source, f.size, faces, self.labels, timings, f.image, f.scale)
            results.append(result)
        return results[0] if single else results

    def top_emotion(self, image, *, color: ColorOrder = "bgr") -> tuple[str, float] | None:
        """(label, probability) of the largest face in one image, or None when there is none.

        Never raises for an image without a face; an unreadable image raises ImageError.
        """
        return self.predict(image, color=color).top_emotion()

    def predict_video(self, path: str | Path, **options):
        """Analyse a video file: `ferkit.inference.video.process_video(self, path, **options)`.

        Options: every, smooth, annotate_to, csv_to, progress, tracker (see there). Returns a
        `VideoAnalysis`: `to_pandas()`/`rows()`/`to_csv()` give one row per person per
        analysed frame, `people()` one summary per person.
        """
        from ferkit.inference.video import process_video

        return process_video(self, path, **options)

    def predict_faces(self, crops, *, color: ColorOrder = "bgr") -> list[Face]:
        """Emotions of faces already cropped (no detection, no margin): one Face per crop.

        Args:
            crops: a list of paths / PIL images / arrays, or one uint8 array (N, H, W).
            color: channel order of colour numpy arrays.

        Returns:
            One Face per crop, in order; each box covers its whole crop.
        """
        if _is_stack(crops):
            items = list(crops)
        else:
            items = crops if isinstance(crops, list | tuple) else [crops]
        if not items:
            return []
        frames = [self.load(c, color=color) for c in items]
        probs = self.classify(np.concatenate([_whole(f, self.input_size) for f in frames]))
        return self._faces(probs, [Detection((0, 0, *f.size)) for f in frames])

    # -- helpers ----------------------------------------------------------------------------

    def _locate(
        self, frames: list[Frame], given: list, face_filter: FaceFilter | None = None
    ) -> tuple[list[list[Detection]], list[float]]:
        """Boxes per frame (the caller's, or detected, in parallel threads where safe) and the
        milliseconds detection took in each.

        OpenCV's detectors run on one core each and release the GIL, so detecting in several
        frames at once uses every core; classification is batched afterwards anyway.
        """
        todo = [i for i, b in enumerate(given) if b is None]
        out: list = [
            None if b is None else self._given_boxes(f, b)
            for f, b in zip(frames, given, strict=True)
        ]
        parallel = (
            len(todo) > 1 and getattr(self.detector, "thread_safe", False) and self.workers > 1
        )
        if parallel:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="ferkit-detect")
            detected = list(
                self._pool.map(
                    self._timed_detect, [frames[i] for i in todo], [face_filter] * len(todo)
                )
            )
        else:
            detected = [self._timed_detect(frames[i], face_filter) for i in todo]
        ms = [0.0] * len(frames)
        for i, (boxes, took) in zip(todo, detected, strict=True):
            out[i], ms[i] = boxes, took
        return out, ms

    def _timed_detect(
        self, frame: Frame, face_filter: FaceFilter | None = None
    ) -> tuple[list[Detection], float]:
        t0 = time.perf_counter()
        boxes = self.detect(frame, face_filter)
        return boxes, _ms_since(t0)

    def _given_boxes(self, frame: Frame, boxes: Sequence[Sequence[float]]) -> list[Detection]:
        """Caller's boxes (input pixels) -> working pixels, clipped, largest first."""
        h, w = frame.gray.shape[:2]
        s = frame.scale
        scaled = FixedBoxes([[v / s for v in b[:4]] for b in boxes]).boxes if boxes else []
        return [Detection(b) for b in (clip_box(b, w, h) for b in scaled) if b[2] > 0 and b[3] > 0]


def _ms_since(t0: float) -> float:
    return (time.perf_counter() - t0) * 1000


def _whole(frame: Frame, size: tuple[int, int]) -> np.ndarray:
    """A pre-cropped face: the whole frame resized to the model's input, (1, H, W)."""
    return resize_gray(frame.gray, size)[None]


def _as_tensor(crops: np.ndarray) -> torch.Tensor:
    """uint8 crops as a tensor sharing memory where it can (flipped or strided views are copied)."""
    return torch.from_numpy(np.ascontiguousarray(crops))


def _is_stack(crops) -> bool:
    """An (N, H, W) or (N, H, W, C) array of crops rather than one image."""
    return isinstance(crops, np.ndarray) and (
        crops.ndim == 4 or (crops.ndim == 3 and crops.shape[2] not in (1, 3, 4))
    )
