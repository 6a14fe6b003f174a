"""Matrix products with pyrt weight tensors."""
from __future__ import annotations

import math
from typing import Optional

import numpy as np

from . import device as _device
from ._native import require_core
from .errors import DeviceError, DtypeError, ShapeError
from .tensor import Tensor, quantize


ACTIVATION_MODES = ("exact", "int8", "int16")


def check_activations(activations: str) -> str:
    """Validates an ``activations=`` argument ("exact", "int8" or "int16"); raises :class:`DtypeError`."""
    if not isinstance(activations, str) or activations not in ACTIVATION_MODES:
        raise DtypeError(f"activations={activations!r} is not one of 'exact', 'int8', 'int16'")
    return activations


def matmul(x: np.ndarray, w: Tensor, bias: Optional[np.ndarray] = None, out: Optional[np.ndarray] = None,
           activations: str = "exact") -> np.ndarray:
    """``x @ w.T (+ bias)`` with FP32 accumulation; by default the activations are never quantized.

    ``activations="int8"`` opts into int8 activations for q8/q4/q4a weights: each row of x is
    quantized per weight block (symmetric, scale max|x|/127, round to nearest even) and every
    block's dot product runs in integer arithmetic (docs/int8.md for the math and its error bound).
    f32/f16/bf16 weights ignore the mode and stay exact. ``activations="int16"`` adds a second int8
    digit: the rounding residual of the first is quantized the same way and multiplied too, which
    brings the activation error down ~250x (about 16 bits per block) at twice the int8 cost.
    Both pay off only with AVX-512 VNNI (``build_info()["cpu_isa"] == "avx512"``); on AVX2-only
    CPUs they are 2-3x slower than exact (docs/int8.md). Not supported on the GPU path.

    x: float32 or float16 array of shape [..., K], C-contiguous. w: a 2-D :class:`Tensor` [N, K] in
    any format. bias: float32 [N]. out: optional float32 C-contiguous array of shape [..., N] that
    receives the result. Returns a float32 array of shape [..., N]. The GIL is released while the
    kernel runs, on ``pyrt.get_num_threads()`` threads.

    With a weight moved with ``w.to("cuda")`` the product runs on that GPU: x must be a float16
    device array (cupy, or anything with ``__cuda_array_interface__``), bias and out float32 device
    arrays, and the result is a float32 cupy array (docs/cuda.md).
    """
    check_activations(activations)
    if not isinstance(w, Tensor):
        raise DtypeError(f"w must be a pyrt.Tensor (see pyrt.quantize), got {type(w).__name__}")
    if w.ndim != 2:
        raise ShapeError(f"w must be 2-D [N, K], got shape {w.shape}")
    if w.device != "cpu":
        return _matmul_on_device(x, w, bias, out, activations)
    n, k = w.shape
    if not isinstance(x, np.ndarray):
        if _device.is_device_array(x):
            raise DeviceError("x is a device array but w is a pyrt.Tensor on the CPU; "
                              "copy the weights once with w.to('cuda')")
        raise DtypeError(f"x must be a numpy array, got {type(x).__name__}")
    if x.dtype not in (np.float32, np.float16):
        raise DtypeError(f"x must be float32 or float16, got {x.dtype}; convert with x.astype(np.float32)")
    if x.ndim < 1 or x.shape[-1] != k:
        raise ShapeError(f"x has shape {x.shape}, its last dimension must equal the weight's K={k}")
    if not x.flags.c_contiguous:
        raise DtypeError("x must be C-contiguous (use np.ascontiguousarray)")
    out_shape = x.shape[:-1] + (n,)
    if bias is not None:
        if not isinstance(bias, np.ndarray) or bias.dtype != np.float32:
            raise DtypeError("bias must be a float32 numpy array")
        if bias.shape != (n,):
            raise ShapeError(f"bias has shape {bias.shape}, expected ({n},)")
        bias = np.ascontiguousarray(bias)
    if out is None:
        out = np.empty(out_shape, dtype=np.float32)
    else:
        if not isinstance(out, np.ndarray) or out.dtype != np.float32:
            raise DtypeError("out must be a float32 numpy array")
        if out.shape != out_shape:
            raise ShapeError(f"out has shape {out.shape}, expected {out_shape}")
        if not out.flags.c_contiguous or not out.flags.writeable:
            raise DtypeError("out must be C-contiguous and writable")
        if np.shares_memory(out, x):
            raise ShapeError("out must not overlap x")
    require_core().matmul(x, w._native_weights(), bias, out, activations)
    return out


