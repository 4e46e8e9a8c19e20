"""Every command that takes a model takes every kind ferkit writes: a run folder, a `.pt`
checkpoint, Lightning's `.ckpt`, an `.onnx` / `.int8.onnx` export, and the shipped model by
name; anything else is refused with one line that lists the kinds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import ASTRONAUT, face, train_args, write_fer_csv
from ferkit.cli import main
from ferkit.errors import CheckpointError
from ferkit.inference.model_io import default_checkpoint, load_torch_model, resolve_model


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A one-epoch simple_cnn run on a 35-face CSV, exported to .onnx and .int8.onnx."""
    root = tmp_path_factory.mktemp("kinds")
    usages = ["Training", "Training", "Training", "PublicTest", "PrivateTest"]
    rows = [(y, face(10 * y + i), u) for y in range(7) for i, u in enumerate(usages)]
    data = write_fer_csv(root / "fer2013.csv", rows)
    run = root / "run"
    assert main(train_args(data, run, batch_size=None)) == 0
    assert main(["export", str(run), str(root / "model.onnx"), "--int8", "--data", str(data)]) == 0
    return run


def scores(capsys, model: str | Path, data: Path) -> dict:
    capsys.readouterr()
    assert main(["evaluate", str(model), "--data", str(data), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_resolver_finds_each_kind(run):
    assert resolve_model(run) == run / "best.pt"
    assert resolve_model(run / "checkpoints" / "best.ckpt") == run / "checkpoints" / "best.ckpt"
    assert resolve_model("flagship") == resolve_model(None) == default_checkpoint()
    onnx = run.parent / "model.int8.onnx"
    assert resolve_model(onnx) == onnx
    # a run stopped before it wrote best.pt: Lightning's best.ckpt is a model too
    stopped = run.parent / "stopped"
    (stopped / "checkpoints").mkdir(parents=True)
    (stopped / "checkpoints" / "best.ckpt").write_bytes(b"")
    assert resolve_model(stopped) == stopped / "checkpoints" / "best.ckpt"


def test_lightning_checkpoint_is_the_same_model_as_best_pt(run):
    import torch

    from_ckpt, meta_ckpt = load_torch_model(run / "checkpoints" / "best.ckpt")
    from_pt, meta_pt = load_torch_model(run / "best.pt")
    for key in ("arch", "arch_kwargs", "input_size", "mean", "std", "in_channels", "labels"):
        assert meta_ckpt[key] == meta_pt[key], key
    x = torch.randn(3, 1, 48, 48)
    assert torch.equal(from_ckpt(x), from_pt(x))


def test_evaluate_takes_every_kind(run, capsys):
    data = run.parent / "fer2013.csv"
    base = scores(capsys, run, data)
    for kind in (run / "best.pt", run / "checkpoints" / "best.ckpt"):
        got = scores(capsys, kind, data)
        assert (got["accuracy"], got["loss"]) == (base["accuracy"], base["loss"]), kind
    onnx = scores(capsys, run.parent / "model.onnx", data)  # through ONNX Runtime
    assert onnx["accuracy"] == base["accuracy"] and onnx["loss"] == pytest.approx(base["loss"])
    assert scores(capsys, run.parent / "model.int8.onnx", data)["n"] == base["n"]
    assert scores(capsys, "flagship", data)["arch"] == "flagship"


def test_export_takes_a_shipped_name_and_a_lightning_checkpoint(run, tmp_path, capsys):
    assert main(["export", "flagship", str(tmp_path / "flagship.onnx")]) == 0
    assert main(["export", str(run / "checkpoints" / "last.ckpt"), str(tmp_path / "a.onnx")]) == 0
    out = capsys.readouterr().out
    assert f"wrote {tmp_path / 'flagship.onnx'}" in out and f"wrote {tmp_path / 'a.onnx'}" in out


def test_other_things_are_refused_with_the_kinds(run, tmp_path, capsys):
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    data = str(run.parent / "fer2013.csv")
    for model in (notes, tmp_path / "nowhere", "flagshipp"):
        assert main(["evaluate", str(model), "--data", data]) == 2
        err = capsys.readouterr().err
        assert "Lightning .ckpt" in err and "flagship" in err and "Traceback" not in err
    assert main(["export", str(run.parent / "model.onnx"), str(tmp_path / "again.onnx")]) == 2
    assert "ONNX export" in capsys.readouterr().err
    with pytest.raises(CheckpointError, match="not a training checkpoint of `ferkit train`"):
        bogus = tmp_path / "other.ckpt"
        import torch

        torch.save({"state_dict": {}}, bogus)
        load_torch_model(bogus)


def test_compare_and_convert_say_what_they_wrote_once(run, tmp_path, capsys):
    plot = tmp_path / "cmp.png"
    assert main(["compare", str(run), "--plot", str(plot)]) == 0
    assert capsys.readouterr().err.count(f"wrote {plot}") == 1 and plot.is_file()
    out = tmp_path / "copy.csv"
    assert (
        main(["data", "convert", str(run.parent / "fer2013.csv"), "--format", "csv", str(out)]) == 0
    )
    assert capsys.readouterr().out.count(f"to {out}") == 1 and out.is_file()


def test_predict_takes_every_kind(run, capsys):
    kinds = [run, run / "best.pt", run / "checkpoints" / "best.ckpt", "flagship"]
    kinds += [run.parent / "model.onnx", run.parent / "model.int8.onnx"]
    for kind in kinds:
        assert main(["predict", str(ASTRONAUT), "--model", str(kind), "--json"]) == 0, kind
        [result] = json.loads(capsys.readouterr().out)
        assert len(result["faces"]) == 1, kind
