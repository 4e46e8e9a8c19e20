"""EmotionRecognizer, detectors, crops, calibration and checkpoint resolution.

Models have random weights (fixed seed): tests check where faces are, shapes, batching and
consistency, never accuracy or confidence levels.
"""

from __future__ import annotations

import json
import os
import sys

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from conftest import ASTRONAUT, make_checkpoint
from ferkit.detection.crops import Framing, crop_faces, square_box
from ferkit.detection.registry import make_detector
from ferkit.errors import CheckpointError, ConfigError
from ferkit.imaging import ImageError
from ferkit.inference import EmotionRecognizer, Face, FixedBoxes, HaarDetector, YuNetDetector
from ferkit.inference.calibration import calibrate, expected_calibration_error, fit_temperature
from ferkit.inference.model_io import resolve_checkpoint
from ferkit.inference.tracking import iou
from ferkit.labels import EMOTIONS

ASTRONAUT_FACE = (177, 67, 93, 93)  # where the Haar cascade finds her face (x, y, w, h)


@pytest.fixture(scope="module")
def rec(checkpoint) -> EmotionRecognizer:
    return EmotionRecognizer(checkpoint)


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return cv2.imread(str(ASTRONAUT))  # BGR


def scene(photo: np.ndarray, at: tuple[int, int], size=(480, 640)) -> np.ndarray:
    """The astronaut's face pasted on a plain gray canvas at `at` = (x, y); 160x160 pixels."""
    canvas = np.full((*size, 3), 110, np.uint8)
    x, y = at
    canvas[y : y + 160, x : x + 160] = photo[40:200, 150:310]
    return canvas


def batch_sizes(rec: EmotionRecognizer) -> list[int]:
    """A list that records the batch size of every forward pass `rec` makes from now on."""
    sizes: list[int] = []
    runner = rec.runner
    rec.runner = lambda x: sizes.append(len(x)) or runner(x)
    return sizes


def overlap(box, expected) -> float:
    return iou(box, expected)


# -- detection and where faces are -------------------------------------------------------


def test_example_photo_face_found(rec):
    faces = rec.predict(ASTRONAUT)
    assert len(faces) == 1
    assert overlap(faces[0].box, ASTRONAUT_FACE) > 0.6


def test_face_found_where_pasted(rec, photo):
    img = scene(photo, at=(400, 250))
    faces = rec.predict(img)
    assert len(faces) == 1
    # the pasted region holds the face at (27, 27, 93, 93) of the 160x160 crop
    assert overlap(faces[0].box, (400 + 27, 250 + 27, 93, 93)) > 0.5


def test_no_face_gives_empty_list(rec):
    assert len(rec.predict(np.full((240, 320, 3), 128, np.uint8))) == 0
    assert len(rec.predict(np.zeros((1, 1), np.uint8))) == 0  # too small to hold a face: no crash


def test_color_orders_and_types_agree(rec, photo):
    rgb = photo[:, :, ::-1].copy()
    by_bgr = rec.predict(photo, color="bgr")
    for other in (
        rec.predict(rgb, color="rgb"),
        rec.predict(Image.fromarray(rgb)),
        rec.predict(str(ASTRONAUT)),
    ):
        assert [f.box for f in other] == [f.box for f in by_bgr]
    # YuNet sees the gray image as three equal channels: the same face, a pixel or two apart
    (gray,) = rec.predict(cv2.cvtColor(photo, cv2.COLOR_BGR2GRAY), color="gray")
    assert overlap(gray.box, by_bgr[0].box) > 0.9


def test_boxes_in_input_pixels_for_large_images(checkpoint, photo):
    big = cv2.resize(photo, (2048, 2048), interpolation=cv2.INTER_LINEAR)
    rec = EmotionRecognizer(checkpoint, max_side=512)
    (face,) = rec.predict(big)
    expected = tuple(v * 4 for v in ASTRONAUT_FACE)
    assert overlap(face.box, expected) > 0.6


