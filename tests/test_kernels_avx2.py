"""The AVX2 matmul kernels (csrc/cpu/*_avx2.cc) against float64 numpy and the scalar kernel.

Every format and block, the small-M (register decoding) and large-M (packed GEMM) paths, K tails of
the plain formats, partial tiles in M and N, bias on and off, and 1 vs 2 threads. Outputs are
poisoned with NaN so an element the kernel forgets to write fails.
"""
from __future__ import annotations

import numpy as np
import pytest

import pyrt
from pyrt.formats import dequantize_reference

from helpers import poisoned

pytestmark = pytest.mark.skipif("avx2" not in pyrt.available_cpu_isas(), reason="no AVX2 kernels on this CPU/build")

PLAIN = [("f32", 1), ("f16", 1), ("bf16", 1)]
BLOCKED = [(f, b) for f in ("q8", "q4", "q4a") for b in (32, 64, 128)]
ALL_FORMATS = PLAIN + BLOCKED
M_VALUES = [1, 2, 3, 5, 16, 17, 128, 300]
N_VALUES = [1, 3, 17, 64, 129]


def k_values(fmt: str, block: int) -> list[int]:
    """One block, odd multiples of it (one past the 512-wide K panel), and 4096; for the plain
    formats also K that are not multiples of 8 or 16 (the scalar tail), and K below one vector."""
    if block > 1:
        return [block, 3 * block, 5 * block, 4096]
    return [1, 13, 24, 96, 160, 600, 4096, 4099]


@pytest.fixture
def avx2():
    previous, threads = pyrt.get_cpu_isa(), pyrt.get_num_threads()
    pyrt.set_cpu_isa("avx2")
    assert pyrt.get_cpu_isa() == "avx2"
    yield
    pyrt.set_cpu_isa(previous)
    pyrt.set_num_threads(threads)


def make_case(rng, fmt, block, M, N, K, with_bias):
    w = rng.standard_normal((N, K)).astype(np.float32)
    x = rng.standard_normal((M, K)).astype(np.float32)
    bias = rng.standard_normal(N).astype(np.float32) if with_bias else None
    return x, pyrt.quantize(w, fmt, block), bias


def reference_and_tolerance(x, t, bias):
    """float64 x @ W^T (+ bias) of the stored weights, and a per-element bound on FP32
    accumulation error: 1e-5 * sqrt(K) * ||x_m * w_n||_2 (+ rounding of the bias)."""
    n, k = t.shape
    w64 = dequantize_reference(t.numpy(), t.dtype, t.block, (n, k))
    x64 = x.astype(np.float64)
    ref = x64 @ w64.T
    tol = 1e-5 * np.sqrt(max(k, 1)) * np.sqrt((x64**2) @ (w64**2).T)
    if bias is not None:
        ref = ref + bias
        tol = tol + 1e-6 * np.abs(bias)
    return ref, tol + 1e-30


def run(x, t, bias, isa="avx2"):
    pyrt.set_cpu_isa(isa)
    out = poisoned((x.shape[0], t.shape[0]))
    result = pyrt.matmul(x, t, bias, out=out)
    assert result is out
    return out


def assert_close(out, ref, tol, what):
    assert np.all(np.isfinite(out)), f"{what}: unwritten (NaN) outputs"
    err = np.abs(out.astype(np.float64) - ref)
    worst = np.unravel_index(np.argmax(err / tol), err.shape)
    assert np.all(err <= tol), f"{what}: error {err[worst]:.3g} > tol {tol[worst]:.3g} at {worst}"


@pytest.mark.parametrize("M", M_VALUES)
@pytest.mark.parametrize("fmt,block", ALL_FORMATS, ids=[f"{f}-{b}" for f, b in ALL_FORMATS])
def test_matches_float64_reference(avx2, rng, fmt, block, M):
    for K in k_values(fmt, block):
        # The largest shapes cost the float64 reference most; keep them to a few N.
        n_values = N_VALUES if K < 4096 or M <= 17 else [3, 129]
        for N in n_values:
            for with_bias in (False, True):
                x, t, bias = make_case(rng, fmt, block, M, N, K, with_bias)
                ref, tol = reference_and_tolerance(x, t, bias)
                assert_close(run(x, t, bias), ref, tol, f"{fmt}/{block} M={M} N={N} K={K} bias={with_bias}")


