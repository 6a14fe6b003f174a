"""Load-time repacking (csrc/include/pyrt/repack.h): the repacked copy's bytes against a numpy
build of the documented layout, and M=1 products from it bit for bit equal to the file layout's
(the two kernels sum in the same order), on random q4/q4a/q4n matrices with N and K tails and
poisoned outputs. A corrupted copy must change the output: the kernel reads it."""
from __future__ import annotations

import numpy as np
import pytest

import pyrt
from pyrt._native import require_core
from pyrt.formats import block_layout

from helpers import poisoned

FORMATS = ["q4", "q4a", "q4n"]
# (N, K): whole quads and groups; N tails (not a multiple of 4); K with whole groups plus blocks
# (a multiple of 32, not of 128); fewer than 4 rows or 128 columns (no copy at all); matrices
# split across threads (N > 16 rows a thread).
SHAPES = [(4, 128), (16, 256), (7, 256), (13, 160), (33, 416), (64, 4096), (130, 1408), (3, 256), (12, 96), (1, 32)]


def weights_and_tensor(rng, fmt, n, k):
    w = (rng.standard_normal((n, k)) * rng.uniform(0.2, 3.0, (n, 1)) + 0.1).astype(np.float32)
    t = pyrt.quantize(w, fmt, 32)
    return t, t._native_weights()


