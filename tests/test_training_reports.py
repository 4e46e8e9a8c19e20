"""Scoring runs: `ferkit evaluate`, `ferkit report` and `ferkit compare` on a tiny trained run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from conftest import REPORT_PNGS, tiny_args, write_class_folders
from ferkit.cli import main
from ferkit.labels import EMOTIONS


def test_evaluate_json(trained_run, tiny_data, tmp_path, capsys):
    out = tmp_path / "eval.json"
    assert main(["evaluate", str(trained_run), "--data", str(tiny_data), "--output", str(out)]) == 0
    assert f"wrote {out}" in capsys.readouterr().err
    result = json.loads(out.read_text())
    assert result["n"] == 28 and result["split"] == "val" and 0 <= result["accuracy"] <= 1
    for key in ("loss", "macro_f1", "confusion_matrix", "confusion_matrix_normalized", "source"):
        assert key in result
    assert set(result["per_class"]) == set(EMOTIONS)
    assert set(result["per_class"]["happy"]) >= {"precision", "recall", "f1", "accuracy"}
    assert np.asarray(result["confusion_matrix"]).sum() == 28
    capsys.readouterr()
    assert (
        main(
            [
                "evaluate",
                str(trained_run),
                "--data",
                str(tiny_data),
                "--split",
                "test",
                "--tta",
                "tencrop",
                "--json",
            ]
        )
        == 0
    )
    assert json.loads(capsys.readouterr().out)["n"] == 14
    before = out.read_bytes()
    assert main(["evaluate", str(trained_run), "--data", str(tiny_data), "-o", str(out)]) == 2
    assert "eval.json already exists; pass --overwrite" in capsys.readouterr().err
    assert out.read_bytes() == before
    plots = tmp_path / "plots"  # the figures `ferkit report` draws, for any data set
    args = ["evaluate", str(trained_run), "--data", str(tiny_data), "-o", str(out), "--plots"]
    assert main([*args, str(plots), "--overwrite"]) == 0
    assert f"wrote {plots / 'confusion_matrix.png'}" in capsys.readouterr().err
    assert {p.name for p in plots.iterdir()} == {
        f"{n}.png" for n in ("confusion_matrix", "per_class_accuracy", "predictions")
    }
    assert all(p.read_bytes().startswith(b"\x89PNG") for p in plots.iterdir())
    assert main([*args, str(plots)]) == 2  # both outputs exist: refused, nothing replaced
    assert "per_class_accuracy.png and 1 more already exist" in capsys.readouterr().err
    # refused before any work: a data set that does not exist is not even looked at; the old
    # spelling `--json FILE` still names the file, with a note
    assert main(["evaluate", str(trained_run), "--data", "nowhere", "--json", str(out)]) == 2
    err = capsys.readouterr().err
    assert "eval.json already exists" in err and "--json FILE is deprecated" in err


def test_evaluate_other_data_set_through_aliases(trained_run, tmp_path):
    write_class_folders(tmp_path / "other", {"Anger": 3, "Happiness": 3, "contempt": 3}, size=64)
    assert (
        main(
            [
                "evaluate",
                str(trained_run),
                "--data",
                str(tmp_path / "other"),
                "--json",
                str(tmp_path / "o.json"),
            ]
        )
        == 0
    )
    assert json.loads((tmp_path / "o.json").read_text())["n"] == 6


def test_report_pngs(trained_run, capsys):
    assert main(["report", str(trained_run), "--faces", "8"]) == 0
    said = capsys.readouterr().out
    assert f"wrote {trained_run / 'eval_val.json'}" in said
    for name in REPORT_PNGS:
        assert f"wrote {trained_run / name}.png" in said
        with Image.open(trained_run / f"{name}.png") as img:
            assert img.width >= 300 and img.height >= 150, name
    assert main(["report", str(trained_run), "--faces", "8", "--json"]) == 0
    said = capsys.readouterr()
    doc = json.loads(said.out)  # stdout is the JSON; the human lines go to stderr
    assert doc["written"]["confusion_matrix"] == str(trained_run / "confusion_matrix.png")
    assert doc["scores"][0]["n"] == json.loads((trained_run / "eval_val.json").read_text())["n"]
    assert "wrote" in said.err


def test_report_that_fails_writing_keeps_the_old_scores(trained_run, monkeypatch, capsys):
    """A disk that fills while a second report writes eval_val.json: the first one's stays,
    and the message names it (it named ferkit's hidden temporary file)."""
    assert main(["report", str(trained_run), "--faces", "8"]) == 0
    scores = trained_run / "eval_val.json"
    before = scores.read_bytes()
    write_text = Path.write_text

    def disk_full(self, text, *args, **kwargs):
        if self.suffix != ".json":
            return write_text(self, text, *args, **kwargs)
        write_text(self, text[: len(text) // 2])
        raise OSError(28, "No space left on device", str(self))

    monkeypatch.setattr(Path, "write_text", disk_full)
    assert main(["report", str(trained_run), "--faces", "8"]) != 0
    assert f"{scores}: cannot be written, the disk is full" in capsys.readouterr().err
    assert scores.read_bytes() == before
    assert not list(trained_run.glob(".partial-*"))


def test_compare(trained_run, tmp_path, capsys):
    plot = tmp_path / "cmp.png"
    assert (
        main(
            ["compare", str(trained_run), str(trained_run), "--format", "csv", "--plot", str(plot)]
        )
        == 0
    )
    table = capsys.readouterr().out.splitlines()
    head = "run,model,parameters,epochs,best_val_acc,val_sets,best_epoch,test_acc"
    assert table[0].startswith(head) and len(table) == 3
    row = dict(zip(table[0].split(","), table[1].split(","), strict=True))
    summary = json.loads((trained_run / "summary.json").read_text())
    assert int(row["best_epoch"]) == summary["best_epoch"]  # the curve's best is the kept one
    assert row["val_sets"] == "1"
    assert float(row["test_acc"]) == round(summary["test_accuracy"], 4)  # from summary.json
    assert main(["compare", str(trained_run), "--no-plot", "--json"]) == 0
    (record,) = json.loads(capsys.readouterr().out)
    assert record["best_epoch"] == summary["best_epoch"] and record["run"] == trained_run.name
    assert Image.open(plot).width > 300

    before = plot.read_bytes()  # an existing plot is refused before any run is read, and kept
    assert main(["compare", str(tmp_path / "no-such-run"), "--plot", str(plot)]) == 2
    assert "--overwrite" in capsys.readouterr().err and plot.read_bytes() == before
    assert main(["compare", str(tmp_path / "no-such-run"), "--plot", "cmp.txt"]) == 2
    assert "cannot write a plot as .txt; use one of" in capsys.readouterr().err
    assert main(["compare", str(trained_run), "--plot", str(plot), "--overwrite"]) == 0
    svg = tmp_path / "cmp.svg"  # the format follows the suffix, which the temporary file keeps
    assert main(["compare", str(trained_run), "--plot", str(svg)]) == 0
    assert svg.read_text().lstrip().startswith("<?xml")
    assert main(["compare", str(trained_run), "--no-plot", "--format", "csv"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cmp.png", "cmp.svg"]


def test_compare_a_run_still_training(trained_run, tmp_path, capsys):
    """A run without summary.json (still training) leaves gaps: '-' in the text table, empty in
    markdown and CSV, and the finished run's counts stay integers beside them."""
    training = tmp_path / "training"
    training.mkdir()
    for name in ("config.yaml", "metrics.csv"):
        shutil.copy(trained_run / name, training)
    parameters = json.loads((trained_run / "summary.json").read_text())["parameters"]
    assert main(["compare", str(trained_run), str(training), "--no-plot"]) == 0
    text = capsys.readouterr().out
    assert f" {parameters} " in text and "NaN" not in text and "None" not in text
    assert text.splitlines()[2].split()[2] == "-"  # the running run's parameters
    assert (
        main(["compare", str(trained_run), str(training), "--no-plot", "--format", "markdown"]) == 0
    )
    assert "<NA>" not in capsys.readouterr().out


def test_report_from_another_folder_and_when_the_data_is_gone(tmp_path, monkeypatch, capsys):
    data = write_class_folders(tmp_path / "d" / "train", dict.fromkeys(EMOTIONS, 4)).parent
    write_class_folders(data / "test", dict.fromkeys(EMOTIONS, 2), prefix="PublicTest", seed=5)
    monkeypatch.chdir(tmp_path)
    assert main(tiny_args(Path("d"), Path("r"), "--epochs", "1")) == 0  # relative paths
    assert json.loads((tmp_path / "r" / "summary.json").read_text())["data"] == str(data)
    monkeypatch.chdir(tmp_path / "r")
    assert main(["report", "."]) == 0
    (tmp_path / "d").rename(tmp_path / "moved")
    assert main(["report", "."]) == 2
    err = capsys.readouterr().err
    assert f"trained on {data}" in err and "--data" in err and "Traceback" not in err
    assert main(["report", ".", "--data", str(tmp_path / "moved")]) == 0


def test_a_plot_titled_with_a_name_in_no_utf8_is_drawn(tmp_path):
    """A run folder named in Latin-1 bytes made `ferkit report` stop inside matplotlib (it
    cannot draw the surrogate Python holds such a byte as); the title is escaped instead."""
    import os

    import matplotlib.pyplot as plt

    from ferkit.evaluation.plots import save

    name = os.fsdecode(b"run-caf\xe9")
    fig, ax = plt.subplots()
    ax.set_title(f"simple_cnn: {name}")
    save(fig, tmp_path / "curves.png")
    assert ax.get_title() == "simple_cnn: run-caf\\udce9"
    assert (tmp_path / "curves.png").stat().st_size > 0
    plt.close(fig)