@pytest.mark.parametrize("M", [1, 2, 5, 128])
@pytest.mark.parametrize("fmt,block", ALL_FORMATS, ids=[f"{f}-{b}" for f, b in ALL_FORMATS])
def test_agrees_with_scalar_kernel(avx2, rng, fmt, block, M):
    K = 640 if block > 1 else 611
    x, t, bias = make_case(rng, fmt, block, M, 67, K, True)
    ref, tol = reference_and_tolerance(x, t, bias)
    fast = run(x, t, bias, "avx2")
    slow = run(x, t, bias, "scalar")
    assert_close(slow, ref, tol, "scalar")
    # Both are within tol of the exact result, so within 2 tol of each other; in practice far closer.
    assert np.all(np.abs(fast.astype(np.float64) - slow) <= 2 * tol)


@pytest.mark.parametrize("M", [1, 3, 8, 128])
@pytest.mark.parametrize("fmt,block", [("f32", 1), ("bf16", 1), ("q8", 64), ("q4", 32), ("q4a", 128)])
def test_one_and_two_threads_identical(avx2, rng, fmt, block, M):
    # N spans several 16-row thread chunks and ends in a partial tile; work is above the
    # single-thread cutoff in csrc/ops/matmul.cc so two threads really run.
    K = 512 if block > 1 else 517
    x, t, bias = make_case(rng, fmt, block, M, 133, K, True)
    pyrt.set_num_threads(1)
    one = run(x, t, bias)
    pyrt.set_num_threads(2)
    two = run(x, t, bias)
    assert np.array_equal(one, two)
    ref, tol = reference_and_tolerance(x, t, bias)
    assert_close(two, ref, tol, "2 threads")


@pytest.mark.parametrize("fmt,block", [("f16", 1), ("q4", 64), ("q8", 32)])
def test_many_rows_of_x(avx2, rng, fmt, block):
    # M = 4096 crosses the 128-row blocking of the GEMM path many times.
    x, t, bias = make_case(rng, fmt, block, 4096, 19, 128, True)
    ref, tol = reference_and_tolerance(x, t, bias)
    assert_close(run(x, t, bias), ref, tol, "M=4096")


@pytest.mark.parametrize("M", [1, 6])
def test_float16_activations(avx2, rng, M):
    x, t, bias = make_case(rng, "q4a", 32, M, 37, 256, True)
    x16 = x.astype(np.float16)
    ref, tol = reference_and_tolerance(x16.astype(np.float32), t, bias)
    out = poisoned((M, 37))
    pyrt.matmul(x16, t, bias, out=out)
    assert_close(out, ref, tol, "f16 activations")


def test_weights_with_wide_dynamic_range(avx2, rng):
    # Per-row scales from 1e-3 to 1e3 exercise the per-block fp16 scales of every q-format.
    scales = np.logspace(-3, 3, 40).astype(np.float32)[:, None]
    w = (rng.standard_normal((40, 256)) * scales).astype(np.float32)
    x = rng.standard_normal((9, 256)).astype(np.float32)
    for fmt in ("f16", "bf16", "q8", "q4", "q4a"):
        t = pyrt.quantize(w, fmt, 32)
        for m in (1, 9):
            ref, tol = reference_and_tolerance(x[:m], t, None)
            assert_close(run(np.ascontiguousarray(x[:m]), t, None), ref, tol, fmt)


@pytest.mark.parametrize("fmt,block", [("f32", 1), ("bf16", 1), ("q8", 128), ("q4", 32), ("q4a", 64)])
def test_every_row_remainder_of_both_paths(avx2, rng, fmt, block):
    # M = 1..23 crosses the GEMV/GEMM switch of every format and leaves every remainder of the
    # GEMV's 2-row and the GEMM's 6-row tiles; N = 37 leaves a partial 16-row strip.
    K = 384 if block > 1 else 389
    for M in range(1, 24):
        x, t, bias = make_case(rng, fmt, block, M, 37, K, M % 2 == 0)
        ref, tol = reference_and_tolerance(x, t, bias)
        assert_close(run(x, t, bias), ref, tol, f"M={M}")
