"""Shared test helpers. Numerical tests compare with float64 numpy, on random data, with outputs
poisoned before the kernel writes them."""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path

import numpy as np
import pytest

# Nothing is ever fetched from a model hub: the peers that load models (sentence-transformers) read
# the local folders that tools/fetch_models.py extracted from PyPI wheels.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pyrt

POISON = np.float32(np.nan)


def poisoned(shape, dtype=np.float32) -> np.ndarray:
    """An output buffer full of NaN: any element the kernel forgets to write fails the test."""
    return np.full(shape, POISON, dtype=dtype)


@pytest.fixture
def rng(request) -> np.random.Generator:
    # A seed per test id: reproducible across runs (str hash() is randomised per process), and
    # different across tests.
    seed = zlib.crc32(request.node.nodeid.encode())
    return np.random.default_rng(seed)


@pytest.fixture(params=pyrt.available_cpu_isas())
def cpu_isa(request):
    """Runs the test once per CPU kernel set this machine supports, then restores the default."""
    previous = pyrt.get_cpu_isa()
    pyrt.set_cpu_isa(request.param)
    yield request.param
    pyrt.set_cpu_isa(previous)


def models_dir() -> Path:
    """Where tools/fetch_models.py puts the real checkpoints ($PYRT_MODELS, else ~/.cache/pyrt/models)."""
    from pyrt.cli.models_dir import models_dir as fetched_models_dir
    return fetched_models_dir()


def run_python(*args: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """Runs ``python *args`` from a neutral directory, so the subprocess imports the installed pyrt
    (from a checkout root, ``python -c`` would pick up the uncompiled source tree instead)."""
    # Put the directory holding the pyrt under test first, so a subprocess tests that same pyrt.
    package_parent = str(Path(pyrt.__file__).resolve().parents[1])
    python_path = os.pathsep.join(p for p in (package_parent, os.environ.get("PYTHONPATH")) if p)
    with tempfile.TemporaryDirectory() as cwd:
        return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=cwd,
                              env={**os.environ, "PYTHONPATH": python_path, **(env or {})}, timeout=timeout)
