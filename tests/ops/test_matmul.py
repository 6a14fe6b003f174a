"""pyrt.matmul, one matrix: backend (each CPU kernel set, the CUDA device) x format x block x M,
against float64 numpy of the stored weights, with outputs poisoned (NaN) so an element a kernel
forgets to write fails.

Every backend runs the common shapes; each SIMD kernel set also runs the edges of its own tiling
(AVX2: the 2-row GEMV and 6-row GEMM tiles, K panels of 512 and plain-format K tails; AVX-512: the
M < 32 register-decoding GEMV, the 32 x 14 GEMM tiles and K panels), and the CUDA device the GEMV and
tensor-core paths. CUDA cases need a GPU and cupy and skip otherwise (tests/ops/test_cuda.py holds the
device layout and argument checks that run everywhere). Int8/int16 activations: test_int8_activations.py
and test_int16_activations.py.
"""
from __future__ import annotations

import numpy as np
import pytest

import pyrt
import pyrt.cuda
from pyrt.formats import dequantize_reference

from helpers import BACKENDS, CUDA_TOL, PLAIN, QUANT, accumulation_bound, poisoned

CONFIGS = [(f, 1) for f in PLAIN] + [(f, b) for f in QUANT for b in (32, 64, 128)]
CONFIG_IDS = [f"{f}-{b}" for f, b in CONFIGS]
CUDA_FORMATS = pyrt.cuda.DEVICE_FORMATS  # f32 and bf16 have no CUDA kernels (test_cuda.py checks the error)

# ---- shapes -----------------------------------------------------------------------------------------
# Every backend, (M, N, K in blocks for the q-formats / key of PLAIN_K): M=1 GEMV, small M, large M
# (blocked GEMM), odd N, K of exactly one block, large K. Bias on.
COMMON = [(1, 1, 1), (1, 17, 1), (1, 64, 32), (2, 33, 3), (3, 129, 5), (5, 16, 2), (16, 7, 4),
          (17, 48, 3), (128, 64, 4), (300, 129, 2), (1, 40, 128)]
PLAIN_K = {1: 37, 2: 100, 3: 48, 4: 256, 5: 8, 32: 1000, 128: 4096}
EDGE_N = [1, 3, 17, 64, 129]  # one row, below one 16-row strip, partial strips, 14-wide tile remainders

AVX2_M = [1, 2, 3, 5, 16, 17, 128, 300]
AVX512_M = [1, 2, 3, 5, 16, 17, 50, 128]  # GEMV below 32 rows, GEMM tiles (M % 32 below and above 16)
AVX512_LARGE_K_M = [1, 5, 17, 300]
CUDA_M = [1, 2, 3, 8, 16, 17, 64, 130]


def avx2_edges(block, m):
    """One block, odd multiples of it (one past the 512-wide K panel) and 4096; plain formats also
    K below one vector and K that are not multiples of 8 or 16 (the scalar tail). Bias off and on."""
    ks = [block, 3 * block, 5 * block, 4096] if block > 1 else [1, 13, 24, 96, 160, 600, 4096, 4099]
    for k in ks:
        # The largest shapes cost the float64 reference most; keep them to a few N.
        for n in EDGE_N if k < 4096 or m <= 17 else [3, 129]:
            for bias in (False, True):
                yield n, k, bias


def avx512_edges(block, m):
    if m in AVX512_M:
        ks = [block, 3 * block, 5 * block] if block > 1 else [1, 7, 15, 16, 33, 100, 161]
        for n in EDGE_N:
            for k in ks:
                yield n, k, (n % 2 == 1) if block > 1 else (k % 2 == 1)
    if m in AVX512_LARGE_K_M:
        # K = 4096 spans eight GEMM K panels; 1003 (plain) and 1408 (blocked) leave a partial panel.
        for k in (4096, 1003) if block == 1 else (4096, 1408):
            yield 45, k, True


def cuda_edges(fmt, block, m):
    if m in CUDA_M:
        yield 77, 3 * block if block > 1 else 264, m % 2 == 1
    if m in (1, 5, 40) and fmt == "f16":
        yield 33, 37, True  # K not a multiple of 8: the non-vectorised f16 path


def common_shapes(block, m):
    return [(n, kb * block if block > 1 else PLAIN_K[kb], True) for cm, n, kb in COMMON if cm == m]


