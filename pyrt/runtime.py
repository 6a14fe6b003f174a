"""Threads, CPU ISA selection and build information."""
from __future__ import annotations

import os
import platform

from ._native import IMPORT_ERROR, core, require_core


def get_num_threads() -> int:
    """Threads used by matmul and the models (PYRT_NUM_THREADS, default: all usable cores)."""
    return int(require_core().num_threads())


def set_num_threads(n: int) -> None:
    """Set the thread count; ``n <= 0`` restores the default."""
    require_core().set_num_threads(int(n))


def get_cpu_isa() -> str:
    """The CPU kernel set in use: 'avx512', 'avx2' or 'scalar'."""
    return str(require_core().cpu_isa())


def set_cpu_isa(name: str) -> None:
    """Force a CPU kernel set (like PYRT_FORCE_CPU_ISA); raises UnsupportedError if unavailable."""
    require_core().set_cpu_isa(name)


def available_cpu_isas() -> list[str]:
    """Kernel sets this CPU and build support, best first."""
    return list(require_core().cpu_isas_supported())


def build_info() -> dict:
    """Everything a bug report needs: versions, ISA in use and available, threads, CUDA."""
    from . import __version__

    info = {
        "version": __version__,
        "native_core": core is not None,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "machine": platform.machine(),
    }
    if core is None:
        info.update(cpu_isa=None, threads=None, cuda=False, native_error=IMPORT_ERROR)
        return info
    info.update(
        core_version=core.version,
        cpu_isa=core.cpu_isa(),
        cpu_isas_available=list(core.cpu_isas_supported()),
        cpu_features=list(core.cpu_features()),
        threads=int(core.num_threads()),
        openmp=bool(core.openmp),
        cuda=bool(core.cuda),
        compiler=core.compiler,
        env={k: v for k, v in os.environ.items() if k.startswith("PYRT_")},
    )
    return info