def test_caller_boxes_skip_detection(rec, photo):
    faces = rec.predict(photo, boxes=[(10, 10, 50, 50), (100, 100, 200, 120)])
    assert [f.box for f in faces] == [(100, 100, 200, 120), (10, 10, 50, 50)]  # largest first


def test_custom_and_fixed_detectors(checkpoint, photo):
    class Corner:
        def detect(self, image):
            return [(0, 0, 40, 40)]

    assert EmotionRecognizer(checkpoint, detector=Corner()).predict(photo)[0].box == (0, 0, 40, 40)
    fixed = FixedBoxes([(500, 500, 100, 100)])  # sticks out of the 512x512 photo: clipped
    assert [d.box for d in fixed.detect(photo)] == [(500, 500, 12, 12)]


def test_detector_errors_say_what_to_do(tmp_path):
    with pytest.raises(ConfigError, match="OpenCV model zoo"):
        YuNetDetector(tmp_path / "face_detection_yunet_2023mar.onnx")
    with pytest.raises(ConfigError, match=r"unknown face detector 'mtcnn'\. Valid: .*yunet"):
        make_detector("mtcnn")
    with pytest.raises(ConfigError, match="cascade"):
        HaarDetector("no_such_cascade.xml")
    with pytest.raises(ConfigError, match="not found"):
        make_detector("yunet", model_path=tmp_path / "missing.onnx")


@pytest.mark.shared_data
def test_fer_faces_upscaled_are_found(shared_fer, rec):
    """Real FER-2013 faces, upscaled and pasted on a canvas, are found where they were put."""
    files = sorted((shared_fer / "test" / "happy").glob("*.jpg"))[:10]
    found = 0
    for i, f in enumerate(files):
        face = cv2.resize(cv2.imread(str(f), cv2.IMREAD_GRAYSCALE), (192, 192))
        canvas = np.full((480, 640), 100, np.uint8)
        x, y = 60 + 30 * i, 40 + 20 * i
        canvas[y : y + 192, x : x + 192] = face
        faces = rec.predict(canvas, color="gray")
        found += any(overlap(fc.box, (x, y, 192, 192)) > 0.3 for fc in faces)
    assert found >= 6, f"only {found} of 10 pasted FER faces found"


# -- results ------------------------------------------------------------------------------


def test_result_shape_is_json_ready(rec):
    (face,) = rec.predict(ASTRONAUT)
    d = face.to_dict()
    assert set(d) >= {"box", "label", "confidence", "emotions", "score", "landmarks"}
    assert len(d["box"]) == 4 and all(isinstance(v, int) for v in d["box"])
    assert list(d["emotions"]) == list(EMOTIONS)
    assert sum(d["emotions"].values()) == pytest.approx(1.0, abs=1e-5)
    assert d["label"] == max(d["emotions"], key=d["emotions"].get)
    assert d["confidence"] == max(d["emotions"].values())
    assert json.loads(json.dumps([d]))[0]["box"] == d["box"]


def test_batching_matches_one_by_one(rec, photo):
    images = [photo, scene(photo, (50, 60)), scene(photo, (300, 200)), ASTRONAUT]
    together = rec.predict(images)
    alone = [rec.predict(im) for im in images]
    assert [[f.box for f in fs] for fs in together] == [[f.box for f in fs] for fs in alone]
    for fs_t, fs_a in zip(together, alone, strict=True):
        for a, b in zip(fs_t, fs_a, strict=True):
            np.testing.assert_allclose(list(a.scores.values()), list(b.scores.values()), atol=1e-5)


def test_all_faces_share_forward_passes(checkpoint, photo):
    rec = EmotionRecognizer(checkpoint, batch_size=64)
    calls = batch_sizes(rec)
    out = rec.predict([scene(photo, (40 * i, 20 * i)) for i in range(6)])
    assert sum(len(fs) for fs in out) == 6
    assert calls == [6]  # six faces of six images: one forward pass