def shapes(backend, fmt, block, m):
    """The (N, K, bias) cases of one backend, format and M (the matrix runs one test per N)."""
    cases = common_shapes(block, m)
    if backend == "cpu-avx2" and m in AVX2_M:
        cases += avx2_edges(block, m)
    elif backend == "cpu-avx512":
        cases += avx512_edges(block, m)
    elif backend == "cuda":
        cases += cuda_edges(fmt, block, m)
    return cases


def matrix():
    for backend in BACKENDS:
        for fmt, block in CONFIGS:
            if backend == "cuda" and fmt not in CUDA_FORMATS:
                continue
            for m in (1, 2, 3, 5, 16, 17, 40, 50, 64, 128, 130, 300):
                for n in sorted({n for n, _, _ in shapes(backend, fmt, block, m)}):
                    yield pytest.param(backend, fmt, block, m, n, id=f"{backend}-{fmt}-{block}-M{m}-N{n}",
                                       marks=[pytest.mark.gpu] if backend == "cuda" else [])


# ---- references and bounds --------------------------------------------------------------------------
def make_case(rng, fmt, block, m, n, k, with_bias):
    # Non-zero mean and mixed row magnitudes so q4a's min and the per-block scales matter.
    w = (rng.standard_normal((n, k)) * rng.uniform(0.2, 3.0, (n, 1)) + 0.1).astype(np.float32)
    x = rng.standard_normal((m, k)).astype(np.float32)
    bias = rng.standard_normal(n).astype(np.float32) if with_bias else None
    return x, w, pyrt.quantize(w, fmt, block if block > 1 else 32), bias


def reference(x, t, bias):
    """float64 x @ W^T (+ bias) of the stored weights, and its accumulation bound."""
    w64 = dequantize_reference(t.numpy(), t.dtype, t.block, t.shape)
    x64 = x.astype(np.float64)
    ref = x64 @ w64.T + (0.0 if bias is None else bias.astype(np.float64))
    return ref, accumulation_bound(x64, w64, bias)


def assert_within(y, ref, bound, what):
    assert np.all(np.isfinite(y)), f"{what}: unwritten (NaN) outputs"
    err = np.abs(np.asarray(y, dtype=np.float64) - ref)
    worst = np.unravel_index(np.argmax(err / bound), err.shape) if err.size else ()
    assert np.all(err <= bound), f"{what}: error {err[worst]:.3g} > bound {bound[worst]:.3g} at {worst}"


def run_cpu(x, t, bias):
    out = poisoned((x.shape[0], t.shape[0]))
    y = pyrt.matmul(x, t, bias, out=out)
    assert y is out
    return y




def run_cuda(x16, t, bias):
    """x (float16) and bias as cupy arrays, W moved with t.to("cuda"); returns y on the host."""
    import cupy

    out = cupy.full((x16.shape[0], t.shape[0]), np.nan, dtype=cupy.float32)
    y = pyrt.matmul(cupy.asarray(x16), t.to("cuda"), None if bias is None else cupy.asarray(bias), out=out)
    cupy.cuda.Stream.null.synchronize()
    assert y is out
    return cupy.asnumpy(y)


# How far y may be from x @ W_original.T, relative to ||x||_F ||W||_F / sqrt(K): the format's own loss.
FORMAT_REL_ERROR = {"f32": 1e-6, "f16": 1e-3, "bf16": 8e-3, "q8": 1.5e-2, "q4": 0.2, "q4a": 0.2, "q4n": 0.2, "q5": 0.1}


