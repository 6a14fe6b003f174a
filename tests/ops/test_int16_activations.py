"""Opt-in int16 activations (two int8 digits, docs/int8.md): every kernel set against a float64
emulation of the two-digit math, the documented bound against the exact product, and the
precision gain over int8 that is the mode's reason to exist."""
from __future__ import annotations

import numpy as np
import pytest

import pyrt
from pyrt.formats import dequantize_reference

from helpers import PLAIN, QUANT, emulate, quantize_activations, rounding_bound
from helpers import activation_case as make_case, matmul_with_activations as run

# 2M digit rows: M=1, 2 -> the small-M kernels; M=3, 4, 8 -> GEMM tiles of 6 with remainders 0, 2, 4.
SHAPES = [(1, 37, 1), (2, 40, 2), (3, 19, 3), (4, 23, 2), (8, 45, 5), (33, 50, 7), (300, 29, 4), (1, 64, 40),
          (64, 131, 9)]


def residual(x: np.ndarray, block: int) -> np.ndarray:
    """x - d_x q_x in float32, as the C++ residual step computes it."""
    q, d, _ = quantize_activations(x, block)
    M, K = x.shape
    first = (q.astype(np.float32) * d[..., None]).astype(np.float32).reshape(M, K)
    return (x.astype(np.float32) - first).astype(np.float32)


@pytest.mark.parametrize("fmt", QUANT)
@pytest.mark.parametrize("block", [32, 64, 128])
@pytest.mark.parametrize("M,N,kb", SHAPES)
def test_matches_two_digit_emulation_and_bound(cpu_isa, rng, fmt, block, M, N, kb):
    K = block * kb
    x, t, b = make_case(rng, fmt, block, M, N, K)
    y = run(x, t, b, "int16").astype(np.float64)
    r = residual(x, block)
    high, tol_high = emulate(x, t, fmt, block, b.astype(np.float64))
    low, tol_low = emulate(r, t, fmt, block, None)
    err = np.abs(y - (high + low))
    tol = tol_high + tol_low
    assert (err <= tol).all(), f"vs emulation: worst err/tol {(err / tol).max():.3g}"
    # Against the exact product: the second digit leaves |r - d_r q_r| <= d_r / 2 per element, and
    # d_r = max|r| / 127 <= d_x / 254 (up to FP32 rounding).
    _, dx, _ = quantize_activations(x, block)
    _, dr, _ = quantize_activations(r, block)
    assert (dr <= dx / 254 * (1 + 1e-4) + 1e-38).all()  # FP32 rounding of x * (127 / max)
    w64 = dequantize_reference(t.numpy(), fmt, block, (N, K))
    exact = x.astype(np.float64) @ w64.T + b
    bound = rounding_bound(dr, w64, block, tol)
    gap = np.abs(y - exact)
    assert (gap <= bound).all(), f"vs exact: worst gap/bound {(gap / bound).max():.3g}"


@pytest.mark.parametrize("fmt", QUANT)
def test_much_closer_to_exact_than_int8(cpu_isa, rng, fmt):
    x, t, b = make_case(rng, fmt, 32, 16, 96, 32 * 12)
    exact = pyrt.matmul(x, t, b).astype(np.float64)
    err8 = np.abs(run(x, t, b, "int8") - exact).max()
    err16 = np.abs(run(x, t, b, "int16") - exact).max()
    # Measured ~200-400x (max error, random data); the residual's scale alone promises 254x less
    # quantization error.
    assert err16 * 50 <= err8, f"int16 max error {err16:.3g}, int8 {err8:.3g}"


@pytest.mark.parametrize("fmt", QUANT)
@pytest.mark.parametrize("M", [1, 8, 100])
def test_identical_across_thread_counts(cpu_isa, rng, fmt, M):
    x, t, b = make_case(rng, fmt, 32, M, 300, 32 * 20)
    previous = pyrt.get_num_threads()
    try:
        results = []
        for n in (1, 2, 3):
            pyrt.set_num_threads(n)
            results.append(run(x, t, b, "int16"))
    finally:
        pyrt.set_num_threads(previous)
    np.testing.assert_array_equal(results[0], results[1])
    np.testing.assert_array_equal(results[0], results[2])


@pytest.mark.parametrize("fmt", PLAIN)
def test_plain_weights_ignore_the_mode(cpu_isa, rng, fmt):
    x, t, b = make_case(rng, fmt, 32, 5, 33, 96)
    np.testing.assert_array_equal(run(x, t, b, "int16"), run(x, t, b, "exact"))


@pytest.mark.parametrize("shape", [(2, 4, 64), (64, 256, 256)])  # one thread, and the parallel path
def test_non_finite_activations_raise(rng, shape):
    M, N, K = shape
    x, t, b = make_case(rng, "q4", 32, M, N, K)
    x[M - 1, 3] = np.nan
    previous = pyrt.get_num_threads()
    try:
        pyrt.set_num_threads(2)
        for mode in ("int8", "int16"):
            with pytest.raises(pyrt.RangeError):
                pyrt.matmul(x, t, b, activations=mode)
    finally:
        pyrt.set_num_threads(previous)


def test_linear_and_float16_activations(rng):
    x, t, b = make_case(rng, "q8", 32, 4, 20, 64)
    layer = pyrt.Linear(t, b, activations="int16")
    np.testing.assert_array_equal(layer(x), pyrt.matmul(x, t, b, activations="int16"))
    x16 = x.astype(np.float16)
    np.testing.assert_array_equal(pyrt.matmul(x16, t, b, activations="int16"),
                                  pyrt.matmul(x16.astype(np.float32), t, b, activations="int16"))


def test_language_model_refuses_int16(tmp_path):
    with pytest.raises(pyrt.UnsupportedError, match="int16"):
        pyrt.LanguageModel(tmp_path / "absent.gguf", activations="int16")
