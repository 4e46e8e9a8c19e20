"""docs/cli.md's table of flags against the parsers, both ways, and the old spellings."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from ferkit.cli import build_parser, main
from ferkit.cli.vocabulary import DEFAULT_SMOOTH, MODEL_HELP
from ferkit.tta import TTA_MODES

DOC = Path(__file__).resolve().parents[1] / "docs" / "cli.md"


def commands() -> dict[str, argparse.ArgumentParser]:
    """Every command's parser, by the name a user types ("data convert", "report", ...)."""

    def subs(parser):
        action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        return action.choices

    out = {}
    for name, parser in subs(build_parser()).items():
        if any(isinstance(a, argparse._SubParsersAction) for a in parser._actions):
            out.update({f"{name} {n}": p for n, p in subs(parser).items()})
        else:
            out[name] = parser
    return out


def tables() -> list[list[list[str]]]:
    """docs/cli.md's tables: rows of cells (header and rule rows dropped)."""
    found, rows = [], None
    for line in DOC.read_text().splitlines():
        if line.startswith("|"):
            cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
            if rows is None:
                rows = []
            elif not set(cells[0]) <= {"-", " "}:
                rows.append(cells)
        elif rows is not None:
            found.append(rows)
            rows = None
    return found + ([rows] if rows else [])


def visible(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {s: a for s, a in parser._option_string_actions.items() if a.help != argparse.SUPPRESS}


FORMS = {
    "flag": lambda a: a.nargs == 0,
    "value": lambda a: a.nargs is None,
    "optional value": lambda a: a.nargs == "?",
}


def test_the_table_matches_every_parser_both_ways():
    parsers = commands()
    vocabulary = tables()[0]
    assert len(vocabulary) >= 10
    for flag_cell, form, _, listed in vocabulary:
        flags = re.findall(r"`(-[-\w]+)`", flag_cell)
        names = [c.strip() for c in listed.split(",")]
        assert set(names) <= set(parsers), f"{flag_cell}: unknown commands {names}"
        for name, parser in parsers.items():
            options = visible(parser)
            for flag in flags:
                if name in names:
                    assert flag in options, f"`ferkit {name}` lacks {flag}"
                    action = options[flag]
                    # evaluate's --json also takes the old `--json FILE` for one release
                    old_json = (name, flag) == ("evaluate", "--json")
                    assert FORMS[form](action) or old_json, f"{name} {flag} is not a {form}"
                else:
                    assert flag not in options, f"`ferkit {name}` has {flag}: add it to {DOC}"


def test_shared_flags_have_one_meaning():
    from ferkit.inference.backends import BACKENDS
    from ferkit.inference.model_io import SHIPPED

    # The CLI spells these out (importing them would load torch into --help); kept equal here.
    assert f"({', '.join(SHIPPED)})" in MODEL_HELP
    for name, parser in commands().items():
        options = visible(parser)
        if "--tta" in options:
            tta = options["--tta"]
            assert (tta.choices, tta.const, tta.default) == (TTA_MODES, "flip", "none"), name
        if "--backend" in options:
            assert tuple(options["--backend"].choices) == BACKENDS, name
        if "--smooth" in options:
            assert options["--smooth"].default == DEFAULT_SMOOTH, name
        if "--model" in options:
            assert options["--model"].help == MODEL_HELP, name
        if "--json" in options:
            assert options["--json"].default is False, name


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (["train", "--model", "vgg_13", "--dry-run"], ["train", "--arch", "vgg_13", "--dry-run"]),
    ],
)
def test_old_spellings_work_with_a_note(old, new, capsys):
    assert main(new) == 0
    expected = capsys.readouterr().out
    assert main(old) == 0
    got = capsys.readouterr()
    assert got.out == expected and "--model is deprecated" in got.err and "--arch" in got.err


def test_every_old_spelling_in_the_table_is_still_parsed():
    parsers = commands()
    old_spellings = tables()[1]
    assert len(old_spellings) >= 4
    for old, new, listed in old_spellings:
        old_flag, new_flag = re.match(r"`(-[-\w]+)", old)[1], re.match(r"`(-[-\w]+)", new)[1]
        for name in (c.strip() for c in listed.split(",")):
            options = parsers[name]._option_string_actions
            assert old_flag in options and new_flag in options, (name, old_flag)
            if (name, old_flag) != ("evaluate", "--json"):  # read by its handler (a file name
                # or none); test_training.test_evaluate_json runs it
                assert options[old_flag].dest == options[new_flag].dest, (name, old_flag)


def doc_commands() -> list[tuple[str, str]]:
    """(where, command) for every `ferkit ...` line in the README's and docs' code blocks."""
    root = DOC.parents[1]
    found = []
    for doc in [root / "README.md", *sorted((root / "docs").glob("*.md"))]:
        block, pending = False, ""
        for n, line in enumerate(doc.read_text().splitlines(), 1):
            if line.startswith("```"):
                block, pending = not block, ""
                continue
            text = pending + line.strip()
            if text.endswith("\\"):  # a command continued on the next line
                pending = text[:-1] + " "
                continue
            pending = ""
            if block and text.startswith("ferkit "):
                found.append((f"{doc.name}:{n}", text))
    return found


def test_every_documented_command_parses_in_the_current_spelling(capsys):
    import shlex

    commands = doc_commands()
    assert len(commands) > 20
    for where, text in commands:
        argv = shlex.split(text, comments=True)
        for stop in ("|", ">"):  # the shell's part
            argv = argv[: argv.index(stop)] if stop in argv else argv
        try:
            build_parser().parse_args(argv[1:])
        except SystemExit:
            pytest.fail(f"{where}: `{text}` does not parse: {capsys.readouterr().err.strip()}")
        assert "deprecated" not in capsys.readouterr().err, (
            f"{where}: `{text}` uses an old spelling"
        )
