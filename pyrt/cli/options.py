"""Command-line parsing shared by the subcommands: the parser class, how a subcommand's parser is
made, and option value types whose bad values are argparse's usage error (exit 2)."""
from __future__ import annotations

import argparse
import math
from typing import Any, Callable


class Parser(argparse.ArgumentParser):
    """Options and positionals may come in any order (`pyrt embed FILE --batch-size 8 "hi"`):
    plain argparse stops filling a positional list (nargs="*") at the first option."""

    _intermixing = False

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        if self._intermixing or self._subparsers is not None:  # intermixed parsing cannot hold subcommands
            return super().parse_known_args(args, namespace)
        self._intermixing = True
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._intermixing = False


def subcommand_parser(subparsers: Any, name: str, doc: str, help: str, exit_codes: str) -> argparse.ArgumentParser:
    """The parser of `pyrt <name>`: its module docstring's first paragraph as description, its exit
    codes as epilog."""
    return subparsers.add_parser(name, help=help, description=doc.split("\n\n")[0],
                                 epilog=f"exit codes: {exit_codes} (all codes: docs/cli.md)")


def _number(convert: Callable[[str], float], text: str) -> float:
    try:
        value = convert(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number: {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be finite, got {text!r}")
    return value


def at_least(minimum: float, convert: Callable[[str], float] = int) -> Callable[[str], float]:
    """An int (or ``convert``-ed number) no smaller than ``minimum``."""
    def parse(text: str) -> float:
        value = _number(convert, text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {text}")
        return value
    return parse


def fraction(text: str) -> float:
    """A probability in (0, 1]."""
    value = _number(float, text)
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {text}")
    return value