def test_predict_faces_on_crops(checkpoint):
    rng = np.random.default_rng(0)
    crops = rng.integers(0, 256, (10, 48, 48), dtype=np.uint8)
    small_batches = EmotionRecognizer(checkpoint, batch_size=3).predict_faces(crops)
    one_batch = EmotionRecognizer(checkpoint).predict_faces(list(crops))
    assert len(small_batches) == 10 and small_batches[0].box == (0, 0, 48, 48)
    for a, b in zip(small_batches, one_batch, strict=True):
        np.testing.assert_allclose(list(a.scores.values()), list(b.scores.values()), atol=1e-5)
    assert EmotionRecognizer(checkpoint).predict_faces([]) == []
    assert EmotionRecognizer(checkpoint).predict([]) == []


def test_tta_and_temperature(checkpoint, photo):
    plain = EmotionRecognizer(checkpoint).predict(photo)[0]
    tta = EmotionRecognizer(checkpoint, tta=True).predict(photo)[0]
    hot = EmotionRecognizer(checkpoint, temperature=5.0).predict(photo)[0]
    assert tta.box == plain.box and sum(tta.scores.values()) == pytest.approx(1.0, abs=1e-5)
    spread = lambda f: max(f.scores.values()) - min(f.scores.values())  # noqa: E731
    assert spread(hot) < spread(plain)  # a higher temperature flattens the distribution
    with pytest.raises(ConfigError):
        EmotionRecognizer(checkpoint, temperature=-1.0)


@pytest.mark.parametrize("tta", ["flip", "tencrop"])
def test_recognizer_tta_matches_evaluation(checkpoint, tta):
    """The recognizer batches all views of its faces into one pass; it must average the same
    views as `ferkit evaluate --tta` (which runs one pass per view)."""
    from ferkit.evaluation.predict import predict_proba
    from ferkit.models import load_checkpoint
    from ferkit.models.input_spec import InputSpec

    crops = np.random.default_rng(1).integers(0, 256, (7, 48, 48), dtype=np.uint8)
    rec = EmotionRecognizer(checkpoint, tta=tta, bf16=False, temperature=1.0, batch_size=30)
    calls = batch_sizes(rec)
    ours = rec.classify(crops)
    model, meta = load_checkpoint(checkpoint)
    theirs = predict_proba(model, crops, spec=InputSpec.from_meta(meta), tta=tta)
    np.testing.assert_allclose(ours, theirs, atol=1e-5)
    views = {"flip": 2, "tencrop": 10}[tta]
    assert calls == [views * k for k in ([7] if tta == "flip" else [3, 3, 1])]
    plain = EmotionRecognizer(checkpoint, bf16=False, temperature=1.0).classify(crops)
    assert not np.allclose(ours, plain)  # the views did change the probabilities


def test_tta_modes_are_checked(checkpoint):
    assert EmotionRecognizer(checkpoint, tta=True).tta == "flip"
    assert EmotionRecognizer(checkpoint, tta=None).tta == "none"
    with pytest.raises(ConfigError, match="tencrop"):
        EmotionRecognizer(checkpoint, tta="tencorp")


def test_bad_inputs_name_the_file(rec, tmp_path):
    bad = tmp_path / "notes.jpg"
    bad.write_text("not an image")
    with pytest.raises(ImageError, match=r"notes\.jpg"):
        rec.predict(bad)
    with pytest.raises(ImageError, match="empty"):
        rec.predict(np.zeros((0, 10, 3), np.uint8))


@pytest.mark.parametrize("mode", ["L", "RGBA", "I;16", "LA", "P"])
def test_image_modes(rec, photo, tmp_path, mode):
    rgb = Image.fromarray(photo[:, :, ::-1].copy())
    if mode == "I;16":
        img = Image.fromarray(np.asarray(rgb.convert("L")).astype(np.uint16) * 257)
    else:
        img = rgb.convert(mode)
    path = tmp_path / f"photo_{mode.replace(';', '')}.png"
    img.save(path)
    faces = rec.predict(path)
    assert len(faces) == 1 and overlap(faces[0].box, ASTRONAUT_FACE) > 0.5


def test_face_to_dict_rounding():
    f = Face((1, 2, 3, 4), "happy", {"happy": 0.123456, "sad": 0.876544}, 0.123456)
    assert f.to_dict(2)["emotions"] == {"happy": 0.12, "sad": 0.88}


