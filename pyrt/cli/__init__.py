"""The `pyrt` command (also `python -m pyrt`). Each subcommand is a module pyrt/cli/<name>.py whose
`register(subparsers)` adds its parser and sets `func(args) -> exit code`; pyrt/cli/exits.py turns
failures into one-line errors and the exit codes docs/cli.md lists. `pyrt-convert` is
`pyrt convert` under its own name."""
from __future__ import annotations

import argparse
import importlib
import sys

from .. import __version__
from .exits import parse_and_run
from .options import Parser

# Subcommand modules, in the order `pyrt --help` lists them.
COMMANDS = ("demo", "embed", "generate", "info", "serve", "convert", "advise", "batch")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="pyrt", description="pyrt: a lightweight inference runtime (docs/cli.md)")
    parser.add_argument("--version", action="version", version=f"pyrt {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    subparsers.required = True
    for name in COMMANDS:
        importlib.import_module(f"pyrt.cli.{name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    return parse_and_run(build_parser(), argv, "pyrt")


if __name__ == "__main__":
    sys.exit(main())
