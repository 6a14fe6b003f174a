"""pyrt::relative_position_bucket / relative_position_bias (csrc/ops/position_bias.cc) and the
additive bias of pyrt::packed_self_attention, against float64 numpy written from the published
description (T5's bucketed relative positions as MPNet uses them) and, when transformers is
installed, against Hugging Face's own MPNet bucket function."""
from __future__ import annotations

import math

import numpy as np
import pytest

from helpers import poisoned
from pyrt import _core


def bucket64(relative: int, num_buckets: int, max_distance: int, bidirectional: bool) -> int:
    """T5 / MPNet: n = query - key; half the buckets for keys after the query when bidirectional;
    exact buckets below half the remaining count, then log-spaced up to max_distance."""
    n = -relative
    base = 0
    if bidirectional:
        num_buckets //= 2
        base = num_buckets if n < 0 else 0
        n = abs(n)
    else:
        n = max(n, 0)
    exact = num_buckets // 2
    if n < exact:
        return base + n
    scaled = math.log(n / exact) / math.log(max_distance / exact) * (num_buckets - exact)
    return base + min(exact + int(scaled), num_buckets - 1)


@pytest.mark.parametrize("num_buckets,max_distance,bidirectional", [(32, 128, True), (32, 128, False),
                                                                    (8, 20, True), (4, 3, True)])
def test_buckets_match_the_description(num_buckets, max_distance, bidirectional):
    for rel in range(-3000, 3001):
        want = bucket64(rel, num_buckets, max_distance, bidirectional)
        assert _core._relative_position_bucket(rel, num_buckets, max_distance, bidirectional) == want, rel


def test_buckets_match_transformers_mpnet():
    torch = pytest.importorskip("torch")
    mpnet = pytest.importorskip("transformers.models.mpnet.modeling_mpnet")
    rel = torch.arange(-5000, 5001)
    want = mpnet.MPNetEncoder.relative_position_bucket(rel, num_buckets=32, max_distance=128).numpy()
    got = np.array([_core._relative_position_bucket(int(r), 32, 128, True) for r in rel])
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("length", [1, 7, 40, 200])
def test_bias_table_gathers_buckets(rng, length):
    heads = 5
    table = rng.normal(0, 1, (32, heads)).astype(np.float32)
    out = poisoned((heads, length, length))
    _core._relative_position_bias(table, 128, True, out)
    i, j = np.meshgrid(np.arange(length), np.arange(length), indexing="ij")
    buckets = np.vectorize(lambda r: bucket64(int(r), 32, 128, True))(j - i)
    want = table[buckets].transpose(2, 0, 1)  # [L, L, heads] -> [heads, L, L]
    np.testing.assert_array_equal(out, want)


def test_bad_bucket_settings_raise_typed_errors():
    table = np.ones((3, 2), np.float32)
    with pytest.raises(ValueError):  # an odd count cannot split into two directions
        _core._relative_position_bias(table, 128, True, np.zeros((2, 4, 4), np.float32))
    with pytest.raises(Exception):  # max distance inside the exact buckets: no log range
        _core._relative_position_bucket(5, 32, 8, True)


def biased_attention64(q, k, v, offsets, num_heads, bias):
    T, hidden = q.shape
    hd = hidden // num_heads
    out = np.zeros((T, hidden))
    for s in range(len(offsets) - 1):
        a, b = offsets[s], offsets[s + 1]
        L = b - a
        if L == 0:
            continue
        for h in range(num_heads):
            cols = slice(h * hd, (h + 1) * hd)
            qs, ks, vs = (x[a:b, cols].astype(np.float64) for x in (q, k, v))
            scores = qs @ ks.T / np.sqrt(hd) + bias[h, :L, :L]
            p = np.exp(scores - scores.max(axis=1, keepdims=True))
            out[a:b, cols] = (p / p.sum(axis=1, keepdims=True)) @ vs
    return out


@pytest.mark.parametrize("num_heads,head_dim", [(12, 64), (3, 24), (2, 8)])
@pytest.mark.parametrize("lengths", [[1], [3, 7, 16, 17], [33, 0, 5], [130]])
def test_biased_attention_matches_float64(cpu_isa, rng, num_heads, head_dim, lengths):
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    T, hidden = int(offsets[-1]), num_heads * head_dim
    P = max(lengths) + 3  # a bias longer than every sequence: each uses its top-left block
    q, k, v = (rng.normal(0, 1.5, (T, hidden)).astype(np.float32) for _ in range(3))
    bias = rng.normal(0, 2.0, (num_heads, P, P)).astype(np.float32)
    ctx = poisoned((T, hidden))
    _core._packed_attention(q, k, v, offsets, num_heads, ctx, bias)
    want = biased_attention64(q, k, v, offsets, num_heads, bias)
    assert np.abs(ctx - want).max() <= 2e-5 * max(1.0, np.abs(want).max())
    if max(lengths) == 1:
        return  # one key: its weight is 1 whatever the bias
    # The bias matters: without it the result is another one.
    plain = poisoned((T, hidden))
    _core._packed_attention(q, k, v, offsets, num_heads, plain)
    assert np.abs(plain - want).max() > 1e-3


def test_bias_shorter_than_a_sequence_is_rejected(rng):
    q = rng.normal(0, 1, (6, 8)).astype(np.float32)
    with pytest.raises(ValueError, match="bias covers"):
        _core._packed_attention(q, q, q, np.array([0, 6], np.int64), 2, np.zeros_like(q),
                                np.zeros((2, 5, 5), np.float32))
