"""Error-compensating (GPTQ) quantization of a matmul weight, on top of the searched block scales.

The searched quantizer (pyrt/quantize_search.py) rounds every weight to its block's nearest level,
which minimizes the output error only if the layer's input columns were uncorrelated. GPTQ
(Frantar et al., 2022) uses the input's full second moment ``H = E[x x^T]`` (from a calibration
run, pyrt.calibration.collect_second_moments): it quantizes one input column at a time and moves
that column's rounding error onto the columns not yet quantized, in the direction that the
correlations in H make cheapest, so the layer's output ``y = W x`` changes least on calibration-like
inputs.

Here the columns run in order, one quantization block at a time: when a block's first column comes
up, its scale (and q4a's minimum) is chosen by the searched quantizer (weighted by ``diag(H)``) on
the weights as updated so far, then its columns are rounded to that grid one by one. The stored
bytes are an ordinary q-format tensor: readers and kernels do not change.

Measured on all-MiniLM-L6-v2, q4a/32, default calibration (docs/quantization.md "GPTQ"): cosine to
FP32 mean / min 0.9829 / 0.9412 with the searched scales alone, 0.9923 / 0.9705 with GPTQ.
"""
from __future__ import annotations

from typing import Optional, Union

import numpy as np

from . import formats as _formats
from .errors import DtypeError, RangeError, ShapeError
from .tensor import Tensor, quantize

# Fraction of the mean diagonal added to H before inverting (GPTQ's "percdamp"): keeps the
# inverse well conditioned where calibration barely excites a column.
DEFAULT_DAMP = 0.01
_MAX_DAMP = 10.0

# The signed level range of the uniform symmetric q-formats: code stored = level - lo.
_UNIFORM = {"q8": (-127, 127), "q4": (-8, 7), "q5": (-16, 15)}
_Q4N_LEVELS = _formats.Q4N_LEVELS.astype(np.float64)
_Q4N_MIDPOINTS = 0.5 * (_Q4N_LEVELS[:-1] + _Q4N_LEVELS[1:])
GPTQ_FORMATS = ("q8", "q4", "q4a", "q4n", "q5")


def _lower_inverse(lower: np.ndarray) -> np.ndarray:
    """L^-1 of a lower-triangular L by halves ([[A, 0], [B, C]]^-1 = [[A^-1, 0], [-C^-1 B A^-1, C^-1]]):
    matrix products instead of numpy's general solve, a quarter of its work (numpy has no
    triangular solver)."""
    k = lower.shape[0]
    if k <= 128:
        return np.linalg.inv(lower)
    h = k // 2
    a_inv = _lower_inverse(lower[:h, :h])
    c_inv = _lower_inverse(lower[h:, h:])
    out = np.zeros_like(lower)
    out[:h, :h] = a_inv
    out[h:, h:] = c_inv
    out[h:, :h] = -(c_inv @ (lower[h:, :h] @ a_inv))
    return out


class GptqFactor:
    """The upper Cholesky factor U of (H + damp * mean(diag H) I)^-1 (so H^-1 = U^T U) for a second
    moment H, and H's diagonal. Weights fed the same input (Q, K and V; gate and up) share one:
    build it once with :func:`gptq_factor` and pass it to :func:`quantize_gptq`."""

    __slots__ = ("upper", "diagonal", "damp")

    def __init__(self, upper: np.ndarray, diagonal: np.ndarray, damp: float):
        self.upper, self.diagonal, self.damp = upper, diagonal, damp


def gptq_factor(second_moment: np.ndarray, damp: float = DEFAULT_DAMP) -> GptqFactor:
    """Factor a second moment H [K, K] for GPTQ. Columns no calibration input reached (zero
    diagonal) get a unit diagonal; the damping grows tenfold until the factorization succeeds.
    Raises :class:`pyrt.ShapeError` (not square), :class:`pyrt.RangeError` (not finite, or not
    positive definite even with damping 10)."""
    h = np.array(second_moment, dtype=np.float64)
    if h.ndim != 2 or h.shape[0] != h.shape[1]:
        raise ShapeError(f"second moment must be a square [K, K] matrix, got shape {list(h.shape)}")
    if not np.isfinite(h).all():
        raise RangeError("the second moment has NaN/Inf values")
    if not (damp > 0 and np.isfinite(damp)):
        raise RangeError(f"damp must be a positive number, got {damp}")
    k = h.shape[0]
    diagonal = np.maximum(np.diagonal(h), 0.0).copy()
    dead = np.flatnonzero(diagonal <= 0)
    h[dead, :] = 0
    h[:, dead] = 0
    h[dead, dead] = 1.0
    alive = diagonal[diagonal > 0]
    scale = float(alive.mean()) if alive.size else 1.0
    # With P the order reversal and P H P = L L^T: H^-1 = A A^T for the lower A = P L^-T P, so
    # U = A^T = P L^-1 P (one factorization and one triangular solve, no second Cholesky).
    while True:
        try:
            lower = np.linalg.cholesky((h + (damp * scale) * np.eye(k))[::-1, ::-1])
            upper = _lower_inverse(lower)[::-1, ::-1]
            if np.isfinite(upper).all() and (np.diagonal(upper) > 0).all():
                return GptqFactor(np.ascontiguousarray(upper), diagonal, damp)
        except np.linalg.LinAlgError:
            pass
        if damp >= _MAX_DAMP:
            raise RangeError(f"the second moment is not positive definite even with damping {damp:g}; "
                             "quantize this tensor without GPTQ")
        damp *= 10.0


