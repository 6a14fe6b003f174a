"""Load-time repacking (csrc/include/pyrt/repack.h): the repacked copy's bytes against a numpy
build of the documented layout, and M=1 products from it, on random q4/q4a/q4n matrices at blocks
32, 64, 128 (q4n: 32, 64) with N and K tails and poisoned outputs. Block 32: bit for bit equal to the file
layout's (the two kernels sum in the same order). Blocks 64/128: the file kernel sums block by
block, so both are checked against float64 numpy within the FP32 accumulation bound and against
each other within twice it. A corrupted copy must change the output: the kernel reads it."""
from __future__ import annotations

import numpy as np
import pytest

import pyrt
from pyrt._native import require_core
from pyrt.formats import block_layout

from helpers import accumulation_bound, poisoned

FORMATS = ["q4", "q4a", "q4n"]
BLOCKS = [32, 64, 128]
NO_COPY = {("q4n", 128)}  # measured slower from DRAM than the file layout (pyrt/repack.h)
# (N, K) per block: whole quads and groups; N tails (not a multiple of 4); K with whole groups plus
# blocks (a multiple of B, not of 128); fewer than 4 rows or 128 columns (no copy at all); matrices
# split across threads (N > 16 rows a thread); 23 quads (94 rows): sets of the kernel's 4 quad streams
# and leftover single quads, on each thread.
SHAPES = {
    32: [(4, 128), (16, 256), (7, 256), (13, 160), (33, 416), (64, 4096), (130, 1408), (94, 256), (3, 256), (12, 96), (1, 32)],
    64: [(4, 128), (16, 256), (7, 256), (13, 192), (33, 448), (64, 4096), (130, 1472), (94, 256), (3, 256), (12, 64)],
    128: [(4, 128), (16, 256), (7, 384), (13, 128), (33, 512), (64, 4096), (130, 1408), (94, 256), (3, 256)],
}
CASES = [(f, b, n, k) for f in FORMATS for b in BLOCKS if (f, b) not in NO_COPY for n, k in SHAPES[b]]


def weights_and_tensor(rng, fmt, n, k, block=32):
    w = (rng.standard_normal((n, k)) * rng.uniform(0.2, 3.0, (n, 1)) + 0.1).astype(np.float32)
    t = pyrt.quantize(w, fmt, block)
    return t, t._native_weights()


