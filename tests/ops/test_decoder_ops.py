"""The decoder families' ops (pyrt/ops_decoder.h) on every ISA this machine supports, against
float64 numpy written from the formulas (RMSNorm with a weight offset, gated GELU-tanh, NEOX
rotary, bias add, softcap, sliding-window / softcapped attention over a KV cache)."""
from __future__ import annotations

import math

import numpy as np
import pytest

import pyrt
from pyrt import _core


def rms_norm64(x, w, offset, eps):
    x = x.astype(np.float64)
    return x / np.sqrt((x * x).mean(axis=-1, keepdims=True) + eps) * (w.astype(np.float64) + offset)


@pytest.mark.parametrize("n", [1, 37, 640])
@pytest.mark.parametrize("offset", [0.0, 1.0, -0.25])
def test_rms_norm_offset(cpu_isa, rng, n, offset):
    x = rng.normal(0, 3, (5, n)).astype(np.float32)
    w = rng.normal(0, 1, n).astype(np.float32)
    got = _core._rms_norm_offset(x, w, offset, 1e-6)
    want = rms_norm64(x, w, offset, 1e-6)
    assert np.abs(got - want).max() <= 1e-5 * np.abs(want).max()
    if offset:  # the offset is applied (not a plain RMSNorm)
        assert np.abs(got - rms_norm64(x, w, 0.0, 1e-6)).max() > 1e-2


def test_rms_norm_offset_checks_its_arguments():
    with pytest.raises(pyrt.RangeError):
        _core._rms_norm_offset(np.ones((1, 4), np.float32), np.ones(4, np.float32), math.nan, 1e-6)
    with pytest.raises(pyrt.ShapeError):
        _core._rms_norm_offset(np.ones((1, 4), np.float32), np.ones(3, np.float32), 0.0, 1e-6)


def gelu_tanh64(x):
    x = x.astype(np.float64)
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


@pytest.mark.parametrize("n", [1, 17, 255, 256, 257, 2048])
def test_gelu_tanh_gated(cpu_isa, rng, n):
    gate = (rng.normal(0, 3, n) * np.where(rng.random(n) < 0.1, 10.0, 1.0)).astype(np.float32)
    up = rng.normal(0, 2, n).astype(np.float32)
    got = _core._gelu_tanh_gated(gate, up)
    want = gelu_tanh64(gate) * up
    scale = np.maximum(1.0, np.abs(gate * up))
    assert np.all(np.abs(got - want) <= 2e-6 * scale)
    # Not the erf GELU: the two differ by up to ~1e-3 near |x| ~ 2.
    erf = np.vectorize(math.erf)
    exact = 0.5 * gate.astype(np.float64) * (1 + erf(gate / math.sqrt(2))) * up
    if n >= 256:
        assert np.abs(got - exact).max() > 1e-4


def test_gelu_tanh_gated_extremes():
    gate = np.array([-1e30, -200.0, -10.0, 0.0, 10.0, 200.0, 1e30], np.float32)
    got = _core._gelu_tanh_gated(gate, np.ones_like(gate))
    assert np.all(np.isfinite(got[1:-1]))
    np.testing.assert_allclose(got[1:-1], gelu_tanh64(gate[1:-1]), atol=1e-6)
    assert got[0] == 0.0 and got[-1] == np.float32(1e30)


def rope_tables64(positions, head_dim, theta):
    inv = theta ** (-np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)
    angles = np.asarray(positions, np.float64)[:, None] * inv[None, :]
    return np.cos(angles), np.sin(angles)


def rotate_half64(x, cos, sin, n_heads):
    """Hugging Face's rotary on [rows, n_heads * head_dim]: x * cos + rotate_half(x) * sin with the
    half-size tables repeated twice."""
    rows = x.shape[0]
    h = x.astype(np.float64).reshape(rows, n_heads, -1)
    half = h.shape[-1] // 2
    c = np.concatenate([cos, cos], axis=-1)[:, None, :]
    s = np.concatenate([sin, sin], axis=-1)[:, None, :]
    rotated = np.concatenate([-h[..., half:], h[..., :half]], axis=-1)
    return (h * c + rotated * s).reshape(rows, -1)


