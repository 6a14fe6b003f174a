"""pyrt::packed_self_attention (csrc/ops/attention.cc, csrc/cpu/attention_cpu.cc) and the per-ISA
head kernels (csrc/cpu/attention_head_*.cc) against float64 numpy: sequences of lengths that leave
query-block and vector tails, head sizes that are and are not multiples of the vector width,
outputs poisoned."""
from __future__ import annotations

import numpy as np
import pytest

from helpers import poisoned
from pyrt import _core


def attention64(q, k, v, offsets, num_heads):
    T, hidden = q.shape
    hd = hidden // num_heads
    out = np.zeros((T, hidden))
    for s in range(len(offsets) - 1):
        rows = slice(offsets[s], offsets[s + 1])
        if offsets[s + 1] == offsets[s]:
            continue
        for h in range(num_heads):
            cols = slice(h * hd, (h + 1) * hd)
            qs, ks, vs = (a[rows, cols].astype(np.float64) for a in (q, k, v))
            scores = qs @ ks.T / np.sqrt(hd)
            p = np.exp(scores - scores.max(axis=1, keepdims=True))
            out[rows, cols] = (p / p.sum(axis=1, keepdims=True)) @ vs
    return out


@pytest.mark.parametrize("num_heads,head_dim", [(12, 32), (2, 64), (3, 24), (2, 8), (1, 40)])
@pytest.mark.parametrize("lengths", [[1], [3, 7, 16, 17], [33, 0, 5], [130]])
def test_packed_attention_matches_float64(cpu_isa, rng, num_heads, head_dim, lengths):
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    T, hidden = int(offsets[-1]), num_heads * head_dim
    q, k, v = (rng.normal(0, 1.5, (T, hidden)).astype(np.float32) for _ in range(3))
    ctx = poisoned((T, hidden))
    _core._packed_attention(q, k, v, offsets, num_heads, ctx)
    want = attention64(q, k, v, offsets, num_heads)
    assert np.abs(ctx - want).max() <= 2e-5 * max(1.0, np.abs(want).max())


def test_packed_attention_rejects_bad_offsets():
    q = np.zeros((4, 8), np.float32)
    with pytest.raises(ValueError):
        _core._packed_attention(q, q, q, np.array([0, 3], np.int64), 2, np.zeros_like(q))