# ---- the matrix -------------------------------------------------------------------------------------
@pytest.mark.parametrize("backend,fmt,block,m,n", list(matrix()), indirect=["backend"])
def test_matches_float64_reference(backend, rng, fmt, block, m, n):
    for k, with_bias in [(k, b) for case_n, k, b in shapes(backend, fmt, block, m) if case_n == n]:
        what = f"{fmt}/{block} M={m} N={n} K={k} bias={with_bias}"
        x, w, t, bias = make_case(rng, fmt, block, m, n, k, with_bias)
        if backend == "cuda":
            x = x.astype(np.float16)
            y = run_cuda(x, t, bias)
            ref, _ = reference(x, t, bias)
            w64 = dequantize_reference(t.numpy(), fmt, t.block, t.shape)
            assert_within(y, ref, CUDA_TOL[fmt] * (np.abs(x.astype(np.float64)) @ np.abs(w64).T) + 1e-6, what)
        else:
            y = run_cpu(x, t, bias)
            ref, bound = reference(x, t, bias)
            assert_within(y, ref, bound, what)
        # On the common shapes, the format's own loss against the unquantized weights stays within its
        # documented bound, relative to the typical size of x @ W.T (tiny outputs from cancellation
        # would make it flaky; at K = 4096 f32's bound would be FP32 accumulation, not the format).
        if m * n < 64 or (n, k, True) not in common_shapes(block, m):
            continue  # too few outputs for a stable Frobenius ratio; the kernel check above still ran
        x64 = x.astype(np.float64)
        exact = x64 @ w.astype(np.float64).T + (0.0 if bias is None else bias)
        typical = np.linalg.norm(x64) * np.linalg.norm(w.astype(np.float64)) / np.sqrt(k)
        assert np.linalg.norm(y - exact) <= FORMAT_REL_ERROR[fmt] * typical, what


@pytest.mark.parametrize("cpu_isa", ["avx2", "avx512"], indirect=True)
@pytest.mark.parametrize("m", [1, 2, 4, 5, 7, 8, 31, 32, 33, 128])
@pytest.mark.parametrize("fmt,block", CONFIGS, ids=CONFIG_IDS)
def test_kernel_set_agrees_with_scalar(cpu_isa, rng, fmt, block, m):
    # Both are FP32 sums of the same products in different orders: each within the bound of the exact
    # result, so within twice the bound of each other (in practice far closer).
    for n, kb, plain_k in ((67, 5, 611), (50, 5, 640), (45, 4, 256)):
        x, _, t, bias = make_case(rng, fmt, block, m, n, kb * 128 if block > 1 else plain_k, True)
        ref, bound = reference(x, t, bias)
        fast = run_cpu(x, t, bias)
        pyrt.set_cpu_isa("scalar")
        slow = run_cpu(x, t, bias)
        pyrt.set_cpu_isa(cpu_isa)
        assert_within(slow, ref, bound, f"scalar N={n}")
        assert np.all(np.abs(fast.astype(np.float64) - slow) <= 2 * bound), f"{cpu_isa} vs scalar N={n}"


@pytest.mark.parametrize("m", [1, 3, 4, 8, 64, 128, 200])
@pytest.mark.parametrize("fmt,block", [("f32", 1), ("f16", 1), ("bf16", 1), ("q8", 32), ("q8", 64), ("q4", 32),
                                       ("q4a", 64), ("q4a", 128)])
def test_results_do_not_depend_on_thread_count(cpu_isa, rng, fmt, block, m):
    # Threads split N only, so each output is computed by the same code either way: bit-identical. N
    # spans several 16-row chunks and ends in a partial tile; the work is above the single-thread
    # cutoff in csrc/cpu/matmul_cpu.cc so several threads really run.
    for n, k in ((301, 8 * block if block > 1 else 333), (133, 512 if block > 1 else 517)):
        x, _, t, bias = make_case(rng, fmt, block, m, n, k, True)
        results = []
        for threads in (1, 2, 3):
            pyrt.set_num_threads(threads)
            results.append(run_cpu(x, t, bias))
        for r in results[1:]:
            np.testing.assert_array_equal(r, results[0])
        assert_within(results[1], *reference(x, t, bias), f"N={n} K={k}")


@pytest.mark.parametrize("fmt,block,repack", [("f32", 1, False), ("f16", 1, False), ("bf16", 1, False),
                                              ("q8", 32, False), ("q5", 32, False), ("q4", 32, False),
                                              ("q4n", 32, False), ("q4", 32, True), ("q4a", 32, True),
                                              ("q4a", 64, True), ("q4n", 64, True)])
