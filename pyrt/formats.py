"""Weight formats: the table mirrored from csrc/include/pyrt/formats.h and a numpy reference
quantizer that produces byte-for-byte the same output as the C++ one (tests check this).

The converter uses the fast C++ quantizer when the native core is built; this module is the
readable definition and works without it.

=====  ========================================  ====================================
name   block layout (B = 32, 64 or 128)           bits per weight (B=32 / 64 / 128)
=====  ========================================  ====================================
f32    IEEE binary32                              32
f16    IEEE binary16, round to nearest even       16
bf16   bfloat16, round to nearest even            16
q8     fp16 d; int8 q[B]        x = q*d           8.5 / 8.25 / 8.125
q4     fp16 d; u8 q[B/2]        x = (n-8)*d       4.5 / 4.25 / 4.125
q4a    fp16 d, m; u8 q[B/2]     x = n*d + m       5.0 / 4.5 / 4.25
q4n    fp16 d; u8 q[B/2]        x = LEVELS[n]*d   4.5 / 4.25 / 4.125
q5     fp16 d; u8 h[B/8], q[B/2] x = (c-16)*d     5.5 / 5.25 / 5.125
=====  ========================================  ====================================

q5's code c (0..31) is its nibble (q4's order) plus 16 times bit i of the high-bit bytes h (element
i, little-endian); at B = 32 a q5 block has the bytes of ggml's Q5_0.

The q-formats' scales (and q4a's minimum) are searched by default (pyrt/quantize_search.py,
weighted by an optional per-column ``importance``); ``method="rtn"`` keeps round to nearest.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from . import quantize_search as _search
from .errors import DtypeError, RangeError, ShapeError

FP16_MAX = 65504.0
BLOCK_SIZES = (32, 64, 128)
DEFAULT_BLOCK = 32
QUANT_METHODS = ("search", "rtn")  # searched scales (default) or round to nearest


@dataclass(frozen=True)
class BlockLayout:
    """Byte layout of one block, as the C++ ``BlockLayout`` (derived there from the block structs).
    Plain formats: block 1, the element's bytes, no scale or minimum (offsets -1)."""
    block: int
    bytes: int
    scale_offset: int   # fp16 d
    min_offset: int     # fp16 m (q4a only)
    quants_offset: int  # first code byte
    quants_bytes: int   # code bytes per block


@dataclass(frozen=True)
class FormatInfo:
    name: str
    id: int
    blocked: bool
    header: tuple[str, ...]  # the fp16 fields before a block's codes, in order: "d" (scale), "m" (minimum)
    bits_per_element: int    # payload bits per weight

    @property
    def header_bytes(self) -> int:
        """Bytes per block before the codes: 2 per fp16 header field; 0 for plain formats."""
        return 2 * len(self.header)

    def layout(self, block: int) -> BlockLayout:
        """The layout of one block at ``block`` (ignored by plain formats)."""
        if not self.blocked:
            size = self.bits_per_element // 8
            return BlockLayout(1, size, -1, -1, 0, size)
        def offset(field: str) -> int:
            return 2 * self.header.index(field) if field in self.header else -1
        quants = block * self.bits_per_element // 8
        return BlockLayout(block, self.header_bytes + quants, offset("d"), offset("m"), self.header_bytes, quants)

    def block_bytes(self, block: int) -> int:
        """Bytes of one block (q-formats) or one element (plain formats)."""
        return self.layout(block).bytes

    def bits_per_weight(self, block: int = DEFAULT_BLOCK) -> float:
        if not self.blocked:
            return float(self.bits_per_element)
        return self.block_bytes(block) * 8 / block


FORMATS: dict[str, FormatInfo] = {
    f.name: f
    for f in (
        FormatInfo("f32", 0, False, (), 32),
        FormatInfo("f16", 1, False, (), 16),
        FormatInfo("bf16", 2, False, (), 16),
        FormatInfo("q8", 3, True, ("d",), 8),
        FormatInfo("q4", 4, True, ("d",), 4),
        FormatInfo("q4a", 5, True, ("d", "m"), 4),
        FormatInfo("q4n", 6, True, ("d",), 4),
        FormatInfo("q5", 7, True, ("d",), 5),
    )
}


def format_info(name: str) -> FormatInfo:
    try:
        return FORMATS[name]
    except KeyError:
        raise DtypeError(f"unknown weight format {name!r} (expected one of {', '.join(FORMATS)})") from None


def effective_block(name: str, block: int) -> int:
    info = format_info(name)
    if not info.blocked:
        return 1
    if block not in BLOCK_SIZES:
        raise DtypeError(f"block size must be 32, 64 or 128 for {name}, got {block}")
    return block


