"""How every `pyrt` subcommand ends: exit codes, one-line errors on stderr, Ctrl-C, a closed stdout
and missing optional packages, handled here once. docs/cli.md lists the codes per subcommand."""
from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import traceback
from contextlib import contextmanager
from typing import Callable, Iterator, Sequence

from ..errors import PyrtError

EXIT_OK = 0
EXIT_FAILED = 1       # the model/file cannot be read or run; a missing package; a bug (traceback)
EXIT_USAGE = 2        # bad command line (argparse uses 2 as well)
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report a process stopped by Ctrl-C
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE: stdout was closed (`pyrt info FILE | head -1`)
EXIT_HANGUP = 129       # 128 + SIGHUP: the terminal went away
EXIT_TERMINATED = 143   # 128 + SIGTERM: `kill`, `timeout`, a container stop
# Signals that end a command the way Ctrl-C does: unwinding, so that `with`/`finally` clean up.
STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name))

DISTRIBUTION = "pyrt-infer"
# Optional module -> the pip extras (pyproject.toml) that install it; tests/cli checks the table.
EXTRAS_PROVIDING = {
    "tokenizers": ("tokenizers", "llm"),
    "jinja2": ("llm",),
    "gguf": ("llm", "convert"),
    "safetensors": ("convert",),
    "tqdm": ("convert",),
    "torch": ("torch",),
    "matplotlib": ("plot",),
}

Failures = Sequence[tuple[type, int]]


class CommandError(Exception):
    """A failure the subcommand explains in one line, with the exit code it documents."""

    def __init__(self, message: str, code: int = EXIT_FAILED):
        super().__init__(message)
        self.code = code


class Terminated(BaseException):
    """SIGTERM or SIGHUP arrived. A BaseException, like KeyboardInterrupt, so that no `except
    Exception` swallows it while the stack unwinds and temporary files are removed."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.code = 128 + signum


@contextmanager
def stop_signals_raise() -> Iterator[None]:
    """While inside, SIGTERM and SIGHUP raise :class:`Terminated` in the main thread (the only one
    Python delivers signals to), unless they were ignored; the previous handlers come back on exit."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise Terminated(signum)
    # A signal the parent set to be ignored (`nohup` ignores SIGHUP) stays ignored.
    previous = {s: signal.signal(s, handler) for s in STOP_SIGNALS if signal.getsignal(s) is not signal.SIG_IGN}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def missing_module(exc: BaseException) -> str | None:
    """The optional module whose absence caused ``exc`` (directly or as its cause), if any."""
    seen = set()
    while exc is not None and id(exc) not in seen:  # a chain may loop (`raise e from e`)
        seen.add(id(exc))
        top_level = (getattr(exc, "name", None) or "").partition(".")[0]  # jinja2.sandbox -> jinja2
        if isinstance(exc, ImportError) and top_level in EXTRAS_PROVIDING:
            return top_level
        exc = exc.__cause__
    return None


def install_hint(module: str, preferred: Sequence[str]) -> str:
    extras = EXTRAS_PROVIDING[module]
    extra = next((e for e in preferred if e in extras), extras[0])
    return f"pip install '{DISTRIBUTION}[{extra}]'"


def error(prog: str, message: str) -> None:
    print(f"{prog}: error: {message}", file=sys.stderr)


def _quiet_closed_stdout() -> None:
    """Points stdout at /dev/null so the interpreter's last flush cannot fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


def expected_code(exc: BaseException, failures: Failures) -> int | None:
    """The exit code of a failure the subcommand foresees; None for a bug."""
    if isinstance(exc, CommandError):
        return exc.code
    code = next((c for kind, c in failures if isinstance(exc, kind)), None)
    if code is None and (isinstance(exc, PyrtError) or missing_module(exc)):
        code = EXIT_FAILED
    return code


def guarded(body: Callable[[], int], prog: str, failures: Failures = (), extras: Sequence[str] = ()) -> int:
    """Runs ``body`` and turns what it raises into one line on stderr and an exit code.
    ``failures`` maps exception types (first match wins) to the subcommand's own codes; PyrtError
    and a missing optional package default to EXIT_FAILED, and the message names the pip extra
    (``extras``: the ones this subcommand needs, preferred when several provide the package)."""
    try:
        try:
            with stop_signals_raise():
                return int(body())
        finally:  # also after --help's SystemExit: a closed pipe must fail here, not at interpreter exit
            sys.stdout.flush()
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Terminated as exc:
        print(f"{prog}: terminated by {exc}", file=sys.stderr)
        return exc.code
    except BrokenPipeError:
        _quiet_closed_stdout()
        return EXIT_BROKEN_PIPE
    except Exception as exc:  # noqa: BLE001 - every failure ends in one documented exit code
        code = expected_code(exc, failures)
        if code is None:  # a bug: keep the traceback for the report
            traceback.print_exc()
            error(prog, "internal error (a bug: please report it with the traceback above)")
            return EXIT_FAILED
        message = str(exc) or type(exc).__name__
        module = missing_module(exc)
        if module is not None:
            message += f" (pyrt's extra that brings it: {install_hint(module, extras)})"
        error(prog, message)
        return code


def command(run: Callable[[argparse.Namespace], int], failures: Failures = (),
            extras: Sequence[str] = ()) -> Callable[[argparse.Namespace], int]:
    """Wraps a subcommand's ``run(args)`` so that calling it (from main or from a test) returns the
    exit code the subcommand documents instead of raising."""
    def call(args: argparse.Namespace) -> int:
        return guarded(lambda: run(args), getattr(args, "prog", "pyrt"), failures, extras)
    call.__wrapped__ = run  # type: ignore[attr-defined]
    return call


def parse_and_run(parser: argparse.ArgumentParser, argv: Sequence[str] | None, prog: str) -> int:
    """A command's main(): parse, run the chosen ``func``; Ctrl-C or a closed pipe while parsing or
    printing --help end the same way as during the run."""
    def body() -> int:
        args = parser.parse_args(argv)
        return args.func(args)
    return guarded(body, prog)
