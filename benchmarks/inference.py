"""Inference speed on this CPU, per backend, next to the `fer` package when it is installed.

    .venv/bin/python benchmarks/inference.py [--model CKPT] [--arch simple_cnn] [--json]
        [--fer-python /tmp/fervenv/bin/python] [--data ../shared/data/fer2013]

Measures (goals from issue 5 in brackets):
- classifier-only faces/s at batch 64, per backend: torch fp32, torch bf16, onnx, onnx int8
  (>= 1,500 faces/s for the fastest);
- median end-to-end time for one 640x480 photo with one face, file to results (<= 25 ms);
- video frames/s at 640x480, every frame analysed, with and without writing an annotated mp4
  (>= 30 frames/s);
- accuracy on the validation split of --data (FER-2013 PublicTest), ours and fer's.

Without --model the shipped model is used; where none is shipped, a random-weight model of
--arch (which the output says: its accuracy is chance). The `fer` package runs in its own
interpreter (--fer-python, or $FER_PYTHON), since it needs TensorFlow and older setuptools;
where there is none, its column says why it was skipped.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PHOTO = ROOT / "examples" / "astronaut.png"
DATA = (ROOT / ".." / "shared" / "data" / "fer2013").resolve()
FER_PYTHON = os.environ.get("FER_PYTHON", "/tmp/fervenv/bin/python")
THREADS: int | None = None  # --threads: cores each backend may use (None: all)


def photo_640x480() -> np.ndarray:
    """A 640x480 BGR scene with the example photo's face, about 120 pixels wide."""
    img = cv2.imread(str(PHOTO))
    canvas = np.full((480, 640, 3), 120, np.uint8)
    canvas[:, 80:560] = cv2.resize(img, (480, 480), interpolation=cv2.INTER_AREA)
    return canvas


def rate(fn, items: int, *, seconds: float = 3.0, warmup: int = 3) -> float:
    """items/s of fn(), run repeatedly for about `seconds` after a warm-up."""
    for _ in range(warmup):
        fn()
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        fn()
        n += 1
    return n * items / (time.perf_counter() - start)


def median_ms(fn, runs: int = 60, warmup: int = 5) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1000 * statistics.median(times)


def build_model(args, tmp: Path) -> tuple[str, str]:
    """(checkpoint path, description) to benchmark."""
    from ferkit.errors import CheckpointError
    from ferkit.inference.model_io import default_checkpoint

    if args.model:
        return args.model, f"checkpoint {args.model}"
    try:
        return str(default_checkpoint()), "the shipped model (flagship.pt)"
    except CheckpointError:
        pass
    import torch

    from ferkit.models import create_model, get_model_spec, save_checkpoint

    torch.manual_seed(0)
    spec = get_model_spec(args.arch)
    path = tmp / f"{args.arch}.pt"
    save_checkpoint(
        path,
        create_model(args.arch),
        input_size=spec.input_size,
        mean=spec.mean,
        std=spec.std,
        in_channels=spec.in_channels,
    )
    return str(path), f"{args.arch} with RANDOM weights (no model shipped yet)"