def block_layout(name: str, block: int) -> BlockLayout:
    """The byte layout of one block of ``name`` (validated like the C++ ``block_layout``)."""
    return format_info(name).layout(effective_block(name, block))


def row_bytes(name: str, block: int, k: int) -> int:
    b = effective_block(name, block)
    if k % b:
        raise ShapeError(f"the last dimension ({k}) must be a multiple of the block size {b} for {name}")
    return (k // b) * format_info(name).block_bytes(b)


# ---- half precision, bit-exact with csrc/include/pyrt/half.h -------------------------------------

def fp32_to_bf16_bits(x: np.ndarray) -> np.ndarray:
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    nan = (u & 0x7FFFFFFF) > 0x7F800000
    rounded = ((u + (0x7FFF + ((u >> 16) & 1))) >> 16).astype(np.uint16)
    return np.where(nan, ((u >> 16) | 0x40).astype(np.uint16), rounded)


def bf16_bits_to_fp32(b: np.ndarray) -> np.ndarray:
    return (np.asarray(b, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)


def _fp16_checked(v: np.ndarray, what: str) -> np.ndarray:
    bad = np.abs(v) > FP16_MAX
    if bad.any():
        raise RangeError(f"block {what} {float(v[bad][0])} exceeds the FP16 range (65504); "
                         "use f32, bf16 or scale the weights")
    return v.astype(np.float16)


def _pack_q5(codes: np.ndarray, block: int) -> np.ndarray:
    """codes [n, B] (0..31) -> the q bytes [n, 5B/8]: high bits (bit i of element i), then nibbles."""
    high = np.packbits((codes >> 4).astype(np.uint8), axis=1, bitorder="little")
    return np.concatenate([high, _pack_nibbles(codes & 0x0F, block)], axis=1)


def _unpack_q5(q: np.ndarray, block: int) -> np.ndarray:
    """The q bytes [n, 5B/8] -> codes [n, B] (0..31)."""
    high = np.unpackbits(q[:, :block // 8], axis=1, bitorder="little")
    nib = q[:, block // 8:]
    return np.concatenate([nib & 0x0F, nib >> 4], axis=1) | (high << 4)


def _check_finite(x: np.ndarray) -> None:
    bad = ~np.isfinite(x)
    if bad.any():
        i = int(np.flatnonzero(bad.ravel())[0])
        raise RangeError(f"cannot quantize a non-finite value ({x.ravel()[i]}) at flat index {i}")


def _pack_nibbles(levels: np.ndarray, block: int) -> np.ndarray:
    half = block // 2
    return (levels[:, :half] | (levels[:, half:] << 4)).astype(np.uint8)


# ---- q4n: non-uniform levels, searched scale (csrc/core/quantize_q4n.cc) ---------------------------
# The int8 levels a q4n nibble stands for (ggml's IQ4_NL table; x = level * d).
Q4N_LEVELS = np.array([-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113], dtype=np.int8)
_Q4N_LEVELS_F32 = Q4N_LEVELS.astype(np.float32)
_Q4N_MIDPOINTS = (np.float32(0.5) * (_Q4N_LEVELS_F32[:-1] + _Q4N_LEVELS_F32[1:])).astype(np.float32)
_Q4N_STEPS = 7
_Q4N_ZERO_NIBBLE = 8


def _q4n_nearest(v: np.ndarray) -> np.ndarray:
    """Nibble of the level nearest v (ties to the lower level), as the C++ NearestLevel."""
    return np.searchsorted(_Q4N_MIDPOINTS, v, side="left")


def _sum_in_order(a: np.ndarray) -> np.ndarray:
    """Row sums of a float32 [n, B] array, added in column order like the C++ loops (numpy's own
    sum is pairwise, which rounds differently)."""
    total = np.zeros(a.shape[0], dtype=np.float32)
    for i in range(a.shape[1]):
        total = total + a[:, i]
    return total


def _quantize_q4n(blocks: np.ndarray, importance: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """fp16 scales and nibbles (unpacked) of q4n blocks: among candidate scales mapping the value of
    largest magnitude to an end level (+-7), the one whose least-squares fit removes the most
    weighted error, w = importance^1.5 * (mean(y^2) + y^2) on y = x / amax."""
    f32 = np.float32
    rows = np.arange(blocks.shape[0])
    absb = np.abs(blocks)
    idx = absb.argmax(axis=1)
    vmax, amax = blocks[rows, idx], absb[rows, idx]
    zero = amax == 0
    y = blocks / np.where(zero, f32(1), amax)[:, None]
    sign = np.where(vmax < 0, f32(-1), f32(1)).astype(f32)
    sigma2 = _sum_in_order(y * y) / f32(blocks.shape[1])
    w = sigma2[:, None] + y * y
    if importance is not None:
        w = w * (importance * np.sqrt(importance))  # importance^1.5, as quantize_q4n.cc
    best_lx = np.zeros_like(sigma2)
    best_ll = np.zeros_like(sigma2)
    best_score = np.zeros_like(sigma2)
    with np.errstate(divide="ignore", invalid="ignore"):
        for end in (0, 15):
            for t in range(-_Q4N_STEPS, _Q4N_STEPS + 1):
                inv = f32(int(Q4N_LEVELS[end]) + t) * sign
                lv = _Q4N_LEVELS_F32[_q4n_nearest(y * inv[:, None])]
                wl = w * lv
                lx, ll = _sum_in_order(wl * y), _sum_in_order(wl * lv)
                score = (lx / ll) * lx
                better = (ll > 0) & (score > best_score)
                best_lx = np.where(better, lx, best_lx)
                best_ll = np.where(better, ll, best_ll)
                best_score = np.where(better, score, best_score)
        scored = best_score > 0
        d = np.where(scored, (best_lx / best_ll) * amax, vmax / f32(Q4N_LEVELS[0])).astype(f32)
        d = np.where(zero, f32(0), d)
        d16 = _fp16_checked(d, "scale")
        d32 = d16.astype(f32)[:, None]
        nib = np.where(d32 == 0, _Q4N_ZERO_NIBBLE, _q4n_nearest(blocks / d32))
    return d16, nib.astype(np.uint8)


def check_importance(importance, k: int, method: str) -> Optional[np.ndarray]:
    """``importance`` as a float32 [k] array (or None), validated as the C++ binding does."""
    if method not in QUANT_METHODS:
        raise DtypeError(f"quantization method must be 'search' or 'rtn', got {method!r}")
    if importance is None:
        return None
    if method != "search":
        raise DtypeError("importance weights the scale search; method 'rtn' takes none")
    imp = np.ascontiguousarray(importance, dtype=np.float32)
    if imp.shape != (k,):
        raise ShapeError(f"importance must have shape [{k}] (one value per column), got {list(imp.shape)}")
    if not (np.isfinite(imp).all() and (imp >= 0).all()):
        raise RangeError("importance must be finite and >= 0")
    return imp


def quantize_reference(x: np.ndarray, name: str, block: int = DEFAULT_BLOCK, importance: Optional[np.ndarray] = None,
                       method: str = "search") -> np.ndarray:
    """Quantize ``x`` (float32) along its last axis; returns the raw bytes as a 1-D uint8 array.

    ``importance``: optional float32 [K] weights (>= 0) of the q-formats' scale search, one per
    column, e.g. the mean squared input activation of that column; ``method``: "search" (default)
    or "rtn" (round to nearest: absmax / min-max scales)."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    b = effective_block(name, block)
    k = x.shape[-1] if x.ndim else 1
    row_bytes(name, b, k)  # validates divisibility
    _check_finite(x)
    importance = check_importance(importance, k, method)
    if name == "f32":
        return x.reshape(-1).view(np.uint8).copy()
    if name == "f16":
        big = np.abs(x) > FP16_MAX
        if big.any():
            i = int(np.flatnonzero(big.ravel())[0])
            raise RangeError(f"value {x.ravel()[i]} at flat index {i} exceeds the FP16 range (65504); "
                             "use bf16 or f32 for this tensor")
        return x.astype(np.float16).reshape(-1).view(np.uint8).copy()
    if name == "bf16":
        bits = fp32_to_bf16_bits(x)
        if ((bits & 0x7FFF) == 0x7F80).any():
            raise RangeError("a value overflows BF16 when rounded")
        return bits.reshape(-1).view(np.uint8).copy()

    blocks = x.reshape(-1, b)
    layout = block_layout(name, b)
    out = np.empty((blocks.shape[0], layout.bytes), dtype=np.uint8)
    codes = out[:, layout.quants_offset:layout.quants_offset + layout.quants_bytes]

    def put_fp16(offset: int, v16: np.ndarray) -> None:
        out[:, offset:offset + 2] = v16.view(np.uint8).reshape(-1, 2)

    search = method == "search"
    if search:
        imp = None if importance is None else np.broadcast_to(importance, x.shape).reshape(-1, b)
        w = _search.block_weights(blocks, imp)

    if name == "q8":
        amax = np.abs(blocks).max(axis=1)
        d16 = _fp16_checked(amax / np.float32(127.0), "scale")
        d = d16.astype(np.float32)[:, None]
        with np.errstate(divide="ignore", invalid="ignore"):
            q = np.clip(np.rint(blocks / d), -127, 127)
        q = np.where(d == 0, 0, q).astype(np.int8)
        if search:
            d16, q = _search.search_q8(blocks, w, amax / np.float32(127.0), amax)
        put_fp16(layout.scale_offset, d16)
        codes[:] = q.view(np.uint8)
    elif name in ("q4", "q5"):
        # q4: levels -8..7, q5: -16..15, stored as level - qmin; RTN maps the first value of largest
        # magnitude (argmax's first occurrence, as the C++ loop) exactly to qmin.
        qmin, qmax = (-8, 7) if name == "q4" else (-16, 15)
        idx = np.abs(blocks).argmax(axis=1)
        vmax = blocks[np.arange(blocks.shape[0]), idx]
        d16 = _fp16_checked(vmax / np.float32(qmin), "scale")
        d = d16.astype(np.float32)[:, None]
        with np.errstate(divide="ignore", invalid="ignore"):
            q = np.clip(np.rint(blocks / d), qmin, qmax) - qmin
        levels = np.where(d == 0, -qmin, q).astype(np.uint8)
        if search:
            searcher = _search.search_q4 if name == "q4" else _search.search_q5
            d16, levels = searcher(blocks, w, vmax / np.float32(qmin), vmax)
        put_fp16(layout.scale_offset, d16)
        codes[:] = _pack_nibbles(levels, b) if name == "q4" else _pack_q5(levels, b)
    elif name == "q4a":
        # min/max of {-0, +0} may be either; adding +0 turns both into +0 (as the C++ quantizer does).
        lo = blocks.min(axis=1) + np.float32(0.0)
        hi = blocks.max(axis=1) + np.float32(0.0)
        d16 = _fp16_checked((hi - lo) / np.float32(15.0), "scale")
        m16 = _fp16_checked(lo, "minimum")
        d = d16.astype(np.float32)[:, None]
        m = m16.astype(np.float32)[:, None]
        with np.errstate(divide="ignore", invalid="ignore"):
            q = np.clip(np.rint((blocks - m) / d), 0, 15)
        levels = np.where(d == 0, 0, q).astype(np.uint8)
        if search:
            d16, m16, levels = _search.search_q4a(blocks, w, (hi - lo) / np.float32(15.0), lo, hi)
        put_fp16(layout.scale_offset, d16)
        put_fp16(layout.min_offset, m16)
        codes[:] = _pack_nibbles(levels, b)
    elif name == "q4n":
        imp = None
        if importance is not None:
            imp = np.broadcast_to(np.asarray(importance, dtype=np.float32), x.shape).reshape(-1, b)
        d16, nib = _quantize_q4n(blocks, imp)
        put_fp16(layout.scale_offset, d16)
        codes[:] = _pack_nibbles(nib, b)
    else:  # pragma: no cover - format_info already rejected it
        raise DtypeError(name)
    return out.reshape(-1)


def dequantize_reference(data: np.ndarray, name: str, block: int, shape: tuple[int, ...]) -> np.ndarray:
    """Inverse of :func:`quantize_reference`, in float64 (exact for every format)."""
    data = np.ascontiguousarray(data, dtype=np.uint8)
    b = effective_block(name, block)
    n = int(np.prod(shape)) if shape else 1
    if name == "f32":
        return data.view(np.float32).astype(np.float64).reshape(shape)
    if name == "f16":
        return data.view(np.float16).astype(np.float64).reshape(shape)
    if name == "bf16":
        return bf16_bits_to_fp32(data.view(np.uint16)).astype(np.float64).reshape(shape)
    layout = block_layout(name, b)
    blocks = data.reshape(n // b, layout.bytes)
    codes = blocks[:, layout.quants_offset:layout.quants_offset + layout.quants_bytes]

    def get_fp16(offset: int) -> np.ndarray:
        return blocks[:, offset:offset + 2].copy().view(np.float16).astype(np.float64)

    d = get_fp16(layout.scale_offset)
    if name == "q8":
        q = codes.view(np.int8).astype(np.float64)
        return (q * d).reshape(shape)
    if name == "q5":
        return ((_unpack_q5(codes, b).astype(np.float64) - 16) * d).reshape(shape)
    levels = np.concatenate([codes & 0x0F, codes >> 4], axis=1).astype(np.float64)
    if name == "q4":
        return ((levels - 8) * d).reshape(shape)
    if name == "q4n":
        nibbles = np.concatenate([codes & 0x0F, codes >> 4], axis=1)
        return (Q4N_LEVELS[nibbles].astype(np.float64) * d).reshape(shape)
    return (levels * d + get_fp16(layout.min_offset)).reshape(shape)
