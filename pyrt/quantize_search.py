"""The searched block quantizers in numpy: a byte-identical mirror of csrc/core/quantize_search.cc
(tests/formats/test_quantize_search.py checks it), vectorized over blocks.

Each block's scale (and q4a's minimum) is the candidate with the lowest weighted squared error
sum_i w_i (x_i - stored_i)^2, judged as stored (FP16 scale, nearest codes). Candidates: the
round-to-nearest (RTN) scale first, then reference / t for the grids below, each followed by the
weighted least-squares refit for its codes (q4a: two alternating refits of scale and minimum).
Ties keep the earlier candidate, so the result is never worse than RTN under that error.

Identity with C++ rests on: float64 arithmetic in the same operation order, sums in one fixed order
(four interleaved lanes, ``_ordered_sum``), codes as x * (1/d) rounded half to even after clipping,
no FMA on the C++ side, exact binary-fraction grids.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

FP16_MAX = 65504.0


def _grid(*parts: tuple[float, float, int, int]) -> tuple[float, ...]:
    return tuple(base + step * k for base, step, k0, k1 in parts for k in range(k0, k1 + 1))


Q8_GRID = _grid((127.0, 0.5, -8, 8))                       # reference amax
Q4_GRID = _grid((-8.0, 0.125, -8, 8), (7.0, 0.125, -4, 4))  # reference: the value of largest |x|
Q5_GRID = _grid((-16.0, 0.25, -8, 8), (15.0, 0.25, -4, 4))   # as Q4_GRID, levels -16..15
Q4A_GRID = _grid((15.0, 0.125, -8, 8))                     # scale (hi - lo) / t, minimum lo
Q4A_REFITS = 2


def _ordered_sum(v: np.ndarray) -> np.ndarray:
    """Row sums in the C++ order: four lanes (lane j: terms j, j+4, ... in index order from its
    first term, as cumsum adds), then (lane0 + lane1) + (lane2 + lane3)."""
    n, b = v.shape
    lanes = np.cumsum(v.reshape(n, b // 4, 4), axis=1)[:, -1, :]
    return (lanes[:, 0] + lanes[:, 1]) + (lanes[:, 2] + lanes[:, 3])


def block_weights(blocks: np.ndarray, importance: Optional[np.ndarray]) -> np.ndarray:
    """Per-element weights [n_blocks, B] (float64): the importance, or 1 without it (measured on
    all-MiniLM-L6-v2 to beat x^2-based weightings: docs/quantization.md)."""
    if importance is None:
        return np.ones(blocks.shape, dtype=np.float64)
    return importance.astype(np.float64)


def _to_half(s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fits FP16, the FP16 values, them as float64) of candidate values, via FP32 like C++."""
    with np.errstate(over="ignore", invalid="ignore"):
        f = np.asarray(s, dtype=np.float64).astype(np.float32)
        ok = np.abs(f) <= np.float32(FP16_MAX)
    h = np.where(ok, f, np.float32(0)).astype(np.float16)
    return ok, h, h.astype(np.float64)


class _Best:
    """The best candidate so far per block; ``take`` keeps strictly smaller errors only."""

    def __init__(self, q: np.ndarray, e: np.ndarray, *headers: np.ndarray):
        self.q, self.e, self.headers = q, e, list(headers)

    def take(self, mask: np.ndarray, q: np.ndarray, e: np.ndarray, *headers: np.ndarray) -> None:
        better = mask & (e < self.e)
        self.q = np.where(better[:, None], q, self.q)
        self.e = np.where(better, e, self.e)
        self.headers = [np.where(better, new, old) for old, new in zip(self.headers, headers)]


def _reciprocal(d):
    """1 / d, and 0 for d == 0 (all codes then land on level 0)."""
    with np.errstate(divide="ignore"):
        return np.where(d == 0, 0.0, 1.0 / np.where(d == 0, 1.0, d))[:, None]


def _nearest_level(v, lo, hi):
    # clip then round: the same value as round then clip for integer bounds (C++ rounds that way).
    # (+0.0 turns rint's -0.0 into the +0.0 the C++ rounding trick gives)
    return np.rint(np.clip(v, lo, hi)) + 0.0


