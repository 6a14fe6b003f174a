"""csrc/cpu/vector_math_*.cc: every function on every ISA this machine supports, against float64
numpy on random data (lengths that leave vector tails), with poisoned outputs, plus the special
values (very large |x|, infinities, NaN) the polynomial kernels must get right."""
from __future__ import annotations

import math

import numpy as np
import pytest

from helpers import REPO_ROOT, poisoned
from pyrt import _core

LENGTHS = [1, 7, 15, 17, 1000]
_erf = np.vectorize(math.erf, otypes=[np.float64])


def run(name, x, out_size=None, **kwargs):
    out = poisoned(x.size if out_size is None else out_size)
    _core._vector_math(name, np.ascontiguousarray(x, np.float32), out, **kwargs)
    return out


def gelu64(x):
    x = x.astype(np.float64)
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))


def mixed_magnitudes(rng, n, scale):
    """Mostly N(0, scale), with some tiny and some large values mixed in."""
    x = rng.normal(0.0, scale, n)
    pick = rng.random(n)
    x[pick < 0.1] *= 1e-6
    x[pick > 0.9] *= 8.0
    return x.astype(np.float32)


@pytest.mark.parametrize("n", LENGTHS)
def test_exp(cpu_isa, rng, n):
    x = rng.uniform(-87.0, 88.0, n).astype(np.float32)
    x[: n // 3] = rng.normal(0, 1, n // 3)
    got = run("exp", x)
    want = np.exp(x.astype(np.float64))
    rel = np.abs(got - want) / want
    assert rel.max() <= 5e-7, f"max relative error {rel.max():.2e}"


def test_exp_special_values(cpu_isa):
    x = np.array([-np.inf, -1e30, -200, -104.5, -88.5, 0.0, -0.0, 88.7, 89.0, 200, 1e30, np.inf, np.nan], np.float32)
    got = run("exp", x)
    np.testing.assert_array_equal(got[:4], 0.0)
    assert abs(got[4] - np.exp(np.float64(x[4]))) <= 2e-45  # a subnormal, rounded once
    np.testing.assert_array_equal(got[5:7], 1.0)
    assert abs(got[7] / np.exp(np.float64(x[7])) - 1) < 5e-7
    assert np.all(np.isposinf(got[8:12])) and np.isnan(got[12])


def test_exp_dense_grid(cpu_isa):
    x = np.linspace(-87.0, 88.5, 400_001, dtype=np.float32)
    want = np.exp(x.astype(np.float64))
    assert (np.abs(run("exp", x) - want) / want).max() <= 5e-7


@pytest.mark.parametrize("n", LENGTHS)
def test_gelu_erf(cpu_isa, rng, n):
    x = mixed_magnitudes(rng, n, 3.0)
    err = np.abs(run("gelu_erf", x) - gelu64(x)) / np.maximum(1.0, np.abs(x))
    assert err.max() <= 2e-7, f"max scaled error {err.max():.2e}"


def test_gelu_erf_dense_grid(cpu_isa):
    # Covers both sides of the polynomial split at |x| = 2 and the clamp of the tail at 7.
    x = np.linspace(-12.0, 12.0, 240_001, dtype=np.float32)
    err = np.abs(run("gelu_erf", x) - gelu64(x)) / np.maximum(1.0, np.abs(x))
    assert err.max() <= 2e-7, f"max scaled error {err.max():.2e} at x={x[np.argmax(err)]}"


def test_gelu_erf_special_values(cpu_isa):
    x = np.array([-20.0, 20.0, -1e30, 1e30, np.inf, np.nan, 0.0, -0.0, -3.0e-39], np.float32)
    got = run("gelu_erf", x)
    assert got[0] == 0.0 and np.signbit(got[0])
    assert got[1] == 20.0 and got[3] == np.float32(1e30) and np.isposinf(got[4])
    assert got[2] == 0.0 and np.isnan(got[5])
    assert got[6] == 0.0 and got[7] == 0.0 and abs(got[8]) <= 3.0e-39


@pytest.mark.parametrize("n", LENGTHS)
def test_silu(cpu_isa, rng, n):
    x = mixed_magnitudes(rng, n, 4.0)
    x64 = x.astype(np.float64)
    want = x64 / (1.0 + np.exp(-x64))
    err = np.abs(run("silu", x) - want) / np.maximum(1e-30, np.abs(want))
    assert err.max() <= 1e-6, f"max relative error {err.max():.2e}"


def test_silu_special_values(cpu_isa):
    got = run("silu", np.array([-200.0, -1e30, 200.0, 1e30, np.nan], np.float32))
    assert got[0] == 0.0 and got[1] == 0.0 and got[2] == 200.0 and got[3] == np.float32(1e30)
    assert np.isnan(got[4])


@pytest.mark.parametrize("n", LENGTHS)
def test_silu_mul(cpu_isa, rng, n):
    gate, up = mixed_magnitudes(rng, n, 4.0), rng.normal(0, 2, n).astype(np.float32)
    g64 = gate.astype(np.float64)
    want = g64 / (1.0 + np.exp(-g64)) * up
    err = np.abs(run("silu_mul", gate, y=up) - want) / np.maximum(1e-30, np.abs(want))
    assert err.max() <= 1e-6


@pytest.mark.parametrize("n", LENGTHS)
@pytest.mark.parametrize("valid_fraction", [0.0, 0.5, 1.0])
def test_softmax(cpu_isa, rng, n, valid_fraction):
    valid = max(1, int(round(n * valid_fraction))) if valid_fraction else 0
    x = rng.normal(0, 10, n).astype(np.float32)
    x[:: 5] += 500.0  # large scores: only max subtraction keeps exp finite
    scale = 0.125
    got = run("softmax", x, scalar=scale, valid=valid)
    assert np.all(got[valid:] == 0.0)
    if valid:
        s = x[:valid].astype(np.float64) * scale
        want = np.exp(s - s.max())
        want /= want.sum()
        assert np.abs(got[:valid] - want).max() <= 1e-6
        assert abs(got[:valid].astype(np.float64).sum() - 1.0) <= 1e-5


@pytest.mark.parametrize("n", LENGTHS)
def test_layer_norm(cpu_isa, rng, n):
    x = (rng.normal(5.0, 3.0, n)).astype(np.float32)
    gamma, beta = rng.normal(1, 0.2, n).astype(np.float32), rng.normal(0, 0.5, n).astype(np.float32)
    eps = 1e-12
    got = run("layer_norm", x, weight=gamma, bias=beta, scalar=eps)
    x64 = x.astype(np.float64)
    want = (x64 - x64.mean()) / np.sqrt(x64.var() + eps) * gamma + beta
    if n == 1:
        np.testing.assert_array_equal(got, beta)  # zero variance: (x - mean) is exactly 0
    else:
        assert np.abs(got - want).max() <= 2e-5 * max(1.0, np.abs(want).max())


@pytest.mark.parametrize("n", LENGTHS)
def test_rms_norm(cpu_isa, rng, n):
    x = mixed_magnitudes(rng, n, 2.0)
    w = rng.normal(1, 0.3, n).astype(np.float32)
    eps = 1e-5
    got = run("rms_norm", x, weight=w, scalar=eps)
    x64 = x.astype(np.float64)
    want = x64 / np.sqrt(np.mean(x64 * x64) + eps) * w
    assert np.abs(got - want).max() <= 1e-6 * max(1.0, np.abs(want).max())


@pytest.mark.parametrize("n", LENGTHS)
def test_dot(cpu_isa, rng, n):
    a, b = rng.normal(0, 1, n).astype(np.float32), rng.normal(0, 1, n).astype(np.float32)
    got = run("dot", a, out_size=1, y=b)[0]
    want = np.dot(a.astype(np.float64), b.astype(np.float64))
    assert abs(got - want) <= 1e-6 * np.abs(a.astype(np.float64) * b).sum() + 1e-30


@pytest.mark.parametrize("n", LENGTHS)
def test_axpy(cpu_isa, rng, n):
    x, y = rng.normal(0, 1, n).astype(np.float32), rng.normal(0, 1, n).astype(np.float32)
    got = run("axpy", x, y=y, scalar=-0.75)
    want = y.astype(np.float64) - 0.75 * x.astype(np.float64)
    assert np.abs(got - want).max() <= 2e-7 * max(1.0, np.abs(want).max())


def test_unknown_name_and_bad_sizes_raise():
    x = np.zeros(4, np.float32)
    with pytest.raises(Exception, match="unknown vector math function"):
        _core._vector_math("cosh", x, np.zeros(4, np.float32))
    with pytest.raises(ValueError):
        _core._vector_math("silu_mul", x, np.zeros(4, np.float32), y=np.zeros(3, np.float32))


def test_coefficient_header_matches_its_generator():
    # tools/fit_vector_math.py regenerates csrc/cpu/vector_math_coefficients.h; the numbers may move
    # in the last bit with another LAPACK, not more. Run as a script: it pins BLAS to one thread.
    import re
    import subprocess
    import sys

    header = REPO_ROOT / "csrc" / "cpu" / "vector_math_coefficients.h"
    tool = REPO_ROOT / "tools" / "fit_vector_math.py"
    if not (header.is_file() and tool.is_file()):
        pytest.skip("source tree not available (installed package)")
    fresh = subprocess.run([sys.executable, str(tool), "--print"], capture_output=True, text=True, check=True,
                           timeout=120).stdout
    number = r"-?\d+\.\d+(?:e[-+]?\d+)?f"
    values = lambda text: [float(v[:-1]) for line in text.splitlines() if line.startswith("constexpr")
                           for v in re.findall(number, line)]
    got, want = values(header.read_text()), values(fresh)
    assert len(got) == len(want) and len(got) > 20
    np.testing.assert_allclose(got, want, rtol=1e-5)
