"""CUDA device helpers: device weight tensors and matmul on device arrays (cupy or any object with
``__cuda_array_interface__``), zero-copy.

cupy is optional and imported lazily, only to allocate an output array. Without a CUDA build or a
GPU every entry point raises :class:`pyrt.DeviceError`; :func:`is_available` tells in advance.
"""
from __future__ import annotations

import math
from typing import Any, NamedTuple, Optional

import numpy as np

from . import formats as _formats
from ._native import core, require_core
from .errors import DeviceError, DtypeError, ShapeError, UnsupportedError
from .tensor import Tensor

# Weight formats the CUDA kernels read; f32 and bf16 would need their own kernels.
DEVICE_FORMATS = ("f16", "q8", "q4", "q4a")


def is_available() -> bool:
    """True when this build has the CUDA backend and at least one GPU is usable."""
    return core is not None and int(core.cuda_device_count()) > 0


def device_count() -> int:
    """Usable CUDA devices (0 in a CPU-only build, without a driver or without a GPU)."""
    return int(core.cuda_device_count()) if core is not None else 0


def unavailable_reason() -> str:
    """Why :func:`is_available` is False ('' when it is True)."""
    return str(require_core().cuda_unavailable_reason())


def parse_device(device: Any) -> Optional[int]:
    """'cpu' -> None; 'cuda' -> 0; 'cuda:N' -> N. Anything else raises :class:`DeviceError`."""
    name = str(device).strip().lower()
    if name == "cpu":
        return None
    if name == "cuda":
        return 0
    if name.startswith("cuda:") and name[5:].isdigit():
        return int(name[5:])
    raise DeviceError(f"unknown device {device!r}; use 'cpu', 'cuda' or 'cuda:N'")


# --- device layout: pyrt blocks split into planes (docs/cuda.md, "Device layout") ---------------

def _header_bytes(dtype: str) -> int:
    return 4 if dtype == "q4a" else 2


