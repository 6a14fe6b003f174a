"""Access to the compiled core. The package (and the converter) import without it; functions that
need it raise a clear error instead."""
from __future__ import annotations

import os
from typing import Any

from .errors import UnsupportedError

# GNU OpenMP's idle threads spin GOMP_SPINCOUNT times (300,000 by default) before they sleep; in a
# VM each spin's `pause` can trap to the host (~0.2 us measured here), so a thread waiting for the
# next parallel region burned its core for up to ~60 ms, and pyrt collapsed when other processes
# shared the cores (docs/environment.md). Too short a spin costs every small call a futex wake-up
# instead (~45 us here: a q4a 1536x576 M=1 matmul took 60 us with 1,000 spins, 15-24 us with
# 30,000 or more). libgomp reads the variable once, when it is loaded with the core below, so pyrt
# sets 30,000 for that moment only, unless the user chose a policy; the environment is restored at
# once, so child processes and other libraries see what the user set.
OPENMP_SPIN_COUNT = "30000"
_set_spin = "GOMP_SPINCOUNT" not in os.environ and "OMP_WAIT_POLICY" not in os.environ
if _set_spin:
    os.environ["GOMP_SPINCOUNT"] = OPENMP_SPIN_COUNT
try:
    from . import _core as core  # type: ignore[attr-defined]

    IMPORT_ERROR: str | None = None
except ImportError as exc:  # pragma: no cover - exercised only on broken installs
    core = None
    IMPORT_ERROR = str(exc)
finally:
    if _set_spin:
        os.environ.pop("GOMP_SPINCOUNT", None)


def require_core() -> Any:
    if core is None:
        raise UnsupportedError(f"the native pyrt core is not available ({IMPORT_ERROR}); "
                               "reinstall with `pip install pyrt-infer`")
    return core