def expected_layout(t: pyrt.Tensor) -> np.ndarray:
    """The copy pyrt/repack.h documents, built with numpy from the file's blocks."""
    n, k = t.shape
    L = block_layout(t.dtype, 32)
    quads, groups = n // 4, k // 128
    if quads == 0 or groups == 0:
        return np.zeros(0, np.uint8)  # no copy: the file's layout serves every row
    blocks = t.numpy().reshape(n, k // 32, L.bytes)[: quads * 4]
    raw, tail = blocks[:, : groups * 4], blocks[:, groups * 4:]
    nib = raw[:, :, L.quants_offset:L.quants_offset + 16].reshape(quads, 4, groups, 64).transpose(0, 2, 1, 3)
    fields = [raw[:, :, L.scale_offset:L.scale_offset + 2]]
    if L.min_offset >= 0:
        fields.append(raw[:, :, L.min_offset:L.min_offset + 2])
    scales = np.concatenate([f.reshape(quads, 4, groups, 8) for f in fields], axis=3).transpose(0, 2, 1, 3)
    return np.concatenate([nib.ravel(), scales.ravel(), tail.ravel()])


def product(w, x, bias=None):
    out = poisoned((1, w.rows))
    require_core().matmul(x, w, bias, out)
    return out


def same_bits(a, b):
    return np.array_equal(a.view(np.uint32), b.view(np.uint32))


@pytest.fixture
def avx512():
    if "avx512" not in pyrt.available_cpu_isas():
        pytest.skip("no avx512 kernels on this CPU/build: no kernel reads a repacked copy")
    previous, threads = pyrt.get_cpu_isa(), pyrt.get_num_threads()
    pyrt.set_cpu_isa("avx512")
    yield
    pyrt.set_cpu_isa(previous)
    pyrt.set_num_threads(threads)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("n,k", SHAPES)
def test_layout_matches_the_documented_one(rng, avx512, fmt, n, k):
    t, w = weights_and_tensor(rng, fmt, n, k)
    r = w.repacked()
    quads, groups = n // 4, k // 128
    tail = (k // 32 - groups * 4) * block_layout(fmt, 32).bytes
    assert r.repacked_nbytes == (quads * 4 * (groups * (64 + (16 if fmt == "q4a" else 8)) + tail) if groups and quads else 0)
    assert np.array_equal(r.repacked_view(), expected_layout(t))
    assert w.repacked_nbytes == 0  # the original is untouched


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("n,k", SHAPES)
def test_m1_product_is_bit_exact(rng, avx512, fmt, n, k, threads):
    pyrt.set_num_threads(threads)
    t, w = weights_and_tensor(rng, fmt, n, k)
    r = w.repacked()
    x = rng.standard_normal((1, k)).astype(np.float32)
    bias = rng.standard_normal(n).astype(np.float32)
    for b in (None, bias):
        y_file, y_rep = product(w, x, b), product(r, x, b)
        assert np.all(np.isfinite(y_rep)), "unwritten (NaN) outputs"
        assert same_bits(y_file, y_rep), f"max diff {np.max(np.abs(y_file - y_rep))}"
    # And both are the product (float64 reference of the stored weights; loose: the bits are what counts).
    ref = x.astype(np.float64) @ t.dequantize().astype(np.float64).T
    np.testing.assert_allclose(product(r, x), ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("n,k", [(16, 256), (13, 160), (130, 1408)])
def test_kernel_reads_the_copy(rng, avx512, fmt, n, k):
    """Corrupting the copy's nibbles changes exactly the rows in whole quads (the others, and the
    blocks after the whole groups, come from the file's layout)."""
    _, w = weights_and_tensor(rng, fmt, n, k)
    r = w.repacked()
    x = rng.standard_normal((1, k)).astype(np.float32)
    before = product(r, x)
    view = r.repacked_view()
    nibbles = (n // 4) * (k // 128) * 4 * 64
    view[:nibbles] ^= 0x11
    after = product(r, x)
    quad_rows = (n // 4) * 4
    assert np.all(after[0, :quad_rows] != before[0, :quad_rows])
    assert same_bits(after[0, quad_rows:], before[0, quad_rows:])
    # The blocks after the whole groups (K = 160, 1408: one or three per row) come from the copy's tail too.
    L = block_layout(fmt, 32)
    tail_blocks = k // 32 - (k // 128) * 4
    if tail_blocks:
        tail = view[nibbles + (n // 4) * (k // 128) * 4 * (16 if fmt == "q4a" else 8):].reshape(quad_rows, tail_blocks, L.bytes)
        tail[:, :, L.quants_offset:] ^= 0x11
        assert np.all(product(r, x)[0, :quad_rows] != after[0, :quad_rows])


@pytest.mark.parametrize("isa", ["scalar", "avx2"])
def test_other_isas_keep_the_file_layout(rng, isa):
    if "avx512" not in pyrt.available_cpu_isas() or isa not in pyrt.available_cpu_isas():
        pytest.skip(f"needs avx512 and {isa} kernels")
    previous = pyrt.get_cpu_isa()
    try:
        pyrt.set_cpu_isa("avx512")
        _, w = weights_and_tensor(rng, "q4a", 16, 256)
        r = w.repacked()
        assert r.repacked_nbytes > 0
        pyrt.set_cpu_isa(isa)
        assert w.repacked().repacked_nbytes == 0  # no kernel of this ISA reads a copy
        x = rng.standard_normal((1, 256)).astype(np.float32)
        assert same_bits(product(w, x), product(r, x))  # a copy made before is ignored
    finally:
        pyrt.set_cpu_isa(previous)


def test_tensor_repacked(rng, avx512):
    """pyrt.Tensor.repacked(): the public face of the same copy, through pyrt.matmul."""
    t, _ = weights_and_tensor(rng, "q4a", 33, 416)
    r = t.repacked()
    assert t.repacked_nbytes == 0 and r.repacked_nbytes == len(expected_layout(t))
    assert np.array_equal(r.numpy(), t.numpy()) and r.shape == t.shape
    x = rng.standard_normal((1, 416)).astype(np.float32)
    assert same_bits(pyrt.matmul(x, r, out=poisoned((1, 33))), pyrt.matmul(x, t, out=poisoned((1, 33))))
    assert pyrt.quantize(rng.standard_normal((8, 128)).astype(np.float32), "q4", 64).repacked().repacked_nbytes == 0


@pytest.mark.parametrize("fmt,block", [("q8", 32), ("q8", 64), ("q8", 128), ("q4", 64), ("q4a", 128), ("q4n", 64)])
def test_no_copy_where_no_kernel_reads_one(rng, avx512, fmt, block):
    """q8 and the 4-bit formats at blocks 64/128 keep the file layout only (a q8 copy measured
    slower, docs/benchmarks.md): repacked() adds no bytes and the product is unchanged."""
    w = pyrt.quantize(rng.standard_normal((16, 512)).astype(np.float32), fmt, block)._native_weights()
    r = w.repacked()
    assert r.repacked_nbytes == 0
    x = rng.standard_normal((1, 512)).astype(np.float32)
    assert same_bits(product(w, x), product(r, x))


def test_larger_m_reads_the_file_layout(rng, avx512):
    _, w = weights_and_tensor(rng, "q4", 40, 512)
    r = w.repacked()
    x = rng.standard_normal((5, 512)).astype(np.float32)
    out_file, out_rep = poisoned((5, 40)), poisoned((5, 40))
    require_core().matmul(x, w, None, out_file)
    require_core().matmul(x, r, None, out_rep)
    assert same_bits(out_file, out_rep)
