"""Kernels read only the weight matrix's own bytes, and the M = 1 4-bit "nibble group" path.

The AVX-512 M = 1 4-bit kernel (csrc/cpu/nibble_group_avx512.h) reads 128 weights' blocks with one
full 64-byte load plus a masked load of the rest; other kernels read whole 16- and 64-byte vectors.
A weight matrix placed so that its last byte is the last byte before an inaccessible page turns any
read past the matrix into a crash. Each case runs in a child process so a crash fails the test with
its signal instead of ending the test run.
"""
from __future__ import annotations

import textwrap

import numpy as np
import pytest

import pyrt
from pyrt.formats import dequantize_reference

from helpers import poisoned, run_python

# The child: maps the weight bytes flush against a PROT_NONE page and runs every ISA and activation
# mode over M = 1 .. GEMM sizes; prints one line per case, exits 1 on a wrong result.
_CHILD = textwrap.dedent(
    """
    import ctypes, mmap, sys
    import numpy as np
    import pyrt
    from pyrt.formats import dequantize_reference

    fmt, block, K, N = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    rng = np.random.default_rng(K * 1000 + N)
    w = (rng.standard_normal((N, K)) + 0.1).astype(np.float32)
    t = pyrt.quantize(w, dtype=fmt, block=block)
    raw = t.numpy()
    page = mmap.PAGESIZE
    pages = (raw.nbytes + page - 1) // page + 1
    buf = mmap.mmap(-1, pages * page, prot=mmap.PROT_READ | mmap.PROT_WRITE)
    base = ctypes.addressof(ctypes.c_char.from_buffer(buf))
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    guard = base + (pages - 1) * page
    start = (pages - 1) * page - raw.nbytes
    view = np.frombuffer(buf, dtype=np.uint8, count=raw.nbytes, offset=start)
    view[:] = raw
    if libc.mprotect(ctypes.c_void_p(guard), page, 0) != 0:
        sys.exit("mprotect failed")
    flush = pyrt.Tensor(view, fmt, (N, K), block)
    w64 = dequantize_reference(raw, fmt, block, (N, K))
    modes = ["exact"] + (["int8", "int16"] if fmt in ("q8", "q4", "q4a", "q4n") else [])
    bad = 0
    for isa in pyrt.available_cpu_isas():
        pyrt.set_cpu_isa(isa)
        for M in (1, 2, 5, 40):
            x = rng.standard_normal((M, K)).astype(np.float32)
            ref = x.astype(np.float64) @ w64.T
            scale = np.abs(x).astype(np.float64) @ np.abs(w64).T
            for mode in modes:
                out = np.full((M, N), np.nan, np.float32)
                pyrt.matmul(x, flush, out=out, activations=mode)
                # exact: FP32 accumulation; int8/int16: their documented bounds are far looser,
                # this only checks that the bytes read are the matrix's.
                tol = (1e-5 * np.sqrt(K) if mode == "exact" else 2e-2) * scale + 1e-30
                ok = np.isfinite(out).all() and (np.abs(out - ref) <= tol).all()
                bad += not ok
                print(isa, M, mode, "ok" if ok else "WRONG", flush=True)
    sys.exit(1 if bad else 0)
    """
)


_CASES = [(fmt, 32) for fmt in ("f32", "f16", "bf16")] + [
    (fmt, block) for fmt in ("q8", "q4", "q4a", "q4n") for block in (32, 64, 128)]


@pytest.mark.parametrize("fmt,block", _CASES)
def test_no_read_past_weights(fmt, block):
    # q formats: K of whole 128-weight groups (the last group's bytes end the matrix), and one with
    # a tail block; plain formats: K no multiple of 16.
    for K in [519] if fmt in ("f32", "f16", "bf16") else sorted({512, 384 + block}):
        for N in (1, 7):
            proc = run_python("-c", _CHILD, fmt, str(block), str(K), str(N))
            assert proc.returncode == 0, (
                f"{fmt}/{block} K={K} N={N}: exit {proc.returncode}\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
            assert proc.stdout.count(" ok") >= 4, proc.stdout


@pytest.fixture
def avx512():
    if "avx512" not in pyrt.available_cpu_isas():
        pytest.skip("no AVX-512 on this CPU/build")
    previous = pyrt.get_cpu_isa()
    pyrt.set_cpu_isa("avx512")
    yield
    pyrt.set_cpu_isa(previous)


@pytest.mark.parametrize("fmt", ["q4", "q4a", "q4n"])
@pytest.mark.parametrize("block", [32, 64, 128])
def test_single_row_groups_and_tail_blocks(avx512, rng, fmt, block):
    # K = whole groups of 128 plus 0 .. 128/B - 1 trailing blocks; N not a multiple of the 4 rows
    # kept in flight. Against float64, then against the M = 2 kernel (another summation order).
    for groups in (1, 2, 9):
        for tail in range(128 // block):
            K = 128 * groups + tail * block
            N = 4 * groups + tail + 1
            w = (rng.standard_normal((N, K)) * rng.uniform(0.2, 3.0, (N, 1)) + 0.3).astype(np.float32)
            t = pyrt.quantize(w, dtype=fmt, block=block)
            w64 = dequantize_reference(t.numpy(), fmt, block, (N, K))
            x = rng.standard_normal((2, K)).astype(np.float32)
            bias = rng.standard_normal(N).astype(np.float32)
            tol = 1e-5 * np.sqrt(K) * (np.abs(x[:1]).astype(np.float64) @ np.abs(w64).T + np.abs(bias))
            ref = x[:1].astype(np.float64) @ w64.T + bias
            one = poisoned((1, N))
            pyrt.matmul(x[:1], t, bias, out=one)
            assert np.isfinite(one).all()
            err = np.abs(one - ref)
            assert (err <= tol).all(), f"K={K}: worst err/tol {(err / tol).max():.3g}"
            two = poisoned((2, N))
            pyrt.matmul(x, t, bias, out=two)
            assert (np.abs(one[0] - two[0]) <= 2 * tol[0]).all()


def test_single_row_every_level_and_extreme_scales(avx512, rng):
    # Largest FP16 scales, every nibble level and q4a's min: the per-lane scale and the lane sums
    # of x must reproduce each block's d and m exactly as the float64 reference uses them.
    K, N = 1024, 12
    w = rng.uniform(-60000, 60000, (N, K)).astype(np.float32)
    w[3] = rng.uniform(1000, 60000, K)  # all positive: q4a's min far from zero
    x = rng.uniform(-100, 100, (1, K)).astype(np.float32)
    for fmt in ("q4", "q4a", "q4n"):
        for block in (32, 64, 128):
            t = pyrt.quantize(w, dtype=fmt, block=block)
            w64 = dequantize_reference(t.numpy(), fmt, block, (N, K))
            ref = x.astype(np.float64) @ w64.T
            tol = 1e-5 * np.sqrt(K) * (np.abs(x).astype(np.float64) @ np.abs(w64).T)
            out = poisoned((1, N))
            pyrt.matmul(x, t, out=out)
            assert (np.abs(out - ref) <= tol).all(), f"{fmt}/{block}"
