"""Fixtures for the Ray Data tests: one local Ray per test module (2 CPUs, no dashboard) whose
workers import the pyrt under test, and the real models converted once per session."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

import pyrt
from helpers import models_dir

MINILM = models_dir() / "all-MiniLM-L6-v2"
SMOLLM2_GGUF = models_dir() / "smollm2" / "SmolLM2-135M-Instruct.Q4_1.gguf"


def pyrt_parent() -> str:
    """The folder that holds the pyrt package under test (a checkout or site-packages)."""
    return str(Path(pyrt.__file__).resolve().parents[1])


@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray", reason="the Ray Data tests need the 'ray' extra")
    pytest.importorskip("pyarrow", reason="the Ray Data tests need the 'ray' extra")
    path = os.pathsep.join(p for p in (pyrt_parent(), os.environ.get("PYTHONPATH")) if p)
    # Ray puts the driver's current folder first on its workers' sys.path: from a checkout root
    # (CI runs pytest there) they would import the uncompiled source tree, so start from a neutral one.
    here = os.getcwd()
    with tempfile.TemporaryDirectory() as neutral:  # kept while Ray runs: its workers' current folder
        os.chdir(neutral)
        try:
            ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False,
                     runtime_env={"env_vars": {"PYTHONPATH": path}})
        finally:
            os.chdir(here)
        import ray.data

        ray.data.DataContext.get_current().enable_progress_bars = False
        try:
            yield ray
        finally:
            ray.shutdown()


@pytest.fixture(scope="session")
def minilm_q8(tmp_path_factory) -> Path:
    if not (MINILM / "model.safetensors").is_file():
        pytest.skip(f"{MINILM} absent: run python tools/fetch_models.py")
    from pyrt.convert import convert_checkpoint

    out = tmp_path_factory.mktemp("minilm") / "minilm-q8.pyrt"
    convert_checkpoint(MINILM, out, dtype="q8")
    return out


@pytest.fixture(scope="session")
def smollm2_q4a(tmp_path_factory) -> Path:
    if not SMOLLM2_GGUF.is_file():
        pytest.skip(f"{SMOLLM2_GGUF} absent: run python tools/fetch_models.py")
    from pyrt.convert import convert_checkpoint

    out = tmp_path_factory.mktemp("smollm2") / "smollm2-q4a.pyrt"
    convert_checkpoint(SMOLLM2_GGUF, out, dtype="q4a")
    return out


def sentences(n: int) -> list[str]:
    """Varied English-like sentences of different lengths (so batches pad differently)."""
    words = ("river", "model", "quiet", "engine", "paper", "north", "silver", "garden", "signal", "window",
             "winter", "number", "market", "orange", "planet", "letter", "bridge", "forest")
    return [" ".join(words[(i * 7 + j * 3) % len(words)] for j in range(3 + i % 11)) + f" {i}." for i in range(n)]


@pytest.fixture(scope="session")
def make_sentences():
    return sentences