def _matmul_on_device(x, w: Tensor, bias, out, activations: str):
    """pyrt.matmul with GPU weights: zero-copy on device arrays, FP16 x, FP32 accumulation. Runs on
    the stream x's interface names (cupy: the current stream), else on the default stream; returns
    ``out`` without synchronizing."""
    if activations != "exact":
        raise DtypeError(f"activations={activations!r} is a CPU mode; GPU products use exact activations")
    if not _device.is_device_array(x):
        raise DeviceError(f"w is on {w.device} but x is a {type(x).__name__}; pass a cupy array, "
                          "or use w.to('cpu') with numpy inputs")
    n, k = w.shape
    xa = _device.device_array(x, "x", "<f2")
    if len(xa.shape) < 1 or xa.shape[-1] != k:
        raise ShapeError(f"x has shape {xa.shape}, its last dimension must equal the weight's K={k}")
    m = math.prod(xa.shape[:-1])
    out_shape = xa.shape[:-1] + (n,)
    bias_ptr = None
    if bias is not None:
        ba = _device.device_array(bias, "bias", "<f4")
        if ba.shape != (n,):
            raise ShapeError(f"bias has shape {ba.shape}, expected ({n},)")
        bias_ptr = ba.ptr
    if out is None:
        out = _device.empty_float32(out_shape, _device.parse_device(w.device))
    oa = _device.device_array(out, "out", "<f4")
    if oa.shape != out_shape:
        raise ShapeError(f"out has shape {oa.shape}, expected {out_shape}")
    if oa.readonly:
        raise DtypeError("out is a read-only device array")
    if m * n and _device.overlaps(oa, 4 * m * n, xa, 2 * m * k):
        raise ShapeError("out must not overlap x")
    require_core().matmul(xa.ptr, w._native_weights(), bias_ptr, oa.ptr, activations, m, xa.stream)
    return out


class Linear:
    """A dense layer ``y = x @ weight.T + bias`` with stored (possibly quantized) weights.

    ``weight`` is a :class:`Tensor` [N, K] or a float array, quantized with ``dtype``/``block``.
    ``activations`` ("exact" or "int8") is passed to :func:`matmul` on every call.
    """

    def __init__(self, weight, bias: Optional[np.ndarray] = None, dtype: str = "f32", block: int = 32,
                 activations: str = "exact"):
        self.activations = check_activations(activations)
        if not isinstance(weight, Tensor):
            weight = quantize(np.asarray(weight), dtype=dtype, block=block)
        if weight.ndim != 2:
            raise ShapeError(f"Linear weight must be 2-D [out_features, in_features], got {weight.shape}")
        self.weight = weight
        self.bias = None if bias is None else np.ascontiguousarray(bias, dtype=np.float32)
        if self.bias is not None and self.bias.shape != (weight.shape[0],):
            raise ShapeError(f"bias has shape {self.bias.shape}, expected ({weight.shape[0]},)")

    @property
    def in_features(self) -> int:
        return self.weight.shape[1]

    @property
    def out_features(self) -> int:
        return self.weight.shape[0]

    def __call__(self, x: np.ndarray, out: Optional[np.ndarray] = None) -> np.ndarray:
        return matmul(x, self.weight, self.bias, out, activations=self.activations)

    def __repr__(self) -> str:
        return f"pyrt.Linear(in={self.in_features}, out={self.out_features}, dtype={self.weight.dtype!r}, bias={self.bias is not None}, activations={self.activations!r})"