def test_gemv_rows_do_not_depend_on_their_neighbours(cpu_isa, rng, fmt, block, repack):
    # M = 1 reads each thread's rows as 4 streams far apart (its quarters; of the repacked copy, its
    # quads), the rows left over one at a time. Short rows (K = 576: 4 groups of 128 and a tail, like
    # SmolLM2) and N = 203 leave every kind. Thread counts move rows between streams and leftovers:
    # the bits stay; and a row reads the same alone (the repacked copy at B = 64 sums per group,
    # the file's layout per block, so only B = 32 compares with it).
    # The opt-in int8 activations (block formats) read the rows the same way.
    n, k = 203, 576
    x, w, t, bias = make_case(rng, fmt, block, 1, n, k, True)
    if repack:
        t = t.repacked()
    for activations in ("exact", "int8") if block > 1 else ("exact",):
        def run(weights, b, activations=activations):
            out = poisoned((1, weights.shape[0]))
            return pyrt.matmul(x, weights, b, out=out, activations=activations)

        results = []
        try:
            for threads in (1, 2, 3):
                pyrt.set_num_threads(threads)
                results.append(run(t, bias))
        finally:
            pyrt.set_num_threads(0)
        what = f"{fmt}/{block} repacked={repack} activations={activations}"
        if activations == "exact":
            assert_within(results[0], *reference(x, t, bias), what)
        assert np.all(np.isfinite(results[0])), what
        for r in results[1:]:
            np.testing.assert_array_equal(r, results[0], err_msg=what)
        if block == 32 or not repack:
            for i in range(n):
                alone = run(pyrt.quantize(w[i:i + 1], fmt, block if block > 1 else 32), bias[i:i + 1])
                assert alone[0, 0] == results[0][0, i], f"{what}, row {i}: {alone[0, 0]} alone, {results[0][0, i]} among {n}"


@pytest.mark.parametrize("m", [1, 6, 9])
@pytest.mark.parametrize("fmt,block", CONFIGS, ids=CONFIG_IDS)
def test_float16_activations(cpu_isa, rng, fmt, block, m):
    for n, with_bias in ((33, False), (37, True)):
        x, _, t, bias = make_case(rng, fmt, block, m, n, max(4 * block, 256), with_bias)
        x16 = x.astype(np.float16)
        assert_within(run_cpu(x16, t, bias), *reference(x16, t, bias), f"N={n}")


@pytest.mark.parametrize("fmt,block", [("f32", 1), ("bf16", 1), ("q8", 128), ("q4", 32), ("q4a", 64)])
def test_every_row_remainder(cpu_isa, rng, fmt, block):
    # M = 1..23 crosses the GEMV/GEMM switch of every format and leaves every remainder of the AVX2
    # GEMV's 2-row and GEMM's 6-row tiles; N = 37 leaves a partial 16-row strip.
    k = 384 if block > 1 else 389
    for m in range(1, 24):
        x, _, t, bias = make_case(rng, fmt, block, m, 37, k, m % 2 == 0)
        assert_within(run_cpu(x, t, bias), *reference(x, t, bias), f"M={m}")


@pytest.mark.parametrize("fmt,block", [("f16", 1), ("q4", 64), ("q8", 32)])
def test_many_rows_of_x(cpu_isa, rng, fmt, block):
    # M = 4096 crosses the 128-row blocking of the GEMM paths many times.
    x, _, t, bias = make_case(rng, fmt, block, 4096, 19, 128, True)
    assert_within(run_cpu(x, t, bias), *reference(x, t, bias), "M=4096")


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("fmt,block", [("f32", 1), ("q4", 32), ("q8", 64)])
def test_gemm_blocks_of_rows_and_columns(cpu_isa, rng, fmt, block, threads):
    # The AVX-512 GEMM runs K outermost within blocks of x rows (256 while rows x K x 4 B fits
    # 8 MiB, fewer for longer K) and of weight rows (accumulators within 4 MiB: 4088 rows at 256 x
    # rows). N = 8300 crosses the weight-row blocks with one thread and two; K = 16384 halves the
    # x-row block, so M = 300 takes three of them, the last partial.
    pyrt.set_num_threads(threads)
    try:
        for m, n, k in ((40, 8300, 64), (300, 23, 16384)):
            x, _, t, bias = make_case(rng, fmt, block, m, n, k, True)
            assert_within(run_cpu(x, t, bias), *reference(x, t, bias), f"M={m} N={n} K={k}")
    finally:
        pyrt.set_num_threads(0)


