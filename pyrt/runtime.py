"""Threads, CPU ISA selection and build information."""
from __future__ import annotations

import os
import platform

from ._native import IMPORT_ERROR, core, require_core
from .errors import UnsupportedError

# GNU OpenMP keeps its worker threads in a pool that fork() does not copy: a child forked after the
# parent ran a parallel region waits forever for the missing workers in its own first one. So a
# forked child runs pyrt on one thread (no parallel region at all), and asking it for more raises
# instead of hanging. Children started with "spawn" or "forkserver" are fresh processes, unaffected.
_forked_child = False


def _after_fork_in_child() -> None:
    global _forked_child
    _forked_child = True
    core.set_num_threads(1)


if core is not None and getattr(core, "openmp", False) and hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def get_num_threads() -> int:
    """Threads used by matmul and the models (PYRT_NUM_THREADS, default: all usable cores). With the
    default count a model's step may use fewer while other processes keep the cores busy
    (:func:`get_adaptive_threads`); :func:`get_threads_last_used` tells how many it used."""
    return int(require_core().num_threads())


def get_threads_last_used() -> int:
    """Threads the last parallel step of a model ran on (0 before the first): get_num_threads(), or
    fewer while the thread count adapts to a busy machine."""
    return int(require_core().last_team_threads())


def get_adaptive_threads() -> bool:
    """Whether a model's steps use fewer threads while other processes take the cores
    (PYRT_ADAPTIVE_THREADS, default on). An explicit thread count (PYRT_NUM_THREADS,
    ``set_num_threads(n)`` with ``n > 0``) is always used exactly. See docs/environment.md."""
    return bool(require_core().adaptive_threads())


def set_adaptive_threads(enabled: bool) -> None:
    """Turn the load-following thread count on or off (like PYRT_ADAPTIVE_THREADS=1 / 0)."""
    require_core().set_adaptive_threads(bool(enabled))


def set_num_threads(n: int) -> None:
    """Set the thread count; ``n <= 0`` restores the default (1 in a process started by fork).

    In a process forked from one that had loaded pyrt, more than one thread raises
    :class:`UnsupportedError` (OpenMP cannot run there): start such children with the "spawn" or
    "forkserver" method of multiprocessing."""
    n = int(n)
    if _forked_child:
        if n > 1:
            raise UnsupportedError(f"set_num_threads({n}) in a process started by fork: OpenMP's threads do not "
                                   "survive fork, so pyrt runs on 1 thread here; use multiprocessing's "
                                   "'spawn' or 'forkserver' start method for more (docs/scale-out.md)")
        n = 1
    require_core().set_num_threads(n)


def get_wait_spin_us() -> int:
    """Microseconds a thread spins at one of pyrt's barriers before it sleeps (PYRT_WAIT_SPIN_US,
    default 50)."""
    return int(require_core().wait_spin_us())


def set_wait_spin_us(microseconds: int) -> None:
    """Set how long a waiting thread spins before it sleeps: 0 sleeps at once (other processes
    share the cores), a large value spins (lowest latency on an idle machine); ``< 0`` restores
    the default. See docs/environment.md."""
    require_core().set_wait_spin_us(int(microseconds))


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
        adaptive_threads=bool(core.adaptive_threads()),
        threads_last_used=int(core.last_team_threads()),
        wait_spin_us=int(core.wait_spin_us()),
        openmp=bool(core.openmp),
        cuda=bool(core.cuda),
        compiler=core.compiler,
        env={k: v for k, v in os.environ.items() if k.startswith("PYRT_")},
    )
    return info
