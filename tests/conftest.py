"""Fixtures shared by every test folder (helpers without fixtures live in helpers.py). Numerical tests
compare with float64 numpy, on random data, with outputs poisoned before the kernel writes them."""
from __future__ import annotations

import os
import zlib

import numpy as np
import pytest

# Nothing is ever fetched from a model hub: the peers that load models (sentence-transformers) read
# the local folders that tools/fetch_models.py extracted from PyPI wheels.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

# Plain `assert`s in the shared helpers report their operands like those in test modules.
pytest.register_assert_rewrite("helpers")

import pyrt  # noqa: E402

from helpers import BACKENDS, CPU_ISAS  # noqa: E402


def pytest_report_header(config) -> list[str]:
    """Which compiled core the run tests. An editable install (pip install -e) keeps its own copy of
    the core, compiled at install time, ahead of the one tools/dev_build.sh puts into pyrt/: the run
    would silently test the old build, so say so."""
    from pathlib import Path

    import pyrt._core

    loaded = Path(pyrt._core.__file__).resolve()
    lines = [f"pyrt core: {loaded}"]
    in_place = Path(pyrt.__file__).with_name(Path(pyrt._core.__file__).name)
    if in_place.is_file() and in_place.resolve() != loaded:
        lines.append(f"WARNING: the in-place build {in_place} is not the core under test "
                     "(an editable install shadows it; reinstall, or remove its copy)")
    return lines


@pytest.fixture
def rng(request) -> np.random.Generator:
    # A seed per test id: reproducible across runs (str hash() is randomised per process), and
    # different across tests.
    seed = zlib.crc32(request.node.nodeid.encode())
    return np.random.default_rng(seed)


def _select_cpu_isa(isa: str):
    """Selects a CPU kernel set for one test, then restores the kernel set and thread count."""
    if isa not in pyrt.available_cpu_isas():
        pytest.skip(f"no {isa} kernels on this CPU/build")
    previous, threads = pyrt.get_cpu_isa(), pyrt.get_num_threads()
    pyrt.set_cpu_isa(isa)
    assert pyrt.get_cpu_isa() == isa
    try:
        yield isa
    finally:
        pyrt.set_cpu_isa(previous)
        pyrt.set_num_threads(threads)


@pytest.fixture(params=CPU_ISAS)
def cpu_isa(request):
    """Runs the test once per CPU kernel set."""
    yield from _select_cpu_isa(request.param)


@pytest.fixture(params=[pytest.param(b, marks=pytest.mark.gpu) if b == "cuda" else b for b in BACKENDS])
def backend(request):
    """Runs the test once per CPU kernel set and once on the CUDA device; yields the backend's name
    ("cpu-<isa>" or "cuda")."""
    if request.param == "cuda":
        import pyrt.cuda

        if not pyrt.cuda.is_available():
            pytest.skip(f"no usable CUDA device: {pyrt.cuda.unavailable_reason()}")
        pytest.importorskip("cupy", reason="device cases pass cupy arrays")
        yield "cuda"
        return
    for _ in _select_cpu_isa(request.param[len("cpu-"):]):
        yield request.param