def test_wide_dynamic_range_and_extreme_values(cpu_isa, rng):
    # Per-row scales from 1e-3 to 1e3 exercise the per-block fp16 scales of every q-format; the
    # largest fp16 scales with large activations must neither overflow nor lose the FP32 sums, and
    # every nibble level occurs.
    wide = (rng.standard_normal((40, 256)) * np.logspace(-3, 3, 40)[:, None]).astype(np.float32)
    extreme = rng.uniform(-60000, 60000, (20, 256)).astype(np.float32)
    x = rng.uniform(-100, 100, (9, 256)).astype(np.float32)
    for w, rows in ((wide, (x[:1] / 100, x / 100)), (extreme, (x[:1], x[:3], np.repeat(x[:3], 4, axis=0)))):
        for fmt in ("f16", "bf16", "q8", "q4", "q4a", "q4n", "q5"):
            t = pyrt.quantize(w, fmt, 32)
            for xm in rows:
                xm = np.ascontiguousarray(xm, dtype=np.float32)
                assert_within(run_cpu(xm, t, None), *reference(xm, t, None), f"{fmt} M={len(xm)}")


def test_q8_block_scales_of_every_fp16_class(cpu_isa, rng):
    # The AVX-512 q8 GEMV converts each block's FP16 scale with integer arithmetic for normal
    # numbers and F16C otherwise: zero, subnormal, the smallest and largest normals and negative
    # scales (valid in a file, never written by the quantizer) must all decode as the reference does.
    n, k, block = 37, 320, 32
    codes = pyrt.quantize(rng.standard_normal((n, k)).astype(np.float32), "q8", block).numpy().copy()
    blocks = codes.reshape(n, k // block, 2 + block)
    special = np.array([0x0000, 0x8000, 0x0001, 0x03FF, 0x8001, 0x0400, 0x8400, 0x7BFF, 0xFBFF, 0x3C00, 0xBC00],
                       dtype="<u2")
    picks = rng.integers(0, len(special), blocks.shape[:2])
    use = rng.random(blocks.shape[:2]) < 0.5  # the other half keep the quantizer's scales
    scales = blocks[:, :, :2].copy().view("<u2")[..., 0]
    scales[use] = special[picks[use]]
    blocks[:, :, :2] = scales[..., None].view(np.uint8).reshape(n, k // block, 2)
    t = pyrt.Tensor(codes, "q8", (n, k), block)
    for rows in (1, 3, 5):
        x = rng.uniform(-1, 1, (rows, k)).astype(np.float32)
        assert_within(run_cpu(x, t, None), *reference(x, t, None), f"q8 special scales M={rows}")
    # One-hot rows of x pick single columns: code times scale is exact in FP32, so each output must
    # equal the stored value bit for bit (a scale off by one ulp shows here, not within a tolerance).
    stored = t.dequantize()
    for j in rng.choice(k, 12, replace=False):
        x = np.zeros((1, k), np.float32)
        x[0, j] = 1.0
        np.testing.assert_array_equal(run_cpu(x, t, None)[0], stored[:, j], err_msg=f"column {j}")


def test_leading_dimensions_are_flattened(rng):
    x = rng.standard_normal((2, 3, 64)).astype(np.float32)
    w = rng.standard_normal((5, 64)).astype(np.float32)
    t = pyrt.quantize(w, "f32")
    y = pyrt.matmul(x, t)
    assert y.shape == (2, 3, 5)
    np.testing.assert_allclose(y, x @ w.T, rtol=1e-5, atol=1e-5)
    y1 = pyrt.matmul(x[0, 0], t)
    assert y1.shape == (5,)


def test_linear_layer(rng):
    w = rng.standard_normal((24, 96)).astype(np.float32)
    b = rng.standard_normal(24).astype(np.float32)
    layer = pyrt.Linear(w, b, dtype="q8", block=32)
    assert (layer.in_features, layer.out_features) == (96, 24)
    x = rng.standard_normal((4, 96)).astype(np.float32)
    ref = x @ layer.weight.dequantize().T + b
    np.testing.assert_allclose(layer(x), ref, rtol=1e-4, atol=1e-4)
    same = pyrt.Linear(layer.weight, b)
    np.testing.assert_array_equal(same(x), layer(x))
    assert "q8" in repr(layer)


def test_empty_batch(rng):
    t = pyrt.quantize(rng.standard_normal((8, 32)).astype(np.float32), "q4")
    y = pyrt.matmul(np.zeros((0, 32), np.float32), t)
    assert y.shape == (0, 8)