def _block_grid(t: Tensor, rows: int):
    """(d, m) float64 [rows] of a one-block-per-row q-format tensor (m = 0 without a minimum)."""
    layout = _formats.block_layout(t.dtype, t.block)
    raw = np.asarray(t.numpy()).reshape(rows, layout.bytes)
    d = raw[:, layout.scale_offset:layout.scale_offset + 2].copy().view(np.float16).reshape(-1)
    if layout.min_offset < 0:
        return d.astype(np.float64), np.zeros(rows)
    m = raw[:, layout.min_offset:layout.min_offset + 2].copy().view(np.float16).reshape(-1)
    return d.astype(np.float64), m.astype(np.float64)


def _round_to_grid(name: str, w: np.ndarray, d: np.ndarray, m: np.ndarray):
    """(stored codes, values) of one column w [rows] on each row's block grid."""
    safe = np.where(d == 0, 1.0, d)
    if name == "q4a":
        code = np.where(d == 0, 0, np.clip(np.rint((w - m) / safe), 0, 15))
        return code, code * d + m
    if name == "q4n":
        code = np.where(d == 0, 8, np.searchsorted(_Q4N_MIDPOINTS, w / safe, side="left"))
        return code, _Q4N_LEVELS[code] * d
    lo, hi = _UNIFORM[name]
    level = np.where(d == 0, 0, np.clip(np.rint(w / safe), lo, hi))
    return level - lo if name != "q8" else level, level * d


def _pack(name: str, block: int, d: np.ndarray, m: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """The raw bytes of blocks with fp16 scales d (and minimums m) and codes [n, block]."""
    layout = _formats.block_layout(name, block)
    out = np.empty((codes.shape[0], layout.bytes), dtype=np.uint8)
    out[:, layout.scale_offset:layout.scale_offset + 2] = d.astype(np.float16).view(np.uint8).reshape(-1, 2)
    if layout.min_offset >= 0:
        out[:, layout.min_offset:layout.min_offset + 2] = m.astype(np.float16).view(np.uint8).reshape(-1, 2)
    q = out[:, layout.quants_offset:layout.quants_offset + layout.quants_bytes]
    if name == "q8":
        q[:] = codes.astype(np.int8).view(np.uint8)
    elif name == "q5":
        q[:] = _formats._pack_q5(codes.astype(np.uint8), block)
    else:
        q[:] = _formats._pack_nibbles(codes.astype(np.uint8), block)
    return out.reshape(-1)


def quantize_gptq(array: np.ndarray, dtype: str, block: int, second_moment: Union[np.ndarray, GptqFactor],
                  damp: float = DEFAULT_DAMP, importance: Optional[np.ndarray] = None) -> Tensor:
    """Quantize a matmul weight ``array`` [N, K] (y = x @ W^T) to the q-format ``dtype`` with GPTQ
    error compensation under ``second_moment`` [K, K], the mean of x x^T over calibration inputs
    (pyrt.calibration.collect_second_moments), or its :func:`gptq_factor` (then ``damp`` is the
    factor's). ``importance`` [K] weights each block's scale search (default: the diagonal of the
    second moment). Returns an ordinary q-format Tensor.

    Raises :class:`pyrt.DtypeError` for a format without GPTQ, :class:`pyrt.ShapeError` for shapes
    that do not match, :class:`pyrt.RangeError` for non-finite input or a scale beyond FP16."""
    if dtype not in GPTQ_FORMATS:
        raise DtypeError(f"GPTQ quantizes the q-formats {', '.join(GPTQ_FORMATS)}, not {dtype!r}")
    w = np.array(array, dtype=np.float64)
    if w.ndim != 2:
        raise ShapeError(f"GPTQ quantizes a 2-D weight [N, K], got shape {list(w.shape)}")
    n, k = w.shape
    block = _formats.effective_block(dtype, block)
    _formats.row_bytes(dtype, block, k)
    factor = second_moment if isinstance(second_moment, GptqFactor) else gptq_factor(second_moment, damp)
    if factor.upper.shape != (k, k):
        raise ShapeError(f"second moment must have shape [{k}, {k}] for a weight of shape [{n}, {k}], "
                         f"got {list(factor.upper.shape)}")
    if not np.isfinite(w).all():
        raise RangeError("GPTQ needs finite weights")
    imp = factor.diagonal if importance is None else np.asarray(importance, dtype=np.float64)
    if imp.shape != (k,):
        raise ShapeError(f"importance must have shape [{k}], got {list(imp.shape)}")
    u = factor.upper

    scales = np.empty((n, k // block))
    mins = np.empty((n, k // block))
    codes = np.empty((n, k), dtype=np.int64)
    for b, j0 in enumerate(range(0, k, block)):
        j1 = j0 + block
        t = quantize(w[:, j0:j1].astype(np.float32), dtype, block, importance=imp[j0:j1].astype(np.float32))
        d, m = _block_grid(t, n)
        scales[:, b], mins[:, b] = d, m
        err = np.empty((n, block))
        for i in range(j0, j1):
            codes[:, i], value = _round_to_grid(dtype, w[:, i], d, m)
            e = (w[:, i] - value) / u[i, i]
            err[:, i - j0] = e
            w[:, i + 1:j1] -= np.outer(e, u[i, i + 1:j1])
        w[:, j1:] -= err @ u[j0:j1, j1:]
    data = _pack(dtype, block, scales.reshape(-1), mins.reshape(-1), codes.reshape(-1, block))
    return Tensor(data, dtype, (n, k), block)
