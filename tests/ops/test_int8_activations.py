"""Opt-in int8 activations (docs/int8.md): every kernel set against a float64 numpy emulation of
the same quantized-activation math (tight) and against the exact product (documented bound)."""
from __future__ import annotations

import numpy as np
import pytest

import pyrt
from pyrt.formats import dequantize_reference, format_info

from conftest import poisoned

QUANT = ["q8", "q4", "q4a"]
PLAIN = ["f32", "f16", "bf16"]


def quantize_activations(x: np.ndarray, block: int):
    """The C++ quantizer's math in float32 numpy: codes, d_x and S = d_x * sum(codes) per block."""
    M, K = x.shape
    xb = x.astype(np.float32).reshape(M, K // block, block)
    amax = np.abs(xb).max(axis=-1)
    with np.errstate(divide="ignore"):
        inv = np.where(amax > 0, np.float32(127) / amax, np.float32(0)).astype(np.float32)
    q = np.clip(np.rint(xb * inv[..., None]), -127, 127)
    d = (amax / np.float32(127)).astype(np.float32)
    s = (d * q.sum(axis=-1).astype(np.float32)).astype(np.float32)
    return q, d, s


def weight_parts(t: pyrt.Tensor, fmt: str, block: int):
    """Signed integer codes c, scale d and (q4a) min m per block, so that w = d * c (+ m)."""
    N, K = t.shape
    info = format_info(fmt)
    blocks = np.ascontiguousarray(t.numpy()).reshape(N, K // block, info.block_bytes(block))
    d = blocks[..., :2].copy().view(np.float16)[..., 0].astype(np.float64)
    m = np.zeros_like(d)
    if fmt == "q8":
        c = blocks[..., 2:].view(np.int8).astype(np.float64)
    else:
        packed = blocks[..., info.header_bytes:]
        c = np.concatenate([packed & 0x0F, packed >> 4], axis=-1).astype(np.float64)
        if fmt == "q4":
            c -= 8
        else:
            m = blocks[..., 2:4].copy().view(np.float16)[..., 0].astype(np.float64)
    return c, d, m


def emulate(x, t, fmt, block, bias):
    """float64 y = sum over blocks of d_w d_x (q_x . c) + m S (+ bias): the kernels' math, exactly."""
    q, dx, s = quantize_activations(x, block)
    c, dw, m = weight_parts(t, fmt, block)
    dots = np.einsum("mbj,nbj->mnb", q.astype(np.float64), c)
    y = np.einsum("mnb,mb,nb->mn", dots, dx.astype(np.float64), dw) + s.astype(np.float64) @ m.T
    # FP32 summation error: ~ eps * blocks * (sum of |terms|)
    mag = np.einsum("mbj,nbj->mn", np.abs(q) * dx[..., None].astype(np.float64), np.abs(c) * np.abs(dw)[..., None])
    mag += np.abs(s).astype(np.float64) @ np.abs(m).T
    if bias is not None:
        y += bias
        mag += np.abs(bias)
    tol = 4e-7 * (x.shape[1] // block + 8) * mag + 1e-30
    return y, tol


def rounding_bound(d, w64, block, tol):
    """Bound on |y - exact| when every activation of block b is off by at most d[m, b] / 2 (round
    to nearest with step d), plus the FP32 tolerance tol: sum over blocks of d / 2 * sum |w|."""
    N, K = w64.shape
    return np.einsum("mb,nb->mn", d.astype(np.float64) / 2,
                     np.abs(w64).reshape(N, K // block, block).sum(-1)) * (1 + 1e-5) + tol


def make_case(rng, fmt, block, M, N, K, bias=True):
    # Non-zero mean and mixed magnitudes (per row and per column) so q4a's min and scales matter.
    w = (rng.standard_normal((N, K)) * rng.uniform(0.2, 3.0, (N, 1)) + 0.1).astype(np.float32)
    x = (rng.standard_normal((M, K)) * rng.uniform(0.1, 4.0, (1, K))).astype(np.float32)
    t = pyrt.quantize(w, dtype=fmt, block=block)
    b = rng.standard_normal(N).astype(np.float32) if bias else None
    return x, t, b


def run(x, t, b, activations="int8"):
    out = poisoned((x.shape[0], t.shape[0]))
    pyrt.matmul(x, t, b, out=out, activations=activations)
    assert np.isfinite(out).all(), "kernel left unwritten (NaN) outputs"
    return out


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
