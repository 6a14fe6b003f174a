"""Weight formats: C++ and numpy quantizers give identical bytes; round trips stay within each
format's error bound; the Python table mirrors the C++ one."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import pyrt
from pyrt import _core
from pyrt.formats import FORMATS, dequantize_reference, quantize_reference

BLOCKED = [(f, b) for f in ("q8", "q4", "q4a", "q4n", "q5") for b in (32, 64, 128)]
ALL = [("f32", 32), ("f16", 32), ("bf16", 32)] + BLOCKED

# Worst-case error of one stored weight, relative to the largest |x| of its block (or, for plain
# formats, to |x| itself): half a quantization step plus the FP16 rounding of the scale.
MAX_REL_STEP = {"f32": 0.0, "f16": 2.0**-11, "bf16": 2.0**-8, "q8": 0.5 / 127 + 1e-3,
                "q4": 1.0 / 8 + 1e-3, "q4a": 1.0 / 15 + 2e-3,  # q4a: half a step of (max-min)/15 <= 2*absmax/15
                "q4n": 1.0 / 8 + 1e-3,  # q4n: half its widest gap (24 levels) at d <= absmax / 106
                "q5": 1.0 / 16 + 1e-3}  # q5: as q4, a value opposite the extreme clips to 15 d = 15/16 absmax


def sample(rng, kind: str, shape) -> np.ndarray:
    if kind == "normal":
        return rng.standard_normal(shape).astype(np.float32)
    if kind == "outliers":
        x = rng.standard_normal(shape).astype(np.float32) * 0.02
        mask = rng.random(shape) < 0.01
        x[mask] = rng.standard_normal(int(mask.sum())).astype(np.float32) * 30
        return x
    if kind == "tiny":  # FP16 scales in the subnormal range
        return (rng.standard_normal(shape) * 1e-6).astype(np.float32)
    if kind == "mixed":  # constant blocks, zero blocks and ordinary ones
        x = rng.standard_normal(shape).astype(np.float32)
        x[..., :128] = 0.0
        x[..., 128:256] = np.float32(0.3)
        return x
    raise AssertionError(kind)


@pytest.mark.parametrize("fmt,block", ALL)
@pytest.mark.parametrize("kind", ["normal", "outliers", "tiny", "mixed"])
def test_cpp_and_numpy_quantizers_give_identical_bytes(rng, fmt, block, kind):
    x = sample(rng, kind, (7, 512))
    native = pyrt.quantize(x, fmt, block).numpy()
    reference = quantize_reference(x, fmt, block)
    assert native.dtype == np.uint8 and native.shape == reference.shape
    np.testing.assert_array_equal(native, reference)


@settings(max_examples=60, deadline=None)
@given(
    fmt_block=st.sampled_from(ALL),
    data=hnp.arrays(np.float32, (2, 128), elements=st.floats(-60000, 60000, width=32)),
)
def test_byte_identity_on_arbitrary_values(fmt_block, data):
    fmt, block = fmt_block
    np.testing.assert_array_equal(pyrt.quantize(data, fmt, block).numpy(), quantize_reference(data, fmt, block))


# Round to nearest keeps every weight within the bound; the searched scales trade the largest error
# of a block (they may clip its extreme) for a lower total error: measured up to ~2x the bound.
SEARCH_BOUND_FACTOR = {"rtn": 1.0, "search": 2.5}


@pytest.mark.parametrize("fmt,block", ALL)
@pytest.mark.parametrize("method", ["rtn", "search"])
def test_round_trip_error_within_format_bound(rng, fmt, block, method):
    x = sample(rng, "outliers", (9, 256))
    t = pyrt.quantize(x, fmt, block, method=method)
    back = t.dequantize()
    assert back.dtype == np.float32 and back.shape == x.shape
    np.testing.assert_array_equal(back, dequantize_reference(t.numpy(), fmt, block, x.shape).astype(np.float32))
    err = np.abs(back.astype(np.float64) - x)
    if FORMATS[fmt].blocked:
        scale = np.repeat(np.abs(x).reshape(-1, block).max(axis=1), block).reshape(x.shape)
    else:
        scale = np.abs(x)
    # FP16 subnormals (|x| < 2^-14) have an absolute step of 2^-24.
    floor = 2.0**-25 if fmt == "f16" else 1e-30
    assert np.all(err <= SEARCH_BOUND_FACTOR[method] * MAX_REL_STEP[fmt] * scale + floor)
    if fmt != "f32":  # a lossy format must actually change something on random data
        assert err.max() > 0


@pytest.mark.parametrize("fmt,block", ALL)
def test_tensor_metadata(rng, fmt, block):
    x = rng.standard_normal((5, 3, 128)).astype(np.float32)
    t = pyrt.quantize(x, fmt, block)
    info = FORMATS[fmt]
    assert t.dtype == fmt and t.shape == (5, 3, 128)
    assert t.block == (block if info.blocked else 1)
    assert t.nbytes == x.size * info.bits_per_weight(block) / 8
    assert t.bits_per_weight == pytest.approx(info.bits_per_weight(block))
    assert t.numpy().flags.writeable is False
    assert fmt in repr(t)


def test_bits_per_weight_table():
    expect = {("q8", 32): 8.5, ("q8", 64): 8.25, ("q8", 128): 8.125, ("q4", 32): 4.5, ("q4", 64): 4.25,
              ("q4", 128): 4.125, ("q4a", 32): 5.0, ("q4a", 64): 4.5, ("q4a", 128): 4.25,
              ("q4n", 32): 4.5, ("q4n", 64): 4.25, ("q4n", 128): 4.125,
              ("q5", 32): 5.5, ("q5", 64): 5.25, ("q5", 128): 5.125,
              ("f32", 32): 32.0, ("f16", 32): 16.0, ("bf16", 32): 16.0}
    for (fmt, block), bits in expect.items():
        assert FORMATS[fmt].bits_per_weight(block) == bits


def test_python_table_mirrors_cpp_table():
    cpp = {row["name"]: row for row in _core.format_table()}
    assert set(cpp) == set(FORMATS)
    for name, info in FORMATS.items():
        row = cpp[name]
        assert (row["id"], row["blocked"], row["header_bytes"], row["bits_per_element"]) == (
            info.id, info.blocked, info.header_bytes, info.bits_per_element)
        for block in (32, 64, 128):
            assert _core.row_bytes(name, block, 256) == 256 // (block if info.blocked else 1) * info.block_bytes(block)


def test_f16_rounds_to_nearest_even_and_keeps_the_largest_finite_value():
    # 1 + 2^-11 is a tie between 1 and 1 + 2^-10: even mantissa (1.0) wins; 65504 stays finite.
    x = np.array([1 + 2**-11, 1 + 3 * 2**-11, 65504.0, -65504.0, 2.0**-24, 2.0**-25 * 3, 6e-8], np.float32)
    got = pyrt.quantize(x, "f16").numpy().view(np.float16)
    np.testing.assert_array_equal(got, x.astype(np.float16))
    assert got[0] == 1.0 and got[1] == np.float16(1 + 2**-9)
    assert np.all(np.isfinite(got))


def test_bf16_rounds_to_nearest_even():
    u = np.array([0x3F808000, 0x3F818000, 0x3F80C000, 0x3F807FFF], dtype=np.uint32)  # ties and near-ties
    x = u.view(np.float32)
    got = pyrt.quantize(x, "bf16").numpy().view(np.uint16)
    np.testing.assert_array_equal(got, np.array([0x3F80, 0x3F82, 0x3F81, 0x3F80], dtype=np.uint16))


def test_q4_uses_all_sixteen_levels_and_maps_the_extreme_exactly(rng):
    x = rng.standard_normal((1, 32)).astype(np.float32)
    x[0, 5] = -4.0  # largest magnitude
    t = pyrt.quantize(x, "q4", 32, method="rtn")  # round to nearest's property (the search may clip it)
    back = t.dequantize()
    assert back[0, 5] == pytest.approx(-4.0, rel=1e-3)
    levels = np.concatenate([t.numpy()[2:] & 15, t.numpy()[2:] >> 4])
    assert levels.min() >= 0 and levels.max() <= 15


def test_q4a_handles_constant_and_one_sided_blocks(rng):
    x = np.concatenate([np.full(32, 2.5, np.float32), rng.random(32, dtype=np.float32) + 10]).reshape(1, 64)
    back = pyrt.quantize(x, "q4a", 32).dequantize()
    assert np.all(back[0, :32] == np.float32(2.5))
    assert np.abs(back[0, 32:] - x[0, 32:]).max() <= (x[0, 32:].max() - x[0, 32:].min()) / 15 * 0.51 + 1e-2


def test_quantize_accepts_other_numeric_dtypes(rng):
    x = rng.integers(-100, 100, size=(4, 64)).astype(np.int32)
    t = pyrt.quantize(x, "q8", 64)
    np.testing.assert_allclose(t.dequantize(), x, atol=100 / 127)
    t16 = pyrt.quantize(x.astype(np.float64), "f16")
    np.testing.assert_array_equal(t16.dequantize(), x.astype(np.float32))


def test_scalars_and_empty_arrays_keep_their_shape():
    t = pyrt.quantize(np.float32(1.5), "f16")
    assert t.shape == () and t.dequantize().shape == () and float(t.dequantize()) == 1.5
    e = pyrt.quantize(np.zeros((1000000, 0), np.float32), "f32")
    assert e.shape == (1000000, 0) and e.nbytes == 0 and e.dequantize().shape == (1000000, 0)