def scale_bytes(fmt, block):
    """Per group of 128 and row: FP16 d per block, and q4a's m."""
    return (128 // block) * (4 if fmt == "q4a" else 2)


def expected_layout(t: pyrt.Tensor) -> np.ndarray:
    """The copy pyrt/repack.h documents, built with numpy from the file's blocks."""
    n, k = t.shape
    B = t.block
    L = block_layout(t.dtype, B)
    quads, groups, per_group = n // 4, k // 128, 128 // B
    if quads == 0 or groups == 0:
        return np.zeros(0, np.uint8)  # no copy: the file's layout serves every row
    blocks = t.numpy().reshape(n, k // B, L.bytes)[: quads * 4]
    raw, tail = blocks[:, : groups * per_group], blocks[:, groups * per_group:]
    nib = raw[:, :, L.quants_offset:L.quants_offset + B // 2].reshape(quads, 4, groups, 64).transpose(0, 2, 1, 3)
    fields = [raw[:, :, L.scale_offset:L.scale_offset + 2]]
    if L.min_offset >= 0:
        fields.append(raw[:, :, L.min_offset:L.min_offset + 2])
    scales = np.concatenate([f.reshape(quads, 4, groups, 2 * per_group) for f in fields], axis=3).transpose(0, 2, 1, 3)
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


@pytest.mark.parametrize("fmt,block,n,k", CASES)
def test_layout_matches_the_documented_one(rng, avx512, fmt, block, n, k):
    t, w = weights_and_tensor(rng, fmt, n, k, block)
    r = w.repacked()
    quads, groups = n // 4, k // 128
    tail = (k // block - groups * (128 // block)) * block_layout(fmt, block).bytes
    assert r.repacked_nbytes == (quads * 4 * (groups * (64 + scale_bytes(fmt, block)) + tail) if groups and quads else 0)
    view = r.repacked_view()
    assert np.array_equal(view, expected_layout(t))
    # Nothing more than the file's bytes of the rows it covers, rearranged.
    covered = t.numpy().reshape(n, -1)[: (n // 4) * 4] if groups else t.numpy()[:0]
    assert np.array_equal(np.sort(view), np.sort(covered.ravel()))
    assert w.repacked_nbytes == 0  # the original is untouched


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("fmt,block,n,k", CASES)
def test_m1_product(rng, avx512, fmt, block, n, k, threads):
    """Block 32: the copy gives the file layout's bits. Every block: both within the FP32
    accumulation bound of float64 numpy (the products of the stored weights), so within twice it
    of each other."""
    pyrt.set_num_threads(threads)
    t, w = weights_and_tensor(rng, fmt, n, k, block)
    r = w.repacked()
    x = rng.standard_normal((1, k)).astype(np.float32)
    bias = rng.standard_normal(n).astype(np.float32)
    w64, x64 = t.dequantize().astype(np.float64), x.astype(np.float64)
    for b in (None, bias):
        y_file, y_rep = product(w, x, b), product(r, x, b)
        assert np.all(np.isfinite(y_rep)) and np.all(np.isfinite(y_file)), "unwritten (NaN) outputs"
        if block == 32:
            assert same_bits(y_file, y_rep), f"max diff {np.max(np.abs(y_file - y_rep))}"
        ref = x64 @ w64.T + (0.0 if b is None else b.astype(np.float64))
        bound = accumulation_bound(x64, w64, b)
        for name, y in (("file", y_file), ("repacked", y_rep)):
            err = np.abs(y - ref)
            assert np.all(err <= bound), f"{name}: worst error / bound {np.max(err / bound):.3g}"
        assert np.all(np.abs(y_rep.astype(np.float64) - y_file) <= 2 * bound)


@pytest.mark.parametrize("fmt,block,n,k", [(f, *c) for f in FORMATS for c in [
    (32, 16, 256), (32, 13, 160), (32, 130, 1408), (64, 13, 192), (64, 130, 1472), (64, 16, 256), (128, 13, 256),
    (128, 130, 1408)] if (f, c[0]) not in NO_COPY])
def test_kernel_reads_the_copy(rng, avx512, fmt, block, n, k):
    """Corrupting the copy's nibbles changes exactly the rows in whole quads (the others, and the
    blocks after the whole groups, come from the file's layout)."""
    _, w = weights_and_tensor(rng, fmt, n, k, block)
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
    # The blocks after the whole groups (K = 160, 1408 at B = 32: one or three per row; K = 192,
    # 1472 at B = 64: one) come from the copy's tail too.
    L = block_layout(fmt, block)
    tail_blocks = k // block - (k // 128) * (128 // block)
    if tail_blocks:
        tail = view[nibbles + (n // 4) * (k // 128) * 4 * scale_bytes(fmt, block):].reshape(quad_rows, tail_blocks, L.bytes)
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
    assert pyrt.quantize(rng.standard_normal((8, 128)).astype(np.float32), "q8", 32).repacked().repacked_nbytes == 0


@pytest.mark.parametrize("fmt,block", [("q8", 32), ("q8", 64), ("q8", 128), ("q5", 32), ("q5", 128), *NO_COPY])
def test_no_copy_where_no_kernel_reads_one(rng, avx512, fmt, block):
    """q8, q5 and q4n at block 128 keep the file layout only (q8's and q4n/128's copies measured
    slower, pyrt/repack.h): repacked() adds no bytes and the product is unchanged."""
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
