"""pyrt.matmul against float64 numpy, for every format, block, CPU kernel set and shape class."""
from __future__ import annotations

import numpy as np
import pytest

import pyrt
from pyrt.formats import dequantize_reference

from helpers import poisoned

CONFIGS = [("f32", 1), ("f16", 1), ("bf16", 1)] + [(f, b) for f in ("q8", "q4", "q4a") for b in (32, 64, 128)]

# (M, N, K in blocks (q-formats) / K (plain formats)): M=1 GEMV, small M, large M (blocked GEMM),
# odd N, K of exactly one block, large K.
SHAPES = [(1, 1, 1), (1, 17, 1), (1, 64, 32), (2, 33, 3), (3, 129, 5), (5, 16, 2), (16, 7, 4),
          (17, 48, 3), (128, 64, 4), (300, 129, 2), (1, 40, 128)]
PLAIN_K = {1: 37, 2: 100, 3: 48, 4: 256, 5: 8, 8: 333, 32: 1000, 128: 4096}

# How far y may be from x @ W_original.T, relative to ||y||_F: the loss of the format itself.
FORMAT_REL_ERROR = {"f32": 1e-6, "f16": 1e-3, "bf16": 8e-3, "q8": 1.5e-2, "q4": 0.2, "q4a": 0.2}


def make_case(rng, fmt, block, m, n, kb):
    k = kb * block if block > 1 else PLAIN_K[kb]
    w = rng.standard_normal((n, k)).astype(np.float32)
    x = rng.standard_normal((m, k)).astype(np.float32)
    return x, w, pyrt.quantize(w, fmt, block if block > 1 else 32)


def accumulation_bound(x64, w64):
    # FP32 accumulation error: a few ulps of the magnitude sum, growing with sqrt(K).
    k = x64.shape[-1]
    return 4 * np.finfo(np.float32).eps * np.sqrt(k) * (np.abs(x64) @ np.abs(w64).T) + 1e-30


@pytest.mark.parametrize("fmt,block", CONFIGS, ids=[f"{f}-{b}" for f, b in CONFIGS])
@pytest.mark.parametrize("m,n,kb", SHAPES, ids=[f"M{m}-N{n}-K{kb}" for m, n, kb in SHAPES])
def test_matmul_matches_float64_reference(rng, cpu_isa, fmt, block, m, n, kb):
    x, w, t = make_case(rng, fmt, block, m, n, kb)
    bias = rng.standard_normal(n).astype(np.float32)
    out = poisoned((m, n))
    y = pyrt.matmul(x, t, bias=bias, out=out)
    assert y is out
    w64 = dequantize_reference(t.numpy(), fmt, t.block, t.shape)
    x64 = x.astype(np.float64)
    ref = x64 @ w64.T + bias
    assert np.all(np.isfinite(y))
    assert np.all(np.abs(y - ref) <= accumulation_bound(x64, w64) + 1e-6 * np.abs(bias))
    # The format's own loss against the unquantized weights stays within its documented bound,
    # relative to the typical size of x @ W.T (tiny outputs from cancellation would make it flaky).
    if m * n < 64:
        return  # too few outputs for a stable Frobenius ratio; the kernel check above still ran
    exact = x64 @ w.astype(np.float64).T + bias
    typical = np.linalg.norm(x64) * np.linalg.norm(w.astype(np.float64)) / np.sqrt(x.shape[1])
    assert np.linalg.norm(y - exact) <= FORMAT_REL_ERROR[fmt] * typical


@pytest.mark.parametrize("fmt,block", [("f16", 1), ("q8", 32), ("q4", 64), ("q4a", 128)])
def test_float16_activations(rng, cpu_isa, fmt, block):
    x, w, t = make_case(rng, fmt, block, 9, 33, 4)
    x16 = x.astype(np.float16)
    y = pyrt.matmul(x16, t, out=poisoned((9, 33)))
    x64 = x16.astype(np.float64)
    w64 = dequantize_reference(t.numpy(), fmt, t.block, t.shape)
    assert np.all(np.abs(y - x64 @ w64.T) <= accumulation_bound(x64, w64))


@pytest.mark.parametrize("fmt,block", CONFIGS, ids=[f"{f}-{b}" for f, b in CONFIGS])
def test_kernel_sets_agree_with_the_scalar_reference(rng, fmt, block):
    x, w, t = make_case(rng, fmt, block, 7, 45, 4)
    previous = pyrt.get_cpu_isa()
    try:
        pyrt.set_cpu_isa("scalar")
        ref = pyrt.matmul(x, t)
        w64 = dequantize_reference(t.numpy(), fmt, t.block, t.shape)
        bound = accumulation_bound(x.astype(np.float64), w64)
        for isa in pyrt.available_cpu_isas():
            pyrt.set_cpu_isa(isa)
            assert np.all(np.abs(pyrt.matmul(x, t) - ref) <= 2 * bound), isa
    finally:
        pyrt.set_cpu_isa(previous)


@pytest.mark.parametrize("fmt,block", [("f32", 1), ("f16", 1), ("bf16", 1), ("q8", 32), ("q4", 32), ("q4a", 64)])
@pytest.mark.parametrize("m", [1, 4, 200])
def test_results_do_not_depend_on_thread_count(rng, cpu_isa, fmt, block, m):
    x, w, t = make_case(rng, fmt, block, m, 301, 8)
    previous = pyrt.get_num_threads()
    try:
        results = []
        for threads in (1, 2, 3):
            pyrt.set_num_threads(threads)
            results.append(pyrt.matmul(x, t, out=poisoned((m, 301))))
    finally:
        pyrt.set_num_threads(previous)
    for r in results[1:]:
        np.testing.assert_array_equal(r, results[0])


def test_leading_dimensions_are_flattened(rng):
    x = rng.standard_normal((2, 3, 64)).astype(np.float32)
    w = rng.standard_normal((5, 64)).astype(np.float32)
    t = pyrt.quantize(w, "f32")
    y = pyrt.matmul(x, t)
    assert y.shape == (2, 3, 5)
    np.testing.assert_allclose(y, x @ w.T, rtol=1e-5, atol=1e-5)
    y1 = pyrt.matmul(x[0, 0], t)
    assert y1.shape == (5,)


def test_linear_layer(rng):
    w = rng.standard_normal((24, 96)).astype(np.float32)
    b = rng.standard_normal(24).astype(np.float32)
    layer = pyrt.Linear(w, b, dtype="q8", block=32)
    assert (layer.in_features, layer.out_features) == (96, 24)
    x = rng.standard_normal((4, 96)).astype(np.float32)
    ref = x @ layer.weight.dequantize().T + b
    np.testing.assert_allclose(layer(x), ref, rtol=1e-4, atol=1e-4)
    same = pyrt.Linear(layer.weight, b)
    np.testing.assert_array_equal(same(x), layer(x))
    assert "q8" in repr(layer)


def test_empty_batch(rng):
    t = pyrt.quantize(rng.standard_normal((8, 32)).astype(np.float32), "q4")
    y = pyrt.matmul(np.zeros((0, 32), np.float32), t)
    assert y.shape == (0, 8)