@pytest.mark.parametrize("head_dim", [2, 64, 256])
def test_rope_neox(rng, head_dim):
    n_heads, positions = 3, [0, 1, 7, 511, 4000]
    x = rng.normal(0, 1, (len(positions), n_heads * head_dim)).astype(np.float32)
    cos, sin = rope_tables64(positions, head_dim, 1e6)
    got = _core._rope_neox(x, n_heads, cos.astype(np.float32), sin.astype(np.float32))
    want = rotate_half64(x, cos, sin, n_heads)
    assert np.abs(got - want).max() < 1e-5
    if head_dim > 2:  # the NORM (interleaved pairs) layout is a different rotation
        pairs = x.astype(np.float64).reshape(len(positions), n_heads, head_dim // 2, 2)
        c, s = cos[:, None, :], sin[:, None, :]
        norm = np.stack([pairs[..., 0] * c - pairs[..., 1] * s, pairs[..., 0] * s + pairs[..., 1] * c], axis=-1)
        assert np.abs(got - norm.reshape(len(positions), -1)).max() > 0.1


def test_bias_add_and_softcap(rng):
    x = rng.normal(0, 10, (4, 33)).astype(np.float32)
    b = rng.normal(0, 1, 33).astype(np.float32)
    np.testing.assert_array_equal(_core._bias_add(x, b), x + b)
    got = _core._softcap(x, 5.0)
    np.testing.assert_allclose(got, 5.0 * np.tanh(x.astype(np.float64) / 5.0), rtol=1e-6, atol=1e-6)
    assert np.abs(got).max() <= 5.0
    for bad in (0.0, -1.0, math.inf):
        with pytest.raises(pyrt.RangeError):
            _core._softcap(x, bad)


def attention64(q, keys, values, first_valid, scale, window, softcap):
    """Query i at position first_valid - 1 + i over keys 0..that position, the last `window` of them
    when window > 0; scores softcapped when softcap > 0."""
    out = np.zeros(q.shape, np.float64)
    for i in range(q.shape[0]):
        pos = first_valid - 1 + i
        lo = max(0, pos - window + 1) if window else 0
        s = keys[lo:pos + 1].astype(np.float64) @ q[i].astype(np.float64) * scale
        if softcap:
            s = softcap * np.tanh(s / softcap)
        p = np.exp(s - s.max())
        out[i] = (p / p.sum()) @ values[lo:pos + 1].astype(np.float64)
    return out


@pytest.mark.parametrize("kv", ["f32", "f16"])
@pytest.mark.parametrize("window,softcap", [(0, 0.0), (1, 0.0), (5, 0.0), (16, 0.0), (100, 0.0), (0, 3.0),
                                            (7, 3.0)])
@pytest.mark.parametrize("rows", [1, 12])
def test_windowed_head_attention(cpu_isa, rng, kv, window, softcap, rows):
    head_dim, capacity, end = 64, 48, 40
    q = rng.normal(0, 1, (rows, head_dim)).astype(np.float32)
    keys = rng.normal(0, 1, (capacity, head_dim)).astype(np.float32)
    values = rng.normal(0, 1, (capacity, head_dim)).astype(np.float32)
    if kv == "f16":
        keys, values = keys.astype(np.float16).astype(np.float32), values.astype(np.float16).astype(np.float32)
        k_arg, v_arg = keys.astype(np.float16).view(np.uint16), np.ascontiguousarray(values.T).astype(np.float16).view(np.uint16)
    else:
        k_arg, v_arg = keys, np.ascontiguousarray(values.T)
    first_valid = end - rows + 1
    scale = 0.3
    got = _core._windowed_head_attention(q, k_arg, v_arg, end, first_valid, scale, window, softcap)
    want = attention64(q, keys, values, first_valid, scale, window, softcap)
    assert np.abs(got - want).max() < 2e-5
    if window and window < end - rows:  # the window changes the result
        assert np.abs(got - attention64(q, keys, values, first_valid, scale, 0, softcap)).max() > 1e-3
