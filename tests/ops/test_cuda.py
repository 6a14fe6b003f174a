"""CUDA backend. The GPU cases (marked gpu) compare every device format with the float64 reference
and skip without a GPU or cupy; the rest check the device layout and the error paths, and run in
every build (CPU-only, or CUDA without a GPU)."""
from __future__ import annotations

import ast
import pickle
import re
from pathlib import Path

import numpy as np
import pytest

import pyrt
from pyrt import cuda
from pyrt._native import core
from pyrt.formats import Q4N_LEVELS, dequantize_reference

from helpers import CUDA_TOL

try:
    import cupy
except ImportError:  # cupy is optional: the GPU cases skip without it
    cupy = None

GPU_READY = cuda.is_available() and cupy is not None
gpu = pytest.mark.skipif(not GPU_READY, reason="needs a CUDA build, a GPU and cupy")
no_gpu = pytest.mark.skipif(cuda.is_available(), reason="checks the behaviour without a usable GPU")

FORMAT_BLOCKS = [("f16", 1)] + [(f, b) for f in ("q8", "q4", "q4a", "q4n") for b in (32, 64, 128)]


class FakeDeviceArray:
    """Something with a __cuda_array_interface__ and a pointer nobody may touch: every check that
    runs before the core must reject it, or the core must raise DeviceError without a GPU."""

    def __init__(self, shape, typestr, ptr=0x7F0000000000, strides=None, readonly=False, stream=None, **extra):
        self.__cuda_array_interface__ = dict(shape=tuple(shape), typestr=typestr, data=(ptr, readonly),
                                             strides=strides, version=3, stream=stream, **extra)


class FakeDeviceWeights:
    """Stands in for the native weights of a GPU tensor: the argument checks under test run before
    anything reads them."""

    nbytes = 1234


def fake_cuda_tensor(shape=(4, 64), dtype="q8", block=32):
    return pyrt.Tensor._on_device(FakeDeviceWeights(), dtype, shape, block, device_index=0)