# -- crops ---------------------------------------------------------------------------------


def test_square_box_grows_moves_and_clips():
    m1, m2 = Framing.from_margin(0.1), Framing.from_margin(0.2)
    assert square_box((100, 100, 50, 50), 500, 500, m1) == (95, 95, 60, 60)
    assert square_box((0, 0, 50, 40), 500, 500, m1) == (0, 0, 60, 60)  # moved inside
    assert square_box((0, 0, 90, 90), 100, 80, m2) == (0, 0, 100, 80)  # clipped


def test_default_framing_is_the_margin_01_square_and_shifts_in_box_sides():
    assert Framing() == Framing.from_margin(0.1)
    assert Framing.from_dict(Framing(1.5, 0.1, -0.2).to_dict()) == Framing(1.5, 0.1, -0.2)
    # 50-pixel box, centre moved 0.1 box sides (5 px) right and 0.2 (10 px) up
    assert square_box((100, 100, 50, 50), 500, 500, Framing(1.2, 0.1, -0.2)) == (100, 85, 60, 60)
    with pytest.raises(ConfigError, match="valid: scale, dx, dy"):
        Framing.from_dict({"scale": 1.2, "zoom": 2})


def test_crop_faces_shape():
    gray = np.arange(200 * 300, dtype=np.uint32).reshape(200, 300).astype(np.uint8)
    out = crop_faces(gray, [(10, 10, 40, 60), (250, 150, 60, 60)], (48, 48))
    assert out.shape == (2, 48, 48) and out.dtype == np.uint8


# -- calibration --------------------------------------------------------------------------


def test_temperature_recovers_overconfidence():
    gen = torch.Generator().manual_seed(0)
    true_logits = torch.randn(4000, 7, generator=gen) * 2
    labels = torch.multinomial(true_logits.softmax(1), 1, generator=gen).squeeze(1)
    t = fit_temperature(true_logits * 3.0, labels)  # a model 3x too confident
    assert t == pytest.approx(3.0, rel=0.15)
    report = calibrate(true_logits * 3.0, labels)
    assert report.ece_after < report.ece_before and report.nll_after < report.nll_before
    perfect = expected_calibration_error(true_logits.softmax(1), labels)
    assert perfect < 0.05


def test_checkpoint_temperature_is_used(tmp_path, photo):
    ckpt = make_checkpoint(tmp_path / "hot.pt", temperature=4.0)
    assert EmotionRecognizer(ckpt).temperature == 4.0
    assert EmotionRecognizer(ckpt, temperature=1.0).temperature == 1.0


# -- which checkpoint ---------------------------------------------------------------------


def test_resolve_checkpoint(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    with pytest.raises(CheckpointError, match="holds no model"):
        resolve_checkpoint(run)
    for name, when in (("vgg-1", 2e9), ("vgg-2", 1e9)):  # the folder above runs: name them
        (tmp_path / name).mkdir()
        (tmp_path / name / "best.pt").write_bytes(b"x")
        os.utime(tmp_path / name / "best.pt", (when, when))
    with pytest.raises(CheckpointError, match=r"holds run folders, not a model: pass one of "
                       r"them \(vgg-1, vgg-2\); the newest is .*vgg-1$"):  # fmt: skip
        resolve_checkpoint(tmp_path)
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "last.ckpt").write_bytes(b"x")  # an interrupted training run
    assert resolve_checkpoint(run) == run / "checkpoints" / "last.ckpt"
    (run / "epoch3.pt").write_bytes(b"x")
    assert resolve_checkpoint(run) == run / "epoch3.pt"
    (run / "epoch9.pt").write_bytes(b"x")
    with pytest.raises(CheckpointError, match="several"):
        resolve_checkpoint(run)
    (run / "last.pt").write_bytes(b"x")
    assert resolve_checkpoint(run) == run / "last.pt"
    (run / "best.pt").write_bytes(b"x")
    assert resolve_checkpoint(run) == run / "best.pt"
    assert resolve_checkpoint(run / "epoch3.pt") == run / "epoch3.pt"
    with pytest.raises(CheckpointError, match="no such"):
        resolve_checkpoint(tmp_path / "missing")


