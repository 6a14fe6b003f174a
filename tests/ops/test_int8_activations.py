"""Opt-in int8 activations (docs/int8.md): every kernel set against a float64 numpy emulation of
the same quantized-activation math (tight) and against the exact product (documented bound)."""
from __future__ import annotations

import numpy as np
import pytest

import pyrt
from pyrt.formats import dequantize_reference

from helpers import PLAIN, QUANT, emulate, quantize_activations, rounding_bound
from helpers import activation_case as make_case, matmul_with_activations as run

SHAPES = [  # (M, N, K / block multiple): K = one block, K not a multiple of 128, N % 16 != 0
    (1, 37, 1), (3, 19, 3), (8, 45, 5), (33, 50, 7), (300, 29, 4), (1, 64, 40), (8, 131, 9),
    # M = 1 at block 32: whole groups of 128 plus one, two and three tail blocks (nibble groups)
    (1, 21, 13), (1, 9, 6), (1, 6, 7),
]


@pytest.mark.parametrize("fmt", QUANT)
@pytest.mark.parametrize("block", [32, 64, 128])
@pytest.mark.parametrize("M,N,kb", SHAPES)
def test_matches_emulation_and_exact_bound(cpu_isa, rng, fmt, block, M, N, kb):
    K = block * kb
    x, t, b = make_case(rng, fmt, block, M, N, K)
    y = run(x, t, b).astype(np.float64)
    emu, tol = emulate(x, t, fmt, block, b.astype(np.float64))
    err = np.abs(y - emu)
    assert (err <= tol).all(), f"vs emulation: max err {err.max():.3g}, worst err/tol {(err / tol).max():.3g}"
    # Against the exact product of x and the dequantized weights: |x - d_x q_x| <= d_x / 2 per
    # element (round to nearest), so |y - exact| <= sum_blocks d_x / 2 * sum_j |w_j| (+ FP32 error).
    w64 = dequantize_reference(t.numpy(), fmt, block, (N, K))
    exact = x.astype(np.float64) @ w64.T + b
    _, dx, _ = quantize_activations(x, block)
    bound = rounding_bound(dx, w64, block, tol)
    gap = np.abs(y - exact)
    assert (gap <= bound).all(), f"vs exact: worst gap/bound {(gap / bound).max():.3g}"


@pytest.mark.parametrize("fmt", QUANT)
@pytest.mark.parametrize("block", [32, 128])
def test_every_isa_agrees_with_scalar(rng, fmt, block):
    x, t, b = make_case(rng, fmt, block, 40, 70, block * 6)
    previous = pyrt.get_cpu_isa()
    try:
        results = {}
        for isa in pyrt.available_cpu_isas():
            pyrt.set_cpu_isa(isa)
            results[isa] = run(x, t, b)
    finally:
        pyrt.set_cpu_isa(previous)
    emu, tol = emulate(x, t, fmt, block, b.astype(np.float64))
    for isa, y in results.items():
        assert (np.abs(y - results["scalar"]) <= 2 * tol).all(), isa


@pytest.mark.parametrize("fmt", QUANT)
@pytest.mark.parametrize("M", [1, 8, 100])
def test_identical_across_thread_counts(cpu_isa, rng, fmt, M):
    x, t, b = make_case(rng, fmt, 32, M, 300, 32 * 20)
    previous = pyrt.get_num_threads()
    try:
        pyrt.set_num_threads(1)
        one = run(x, t, b)
        pyrt.set_num_threads(2)
        two = run(x, t, b)
        pyrt.set_num_threads(3)
        three = run(x, t, b)
    finally:
        pyrt.set_num_threads(previous)
    np.testing.assert_array_equal(one, two)
    np.testing.assert_array_equal(one, three)


@pytest.mark.parametrize("fmt", PLAIN)
def test_plain_weights_ignore_the_mode(cpu_isa, rng, fmt):
    x, t, b = make_case(rng, fmt, 32, 5, 33, 96)
    np.testing.assert_array_equal(run(x, t, b, "int8"), run(x, t, b, "exact"))


def test_float16_activations_and_linear(rng):
    x, t, b = make_case(rng, "q4", 32, 4, 20, 64)
    x16 = x.astype(np.float16)
    np.testing.assert_array_equal(pyrt.matmul(x16, t, b, activations="int8"),
                                  pyrt.matmul(x16.astype(np.float32), t, b, activations="int8"))
    layer = pyrt.Linear(t, b, activations="int8")
    np.testing.assert_array_equal(layer(x), pyrt.matmul(x, t, b, activations="int8"))
    assert "int8" in repr(layer)


def test_zero_rows_and_zero_blocks(rng):
    x, t, b = make_case(rng, "q8", 32, 3, 20, 128)
    x[1] = 0
    x[2, :32] = 0
    y = run(x, t, b)
    emu, tol = emulate(x, t, "q8", 32, b.astype(np.float64))
    assert (np.abs(y - emu) <= tol).all()
    np.testing.assert_allclose(y[1], b, rtol=0, atol=0)


@pytest.mark.parametrize("bad", ["int4", "INT8", "", None, 8])
def test_invalid_mode_raises(rng, bad):
    x, t, b = make_case(rng, "q8", 32, 2, 4, 32)
    with pytest.raises(pyrt.DtypeError):
        pyrt.matmul(x, t, b, activations=bad)
    with pytest.raises(ValueError):
        pyrt.Linear(t, b, activations=bad)


def test_non_finite_activations_raise(rng):
    x, t, b = make_case(rng, "q4", 32, 2, 4, 64)
    x[1, 3] = np.inf
    with pytest.raises(pyrt.RangeError):
        pyrt.matmul(x, t, b, activations="int8")
