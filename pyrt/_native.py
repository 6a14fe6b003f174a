"""Access to the compiled core. The package (and the converter) import without it; functions that
need it raise a clear error instead."""
from __future__ import annotations

from typing import Any

from .errors import UnsupportedError

try:
    from . import _core as core  # type: ignore[attr-defined]

    IMPORT_ERROR: str | None = None
except ImportError as exc:  # pragma: no cover - exercised only on broken installs
    core = None
    IMPORT_ERROR = str(exc)


def require_core() -> Any:
    if core is None:
        raise UnsupportedError(f"the native pyrt core is not available ({IMPORT_ERROR}); "
                               "reinstall with `pip install pyrt-infer`")
    return core
