"""Block layouts: the Python mirror (pyrt.formats.block_layout) equals the C++ one, which is derived
from the block structs in csrc/include/pyrt/formats.h, and both quantizers write their fields there."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from pyrt import _core
from pyrt.errors import DtypeError
from pyrt.formats import FORMATS, BlockLayout, block_layout, quantize_reference

BLOCKS = (32, 64, 128)
CASES = [(name, block) for name in FORMATS for block in BLOCKS]


@pytest.mark.parametrize("name,block", CASES)
def test_python_layout_equals_cpp_layout(name, block):
    cpp = _core.block_layout(name, block)
    assert set(cpp) == {f.name for f in dataclasses.fields(BlockLayout)}
    assert block_layout(name, block) == BlockLayout(**cpp)


# Written out by hand from the struct definitions, so a change to either side is noticed here.
EXPECTED = {
    ("f32", 64): BlockLayout(1, 4, -1, -1, 0, 4),
    ("f16", 64): BlockLayout(1, 2, -1, -1, 0, 2),
    ("bf16", 64): BlockLayout(1, 2, -1, -1, 0, 2),
    ("q8", 32): BlockLayout(32, 34, 0, -1, 2, 32),
    ("q8", 128): BlockLayout(128, 130, 0, -1, 2, 128),
    ("q4", 32): BlockLayout(32, 18, 0, -1, 2, 16),
    ("q4", 64): BlockLayout(64, 34, 0, -1, 2, 32),
    ("q4a", 32): BlockLayout(32, 20, 0, 2, 4, 16),
    ("q4a", 128): BlockLayout(128, 68, 0, 2, 4, 64),
    ("q4n", 32): BlockLayout(32, 18, 0, -1, 2, 16),
    ("q4n", 128): BlockLayout(128, 66, 0, -1, 2, 64),
    ("q5", 32): BlockLayout(32, 22, 0, -1, 2, 20),   # 4 high-bit bytes + 16 nibble bytes: ggml's Q5_0
    ("q5", 64): BlockLayout(64, 42, 0, -1, 2, 40),
    ("q5", 128): BlockLayout(128, 82, 0, -1, 2, 80),
}


@pytest.mark.parametrize("key", list(EXPECTED))
def test_layout_matches_the_struct_definitions(key):
    assert BlockLayout(**_core.block_layout(*key)) == EXPECTED[key]


@pytest.mark.parametrize("name,block", CASES)
def test_layout_adds_up_to_the_row_bytes(name, block):
    layout = block_layout(name, block)
    k = 256
    assert _core.row_bytes(name, block, k) == k // layout.block * layout.bytes
    if FORMATS[name].blocked:
        assert layout.quants_offset + layout.quants_bytes == layout.bytes


@pytest.mark.parametrize("block", [0, 16, 96, 256])
@pytest.mark.parametrize("name", ["q8", "q4", "q4a", "q4n", "q5"])
def test_invalid_blocks_are_refused_by_both(name, block):
    with pytest.raises(DtypeError):
        _core.block_layout(name, block)
    with pytest.raises(DtypeError):
        block_layout(name, block)


@pytest.mark.parametrize("name,block", [c for c in CASES if FORMATS[c[0]].blocked])
def test_quantizers_write_the_fields_where_the_layout_says(name, block, rng):
    # One block per row with a known minimum and largest magnitude: d and m land at their offsets.
    x = rng.uniform(-1.0, 1.0, (3, block)).astype(np.float32)
    x[:, 5] = np.float32(-2.0)
    layout = block_layout(name, block)
    # round to nearest: its d and m are known in advance (the searched ones are checked by value in
    # tests/formats/test_quantize_search.py)
    for data in (np.asarray(_core.quantize(x, name, block, method="rtn")), quantize_reference(x, name, block, method="rtn")):
        blocks = data.reshape(3, layout.bytes)
        d = blocks[:, layout.scale_offset:layout.scale_offset + 2].copy().view(np.float16).ravel()
        if name == "q4n":  # a searched scale: the -2.0 lands on (or near) an end level, -127 or 113
            ends = d.astype(np.float64)[:, None] * np.array([-127.0, 113.0])
            assert np.all(np.abs(ends + 2.0).min(axis=1) <= 0.06 * 2.0), d
        else:
            expected_d = {"q8": 2.0 / 127, "q4": 2.0 / 8, "q5": 2.0 / 16, "q4a": (x.max(axis=1) + 2.0) / 15}[name]
            np.testing.assert_allclose(d.astype(np.float64), expected_d, rtol=2.0**-10)
        if layout.min_offset >= 0:
            m = blocks[:, layout.min_offset:layout.min_offset + 2].copy().view(np.float16).ravel()
            np.testing.assert_array_equal(m, np.full(3, -2.0, np.float16))