def _symmetric_codes(x, w, d, qmin, qmax):
    dd = d[:, None]
    with np.errstate(over="ignore", invalid="ignore"):
        q = _nearest_level(x * _reciprocal(d), qmin, qmax)
    r = x - q * dd
    return q, _ordered_sum(w * r * r)


def _search_symmetric(blocks, w, qmin, qmax, rtn_scale, reference, grid):
    x = blocks.astype(np.float64)
    h0 = rtn_scale.astype(np.float16)
    best = _Best(*_symmetric_codes(x, w, h0.astype(np.float64), qmin, qmax), h0)
    ref = reference.astype(np.float64)
    for t in grid:
        ok, h, d = _to_half(ref / t)
        q, e = _symmetric_codes(x, w, d, qmin, qmax)
        best.take(ok, q, e, h)
        sxq = _ordered_sum(w * q * x)
        sqq = _ordered_sum(w * q * q)
        with np.errstate(divide="ignore", invalid="ignore"):
            ok2, h2, d2 = _to_half(sxq / sqq)
        ok2 &= ok & (sqq > 0)
        q2, e2 = _symmetric_codes(x, w, d2, qmin, qmax)
        best.take(ok2, q2, e2, h2)
    return best.headers[0], best.q


def search_q8(blocks, w, rtn_scale, amax):
    """(FP16 scales, int8 codes) of q8 blocks."""
    h, q = _search_symmetric(blocks, w, -127, 127, rtn_scale, amax, Q8_GRID)
    return h, q.astype(np.int8)


def search_q4(blocks, w, rtn_scale, vmax):
    """(FP16 scales, levels 0..15 = code + 8) of q4 blocks."""
    h, q = _search_symmetric(blocks, w, -8, 7, rtn_scale, vmax, Q4_GRID)
    return h, (q + 8).astype(np.uint8)


def search_q5(blocks, w, rtn_scale, vmax):
    """(FP16 scales, codes 0..31 = level + 16) of q5 blocks."""
    h, q = _search_symmetric(blocks, w, -16, 15, rtn_scale, vmax, Q5_GRID)
    return h, (q + 16).astype(np.uint8)


def _asymmetric_codes(x, w, d, m):
    dd, mm = d[:, None], m[:, None]
    with np.errstate(over="ignore", invalid="ignore"):
        q = _nearest_level((x - mm) * _reciprocal(d), 0, 15)
    r = x - (q * dd + mm)
    return q, _ordered_sum(w * r * r)


def _refit(x, w, q):
    sw = _ordered_sum(w)
    sq = _ordered_sum(w * q)
    sqq = _ordered_sum(w * q * q)
    sx = _ordered_sum(w * x)
    sqx = _ordered_sum(w * q * x)
    det = sw * sqq - sq * sq
    ok = det > 0
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        return ok, (sw * sqx - sq * sx) / det, (sqq * sx - sq * sqx) / det


def search_q4a(blocks, w, rtn_scale, lo, hi):
    """(FP16 scales, FP16 minima, levels 0..15) of q4a blocks."""
    x = blocks.astype(np.float64)
    d0, m0 = rtn_scale.astype(np.float16), lo.astype(np.float16)
    best = _Best(*_asymmetric_codes(x, w, d0.astype(np.float64), m0.astype(np.float64)), d0, m0)

    def consider(alive, scale, minimum):
        okd, hd, dv = _to_half(scale)
        okm, hm, mv = _to_half(minimum)
        ok = alive & okd & okm
        q, e = _asymmetric_codes(x, w, dv, mv)
        best.take(ok, q, e, hd, hm)
        return ok, q

    rng = hi.astype(np.float64) - lo.astype(np.float64)
    lo64 = lo.astype(np.float64)
    everywhere = np.ones(len(x), dtype=bool)
    for t in Q4A_GRID:
        alive, q = consider(everywhere, rng / t, lo64)
        for _ in range(Q4A_REFITS):
            ok, d, m = _refit(x, w, q)
            alive, q = consider(alive & ok, d, m)
    return best.headers[0], best.headers[1], best.q.astype(np.uint8)
