"""The `pyrt` command. Each subcommand is a module pyrt/commands/<name>.py exposing
`register(subparsers)`, which adds its parser and sets `func(args) -> exit code`."""
from __future__ import annotations

import argparse
import importlib
import sys

# Subcommand modules under pyrt.commands, in the order `pyrt --help` lists them.
COMMANDS = ("info",)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pyrt", description="pyrt: a lightweight inference runtime")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for name in COMMANDS:
        importlib.import_module(f"pyrt.commands.{name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
