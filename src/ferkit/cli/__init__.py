"""The `ferkit` command line: `ferkit --help` lists the commands, `ferkit CMD --help` each one.

Every command module exposes `add_parser(subparsers)`, which registers the command and sets
its handler `func=cmd_<command>` (`cmd_<command>(args) -> int`; heavy imports inside it, so
`--help` stays light). Errors of ferkit's own (FerkitError) print one line and exit with code 2;
`--debug` shows the traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import sys

from ferkit import __version__, progress
from ferkit.errors import FerkitError, os_problem
from ferkit.outputs import refuse_stdout

log = logging.getLogger("ferkit")

# Command modules, in the order `ferkit --help` lists them.
COMMANDS = ("data", "models", "train", "evaluate", "predict", "export", "soup", "webcam", "serve")

EXIT_OK, EXIT_ERROR, EXIT_BAD_INPUT = 0, 1, 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ferkit",
        description="Facial expression recognition: data, models, training, inference.",
    )
    parser.add_argument("--version", action="version", version=f"ferkit {__version__}")
    _add_global_options(parser, default=False)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        importlib.import_module(f"ferkit.cli.{name}").add_parser(sub)
    for command in _subcommands(parser):  # `ferkit predict x.jpg -q` works as `ferkit -q ...`
        _add_global_options(command, default=argparse.SUPPRESS)
    return parser


def _add_global_options(parser: argparse.ArgumentParser, *, default) -> None:
    """--debug, -q and --no-progress: before the command, or after it (SUPPRESS: absent
    there, the value given before it stands)."""
    group = (
        parser.add_argument_group("global options (also before the command)")
        if default is argparse.SUPPRESS
        else parser
    )
    group.add_argument(
        "--debug", action="store_true", default=default, help="show tracebacks and debug logs"
    )
    group.add_argument(
        "-q", "--quiet", action="store_true", default=default, help="only warnings and errors"
    )
    group.add_argument(
        "--no-progress",
        action="store_true",
        default=default,
        help="no progress bars (drawn on a terminal only, in any case)",
    )


def _subcommands(parser: argparse.ArgumentParser):
    """Every parser under `parser` (commands, and subcommands such as `data info`)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield sub
                yield from _subcommands(sub)


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is at the time (pytest and callers may swap it)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):
        pass


def _configure_logging(debug: bool, quiet: bool) -> None:
    level = logging.DEBUG if debug else logging.WARNING if quiet else logging.INFO
    root = logging.getLogger()
    if not any(isinstance(h, _StderrHandler) for h in root.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
        root.addHandler(handler)
    root.setLevel(level)
    log.setLevel(level)
    # Lightning adds stream handlers of its own; without this its lines would print twice
    for name in ("lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).propagate = False


def _printable_names() -> None:
    """A file name that is no UTF-8 (the bytes of an old file system or a zip archive, held by
    Python as surrogates) stopped a command with a UnicodeEncodeError when printed to a
    terminal of a UTF-8 desktop locale (strict stdout): it is printed with backslash escapes
    instead, as stderr already does. A stdout that escapes (C locales) is left as it is."""
    if getattr(sys.stdout, "errors", None) == "strict" and hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(errors="backslashreplace")


def main(argv: list[str] | None = None) -> int:
    """Run the CLI with `argv` (default: sys.argv[1:]) and return the exit code."""
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else argv
    if not argv:  # `ferkit` alone: what it can do, as `ferkit --help` says it
        parser.print_help(sys.stderr)
        return EXIT_BAD_INPUT
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on bad usage, 0 on --help
        return int(exc.code or 0)
    _configure_logging(args.debug, args.quiet)
    progress.set_enabled(not args.no_progress)
    _printable_names()
    try:
        refuse_stdout(vars(args))  # `--annotate -` would make a folder named "-"
        return int(args.func(args) or EXIT_OK)
    except FerkitError as exc:
        if args.debug:
            log.exception("ferkit failed")
        print(f"ferkit {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except BrokenPipeError:  # `ferkit ... | head`: the reader left, which is not an error
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - silence the flush at exit
        return EXIT_OK
    except OSError as exc:  # a missing file, a full disk, no permission: the user can act on it
        if args.debug:
            log.exception("ferkit failed")
        print(f"ferkit {args.command}: error: {os_problem(exc)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt as exc:  # Ctrl-C: 130; training stopped by SIGTERM: 143
        print("ferkit: interrupted", file=sys.stderr)
        return 128 + getattr(exc, "signum", signal.SIGINT)
    except Exception as exc:  # a bug of ours: one line, and how to see more
        if args.debug:
            raise
        print(
            f"ferkit {args.command}: internal error: {type(exc).__name__}: {exc} "
            "(run with --debug for the traceback and report it)",
            file=sys.stderr,
        )
        return EXIT_ERROR
