"""Tokenizers (the Hugging Face ``tokenizers`` library, Rust through pyo3) read the model's own
tokenizer data, so a malformed file can make them raise anything: plain ``Exception``, TypeError, or
``pyo3_runtime.PanicException``, a BaseException that escapes ``except Exception``. Construction and
every call go through :func:`foreign_errors`, which turns those into FileFormatError; pyrt's own
errors, KeyboardInterrupt, SystemExit and MemoryError pass through unchanged."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Callable, Iterator, TypeVar

from .errors import FileFormatError, PyrtError

T = TypeVar("T")

_PASS_THROUGH = (PyrtError, KeyboardInterrupt, SystemExit, GeneratorExit, MemoryError)


def is_foreign_panic(exc: BaseException) -> bool:
    """A Rust panic surfaced by pyo3 (its class is created at run time, so it is matched by name)."""
    kind = type(exc)
    return kind.__name__ == "PanicException" and kind.__module__ in ("pyo3_runtime", "builtins")


@contextmanager
def foreign_errors(what: str) -> Iterator[None]:
    try:
        yield
    except _PASS_THROUGH:
        raise
    except Exception as exc:  # noqa: BLE001 - the library's errors have no common type
        raise FileFormatError(f"{what}: {type(exc).__name__}: {exc}") from exc
    except BaseException as exc:
        if not is_foreign_panic(exc):
            raise
        raise FileFormatError(f"{what}: the tokenizers library panicked: {exc}") from exc


def guarded_call(what: str, make: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``make(*args, **kwargs)`` with the library's exceptions turned into FileFormatError."""
    with foreign_errors(what):
        return make(*args, **kwargs)


class GuardedTokenizer:
    """A tokenizers.Tokenizer whose every method call runs under :func:`foreign_errors`; attribute
    reads and writes go to the wrapped object."""

    __slots__ = ("_inner", "_what")

    def __init__(self, inner: Any, what: str = "tokenizer"):
        object.__setattr__(self, "_inner", inner)
        object.__setattr__(self, "_what", what)

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._inner, name)
        if not callable(value):
            return value
        what = f"{self._what}.{name}"

        def call(*args: Any, **kwargs: Any) -> Any:
            with foreign_errors(what):
                return value(*args, **kwargs)
        return call

    def __setattr__(self, name: str, value: Any) -> None:
        with foreign_errors(f"{self._what}.{name}"):
            setattr(self._inner, name, value)


def guarded_tokenizer(make: Callable[[], Any], what: str = "tokenizer") -> GuardedTokenizer:
    """Builds a tokenizer with ``make()`` and wraps it, both steps guarded."""
    return GuardedTokenizer(guarded_call(what, make), what)
