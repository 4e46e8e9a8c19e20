"""What a new user meets first: numbers as people write them, the README's examples as written,
a quick `--help`."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

from ferkit.cli import main
from ferkit.data.ferplus import check_mode
from ferkit.detection import make_detector
from ferkit.errors import FerkitError
from ferkit.inference.backends import check_backend
from ferkit.models import create_model
from ferkit.training.config import load_config, parse_set
from ferkit.tta import check_tta

ROOT = Path(__file__).resolve().parents[1]


def readme_command(prefix: str) -> list[str]:
    """The README's own example that starts with `prefix`, split as a shell would, comment cut."""
    for line in (ROOT / "README.md").read_text().splitlines():
        if line.startswith(prefix):
            return shlex.split(line, comments=True)
    raise AssertionError(f"README.md has no example starting with {prefix!r}")


def test_numbers_in_scientific_notation_are_numbers(tmp_path, capsys):
    # YAML 1.1 (PyYAML) reads 3e-4 as a string, in recipes as in --set
    (tmp_path / "r.yaml").write_text("lr: 3e-4\nweight_decay: 5E-4\nepochs: 1e1\n")
    cfg = load_config(tmp_path / "r.yaml", parse_set(["momentum=9e-1", "max_time=1e1"]))
    assert (cfg.lr, cfg.weight_decay, cfg.epochs) == (3e-4, 5e-4, 10)
    assert isinstance(cfg.epochs, int) and (cfg.momentum, cfg.max_time) == (0.9, 10.0)
    assert main(["train", "--lr", "3e-4", "--set", "ema=1e-3", "--dry-run"]) == 0
    resolved = json.loads(capsys.readouterr().out)
    assert (resolved["lr"], resolved["ema"]) == (3e-4, 1e-3)
    with pytest.raises(Exception, match="'epochs' expects int"):
        load_config(None, parse_set(["epochs=2.5"]))
    with pytest.raises(Exception, match="'lr' expects float"):
        load_config(None, parse_set(["lr=inf"]))


def test_readme_train_example_runs_as_written(fer_csv, monkeypatch, capsys):
    argv = readme_command("ferkit train --arch simple_cnn --data fer2013.csv")
    assert argv[0] == "ferkit" and "3e-4" in argv
    monkeypatch.chdir(fer_csv.parent)  # the example names fer2013.csv in the current folder
    assert main(argv[1:]) == 0, capsys.readouterr().err
    [run] = (fer_csv.parent / "runs").iterdir()
    summary = json.loads((run / "summary.json").read_text())
    assert summary["epochs"] == 10 and (run / "best.pt").is_file()
    assert re.search(r"lr: 0\.0003\b", (run / "config.yaml").read_text())


HEAVY = ("torch", "lightning", "onnxruntime", "fastapi", "matplotlib", "pandas")


def run_python(code: str, **env: str) -> str:
    import os
    import subprocess
    import sys

    env = {**os.environ, **env}
    command = [sys.executable, "-c", code]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_help_of_every_command_imports_nothing_heavy():
    # Every command and subcommand the parser has, found by walking it (a new one is covered
    # without editing this test); heavy imports belong inside the command's handler.
    code = f"""
import argparse, contextlib, io, sys
from ferkit.cli import build_parser, main

def commands(parser, path=()):
    yield path
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from commands(sub, (*path, name))

helps = [[*path, "--help"] for path in commands(build_parser())]
assert len(helps) > 10, helps
for argv in helps:
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(argv) == 0, argv
print(" ".join(m for m in {HEAVY!r} if m in sys.modules))
"""
    assert run_python(code).strip() == ""


