"""AVX-512 matmul kernels (csrc/cpu/*_avx512.*) against float64 numpy and the scalar kernel.

Both AVX-512 paths are covered: the register-decoding GEMV (M < 32) and the packed GEMM (M >= 32),
including its partial tiles (M % 32 below and above 16, N % 14), x row blocks (M = 300) and K
panels (K > 512, K % 512, plain-format K tails that are not multiples of 16).
"""
from __future__ import annotations

import numpy as np
import pytest

import pyrt
from pyrt.formats import dequantize_reference

from helpers import poisoned

pytestmark = pytest.mark.skipif("avx512" not in pyrt.available_cpu_isas(), reason="no AVX-512 on this CPU/build")

QUANT = ["q8", "q4", "q4a"]
PLAIN = ["f32", "f16", "bf16"]


@pytest.fixture
def avx512():
    previous = pyrt.get_cpu_isa()
    pyrt.set_cpu_isa("avx512")
    yield
    pyrt.set_cpu_isa(previous)


def make_case(rng, fmt, block, M, N, K, bias):
    # Non-zero mean and mixed magnitudes so q4a's min and the scales matter.
    w = (rng.standard_normal((N, K)) * rng.uniform(0.2, 3.0, (N, 1)) + 0.1).astype(np.float32)
    x = rng.standard_normal((M, K)).astype(np.float32)
    t = pyrt.quantize(w, dtype=fmt, block=block)
    w64 = dequantize_reference(t.numpy(), fmt, block, (N, K))
    b = rng.standard_normal(N).astype(np.float32) if bias else None
    ref = x.astype(np.float64) @ w64.T + (0.0 if b is None else b.astype(np.float64))
    # FP32 accumulation error only: ~ eps * sqrt(K) * (|x| . |w|) per output.
    scale = np.abs(x).astype(np.float64) @ np.abs(w64).T + (0.0 if b is None else np.abs(b))
    tol = 1e-5 * np.sqrt(K) * scale + 1e-30
    return x, t, b, ref, tol


def run(x, t, b):
    out = poisoned((x.shape[0], t.shape[0]))
    pyrt.matmul(x, t, b, out=out)
    return out


def check(y, ref, tol):
    assert np.isfinite(y).all(), "kernel left unwritten (NaN) outputs"
    err = np.abs(y.astype(np.float64) - ref)
    assert (err <= tol).all(), f"max err {err.max():.3g}, worst err/tol {(err / tol).max():.3g}"


@pytest.mark.parametrize("fmt", QUANT)
@pytest.mark.parametrize("block", [32, 64, 128])
@pytest.mark.parametrize("M", [1, 2, 3, 5, 16, 17, 50, 128])
@pytest.mark.parametrize("N", [1, 3, 17, 64, 129])
def test_quantized_shapes(avx512, rng, fmt, block, M, N):
    for kblocks in (1, 3, 5):  # one block; odd multiples (96/160 at block 32)
        K = kblocks * block
        x, t, b, ref, tol = make_case(rng, fmt, block, M, N, K, bias=(N % 2 == 1))
        check(run(x, t, b), ref, tol)


@pytest.mark.parametrize("fmt", PLAIN)
@pytest.mark.parametrize("M", [1, 2, 3, 5, 16, 17, 50, 128])
@pytest.mark.parametrize("N", [1, 3, 17, 64, 129])
def test_plain_shapes(avx512, rng, fmt, M, N):
    for K in (1, 7, 15, 16, 33, 100, 161):
        x, t, b, ref, tol = make_case(rng, fmt, 32, M, N, K, bias=(K % 2 == 1))
        check(run(x, t, b), ref, tol)


@pytest.mark.parametrize("fmt", PLAIN + QUANT)
@pytest.mark.parametrize("M", [1, 5, 17, 300])
def test_large_k(avx512, rng, fmt, M):
    # K = 4096 spans eight GEMM K-panels; 1000 + 3 (plain) leaves a partial panel and a tail.
    for K in ((4096, 1003) if fmt in PLAIN else (4096, 1024 + 384)):
        block = 128 if fmt in QUANT and K != 4096 else 32
        x, t, b, ref, tol = make_case(rng, fmt, block, M, 45, K, bias=True)
        check(run(x, t, b), ref, tol)


@pytest.mark.parametrize("fmt", PLAIN + QUANT)
@pytest.mark.parametrize("M", [1, 4, 7, 8, 31, 32, 33])
def test_matches_scalar_kernel(rng, fmt, M):
    x, t, b, ref, tol = make_case(rng, fmt, 64, M, 50, 640, bias=True)
    previous = pyrt.get_cpu_isa()
    try:
        pyrt.set_cpu_isa("scalar")
        y_scalar = run(x, t, b)
        pyrt.set_cpu_isa("avx512")
        y_avx512 = run(x, t, b)
    finally:
        pyrt.set_cpu_isa(previous)
    check(y_scalar, ref, tol)
    # Both are FP32 sums of the same products in different orders: within twice the bound.
    assert (np.abs(y_avx512.astype(np.float64) - y_scalar) <= 2 * tol).all()


@pytest.mark.parametrize("fmt", PLAIN + QUANT)
@pytest.mark.parametrize("M", [1, 3, 64])
def test_threads_identical(avx512, rng, fmt, M):
    # Threads split N only, so each output is computed by the same code either way: bit-identical.
    x, t, b, ref, tol = make_case(rng, fmt, 32, M, 300, 512, bias=True)
    previous = pyrt.get_num_threads()
    try:
        pyrt.set_num_threads(1)
        y1 = run(x, t, b)
        pyrt.set_num_threads(2)
        y2 = run(x, t, b)
    finally:
        pyrt.set_num_threads(previous)
    check(y1, ref, tol)
    np.testing.assert_array_equal(y1, y2)


def test_f16_activations(avx512, rng):
    x, t, b, ref, tol = make_case(rng, "q4", 32, 9, 33, 256, bias=False)
    x16 = x.astype(np.float16)
    ref16 = x16.astype(np.float64) @ dequantize_reference(t.numpy(), "q4", 32, t.shape).T
    out = poisoned((9, 33))
    pyrt.matmul(x16, t, out=out)
    check(out, ref16, tol)


def test_extreme_values(avx512, rng):
    # Largest fp16 scales and large activations: FP32 accumulation must neither overflow nor lose
    # the result; every nibble level occurs.
    K, N = 256, 20
    w = rng.uniform(-60000, 60000, (N, K)).astype(np.float32)
    x = rng.uniform(-100, 100, (3, K)).astype(np.float32)
    for fmt in ("f16", "q8", "q4", "q4a"):
        t = pyrt.quantize(w, dtype=fmt, block=32)
        w64 = dequantize_reference(t.numpy(), fmt, 32, (N, K))
        for xm in (x[:1], x, np.repeat(x, 4, axis=0)):
            ref = xm.astype(np.float64) @ w64.T
            tol = 1e-5 * np.sqrt(K) * (np.abs(xm).astype(np.float64) @ np.abs(w64).T)
            check(run(xm, t, None), ref, tol)