def test_run_folder_loads(tmp_path):
    make_checkpoint(tmp_path / "best.pt")
    assert EmotionRecognizer(tmp_path).labels == EMOTIONS


def test_default_model_missing_says_what_to_pass(monkeypatch):
    from ferkit.inference import model_io

    monkeypatch.setattr(model_io, "DEFAULT_WEIGHTS", "absent.pt")  # an install without weights
    with pytest.raises(CheckpointError, match=r"no model is shipped.*checkpoint"):
        EmotionRecognizer()


def test_import_ferkit_stays_light():
    import subprocess

    code = "import ferkit, sys; print('torch' in sys.modules, 'cv2' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
    import ferkit

    assert ferkit.EmotionRecognizer is EmotionRecognizer


def test_bf16_stays_close_to_fp32(checkpoint):
    crops = np.random.default_rng(1).integers(0, 256, (20, 48, 48), dtype=np.uint8)
    exact = EmotionRecognizer(checkpoint, bf16=False, detector=None)
    fast = EmotionRecognizer(checkpoint, bf16=True, detector=None)
    assert (exact.backend, fast.backend) == ("torch", "torch-bf16")
    np.testing.assert_allclose(fast.classify(crops), exact.classify(crops), atol=2e-3)


def test_from_model_takes_the_constructors_options(checkpoint):
    from ferkit.models import load_checkpoint

    model, meta = load_checkpoint(checkpoint)
    crops = np.random.default_rng(2).integers(0, 256, (5, 48, 48), dtype=np.uint8)
    options = dict(detector=None, tta="flip", temperature=2.0, bf16=False, batch_size=4)
    built = EmotionRecognizer.from_model(model, meta, **options)
    loaded = EmotionRecognizer(checkpoint, **options)
    assert built.source == "<model>" and (built.tta, built.batch_size) == ("flip", 4)
    np.testing.assert_allclose(built.classify(crops), loaded.classify(crops), atol=1e-6)
    with pytest.raises(ConfigError, match=r"unknown option\(s\) tta_mode; valid: .*max_faces"):
        EmotionRecognizer.from_model(model, meta, tta_mode="flip")


def test_torch_runner_folds_batch_norm_without_touching_the_model():
    from ferkit.inference.backends import TorchRunner
    from ferkit.models import create_model

    torch.manual_seed(0)
    model = create_model("flagship")
    model.train()
    for m in model.modules():  # non-trivial statistics, so folding has something to fold
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    runner = TorchRunner(model, bf16=False)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in runner.model.modules())
    assert model.training  # the caller's model keeps its mode and its batch norms
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    x = torch.randn(4, 1, 48, 48)
    with torch.inference_mode():
        expected = model.eval()(x)
    torch.testing.assert_close(runner(x), expected, atol=1e-4, rtol=1e-4)


def test_torch_runner_runs_untraceable_models_unfolded():
    from ferkit.inference.backends import TorchRunner

    class DataDependent(torch.nn.Module):  # control flow on values: torch.fx cannot trace it
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(1, 7, 3)
            self.bn = torch.nn.BatchNorm2d(7)

        def forward(self, x):
            y = self.bn(self.conv(x)).mean((2, 3))
            return y if y.sum() > 0 else -y

    model = DataDependent()
    runner = TorchRunner(model, bf16=False)
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in runner.model.modules())
    x = torch.randn(2, 1, 8, 8)
    with torch.inference_mode():
        torch.testing.assert_close(runner(x), model.eval()(x))


def test_too_small_warning_names_the_input_size(rec, caplog):
    """A long, thin image is shrunk for detection; the warning gives the size the user has."""
    with caplog.at_level("WARNING", logger="ferkit"):
        assert len(rec.predict(np.zeros((1, 5000), np.uint8))) == 0
    assert "5000x1 (shrunk to 1280x1 for detection) is too small" in caplog.text
