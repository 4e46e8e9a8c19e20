"""Shared fixtures: an isolated cache, the ../shared FER-2013 data, small data sets in the real
formats built in tmp_path, and a tiny trained run for the training, distillation and report
tests."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ferkit.cli import main
from ferkit.labels import EMOTIONS

ROOT = Path(__file__).resolve().parents[1]
SHARED_FER = ROOT / ".." / "shared" / "data" / "fer2013"
ASTRONAUT = ROOT / "examples" / "astronaut.png"  # public-domain NASA portrait (scikit-image)


def save_zoo_checkpoint(path: Path, model, name: str, **kwargs) -> Path:
    """Save `model` (built by create_model(name)) with the zoo's input spec for `name`."""
    from ferkit.models import get_model_spec, save_checkpoint

    spec = get_model_spec(name)
    return save_checkpoint(
        path,
        model,
        input_size=spec.input_size,
        mean=spec.mean,
        std=spec.std,
        in_channels=spec.in_channels,
        **kwargs,
    )


def make_checkpoint(path: Path, seed: int = 0, **kwargs) -> Path:
    """A random-weight simple_cnn checkpoint with the zoo's own preprocessing spec (and as many
    outputs as `labels`, if given)."""
    import torch

    from ferkit.models import create_model

    torch.manual_seed(seed)
    model = create_model("simple_cnn", num_classes=len(kwargs.get("labels", EMOTIONS))).eval()
    return save_zoo_checkpoint(path, model, "simple_cnn", **kwargs)


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory) -> Path:
    """One random-weight simple_cnn checkpoint for the session (tests must not depend on its
    accuracy)."""
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "simple.pt")


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory):
    """The test session's own decoded-array cache, never the user's ~/.cache/ferkit (shared
    across tests so FER-2013 is decoded once; cache tests use sources of their own)."""
    old = os.environ.get("FERKIT_CACHE")
    os.environ["FERKIT_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    yield
    if old is None:
        os.environ.pop("FERKIT_CACHE")
    else:
        os.environ["FERKIT_CACHE"] = old


@pytest.fixture(scope="session")
def shared_fer() -> Path:
    """../shared/data/fer2013 (msambare layout), or a skip saying why it is absent."""
    if not (SHARED_FER / "train").is_dir():
        pytest.skip(f"FER-2013 not found at {SHARED_FER.resolve()} (present in CI)")
    return SHARED_FER.resolve()


def train_args(
    data: Path, out: Path, *extra: str, epochs: int = 1, batch_size: int | None = 16
) -> list[str]:
    """`ferkit train` arguments for a tiny simple_cnn run; `extra` come last, so they win."""
    batch = [] if batch_size is None else ["--batch-size", str(batch_size)]
    return [
        "train",
        "--arch",
        "simple_cnn",
        "--data",
        str(data),
        "--out",
        str(out),
        "--epochs",
        str(epochs),
        *batch,
        "--no-progress",
        *extra,
    ]


def face(seed: int, size: int = 48) -> np.ndarray:
    """A deterministic uint8 'face': a smooth random pattern, so JPEG keeps it recognisable."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (6, 6), dtype=np.uint8)
    return np.asarray(Image.fromarray(small).resize((size, size), Image.BILINEAR))


def write_fer_csv(path: Path, rows: list[tuple], header=("emotion", "pixels", "Usage")) -> Path:
    """Write rows in the exact fer2013.csv format; pixel arrays become space-separated text."""
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        for row in rows:
            w.writerow(
                [" ".join(map(str, v.ravel())) if isinstance(v, np.ndarray) else v for v in row]
            )
    return path


@pytest.fixture
def fer_csv(tmp_path) -> Path:
    """A 35-row fer2013.csv: 5 per class, 3 Training + 1 PublicTest + 1 PrivateTest each."""
    usages = ["Training", "Training", "Training", "PublicTest", "PrivateTest"]
    rows = [(y, face(10 * y + i), u) for y in range(7) for i, u in enumerate(usages)]
    return write_fer_csv(tmp_path / "fer2013.csv", rows)


def write_class_folders(
    root: Path, per_class: dict[str, int], *, prefix="img", size=48, ext="jpg", seed=0
) -> Path:
    for k, (name, n) in enumerate(per_class.items()):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.fromarray(face(seed + 100 * k + i, size)).save(
                root / name / f"{prefix}_{i}.{ext}"
            )
    return root


@pytest.fixture
def msambare(tmp_path) -> Path:
    """Kaggle msambare layout: train/ (3 per class), test/ with PublicTest_ and PrivateTest_."""
    root = tmp_path / "fer2013"
    write_class_folders(root / "train", dict.fromkeys(EMOTIONS, 3), prefix="Training")
    write_class_folders(root / "test", dict.fromkeys(EMOTIONS, 2), prefix="PublicTest", seed=50)
    write_class_folders(root / "test", dict.fromkeys(EMOTIONS, 1), prefix="PrivateTest", seed=90)
    return root


# the figures `ferkit report` writes (NAME.png)
REPORT_PNGS = ("curves", "lr", "confusion_matrix", "per_class_accuracy", "predictions")


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    """msambare layout, 7 classes: 16 train + 4 PublicTest + 2 PrivateTest images each."""
    root = tmp_path_factory.mktemp("tiny") / "fer"
    write_class_folders(root / "train", dict.fromkeys(EMOTIONS, 16), prefix="Training")
    write_class_folders(root / "test", dict.fromkeys(EMOTIONS, 4), prefix="PublicTest", seed=7)
    write_class_folders(root / "test", dict.fromkeys(EMOTIONS, 2), prefix="PrivateTest", seed=9)
    return root


def tiny_args(data: Path, out: Path, *extra: str) -> list[str]:
    """`train_args` for 2 epochs: the runs of the training, distillation and report tests."""
    return train_args(data, out, *extra, epochs=2)


@pytest.fixture(scope="module")
def trained_run(tiny_data, tmp_path_factory) -> Path:
    """A 2-epoch run folder on `tiny_data`, one per test module (tests write reports into it)."""
    out = tmp_path_factory.mktemp("runs") / "run1"
    assert main(tiny_args(tiny_data, out, "--set", "mixup=0.2")) == 0
    return out
