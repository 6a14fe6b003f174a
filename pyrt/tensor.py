"""pyrt.Tensor: a weight tensor in one of pyrt's storage formats, backed by raw bytes on a device."""
from __future__ import annotations

import math
from typing import Any, Optional

import numpy as np

from . import formats as _formats
from ._native import core, require_core
from .device import device_name, parse_device
from .errors import DeviceError, DtypeError, ShapeError


def _rows_cols(shape: tuple[int, ...]) -> tuple[int, int]:
    """The 2-D view [rows, cols] every format stores: blocked along the last axis."""
    cols = shape[-1] if shape else 1
    rows = math.prod(shape[:-1]) if len(shape) > 1 else 1
    return rows, cols


class Tensor:
    """An immutable tensor stored as raw bytes in ``dtype`` (f32, f16, bf16, q8, q4, q4a, q4n, q5).

    Quantized formats are blocked along the last axis. On the CPU (``device == "cpu"``) the bytes
    live in a numpy array or in a read-only memory map (model files); pyrt never copies them to run
    a matmul. ``to("cuda")`` returns a Tensor whose bytes live on a GPU (``device == "cuda:N"``).
    """

    # _weights: the native _core.Weights that pyrt.matmul reads; made on first use for host bytes,
    # the owner of the device memory for a GPU tensor (whose _data is None).
    __slots__ = ("_data", "_dtype", "_shape", "_block", "_weights", "_device_index")

    def __init__(self, data: np.ndarray, dtype: str, shape: tuple[int, ...], block: int = _formats.DEFAULT_BLOCK):
        block = _formats.effective_block(dtype, block)
        shape = tuple(int(s) for s in shape)
        if any(s < 0 for s in shape):
            raise ShapeError(f"negative dimension in shape {shape}")
        if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 1:
            raise DtypeError("Tensor data must be a 1-D uint8 numpy array of raw bytes")
        if not data.flags.c_contiguous:
            raise DtypeError("Tensor data must be contiguous")
        rows, k = _rows_cols(shape)
        expected = rows * _formats.row_bytes(dtype, block, k) if k else 0
        if data.nbytes != expected:
            raise ShapeError(f"{dtype} tensor of shape {shape} (block {block}) needs {expected} bytes, got {data.nbytes}")
        self._data: Optional[np.ndarray] = data
        self._dtype = dtype
        self._shape = shape
        self._block = block
        self._weights: Any = None
        self._device_index: Optional[int] = None

    @classmethod
    def _on_device(cls, weights: Any, dtype: str, shape: tuple[int, ...], block: int, device_index: int) -> Tensor:
        """A tensor whose bytes live on CUDA device ``device_index``, owned by ``weights``."""
        t = object.__new__(cls)
        t._data, t._dtype, t._shape, t._block = None, dtype, tuple(shape), block
        t._weights, t._device_index = weights, device_index
        return t

    @property
    def device(self) -> str:
        """Where the bytes live: 'cpu' or 'cuda:N'."""
        return device_name(self._device_index)

    @property
    def dtype(self) -> str:
        """Storage format name: 'f32', 'f16', 'bf16', 'q8', 'q4', 'q4a', 'q4n' or 'q5'."""
        return self._dtype

    @property
    def shape(self) -> tuple[int, ...]:
        return self._shape

    @property
    def ndim(self) -> int:
        return len(self._shape)

    @property
    def block(self) -> int:
        """Elements per quantization block (1 for f32/f16/bf16)."""
        return self._block

    @property
    def nbytes(self) -> int:
        return int(self._data.nbytes) if self._data is not None else int(self._weights.nbytes)

    @property
    def bits_per_weight(self) -> float:
        n = int(np.prod(self._shape)) if self._shape else 1
        return 8.0 * self.nbytes / n if n else 0.0

    def numpy(self) -> np.ndarray:
        """The raw storage bytes (1-D uint8, read-only view, no copy). CPU tensors only."""
        data = self._host_data("numpy()")
        view = data.view()
        view.flags.writeable = False
        return view

    def dequantize(self) -> np.ndarray:
        """The stored values as a new float32 array of :attr:`shape`. CPU tensors only."""
        data = self._host_data("dequantize()")
        rows, k = _rows_cols(self._shape)
        if core is None:
            return _formats.dequantize_reference(data, self._dtype, self._block, self._shape).astype(np.float32)
        return require_core().dequantize(data, self._dtype, self._block, rows, k).reshape(self._shape)

    def to(self, device: str = "cpu") -> Tensor:
        """This tensor on ``device`` ('cpu', 'cuda' or 'cuda:N'): itself when it is there already,
        else a copy. A GPU copy holds f16, q8, q4, q4a or q4n weights in the CUDA plane layout (built in
        C++ from the format definition); ``to("cpu")`` brings back the original bytes. Raises
        :class:`pyrt.UnsupportedError` for other formats and :class:`pyrt.DeviceError` without a
        CUDA build or GPU (see ``pyrt.cuda.unavailable_reason()``)."""
        index = parse_device(device)
        if index == self._device_index:
            return self
        if index is None:
            return Tensor(self._weights.host_bytes(), self._dtype, self._shape, self._block)
        host = self if self._device_index is None else self.to("cpu")
        weights = host._native_weights().to_device(index)
        return Tensor._on_device(weights, self._dtype, self._shape, self._block, index)

    def repacked(self) -> Tensor:
        """This CPU tensor plus a copy of its weights in the layout of the AVX-512 one-row (M=1)
        kernels (q4, q4a, q4n at blocks 32 and 64, q4 and q4a at 128; csrc/include/pyrt/repack.h,
        docs/benchmarks.md, "Load-time repacking"): pyrt.matmul with one row of x is then faster
        and gives the same bits at block 32 (blocks 64/128: the same product up to FP32 rounding,
        summed in another order), and the copy costs the weights' size again. Other formats
        (q4n at 128 too), shapes or CPU kernel sets: an equal tensor without a copy
        (:attr:`repacked_nbytes` is 0)."""
        t = Tensor(self._host_data("repacked()"), self._dtype, self._shape, self._block)
        t._weights = self._native_weights().repacked()
        return t

    @property
    def repacked_nbytes(self) -> int:
        """Bytes of the repacked copy made by :meth:`repacked` (0: none)."""
        return int(self._weights.repacked_nbytes) if self._weights is not None else 0

    def _native_weights(self) -> Any:
        """The _core.Weights that pyrt.matmul passes to the core (made once for host bytes)."""
        if self._weights is None:
            rows, cols = _rows_cols(self._shape)
            self._weights = require_core().Weights(self._data, self._dtype, self._block, rows, cols)
        return self._weights

    def _host_data(self, what: str) -> np.ndarray:
        if self._data is None:
            raise DeviceError(f"{what} reads host memory but this tensor is on {self.device}; "
                              "copy it back with .to('cpu')")
        return self._data

    def __reduce__(self):
        # Pickles the host bytes only: the native view is a cache, device memory stays on its GPU.
        return (Tensor, (self._host_data("pickling"), self._dtype, self._shape, self._block))

    def __repr__(self) -> str:
        block = f", block={self._block}" if _formats.format_info(self._dtype).blocked else ""
        device = f", device={self.device!r}" if self._device_index is not None else ""
        return f"pyrt.Tensor(shape={self._shape}, dtype={self._dtype!r}{block}, nbytes={self.nbytes}{device})"


