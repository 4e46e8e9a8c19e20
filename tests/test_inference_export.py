"""ONNX export matches PyTorch, the ONNX backend matches the torch one, int8 and calibration."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import ASTRONAUT
from ferkit.cli import main
from ferkit.errors import CheckpointError
from ferkit.inference import EmotionRecognizer
from ferkit.inference.export import TOLERANCE, export_onnx, max_abs_diff, quantize_int8
from ferkit.inference.model_io import load_torch_model, read_onnx_meta


@pytest.fixture(scope="module")
def onnx_file(checkpoint, tmp_path_factory) -> Path:
    model, meta = load_torch_model(checkpoint)
    return export_onnx(model, meta, tmp_path_factory.mktemp("onnx") / "model.onnx")


def test_onnx_matches_torch_at_any_batch_size(checkpoint, onnx_file):
    model, meta = load_torch_model(checkpoint)
    assert max_abs_diff(model, onnx_file, meta, batch_sizes=(1, 5, 64)) < TOLERANCE


def test_onnx_file_carries_metadata(checkpoint, onnx_file):
    _, meta = load_torch_model(checkpoint)
    got = read_onnx_meta(onnx_file)
    assert got["input_size"] == list(meta["input_size"]) and got["labels"] == list(meta["labels"])


def test_onnx_backend_matches_torch(checkpoint, onnx_file):
    ref = EmotionRecognizer(checkpoint, bf16=False).predict(ASTRONAUT)
    for rec in (EmotionRecognizer(checkpoint, backend="onnx"), EmotionRecognizer(onnx_file)):
        assert rec.backend == "onnx"
        got = rec.predict(ASTRONAUT)
        assert [f.box for f in got] == [f.box for f in ref]
        np.testing.assert_allclose(
            list(got[0].scores.values()), list(ref[0].scores.values()), atol=1e-5
        )


def test_onnx_without_ferkit_metadata_is_refused(tmp_path):
    import onnx

    bare = tmp_path / "bare.onnx"
    onnx.save(onnx.helper.make_model(onnx.helper.make_graph([], "g", [], [])), bare)
    with pytest.raises(CheckpointError, match="ferkit export"):
        EmotionRecognizer(bare)


@pytest.mark.parametrize("static", [False, True])
def test_int8_runs_with_metadata(onnx_file, tmp_path, static):
    calib = np.random.default_rng(0).normal(size=(16, 1, 48, 48)).astype(np.float32)
    out = quantize_int8(onnx_file, tmp_path / "m.int8.onnx", calibration=calib if static else None)
    rec = EmotionRecognizer(out, detector=None)
    probs = rec.classify(np.zeros((3, 48, 48), np.uint8))
    assert probs.shape == (3, 7) and np.allclose(probs.sum(1), 1, atol=1e-5)
    if static:  # 7-bit weights: no int16 saturation on CPUs without VNNI
        import onnx

        weights = [
            onnx.numpy_helper.to_array(t)
            for t in onnx.load(str(out)).graph.initializer
            if t.data_type == onnx.TensorProto.INT8 and t.dims
        ]
        assert weights and all(np.abs(w.astype(int)).max() <= 64 for w in weights)  # not 127


def test_int8_failure_keeps_the_old_file(onnx_file, tmp_path, monkeypatch):
    """A failure after quantisation has written its model (here: restoring the metadata)
    leaves an earlier export whole and no temporary file behind."""
    import ferkit.inference.export as export

    def fail(src, dst):
        assert Path(dst).stat().st_size > 1000  # the int8 model was written by then
        raise RuntimeError("disk full")

    monkeypatch.setattr(export, "_copy_metadata", fail)
    out = tmp_path / "m.int8.onnx"
    out.write_bytes(b"an earlier int8 export")
    with pytest.raises(RuntimeError, match="disk full"):
        quantize_int8(onnx_file, out)
    assert out.read_bytes() == b"an earlier int8 export"
    assert [p.name for p in tmp_path.iterdir()] == ["m.int8.onnx"]


def test_export_cli_onnx_int8_and_calibrated_pt(checkpoint, msambare, tmp_path, capsys):
    out = tmp_path / "m.onnx"
    assert main(["export", str(checkpoint), str(out), "--int8", "--data", str(msambare)]) == 0
    text = capsys.readouterr().out
    assert "max |onnx - torch|" in text and "accuracy on" in text and "int8" in text
    assert out.is_file() and out.with_suffix(".int8.onnx").is_file()
    assert main(["export", str(checkpoint), str(out), "--int8", "--data", str(msambare),
                 "--overwrite", "--json"]) == 0  # fmt: skip
    int8 = json.loads(capsys.readouterr().out)["int8"]
    assert int8["out"] == str(out.with_suffix(".int8.onnx")) and 0 <= int8["int8_accuracy"] <= 1
    assert int8["n"] == 14  # msambare's val split: 7 classes x 2
    out.unlink()  # the int8 file is an output too: refused before anything is written
    assert main(["export", str(checkpoint), str(out), "--int8", "--data", str(msambare)]) == 2
    assert "m.int8.onnx already exists" in capsys.readouterr().err and not out.exists()

    pt = tmp_path / "calibrated.pt"
    args = [
        "export",
        str(checkpoint),
        str(pt),
        "--format",
        "pt",
        "--calibrate",
        "--data",
        str(msambare),
    ]
    assert main([*args, "--overwrite", "--json"]) == 0  # for machines: the JSON alone on stdout
    said = capsys.readouterr()
    doc = json.loads(said.out)
    assert doc["out"] == str(pt) and doc["format"] == "pt" and doc["calibration"]["temperature"] > 0
    assert "ECE" in said.err and f"wrote {pt}" in said.err
    _, meta = load_torch_model(pt)
    assert meta["temperature"] > 0 and "calibration" in meta["extra"]
    assert EmotionRecognizer(pt).temperature == pytest.approx(meta["temperature"])


@pytest.mark.parametrize(
    ("out", "flags", "message"),
    [
        ("m.pt", ["--format", "onnx"], "m.pt is named as a ferkit checkpoint but --format is onnx"),
        ("m.onnx", ["--format", "pt"], "m.onnx is named as an ONNX file but --format is pt"),
        ("m.onnx", ["--half"], "--half stores a .pt checkpoint's weights as float16"),
        ("model", [], "model: name the output .onnx (ONNX) or .pt (a ferkit checkpoint)"),
    ],
)
def test_export_format_must_match_the_name(checkpoint, tmp_path, out, flags, message, capsys):
    """ferkit loads a model by its suffix, so an export named .pt holding ONNX (or the other
    way round) could never be loaded: refused before anything is written."""
    assert main(["export", str(checkpoint), str(tmp_path / out), *flags]) == 2
    assert message in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_export_half_calibrates_the_weights_it_writes(checkpoint, msambare, tmp_path, monkeypatch):
    """`--half --calibrate`: the temperature is fitted on, and the accuracy printed for, the
    float16 weights the file holds, not the float32 ones they were rounded from."""
    from ferkit.data import validation_faces
    from ferkit.inference import calibration

    seen = []
    fit = calibration.calibrate
    monkeypatch.setattr(calibration, "calibrate", lambda x, y: seen.append(x) or fit(x, y))
    small = tmp_path / "small.pt"
    args = ["export", str(checkpoint), str(small), "--half", "--calibrate", "--data", str(msambare)]
    assert main(args) == 0
    faces, _ = validation_faces(str(msambare), image_size=48)

    def logits(path):
        model, meta = load_torch_model(path)
        rec = EmotionRecognizer.from_model(model, meta, detector=None, temperature=1.0, bf16=False)
        return np.asarray(rec.logits(faces))

    [fitted] = seen
    np.testing.assert_allclose(np.asarray(fitted), logits(small), rtol=0, atol=1e-7)
    assert np.abs(logits(checkpoint) - logits(small)).max() > 1e-6  # float16 rounding shows


def test_export_format_follows_the_name(checkpoint, tmp_path):
    small = tmp_path / "small.pt"
    assert main(["export", str(checkpoint), str(small), "--half"]) == 0
    _, meta = load_torch_model(small)
    assert meta["labels"] and small.stat().st_size < checkpoint.stat().st_size


def test_export_cli_usage_errors(checkpoint, tmp_path, capsys):
    assert main(["export", str(checkpoint), str(tmp_path / "x.onnx"), "--calibrate"]) == 2
    assert "--calibrate needs --data" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "nothing"), str(tmp_path / "x.onnx")]) == 2
