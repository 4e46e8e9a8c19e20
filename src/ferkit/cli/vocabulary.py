"""One command-line vocabulary: the flags that every command spells and means the same way.

docs/cli.md holds the table; tests/test_cli_vocabulary.py checks it against the parsers. A
command that takes one of these flags adds it through the function here, so its form and help
cannot drift. Old spellings keep working for one release, with a one-line note naming the new.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from ferkit.tta import TTA_MODES

# ferkit.inference.model_io.SHIPPED names the shipped models; importing it here would load
# PyTorch for `--help` (tests/test_cli_vocabulary.py checks the name against it)
MODEL_HELP = (
    "trained model: run folder, .pt, Lightning .ckpt, .onnx, or a shipped name "
    "(flagship, flagship-ferplus); default: flagship"
)
DEFAULT_SMOOTH = 0.6  # EMA weight of a tracked face's past frames, video and webcam alike


class Deprecated(argparse.Action):
    """An old spelling: does what `new` does, after a note on stderr."""

    def __init__(self, option_strings, dest, new: str, **kwargs):
        self.new = new
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        print(
            f"ferkit: {option_string} is deprecated and goes in the next release; use {self.new}",
            file=sys.stderr,
        )
        setattr(namespace, self.dest, self.const if values is None else values)


def add_deprecated(p: argparse.ArgumentParser, old: str, new: str, dest: str, **kwargs) -> None:
    """`old` as a hidden alias of `new` (stored in `dest`), for one release."""
    p.add_argument(old, dest=dest, action=Deprecated, new=new, help=argparse.SUPPRESS, **kwargs)


def add_model_option(p: argparse.ArgumentParser, *, dest: str = "model") -> None:
    """--model/-m: a trained model of any kind (`ferkit.inference.model_io.resolve_model`)."""
    p.add_argument("--model", "-m", dest=dest, metavar="MODEL", help=MODEL_HELP)


def add_json_option(p: argparse.ArgumentParser, what: str) -> None:
    """--json: print `what` as JSON on stdout (files are named by their own options)."""
    p.add_argument("--json", action="store_true", help=f"print {what} as JSON on stdout")


def prints_data(args: argparse.Namespace) -> bool:
    """Whether stdout carries data for machines: --json, --jsonl, or a table (`--csv -`, which
    the command marks as `args.csv_stdout`). Nothing else goes there then."""
    return any(getattr(args, key, False) for key in ("json", "jsonl", "csv_stdout"))


def say_for(args: argparse.Namespace) -> Callable[..., None]:
    """`print` for the lines people read: on stdout, or on stderr where stdout carries data
    (`prints_data`)."""
    if prints_data(args):
        return lambda *a: print(*a, file=sys.stderr)
    return print


def add_tta_option(p: argparse.ArgumentParser) -> None:
    """--tta [none|flip|tencrop]: test-time augmentation; alone it means flip."""
    p.add_argument(
        "--tta",
        nargs="?",
        const="flip",
        default="none",
        choices=TTA_MODES,
        help="test-time augmentation: flip (the default when given alone: each face "
        "and its mirror image, 2x the compute) or tencrop (10 crops, 10x)",
    )


def add_format_option(
    p: argparse.ArgumentParser,
    choices: tuple[str, ...],
    *,
    default: str | None = None,
    required: bool | None = None,
    what: str = "output format",
) -> None:
    """--format: the output format, wherever a command writes more than one. Required when
    there is no default, unless `required=False` (the command reads it from a file name)."""
    shown = f" (default {default})" if default else ""
    p.add_argument(
        "--format",
        choices=choices,
        default=default,
        required=default is None if required is None else required,
        help=f"{what}{shown}",
    )


def add_smooth_option(p: argparse.ArgumentParser) -> None:
    """--smooth A: per tracked face, the weight of its past frames (video, webcam)."""
    p.add_argument(
        "--smooth",
        type=float,
        default=DEFAULT_SMOOTH,
        metavar="A",
        help="per tracked face, EMA weight of its past frames, in [0, 1) "
        f"({DEFAULT_SMOOTH}; 0: each frame alone)",
    )
