"""Bad input gets a typed, clear error and never a crash."""
from __future__ import annotations

import numpy as np
import pytest

import pyrt

from helpers import run_python


@pytest.fixture
def weight(rng):
    return pyrt.quantize(rng.standard_normal((16, 64)).astype(np.float32), "q4", 32)


def test_hierarchy():
    for cls in (pyrt.ShapeError, pyrt.DtypeError, pyrt.RangeError, pyrt.FileFormatError):
        assert issubclass(cls, pyrt.PyrtError) and issubclass(cls, ValueError)
    assert issubclass(pyrt.ChecksumError, pyrt.FileFormatError)
    assert issubclass(pyrt.DeviceError, pyrt.PyrtError)


@pytest.mark.parametrize("fmt", ["f32", "f16", "bf16", "q8", "q4", "q4a"])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_quantize_rejects_nonfinite(rng, fmt, bad):
    x = rng.standard_normal((3, 64)).astype(np.float32)
    x[1, 7] = bad
    with pytest.raises(pyrt.RangeError, match="non-finite"):
        pyrt.quantize(x, fmt)


def test_f16_overflow_is_an_error_not_inf(rng):
    x = rng.standard_normal((2, 32)).astype(np.float32)
    x[1, 3] = 70000.0
    with pytest.raises(pyrt.RangeError, match="FP16 range"):
        pyrt.quantize(x, "f16")
    x[1, 3] = 65504.0
    assert np.isfinite(pyrt.quantize(x, "f16").dequantize()).all()


@pytest.mark.parametrize("fmt", ["q8", "q4", "q4a"])
def test_block_scale_overflow(fmt):
    x = np.full((1, 32), 3e7, np.float32)
    x[0, 0] = -3e7
    with pytest.raises(pyrt.RangeError, match="FP16 range"):
        pyrt.quantize(x, fmt)


def test_bf16_overflow():
    with pytest.raises(pyrt.RangeError):
        pyrt.quantize(np.array([3.4028235e38], np.float32), "bf16")


@pytest.mark.parametrize("fmt,block,k", [("q4", 32, 48), ("q8", 64, 96), ("q4a", 128, 64)])
def test_k_not_divisible_by_block(fmt, block, k):
    with pytest.raises(pyrt.ShapeError, match="multiple of the block size"):
        pyrt.quantize(np.ones((2, k), np.float32), fmt, block)


def test_bad_format_and_block():
    with pytest.raises(pyrt.DtypeError, match="unknown weight format"):
        pyrt.quantize(np.ones((2, 32), np.float32), "q3")
    with pytest.raises(pyrt.DtypeError, match="block size"):
        pyrt.quantize(np.ones((2, 48), np.float32), "q8", 48)
    with pytest.raises(pyrt.DtypeError):
        pyrt.quantize(np.array(["a", "b"]), "f32")


def test_matmul_shape_errors(rng, weight):
    with pytest.raises(pyrt.ShapeError, match="K=64"):
        pyrt.matmul(np.ones((2, 63), np.float32), weight)
    with pytest.raises(pyrt.ShapeError, match="bias"):
        pyrt.matmul(np.ones((2, 64), np.float32), weight, bias=np.ones(15, np.float32))
    with pytest.raises(pyrt.ShapeError, match="out"):
        pyrt.matmul(np.ones((2, 64), np.float32), weight, out=np.empty((2, 15), np.float32))
    with pytest.raises(pyrt.ShapeError, match="2-D"):
        pyrt.matmul(np.ones((2, 64), np.float32), pyrt.quantize(np.ones((2, 4, 64), np.float32), "f32"))
    x = np.ones((2, 64), np.float32)
    with pytest.raises(pyrt.ShapeError, match="overlap"):
        pyrt.matmul(x, pyrt.quantize(np.ones((32, 64), np.float32), "f32"), out=x.reshape(2, 64)[:, :32].base.reshape(4, 32)[:2])


def test_matmul_dtype_and_layout_errors(weight):
    with pytest.raises(pyrt.DtypeError, match="float64"):
        pyrt.matmul(np.ones((2, 64)), weight)
    with pytest.raises(pyrt.DtypeError, match="int32"):
        pyrt.matmul(np.ones((2, 64), np.int32), weight)
    with pytest.raises(pyrt.DtypeError, match="C-contiguous"):
        pyrt.matmul(np.ones((64, 2), np.float32).T, weight)
    with pytest.raises(pyrt.DtypeError, match="out"):
        pyrt.matmul(np.ones((2, 64), np.float32), weight, out=np.empty((2, 16), np.float64))
    with pytest.raises(pyrt.DtypeError, match="C-contiguous"):
        pyrt.matmul(np.ones((2, 64), np.float32), weight, out=np.empty((16, 2), np.float32).T)
    with pytest.raises(pyrt.DtypeError, match="pyrt.Tensor"):
        pyrt.matmul(np.ones((2, 64), np.float32), np.ones((16, 64), np.float32))
    with pytest.raises(pyrt.DtypeError, match="bias"):
        pyrt.matmul(np.ones((2, 64), np.float32), weight, bias=np.ones(16))


def test_native_layer_checks_buffer_sizes(weight):
    # Called directly with a lying N, the core refuses instead of reading past the buffer.
    from pyrt import _core
    with pytest.raises(pyrt.ShapeError, match="weight buffer"):
        _core.matmul(np.ones((1, 64), np.float32), _core.Weights(weight.numpy(), "q4", 32, 17, 64), None,
                     np.empty(17, np.float32))
    with pytest.raises(pyrt.ShapeError):
        _core.matmul(np.ones((1, 64), np.float32), _core.Weights(weight.numpy(), "q4", 32, 16, 64), None,
                     np.empty(3, np.float32))


def test_tensor_constructor_validates_sizes():
    with pytest.raises(pyrt.ShapeError, match="needs"):
        pyrt.Tensor(np.zeros(10, np.uint8), "q4", (1, 32), 32)
    with pytest.raises(pyrt.DtypeError):
        pyrt.Tensor(np.zeros(18, np.int8), "q4", (1, 32), 32)


def test_unsupported_isa():
    with pytest.raises(pyrt.UnsupportedError, match="unknown CPU ISA"):
        pyrt.set_cpu_isa("sse9")


def test_environment_variables_select_isa_and_threads():
    for isa in pyrt.available_cpu_isas():
        r = run_python("-c", "import pyrt; i = pyrt.build_info(); print(i['cpu_isa'], i['threads'])",
                       env={"PYRT_FORCE_CPU_ISA": isa, "PYRT_NUM_THREADS": "3"})
        assert r.returncode == 0, r.stderr
        assert r.stdout.split() == [isa, "3"]


def test_bad_environment_variables_raise_clear_errors():
    r = run_python("-c", "import numpy as np, pyrt; pyrt.matmul(np.ones((1,32),np.float32), pyrt.quantize(np.ones((2,32),np.float32),'f32'))",
                   env={"PYRT_FORCE_CPU_ISA": "sse9"})
    assert r.returncode != 0 and "PYRT_FORCE_CPU_ISA" in r.stderr and "Segmentation" not in r.stderr
    r = run_python("-c", "import pyrt; pyrt.get_num_threads()", env={"PYRT_NUM_THREADS": "many"})
    assert r.returncode != 0 and "PYRT_NUM_THREADS" in r.stderr