def quantize(array: np.ndarray, dtype: str = "q4", block: int = _formats.DEFAULT_BLOCK,
             importance: Optional[np.ndarray] = None, method: str = "search") -> Tensor:
    """Store ``array`` in ``dtype`` (f32, f16, bf16, q8, q4, q4a, q4n, q5), blocked along the last axis.

    q-formats search each block's scale (and q4a's minimum) for the lowest weighted squared error
    (docs/quantization.md); ``importance`` (float [K], >= 0, one value per column: e.g. the mean
    squared input activation from pyrt.calibration) weights that error, ``method="rtn"`` keeps
    plain round to nearest instead. Plain formats ignore both.

    ``array`` is converted to float32 first. Raises :class:`pyrt.RangeError` for NaN/Inf and for
    values the format cannot hold (|x| > 65504 in f16, or a q-format block scale beyond FP16),
    :class:`pyrt.ShapeError` when the last dimension is not a multiple of ``block``.
    """
    x = np.asarray(array)
    if x.dtype.kind not in "fiu":
        raise DtypeError(f"cannot quantize an array of dtype {x.dtype}")
    x = np.asarray(x, dtype=np.float32)
    if not x.flags.c_contiguous:  # (np.ascontiguousarray would also turn a 0-d array into 1-d)
        x = x.copy(order="C")
    block = _formats.effective_block(dtype, block)
    importance = _formats.check_importance(importance, x.shape[-1] if x.ndim else 1, method)
    if core is not None:
        data = require_core().quantize(x, dtype, block, importance, method)
    else:
        data = _formats.quantize_reference(x, dtype, block, importance, method)
    return Tensor(data, dtype, x.shape, block)