def decode_planes(quants, scales, mins, dtype, block, rows, cols):
    """float64 decode of the device layout, written from docs/cuda.md independently of the kernels."""
    if dtype == "f16":
        return quants.view(np.float16).astype(np.float64).reshape(rows, cols)
    nb = rows * cols // block
    d = scales.view(np.float16).astype(np.float64).reshape(nb, 1)
    if dtype == "q8":
        return (quants.view(np.int8).astype(np.float64).reshape(nb, block) * d).reshape(rows, cols)
    q = quants.reshape(nb, block // 2)
    nib = np.concatenate([q & 0xF, q >> 4], axis=1).astype(np.float64)  # elements j, then j + B/2
    if dtype == "q4":
        return ((nib - 8) * d).reshape(rows, cols)
    if dtype == "q4n":
        return (Q4N_LEVELS[nib.astype(np.int64)].astype(np.float64) * d).reshape(rows, cols)
    m = mins.view(np.float16).astype(np.float64).reshape(nb, 1)
    return (nib * d + m).reshape(rows, cols)


# --- device layout (pure numpy, every build) --------------------------------------------------------

@pytest.mark.parametrize("dtype,block", FORMAT_BLOCKS)
def test_planes_round_trip_and_decode_like_the_reference(rng, dtype, block):
    rows, cols = 5, 3 * max(block, 32)
    w = pyrt.quantize(rng.standard_normal((rows, cols)).astype(np.float32) * 3, dtype, block)
    quants, scales, mins = cuda.split_planes(w.numpy(), dtype, block, rows, cols)
    row_bytes = cols * {"f16": 2, "q8": 1, "q4": 0.5, "q4a": 0.5, "q4n": 0.5}[dtype]
    assert quants.nbytes == rows * row_bytes and row_bytes % 16 == 0  # 16-byte aligned device rows
    assert (scales is None) == (dtype == "f16") and (mins is None) == (dtype != "q4a")
    np.testing.assert_array_equal(cuda.join_planes(quants, scales, mins, dtype, block, rows, cols), w.numpy())
    expected = dequantize_reference(w.numpy(), dtype, block, (rows, cols))
    np.testing.assert_array_equal(decode_planes(quants, scales, mins, dtype, block, rows, cols), expected)


@pytest.mark.parametrize("dtype", pyrt.FORMATS)
def test_device_formats_match_the_cpp_layout(rng, dtype):
    # pyrt.cuda.DEVICE_FORMATS (which the matmul matrix runs) must be exactly the formats the C++
    # plane layout accepts (gpu::require_cuda_format).
    w = pyrt.quantize(rng.standard_normal((2, 64)), dtype)
    if dtype in cuda.DEVICE_FORMATS:
        quants, _, _ = cuda.split_planes(w.numpy(), dtype, w.block, 2, 64)
        assert quants.size > 0
    else:
        with pytest.raises(pyrt.UnsupportedError, match=dtype):
            core.cuda_split_planes(w.numpy(), dtype, w.block, 2, 64)


@pytest.mark.parametrize("dtype", ["f32", "bf16"])
def test_formats_without_cuda_kernels_are_rejected(rng, dtype):
    w = pyrt.quantize(rng.standard_normal((4, 32)), dtype)
    with pytest.raises(pyrt.UnsupportedError, match=dtype):
        w.to("cuda")


def test_split_planes_checks_the_byte_count(rng):
    w = pyrt.quantize(rng.standard_normal((4, 64)), "q4", 32)
    with pytest.raises(pyrt.ShapeError):
        cuda.split_planes(w.numpy()[:-1], "q4", 32, 4, 64)


def test_join_planes_checks_every_plane(rng):
    w = pyrt.quantize(rng.standard_normal((4, 64)), "q4a", 32)
    codes, scales, mins = cuda.split_planes(w.numpy(), "q4a", 32, 4, 64)
    with pytest.raises(pyrt.ShapeError, match="mins plane is missing"):
        cuda.join_planes(codes, scales, None, "q4a", 32, 4, 64)
    with pytest.raises(pyrt.ShapeError, match="scales plane has"):
        cuda.join_planes(codes, scales[:-2], mins, "q4a", 32, 4, 64)
    with pytest.raises(pyrt.ShapeError, match="no mins plane"):
        cuda.join_planes(codes, scales, mins, "q4", 32, 4, 64)


def test_native_weights_check_the_byte_count(rng):
    w = pyrt.quantize(rng.standard_normal((4, 64)), "q8", 32)
    with pytest.raises(pyrt.ShapeError, match="weight buffer has"):
        core.Weights(w.numpy()[:-1], "q8", 32, 4, 64)
    native = core.Weights(w.numpy(), "q8", 32, 4, 64)
    assert (native.device, native.rows, native.cols, native.nbytes) == ("cpu", 4, 64, w.nbytes)
    assert native.host_bytes() is not None and np.shares_memory(native.host_bytes(), w.numpy())


@pytest.mark.parametrize("name,index", [("cpu", None), ("cuda", 0), ("CUDA:1", 1), (" cuda:12 ", 12)])
def test_parse_device(name, index):
    assert cuda.parse_device(name) == index


@pytest.mark.parametrize("name", ["gpu", "cuda:", "cuda:-1", "cuda:x", "tpu:0", ""])
def test_parse_device_rejects_unknown_names(name):
    with pytest.raises(pyrt.DeviceError, match="unknown device"):
        cuda.parse_device(name)


def test_to_cpu_is_the_same_tensor(rng):
    w = pyrt.quantize(rng.standard_normal((4, 32)), "q8")
    assert w.to("cpu") is w
    assert w.device == "cpu"


def test_one_tensor_type_with_a_device():
    w = fake_cuda_tensor((4, 64))
    assert isinstance(w, pyrt.Tensor) and w.device == "cuda:0" and w.to("cuda:0") is w
    assert w.nbytes == 1234 and "device='cuda:0'" in repr(w)
    with pytest.raises(pyrt.DeviceError, match=r"to\('cpu'\)"):
        w.numpy()
    with pytest.raises(pyrt.DeviceError, match=r"to\('cpu'\)"):
        w.dequantize()
    with pytest.warns(DeprecationWarning, match="pyrt.Tensor"):
        assert cuda.CudaTensor is pyrt.Tensor


def test_tensor_pickles_its_host_bytes_only(rng):
    w = pyrt.quantize(rng.standard_normal((4, 64)), "q4", 32)
    pyrt.matmul(np.ones((1, 64), np.float32), w)  # caches the native view, which does not pickle
    copy = pickle.loads(pickle.dumps(w))
    assert copy.device == "cpu" and copy.shape == w.shape
    np.testing.assert_array_equal(copy.numpy(), w.numpy())
    with pytest.raises(pyrt.DeviceError, match="cuda:0"):
        pickle.dumps(fake_cuda_tensor())


@pytest.mark.parametrize("module", ["device", "tensor", "ops"])
def test_device_helpers_never_import_pyrt_cuda(module):
    # pyrt.cuda imports pyrt.tensor, so no import of pyrt.cuda below it, not even inside a function.
    source = (Path(pyrt.__file__).parent / f"{module}.py").read_text()
    imported = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            imported.add(node.module or "")
            imported.update(alias.name for alias in node.names)
        elif isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
    assert not imported & {"cuda", "pyrt.cuda"}, imported


# --- __cuda_array_interface__ parsing and argument checks (no device memory touched) -------------

def test_device_array_reads_the_interface():
    a = cuda.device_array(FakeDeviceArray((3, 8), "<f2", ptr=4096, stream=7), "x", "<f2")
    assert a == cuda.DeviceArray(4096, (3, 8), "<f2", False, 7)
    assert cuda.device_array(FakeDeviceArray((3, 8), "<f2"), "x", "<f2").stream == 0  # default stream
    # explicit C-contiguous strides are fine; size-1 dimensions may carry any stride
    assert cuda.device_array(FakeDeviceArray((3, 8), "<f2", strides=(16, 2)), "x", "<f2").shape == (3, 8)
    assert cuda.device_array(FakeDeviceArray((1, 8), "<f2", strides=(999, 2)), "x", "<f2").shape == (1, 8)


def test_device_array_rejects_wrong_dtype_layout_and_masks():
    with pytest.raises(pyrt.DtypeError, match="'<f4'"):
        cuda.device_array(FakeDeviceArray((3, 8), "<f4"), "x", "<f2")
    with pytest.raises(pyrt.DtypeError, match="C-contiguous"):
        cuda.device_array(FakeDeviceArray((3, 8), "<f2", strides=(2, 6)), "x", "<f2")
    with pytest.raises(pyrt.DtypeError, match="C-contiguous"):
        cuda.device_array(FakeDeviceArray((3, 8), "<f2", strides=(32, 4)), "x", "<f2")
    with pytest.raises(pyrt.UnsupportedError, match="masked"):
        cuda.device_array(FakeDeviceArray((3, 8), "<f2", mask=object()), "x", "<f2")
    with pytest.raises(pyrt.DeviceError, match="not a device array"):
        cuda.device_array(np.zeros((3, 8), np.float16), "x", "<f2")


def test_matmul_with_device_x_and_host_weights_raises_device_error(rng):
    w = pyrt.quantize(rng.standard_normal((4, 32)), "q8")
    with pytest.raises(pyrt.DeviceError, match=r"w.to\('cuda'\)"):
        pyrt.matmul(FakeDeviceArray((2, 32), "<f2"), w)


def test_matmul_with_host_x_and_device_weights_raises_device_error():
    with pytest.raises(pyrt.DeviceError, match="cupy"):
        pyrt.matmul(np.zeros((2, 64), np.float16), fake_cuda_tensor())


def test_matmul_checks_device_arguments_before_touching_them():
    w = fake_cuda_tensor((4, 64))
    with pytest.raises(pyrt.DtypeError, match="float16"):
        pyrt.matmul(FakeDeviceArray((2, 64), "<f4"), w)
    with pytest.raises(pyrt.ShapeError, match="K=64"):
        pyrt.matmul(FakeDeviceArray((2, 63), "<f2"), w)
    with pytest.raises(pyrt.ShapeError, match="bias"):
        pyrt.matmul(FakeDeviceArray((2, 64), "<f2"), w, bias=FakeDeviceArray((5,), "<f4"))
    with pytest.raises(pyrt.DtypeError, match="bias"):
        pyrt.matmul(FakeDeviceArray((2, 64), "<f2"), w, bias=FakeDeviceArray((4,), "<f2"))
    with pytest.raises(pyrt.ShapeError, match="out has shape"):
        pyrt.matmul(FakeDeviceArray((2, 64), "<f2"), w, out=FakeDeviceArray((2, 5), "<f4"))
    with pytest.raises(pyrt.DtypeError, match="read-only"):
        pyrt.matmul(FakeDeviceArray((2, 64), "<f2"), w, out=FakeDeviceArray((2, 4), "<f4", readonly=True))
    with pytest.raises(pyrt.ShapeError, match="overlap"):
        pyrt.matmul(FakeDeviceArray((2, 64), "<f2", ptr=1 << 20), w,
                    out=FakeDeviceArray((2, 4), "<f4", ptr=(1 << 20) + 64))
    with pytest.raises(pyrt.ShapeError, match="2-D"):
        pyrt.matmul(FakeDeviceArray((2, 64), "<f2"), fake_cuda_tensor((2, 4, 64)))


@pytest.mark.skipif(cupy is not None, reason="checks the message given when cupy is missing")
def test_output_allocation_without_cupy_asks_for_out():
    with pytest.raises(pyrt.UnsupportedError, match="out="):
        pyrt.matmul(FakeDeviceArray((2, 64), "<f2"), fake_cuda_tensor((4, 64)))


# --- without a usable GPU: typed errors, never a crash ------------------------------------------

@no_gpu
def test_no_gpu_is_reported_not_raised():
    assert cuda.is_available() is False
    assert cuda.device_count() == 0
    reason = cuda.unavailable_reason()
    if pyrt.build_info()["cuda"]:
        assert "cudaGetDeviceCount" in reason  # CUDA build on a machine without a GPU or driver
    else:
        assert "built without the CUDA backend" in reason


@no_gpu
@pytest.mark.parametrize("device", ["cuda", "cuda:0", "cuda:3"])
def test_tensor_to_cuda_raises_device_error(rng, device):
    w = pyrt.quantize(rng.standard_normal((4, 64)), "q4", 32)
    with pytest.raises(pyrt.DeviceError, match=re.escape(cuda.unavailable_reason()[:40])):
        w.to(device)


@no_gpu
@pytest.mark.parametrize("nbytes", [0, 16, 1 << 20])
def test_device_buffer_raises_device_error(nbytes):
    with pytest.raises(pyrt.DeviceError):
        core.DeviceBuffer(0, nbytes)


def test_build_info_reports_cuda_consistently():
    info = pyrt.build_info()
    assert info["cuda"] is bool(core.cuda)
    if not info["cuda"]:
        assert cuda.device_count() == 0


# --- on a GPU: every format against float64 ---------------------------------------------------------

# The error bound per format is helpers.CUDA_TOL, shared with the matmul matrix.


def run_and_check(rng, dtype, block, M, N, K, with_bias=True, stream=None, x_offset=0, batch=()):
    w_host = pyrt.quantize(rng.standard_normal((N, K)).astype(np.float32), dtype, block)
    w64 = dequantize_reference(w_host.numpy(), dtype, w_host.block, (N, K))
    x16 = rng.standard_normal(batch + (M, K)).astype(np.float16)
    bias = rng.standard_normal(N).astype(np.float32) if with_bias else None
    w = w_host.to("cuda")
    # x_offset > 0 places x at a non-16-byte-aligned address: the fallback path must handle it.
    base = cupy.asarray(np.concatenate([np.zeros(x_offset, np.float16), x16.reshape(-1)]))
    x = base[x_offset:].reshape(x16.shape)
    out = cupy.full(batch + (M, N), np.nan, dtype=cupy.float32)
    with stream if stream is not None else cupy.cuda.Stream.null:
        y = pyrt.matmul(x, w, None if bias is None else cupy.asarray(bias), out=out)
    (stream or cupy.cuda.Stream.null).synchronize()
    assert y is out
    got = cupy.asnumpy(y).astype(np.float64).reshape(-1, N)
    x64 = x16.reshape(-1, K).astype(np.float64)
    want = x64 @ w64.T + (0 if bias is None else bias.astype(np.float64))
    bound = CUDA_TOL[dtype] * (np.abs(x64) @ np.abs(w64).T) + 1e-6
    assert np.all(np.isfinite(got)), "some outputs were never written"
    err = np.abs(got - want)
    assert np.all(err <= bound), f"max error {err.max():.3g}, worst ratio {(err / bound).max():.3g}"


@gpu
@pytest.mark.gpu
@pytest.mark.parametrize("M", [1, 2, 3, 8, 16, 17, 64, 130])
@pytest.mark.parametrize("dtype,block", FORMAT_BLOCKS)
def test_cuda_matmul_matches_float64(rng, dtype, block, M):
    K = 3 * block if dtype != "f16" else 264
    run_and_check(rng, dtype, block, M, N=77, K=K, with_bias=M % 2 == 1)


@gpu
@pytest.mark.gpu
@pytest.mark.parametrize("M", [1, 5, 40])
def test_cuda_matmul_f16_odd_k_and_misaligned_x(rng, M):
    run_and_check(rng, "f16", 1, M, N=33, K=37)
    run_and_check(rng, "q4a", 64, M, N=19, K=128, x_offset=1)


@gpu
@pytest.mark.gpu
def test_cuda_matmul_batched_on_a_stream(rng):
    run_and_check(rng, "q4", 32, 3, N=50, K=256, batch=(2,), stream=cupy.cuda.Stream(non_blocking=True))


@gpu
@pytest.mark.gpu
def test_cuda_matmul_allocates_output(rng):
    w = pyrt.quantize(rng.standard_normal((8, 64)), "q8", 32)
    x = rng.standard_normal((3, 64)).astype(np.float16)
    y = pyrt.matmul(cupy.asarray(x), w.to("cuda"))
    assert isinstance(y, cupy.ndarray) and y.dtype == cupy.float32 and y.shape == (3, 8)
    want = x.astype(np.float64) @ dequantize_reference(w.numpy(), "q8", 32, (8, 64)).T
    np.testing.assert_allclose(cupy.asnumpy(y), want, rtol=2e-3, atol=2e-3)


@gpu
@pytest.mark.gpu
@pytest.mark.parametrize("dtype,block", FORMAT_BLOCKS)
def test_to_cuda_and_back_keeps_the_bytes(rng, dtype, block):
    w = pyrt.quantize(rng.standard_normal((6, 128)), dtype, block)
    d = w.to("cuda")
    assert d.device == "cuda:0" and d.shape == w.shape and d.nbytes == w.nbytes
    np.testing.assert_array_equal(d.to("cpu").numpy(), w.numpy())


@gpu
@pytest.mark.gpu
def test_cuda_matmul_rejects_float32_activations(rng):
    w = pyrt.quantize(rng.standard_normal((8, 64)), "q8", 32).to("cuda")
    with pytest.raises(pyrt.DtypeError, match="float16"):
        pyrt.matmul(cupy.zeros((2, 64), cupy.float32), w)
