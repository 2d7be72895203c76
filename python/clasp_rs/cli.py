"""The ``clasp-rs`` console script: argument parsing and error reporting for all commands.

Commands live in :mod:`clasp_rs.commands`, one module each; to add one, append its module
to ``COMMANDS``. Expected failures (bad input, missing or existing files) end as one line
``clasp-rs: error: ...`` on stderr with exit status 2, without a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import NoReturn

from clasp_rs import __version__
from clasp_rs._messages import escaped
from clasp_rs.commands import annotate, export, init, merge, query, report, run, select, study
from clasp_rs.exceptions import ClaspError

__all__ = ["COMMANDS", "build_parser", "main"]

# Order here is the order of `clasp-rs --help`.
COMMANDS: list[ModuleType] = [select, query, merge, init, run, annotate, export, report, study]

EXIT_ERROR = 2
EXIT_INTERRUPTED = 130


class _Parser(argparse.ArgumentParser):
    """argparse's usage errors, with the message on one line whatever the arguments hold
    (subcommands' parsers are of this class too)."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_ERROR, f"{self.prog}: error: {escaped(message)}\n")


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with one subparser per module of ``COMMANDS``."""
    parser = _Parser(
        prog="clasp-rs",
        description="Active learning for 3D biomedical segmentation: ClaSP PE patch queries.",
    )
    parser.add_argument("--version", action="version", version=f"clasp-rs {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS:
        sub = command.add_parser(subparsers)
        sub.set_defaults(_run=command.run)
    return parser


def _one_line(error: BaseException) -> str:
    # Escaped, not joined: a file name may itself hold a newline.
    if isinstance(error, OSError) and error.filename is not None and error.strerror:
        name = error.filename
        name = os.fsdecode(name) if isinstance(name, (str, bytes)) else str(name)
        return escaped(f"{error.strerror}: {name}")
    return escaped(str(error).strip() or type(error).__name__)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``clasp-rs`` with ``argv`` (default: ``sys.argv[1:]``) and return the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        return int(args._run(args))
    except SystemExit as e:  # argparse: --help, --version and usage errors
        return e.code if isinstance(e.code, int) else (0 if e.code is None else EXIT_ERROR)
    except (ClaspError, OSError, ValueError) as e:
        print(f"clasp-rs: error: {_one_line(e)}", file=sys.stderr)
        return EXIT_ERROR
    except ImportError as e:
        # Missing optional extras say "install clasp-rs[...]"; anything else is a bug.
        if "clasp-rs[" not in str(e):
            raise
        print(f"clasp-rs: error: {_one_line(e)}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("clasp-rs: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
