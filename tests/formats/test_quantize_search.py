"""Searched q-format scales: the C++ quantizer and its numpy mirror (pyrt/quantize_search.py) give
identical bytes with and without importance, on random data and edge cases; the search is never
worse than round to nearest under its own weighted error; importance is validated."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import pyrt
from pyrt import quantize_search as qs
from pyrt.formats import dequantize_reference, quantize_reference

BLOCKED = [(f, b) for f in ("q8", "q4", "q4a") for b in (32, 64, 128)]


# The largest |x| each format's round-to-nearest scale (and minimum) still holds in FP16, nearly.
NEAR_FP16_LIMIT = {"q8": 8.3e6, "q4": 5.2e5, "q4a": 6.5e4}


def sample(rng, kind: str, shape, fmt: str = "q8") -> np.ndarray:
    x = rng.standard_normal(shape).astype(np.float32)
    if kind == "normal":
        return x
    if kind == "one_outlier":  # one huge value per row among small ones
        x *= 0.01
        x[np.arange(shape[0]), rng.integers(0, shape[1], shape[0])] = 25.0
        return x
    if kind == "constant":  # constant, zero and one-sided blocks
        x[:, :128] = np.float32(0.3)
        x[:, 128:256] = 0.0
        x[:, 256:384] = np.abs(x[:, 256:384]) + 7.0
        return x
    if kind == "tiny":  # FP16 subnormal scales
        return (x * 1e-6).astype(np.float32)
    if kind == "huge":  # scales near the FP16 limit: some candidates overflow, RTN does not
        x = np.clip(x, -3, 3) / 3 * NEAR_FP16_LIMIT[fmt]
        x[:, ::32] = NEAR_FP16_LIMIT[fmt]
        return x.astype(np.float32)
    if kind == "heavy":  # heavy-tailed, as real weights
        return (rng.standard_t(3, shape) * 0.05).astype(np.float32)
    raise AssertionError(kind)


def importance_for(rng, kind: str, k: int):
    if kind == "none":
        return None
    if kind == "random":
        return (rng.random(k) ** 4 * 10).astype(np.float32)
    if kind == "sparse":  # zero importance for most columns
        imp = np.zeros(k, np.float32)
        imp[rng.integers(0, k, k // 8)] = rng.random(k // 8).astype(np.float32) + 0.5
        return imp
    raise AssertionError(kind)


@pytest.mark.parametrize("fmt,block", BLOCKED)
@pytest.mark.parametrize("kind", ["normal", "one_outlier", "constant", "tiny", "huge", "heavy"])
@pytest.mark.parametrize("imp_kind", ["none", "random", "sparse"])
def test_cpp_and_numpy_searched_quantizers_give_identical_bytes(rng, fmt, block, kind, imp_kind):
    x = sample(rng, kind, (6, 512), fmt)
    imp = importance_for(rng, imp_kind, 512)
    native = pyrt.quantize(x, fmt, block, importance=imp).numpy()
    np.testing.assert_array_equal(native, quantize_reference(x, fmt, block, importance=imp))


@pytest.mark.parametrize("fmt,block", BLOCKED)
def test_rtn_method_is_unchanged_round_to_nearest(rng, fmt, block):
    x = sample(rng, "heavy", (5, 256))
    native = pyrt.quantize(x, fmt, block, method="rtn").numpy()
    np.testing.assert_array_equal(native, quantize_reference(x, fmt, block, method="rtn"))
    # RTN's defining property: q8/q4 scales come from the block's extreme value
    d = dequantize_reference(native, fmt, block, x.shape).reshape(-1, block)
    xb = x.reshape(-1, block).astype(np.float64)
    if fmt == "q4":
        idx = np.abs(xb).argmax(axis=1)
        np.testing.assert_allclose(d[np.arange(len(d)), idx], xb[np.arange(len(d)), idx], rtol=2e-3)


@settings(max_examples=60, deadline=None)
@given(
    fmt_block=st.sampled_from(BLOCKED),
    data=hnp.arrays(np.float32, (2, 128), elements=st.floats(-60000, 60000, width=32)),
    imp=hnp.arrays(np.float32, (128,), elements=st.floats(0, 1e6, width=32)),
    use_imp=st.booleans(),
)
def test_byte_identity_on_arbitrary_values(fmt_block, data, imp, use_imp):
    fmt, block = fmt_block
    imp = imp if use_imp else None
    try:
        ref = quantize_reference(data, fmt, block, importance=imp)
    except pyrt.RangeError:
        with pytest.raises(pyrt.RangeError):
            pyrt.quantize(data, fmt, block, importance=imp)
        return
    np.testing.assert_array_equal(pyrt.quantize(data, fmt, block, importance=imp).numpy(), ref)


def weighted_block_error(x, stored, fmt, block, w):
    back = dequantize_reference(stored, fmt, block, x.shape).reshape(-1, block)
    r = back - x.reshape(-1, block).astype(np.float64)
    return (w * r * r).sum(axis=1)


@pytest.mark.parametrize("fmt,block", BLOCKED)
@pytest.mark.parametrize("imp_kind", ["none", "random"])
def test_search_is_never_worse_than_rtn_per_block(rng, fmt, block, imp_kind):
    x = sample(rng, "heavy", (16, 512))
    x[:8] = sample(rng, "one_outlier", (8, 512))
    imp = importance_for(rng, imp_kind, 512)
    w = qs.block_weights(x.reshape(-1, block),
                         None if imp is None else np.broadcast_to(imp, x.shape).reshape(-1, block))
    searched = weighted_block_error(x, pyrt.quantize(x, fmt, block, importance=imp).numpy(), fmt, block, w)
    rtn = weighted_block_error(x, pyrt.quantize(x, fmt, block, method="rtn").numpy(), fmt, block, w)
    assert np.all(searched <= rtn * (1 + 1e-12) + 1e-300)
    ratio = searched[rtn > 0] / rtn[rtn > 0]
    assert ratio.mean() < 0.97  # and it actually finds better scales


def test_importance_moves_the_error_to_unimportant_columns(rng):
    x = sample(rng, "heavy", (64, 256))
    imp = np.full(256, 1e-3, np.float32)
    imp[::4] = 1.0  # every fourth column matters
    plain = pyrt.quantize(x, "q4", 32).dequantize()
    weighted = pyrt.quantize(x, "q4", 32, importance=imp).dequantize()
    err = lambda y: float(((y[:, ::4] - x[:, ::4]).astype(np.float64) ** 2).sum())  # noqa: E731
    assert err(weighted) < 0.8 * err(plain)


def test_constant_blocks_stay_exact(rng):
    x = np.concatenate([np.full(32, 2.5, np.float32), np.zeros(32, np.float32)]).reshape(1, 64)
    for fmt in ("q8", "q4", "q4a"):
        back = pyrt.quantize(x, fmt, 32).dequantize()
        np.testing.assert_array_equal(back[0, 32:], 0.0)
    np.testing.assert_array_equal(pyrt.quantize(x, "q4a", 32).dequantize()[0, :32], np.float32(2.5))


def test_fp16_overflow_is_refused_as_before():
    x = np.full((1, 32), 1.0e7, np.float32)
    x[0, 0] = -1.0e7
    for fmt in ("q8", "q4", "q4a"):
        with pytest.raises(pyrt.RangeError, match="FP16"):
            pyrt.quantize(x, fmt, 32)
        with pytest.raises(pyrt.RangeError, match="FP16"):
            quantize_reference(x, fmt, 32)


def test_importance_is_validated(rng):
    x = sample(rng, "normal", (2, 64))
    with pytest.raises(pyrt.ShapeError):
        pyrt.quantize(x, "q4", 32, importance=np.ones(32, np.float32))
    with pytest.raises(pyrt.RangeError):
        pyrt.quantize(x, "q4", 32, importance=-np.ones(64, np.float32))
    with pytest.raises(pyrt.RangeError):
        pyrt.quantize(x, "q4", 32, importance=np.full(64, np.nan, np.float32))
    with pytest.raises(pyrt.DtypeError):
        pyrt.quantize(x, "q4", 32, importance=np.ones(64, np.float32), method="rtn")
    with pytest.raises(pyrt.DtypeError):
        pyrt.quantize(x, "q4", 32, method="gptq")
    # plain formats ignore importance
    np.testing.assert_array_equal(pyrt.quantize(x, "f16", importance=np.ones(64)).numpy(),
                                  pyrt.quantize(x, "f16").numpy())