def bench_classifier(ckpt: str, tmp: Path, faces: np.ndarray) -> dict:
    """faces/s at batch 64 for each backend, with bf16 and int8 agreement against fp32."""
    from ferkit.inference import EmotionRecognizer
    from ferkit.inference.export import export_onnx, quantize_int8
    from ferkit.inference.model_io import load_torch_model

    batch = faces[:64]
    model, meta = load_torch_model(ckpt)
    onnx32 = export_onnx(model, meta, tmp / "m.onnx")
    spread = faces[:: max(1, len(faces) // 256)][:256]  # every class, not the first folder
    calib = EmotionRecognizer(ckpt, detector=None)._input(spread).numpy()
    onnx8 = quantize_int8(onnx32, tmp / "m.int8.onnx", calibration=calib)
    recs = {
        "torch": EmotionRecognizer(ckpt, detector=None, bf16=False),
        "torch-bf16": EmotionRecognizer(ckpt, detector=None, bf16=True),
        "onnx": EmotionRecognizer(onnx32, detector=None, threads=THREADS),
        "onnx-int8": EmotionRecognizer(onnx8, detector=None, threads=THREADS),
    }
    ref = recs["torch"].classify(faces)
    out = {}
    for name, rec in recs.items():
        probs = rec.classify(faces)
        out[name] = {
            "faces_per_s": round(rate(lambda r=rec: r.classify(batch), len(batch))),
            "max_prob_diff_vs_fp32": float(np.abs(probs - ref).max()),
            "same_label_as_fp32": float((probs.argmax(1) == ref.argmax(1)).mean()),
        }
    return out


def bench_photo(ckpt: str, backend: str, tmp: Path) -> dict:
    from ferkit.inference import EmotionRecognizer

    rec = EmotionRecognizer(ckpt, backend=backend, threads=THREADS, workers=THREADS)
    scene = photo_640x480()
    path = tmp / "photo.jpg"
    cv2.imwrite(str(path), scene)
    n_faces = len(rec.predict(path))
    return {
        "faces_found": n_faces,
        "file_ms": round(median_ms(lambda: rec.predict(path)), 2),
        "array_ms": round(median_ms(lambda: rec.predict(scene)), 2),
        "detect_ms": round(median_ms(lambda: rec.detector.detect(rec.load(scene).gray)), 2),
    }


def bench_video(ckpt: str, backend: str, tmp: Path, frames: int = 150) -> dict:
    from ferkit.inference import EmotionRecognizer
    from ferkit.inference.video import process_video

    clip = tmp / "clip.mp4"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 30, (640, 480))
    scene = photo_640x480()
    for i in range(frames):
        writer.write(np.roll(scene, 2 * (i % 40) - 40, axis=1))
    writer.release()
    rec = EmotionRecognizer(ckpt, backend=backend, threads=THREADS, workers=THREADS)
    plain = process_video(rec, clip)
    annotated = process_video(rec, clip, annotate_to=tmp / "out.mp4", csv_to=tmp / "t.csv")
    return {
        "frames": plain.frames,
        "faces": plain.faces,
        "fps": round(plain.frames / plain.seconds, 1),
        "fps_annotated_mp4_and_csv": round(annotated.frames / annotated.seconds, 1),
    }


def our_accuracy(ckpt: str, faces: np.ndarray, labels: np.ndarray) -> float:
    from ferkit.inference import EmotionRecognizer

    probs = EmotionRecognizer(ckpt, backend="onnx", detector=None).classify(faces)
    return float((probs.argmax(1) == labels).mean())


FER_SCRIPT = r"""
import json, statistics, sys, time, logging, os
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np, cv2
from fer.fer import FER
logging.getLogger("fer").setLevel(logging.ERROR)
faces_path, labels_path, photo_path = sys.argv[1:4]
det = FER()
faces = np.load(faces_path); labels = np.load(labels_path)
def prep(f):
    x = np.stack([cv2.resize(a, (64, 64)) for a in f]).astype("float32") / 255.0
    return (x - 0.5) * 2.0  # fer's default TFLite path adds the channel axis itself
probs = np.concatenate([np.asarray(det._classify_emotions(prep(faces[i:i + 256])))
                        for i in range(0, len(faces), 256)])
acc = float((probs.argmax(1) == labels).mean())
batch = prep(faces[:64])
for _ in range(3): det._classify_emotions(batch)
n, t0 = 0, time.perf_counter()
while time.perf_counter() - t0 < 3: det._classify_emotions(batch); n += 1
fps = n * 64 / (time.perf_counter() - t0)
img = cv2.imread(photo_path)
for _ in range(5): found = det.detect_emotions(img)
ts = []
for _ in range(40):
    t = time.perf_counter(); det.detect_emotions(img); ts.append(time.perf_counter() - t)
print(json.dumps({"faces_per_s": round(fps), "photo_ms": round(1000 * statistics.median(ts), 2),
                  "faces_found": len(found), "accuracy": acc, "n": int(len(labels))}))
"""


def bench_fer(python: str, tmp: Path, faces, labels) -> dict:
    """The `fer` package's figures, run in its own interpreter, or why they are missing."""
    if not Path(python).is_file():
        return {
            "skipped": f"no interpreter with `fer` at {python} (set --fer-python); install "
            "with: python -m venv /tmp/fervenv && /tmp/fervenv/bin/pip install "
            "'setuptools<80' 'opencv-python-headless<5' fer"
        }
    np.save(tmp / "faces.npy", faces)
    np.save(tmp / "labels.npy", labels)
    cv2.imwrite(str(tmp / "photo.png"), photo_640x480())
    cmd = [
        python,
        "-c",
        FER_SCRIPT,
        str(tmp / "faces.npy"),
        str(tmp / "labels.npy"),
        str(tmp / "photo.png"),
    ]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    except subprocess.TimeoutExpired:
        return {"skipped": "fer took over 15 minutes"}
    if done.returncode != 0:
        return {"skipped": f"fer failed: {done.stderr.strip().splitlines()[-1:]}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="checkpoint or run folder (default: shipped model)")
    parser.add_argument("--arch", default="flagship", help="random-weight arch if none shipped")
    parser.add_argument("--data", default=str(DATA), help="FER-2013 folder for accuracy")
    parser.add_argument("--fer-python", default=FER_PYTHON, help="interpreter with `fer` installed")
    parser.add_argument("--no-fer", action="store_true", help="skip the fer comparison")
    parser.add_argument("--json", action="store_true", help="print JSON only")
    parser.add_argument(
        "--threads",
        type=int,
        help="cores per backend (default: all); 1 gives "
        "steadier figures on a machine shared with other jobs",
    )
    args = parser.parse_args()
    import torch

    global THREADS
    if args.threads:
        THREADS = args.threads
        # A benchmark may set global state; the library never does.
        torch.set_num_threads(args.threads)
        cv2.setNumThreads(args.threads)

    from ferkit.data import validation_faces

    load_at_start = os.getloadavg()[0]
    result: dict = {
        "machine": f"{platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads"
    }
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        ckpt, what = build_model(args, tmp)
        result["model"] = what
        if Path(args.data).is_dir():
            faces, labels = validation_faces(args.data)
        else:
            rng = np.random.default_rng(0)
            faces, labels = rng.integers(0, 256, (512, 48, 48), dtype=np.uint8), None
        result["classifier_batch64"] = bench_classifier(ckpt, tmp, faces)
        result["photo_640x480"] = {b: bench_photo(ckpt, b, tmp) for b in ("torch", "onnx")}
        result["video_640x480"] = {b: bench_video(ckpt, b, tmp) for b in ("torch", "onnx")}
        if labels is not None:
            result["accuracy_val"] = {"ferkit": our_accuracy(ckpt, faces, labels), "n": len(labels)}
        if not args.no_fer and labels is not None:
            result["fer"] = bench_fer(args.fer_python, tmp, faces, labels)
    # Other processes skew every figure here (torch's intra-op threads suffer most): say so.
    result["load_average_1min_at_start"] = round(load_at_start, 2)
    result["load_average_1min_at_end"] = round(os.getloadavg()[0], 2)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print_table(result)


def print_table(r: dict) -> None:
    print(
        f"machine: {r['machine']} (1-min load average "
        f"{r['load_average_1min_at_start']} at the start, {r['load_average_1min_at_end']} at the end)\nmodel:   {r['model']}\n"
    )
    print("classifier only, batch 64 (goal >= 1,500 faces/s):")
    for name, v in r["classifier_batch64"].items():
        print(
            f"  {name:<11} {v['faces_per_s']:>7,} faces/s   max |p - fp32| {v['max_prob_diff_vs_fp32']:.1e}"
            f"   same label {v['same_label_as_fp32']:.1%}"
        )
    fer = r.get("fer", {})
    if "faces_per_s" in fer:
        print(f"  {'fer':<11} {fer['faces_per_s']:>7,} faces/s")
    print("\none 640x480 photo with one face, median (goal <= 25 ms):")
    for name, v in r["photo_640x480"].items():
        print(
            f"  {name:<11} {v['file_ms']:6.1f} ms from a JPEG file, {v['array_ms']:6.1f} ms from an "
            f"array (detection {v['detect_ms']:.1f} ms; {v['faces_found']} face found)"
        )
    if "photo_ms" in fer:
        print(
            f"  {'fer':<11} {fer['photo_ms']:6.1f} ms from an array ({fer['faces_found']} face found)"
        )
    print("\nvideo 640x480, every frame (goal >= 30 frames/s):")
    for name, v in r["video_640x480"].items():
        print(
            f"  {name:<11} {v['fps']:6.1f} frames/s; {v['fps_annotated_mp4_and_csv']:6.1f} writing "
            f"an annotated mp4 + CSV ({v['faces']} faces in {v['frames']} frames)"
        )
    if "accuracy_val" in r:
        a = r["accuracy_val"]
        line = f"\naccuracy on {a['n']} validation faces: ferkit {a['ferkit']:.2%}"
        if "accuracy" in fer:
            line += f", fer {fer['accuracy']:.2%}"
        print(line)
    if "skipped" in fer:
        print(f"\nfer: skipped: {fer['skipped']}")


if __name__ == "__main__":
    sys.exit(main())