def split_planes(data: np.ndarray, dtype: str, block: int, rows: int, cols: int):
    """pyrt bytes -> (quants, scales, mins), flat uint8 arrays; scales/mins are None where absent.

    The quant bytes keep pyrt's order inside each block (low nibble = element j, high = j + B/2);
    only the fp16 headers move out, so every quant row starts 16-byte aligned on the device.
    """
    if dtype not in DEVICE_FORMATS:
        raise UnsupportedError(f"{dtype} weights are not supported by the CUDA backend; store them as "
                               f"one of {', '.join(DEVICE_FORMATS)} (e.g. pyrt.quantize(w, 'f16'))")
    data = np.ascontiguousarray(data, dtype=np.uint8).reshape(-1)
    if data.nbytes != rows * _formats.row_bytes(dtype, block, cols):
        raise ShapeError(f"{data.nbytes} bytes do not hold a [{rows}, {cols}] {dtype} matrix (block {block})")
    if dtype == "f16":
        return data, None, None  # already one plane; uploading reads it without a copy
    header = _header_bytes(dtype)
    blocks = data.reshape(rows * (cols // block), -1)
    scales = np.ascontiguousarray(blocks[:, 0:2]).reshape(-1)
    mins = np.ascontiguousarray(blocks[:, 2:4]).reshape(-1) if dtype == "q4a" else None
    quants = np.ascontiguousarray(blocks[:, header:]).reshape(-1)
    return quants, scales, mins


def join_planes(quants: np.ndarray, scales: Optional[np.ndarray], mins: Optional[np.ndarray], dtype: str,
                block: int, rows: int, cols: int) -> np.ndarray:
    """The inverse of :func:`split_planes`: pyrt's interleaved bytes."""
    if dtype == "f16":
        return np.ascontiguousarray(quants, dtype=np.uint8).reshape(-1)
    n_blocks = rows * (cols // block)
    parts = [scales.reshape(n_blocks, 2)]
    if dtype == "q4a":
        parts.append(mins.reshape(n_blocks, 2))
    parts.append(quants.reshape(n_blocks, -1))
    return np.concatenate(parts, axis=1).reshape(-1)


# --- device tensors --------------------------------------------------------------------------------

def _rows_cols(shape: tuple[int, ...]) -> tuple[int, int]:
    cols = shape[-1] if shape else 1
    rows = math.prod(shape[:-1]) if len(shape) > 1 else 1
    return rows, cols


class CudaTensor:
    """A :class:`pyrt.Tensor` copied to a GPU (``Tensor.to('cuda')``). The device memory belongs to
    native buffers (cudaMalloc/cudaFree) and is freed with the last reference."""

    __slots__ = ("_planes", "_dtype", "_shape", "_block", "_device")

    def __init__(self, planes, dtype: str, shape: tuple[int, ...], block: int, device: int):
        self._planes = planes  # (quants, scales or None, mins or None) as _core.DeviceBuffer
        self._dtype = dtype
        self._shape = shape
        self._block = block
        self._device = device

    dtype = property(lambda self: self._dtype, doc="Storage format name.")
    shape = property(lambda self: self._shape)
    ndim = property(lambda self: len(self._shape))
    block = property(lambda self: self._block, doc="Elements per quantization block (1 for f16).")
    device = property(lambda self: f"cuda:{self._device}")
    device_index = property(lambda self: self._device)

    @property
    def nbytes(self) -> int:
        return sum(int(p.nbytes) for p in self._planes if p is not None)

    def cpu(self) -> Tensor:
        """Copy back to host memory, in pyrt's byte layout."""
        rows, cols = _rows_cols(self._shape)
        host = [None if p is None else p.download() for p in self._planes]
        return Tensor(join_planes(*host, self._dtype, self._block, rows, cols), self._dtype, self._shape, self._block)

    def to(self, device: str = "cpu"):
        index = parse_device(device)
        if index is None:
            return self.cpu()
        return self if index == self._device else to_device(self.cpu(), index)

    def __repr__(self) -> str:
        block = f", block={self._block}" if self._dtype != "f16" else ""
        return f"pyrt.cuda.CudaTensor(shape={self._shape}, dtype={self._dtype!r}{block}, device={self.device!r})"


def to_device(tensor: Tensor, device: int) -> CudaTensor:
    rows, cols = _rows_cols(tensor.shape)
    planes = split_planes(tensor.numpy(), tensor.dtype, tensor.block, rows, cols)
    _core = require_core()
    if not is_available():
        raise DeviceError(f"cannot copy a tensor to cuda:{device}: {unavailable_reason()}")
    buffers = []
    for plane in planes:
        if plane is None:
            buffers.append(None)
            continue
        buf = _core.DeviceBuffer(device, plane.nbytes)
        buf.upload(plane)
        buffers.append(buf)
    return CudaTensor(tuple(buffers), tensor.dtype, tensor.shape, tensor.block, device)


def tensor_to(tensor: Tensor, device: Any):
    """``Tensor.to``: the tensor itself for 'cpu', a :class:`CudaTensor` copy for 'cuda[:N]'."""
    index = parse_device(device)
    return tensor if index is None else to_device(tensor, index)


# --- __cuda_array_interface__ -----------------------------------------------------------------------

class DeviceArray(NamedTuple):
    """What pyrt needs from a ``__cuda_array_interface__`` (version 0..3)."""

    ptr: int
    shape: tuple[int, ...]
    typestr: str
    readonly: bool
    stream: int  # cudaStream_t as an integer; 0 = the legacy default stream


def device_array(obj: Any, name: str, typestr: str) -> DeviceArray:
    """Parse and check ``obj.__cuda_array_interface__``: C-contiguous, dtype ``typestr``, no mask."""
    try:
        cai = obj.__cuda_array_interface__
    except AttributeError:
        raise DeviceError(f"{name} is a {type(obj).__name__}, not a device array; pass a cupy array "
                          "(or anything with __cuda_array_interface__)") from None
    shape = tuple(int(s) for s in cai["shape"])
    got = str(cai["typestr"])
    if got != typestr:
        raise DtypeError(f"{name} has typestr {got!r}, expected {typestr!r} "
                         f"({np.dtype(typestr).name}); convert it with .astype()")
    if cai.get("mask") is not None:
        raise UnsupportedError(f"{name} is a masked device array")
    itemsize = np.dtype(typestr).itemsize
    strides = cai.get("strides")
    if strides is not None:
        expected = itemsize
        for dim, stride in zip(reversed(shape), reversed(tuple(strides))):
            if dim > 1 and stride != expected:
                raise DtypeError(f"{name} must be C-contiguous (strides {tuple(strides)}, shape {shape}); "
                                 "use cupy.ascontiguousarray")
            expected *= dim
    ptr, readonly = cai["data"]
    stream = cai.get("stream")
    return DeviceArray(int(ptr or 0), shape, got, bool(readonly), 0 if stream is None else int(stream))


def is_device_call(x: Any, w: Any) -> bool:
    """pyrt.matmul routes here when either operand lives on a GPU."""
    return isinstance(w, CudaTensor) or hasattr(x, "__cuda_array_interface__")


def _allocate_output(shape: tuple[int, ...], device: int):
    try:
        import cupy
    except ImportError:
        raise UnsupportedError("allocating the output of a CUDA matmul needs cupy; install cupy or pass "
                               "out= (a float32 device array)") from None
    with cupy.cuda.Device(device):
        return cupy.empty(shape, dtype=cupy.float32)


def _overlaps(a: DeviceArray, a_bytes: int, b: DeviceArray, b_bytes: int) -> bool:
    return a.ptr < b.ptr + b_bytes and b.ptr < a.ptr + a_bytes


def matmul(x: Any, w: Any, bias: Any = None, out: Any = None):
    """``x @ w.T (+ bias)`` on the GPU: x float16 [..., K] device array, w a :class:`CudaTensor`
    [N, K], bias float32 [N] device array, out float32 [..., N] device array (allocated with cupy
    when omitted). FP32 accumulation. Runs on the stream x's interface names (cupy: the current
    stream), else on the default stream; returns ``out`` without synchronizing."""
    if not isinstance(w, CudaTensor):
        raise DeviceError(f"x is a device array but w is a {type(w).__name__} on the CPU; "
                          "copy the weights once with w.to('cuda')")
    if not hasattr(x, "__cuda_array_interface__"):
        raise DeviceError(f"w is on {w.device} but x is a {type(x).__name__}; pass a cupy array, "
                          "or use w.to('cpu') with numpy inputs")
    if w.ndim != 2:
        raise ShapeError(f"w must be 2-D [N, K], got shape {w.shape}")
    n, k = w.shape
    xa = device_array(x, "x", "<f2")
    if len(xa.shape) < 1 or xa.shape[-1] != k:
        raise ShapeError(f"x has shape {xa.shape}, its last dimension must equal the weight's K={k}")
    m = math.prod(xa.shape[:-1])
    out_shape = xa.shape[:-1] + (n,)
    bias_ptr = 0
    if bias is not None:
        ba = device_array(bias, "bias", "<f4")
        if ba.shape != (n,):
            raise ShapeError(f"bias has shape {ba.shape}, expected ({n},)")
        bias_ptr = ba.ptr
    if out is None:
        out = _allocate_output(out_shape, w.device_index)
    oa = device_array(out, "out", "<f4")
    if oa.shape != out_shape:
        raise ShapeError(f"out has shape {oa.shape}, expected {out_shape}")
    if oa.readonly:
        raise DtypeError("out is a read-only device array")
    if m * n and _overlaps(oa, 4 * m * n, xa, 2 * m * k):
        raise ShapeError("out must not overlap x")
    require_core().cuda_matmul(xa.ptr, m, *w._planes, w.dtype, w.block, n, k, bias_ptr, oa.ptr, xa.stream)
    return out


__all__ = [
    "DEVICE_FORMATS", "CudaTensor", "DeviceArray", "device_array", "device_count", "is_available",
    "join_planes", "matmul", "parse_device", "split_planes", "tensor_to", "unavailable_reason",
]