def test_debug_and_quiet_work_before_or_after_the_command(tmp_path, capsys):
    from ferkit.cli import build_parser

    parser = build_parser()
    for argv, quiet in ((["models"], False), (["-q", "models"], True), (["models", "-q"], True)):
        assert parser.parse_args(argv).quiet is quiet, argv
    assert parser.parse_args(["data", "info", "x.csv", "--debug"]).debug is True
    assert parser.parse_args(["--debug", "data", "info", "x.csv"]).debug is True
    # where it is given, it does what it says: a traceback with --debug, one line without
    assert main(["data", "info", str(tmp_path / "missing.csv"), "--debug"]) == 2
    assert "Traceback" in capsys.readouterr().err
    assert main(["data", "info", str(tmp_path / "missing.csv")]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_every_command_handler_is_named_cmd_and_its_command():
    import argparse

    from ferkit.cli import build_parser

    def handlers(parser, path=()):
        func = parser.get_default("func")
        if func is not None:
            yield path, func
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    yield from handlers(sub, (*path, name))

    found = dict(handlers(build_parser()))
    assert len(found) >= 11, found
    bad = {p: f.__name__ for p, f in found.items() if f.__name__ != f"cmd_{p[-1]}"}
    assert not bad, f"handlers not named cmd_<command>: {bad}"


def test_models_json_is_computed_once_then_read_without_torch(tmp_path):
    code = """
import sys
from ferkit.cli import main
main(["models", "--json"])
print("torch loaded:", "torch" in sys.modules, file=sys.stderr)
"""
    first = run_python(code, FERKIT_CACHE=str(tmp_path))
    rows = json.loads(first)
    assert {"simple_cnn", "flagship"} <= {r["name"] for r in rows}
    assert all(r["params"] > 0 and r["macs"] > 0 for r in rows)
    warm = code.replace("file=sys.stderr", "file=sys.stdout")
    out = run_python(warm, FERKIT_CACHE=str(tmp_path))
    assert out.endswith("torch loaded: False\n") and json.loads(out.rsplit("torch", 1)[0]) == rows


def test_models_cache_of_another_install_is_not_used(tmp_path, monkeypatch):
    from ferkit.cli import models

    monkeypatch.setenv("FERKIT_CACHE", str(tmp_path))
    (tmp_path / "models.json").write_text(json.dumps({"key": "another install", "rows": []}))
    monkeypatch.setattr(models, "_compute_rows", lambda: [{"name": "measured"}])
    assert models.model_rows() == [{"name": "measured"}]
    assert json.loads((tmp_path / "models.json").read_text())["key"] == models._cache_key()


def test_make_demo_says_what_it_wrote_once(tmp_path, capsys):
    from ferkit import demo

    assert demo.run(tmp_path / "demo") == 0
    out = capsys.readouterr().out
    annotated = tmp_path / "demo" / "astronaut.png"
    assert out.count("wrote ") == 1 and f"wrote {annotated}" in out and annotated.is_file()


@pytest.mark.parametrize(
    "call",
    [
        lambda: create_model("vgg13"),
        lambda: create_model("flagship", widht=[1]),
        lambda: make_detector("yunett"),
        lambda: check_backend("onxx"),
        lambda: check_tta("tencrops"),
        lambda: check_mode("vote"),
        lambda: load_config(None, parse_set(["optimiser=sgd"])),
        lambda: load_config(None, parse_set(["optimizer=sdg"])),
    ],
    ids=["model", "model-option", "detector", "backend", "tta", "ferplus", "key", "optimizer"],
)
def test_every_unknown_name_gets_one_wording_with_close_matches(call):
    """What, the name given, the closest valid names, then all of them: one rule
    (`ferkit.errors.unknown`), wherever a name is looked up."""
    with pytest.raises(FerkitError) as err:
        call()
    assert re.search(r"unknown [\w+ ]+ '\w+'\. Did you mean '\w+'.*\? Valid: \w+", str(err.value))


def test_ferkit_alone_lists_the_commands(capsys):
    assert main([]) == 2  # no command: the help, on stderr, and the usage exit code
    said = capsys.readouterr()
    assert said.out == "" and "predict" in said.err and "train" in said.err


def test_inference_does_not_import_torchvision():
    """Importing torchvision takes over a second (it imports all its model families): a
    photo through the shipped model never needs it, a torchvision family loads it on demand."""
    code = """
import sys
from ferkit import EmotionRecognizer
EmotionRecognizer().predict("examples/astronaut.png")
print("torchvision" in sys.modules)
from ferkit.models import create_model
create_model("resnet18")
print("torchvision" in sys.modules)
"""
    assert run_python(code).split() == ["False", "True"]


def test_no_progress_turns_off_every_bar_in_any_command(monkeypatch, capsys):
    """`--no-progress`, before or after any command, turns off every bar (evaluate, data
    crop, ...), not only train's and predict's; without it a bar is drawn on a terminal."""
    from ferkit import progress

    asked = []

    def bars():
        with monkeypatch.context() as m:
            m.setattr(progress, "tqdm", lambda *a, **k: asked.append(k["disable"]))
            progress.bar(range(3))
            progress.bar(range(3), show=False)

    assert main(["models", "--no-progress", "--json"]) == 0
    bars()
    assert main(["--no-progress", "models", "--json"]) == 0
    bars()
    assert main(["models", "--json"]) == 0
    bars()
    assert asked == [True, True, True, True, None, True]  # None: drawn on a terminal only
