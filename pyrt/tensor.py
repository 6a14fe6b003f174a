"""pyrt.Tensor: a weight tensor in one of pyrt's storage formats, backed by raw bytes."""
from __future__ import annotations

import numpy as np

from . import formats as _formats
from ._native import core, require_core
from .errors import DtypeError, ShapeError


class Tensor:
    """An immutable tensor stored as raw bytes in ``dtype`` (f32, f16, bf16, q8, q4, q4a).

    Quantized formats are blocked along the last axis. The bytes may live in a numpy array or in a
    read-only memory map (model files); pyrt never copies them to run a matmul.
    """

    __slots__ = ("_data", "_dtype", "_shape", "_block")

    def __init__(self, data: np.ndarray, dtype: str, shape: tuple[int, ...], block: int = _formats.DEFAULT_BLOCK):
        block = _formats.effective_block(dtype, block)
        shape = tuple(int(s) for s in shape)
        if any(s < 0 for s in shape):
            raise ShapeError(f"negative dimension in shape {shape}")
        if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 1:
            raise DtypeError("Tensor data must be a 1-D uint8 numpy array of raw bytes")
        if not data.flags.c_contiguous:
            raise DtypeError("Tensor data must be contiguous")
        k = shape[-1] if shape else 1
        rows = int(np.prod(shape[:-1])) if len(shape) > 1 else 1
        expected = rows * _formats.row_bytes(dtype, block, k) if k else 0
        if data.nbytes != expected:
            raise ShapeError(f"{dtype} tensor of shape {shape} (block {block}) needs {expected} bytes, got {data.nbytes}")
        self._data = data
        self._dtype = dtype
        self._shape = shape
        self._block = block

    @property
    def dtype(self) -> str:
        """Storage format name: 'f32', 'f16', 'bf16', 'q8', 'q4' or 'q4a'."""
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
        return int(self._data.nbytes)

    @property
    def bits_per_weight(self) -> float:
        n = int(np.prod(self._shape)) if self._shape else 1
        return 8.0 * self.nbytes / n if n else 0.0

    def numpy(self) -> np.ndarray:
        """The raw storage bytes (1-D uint8, read-only view, no copy)."""
        view = self._data.view()
        view.flags.writeable = False
        return view

    def dequantize(self) -> np.ndarray:
        """The stored values as a new float32 array of :attr:`shape`."""
        k = self._shape[-1] if self._shape else 1
        rows = int(np.prod(self._shape[:-1])) if len(self._shape) > 1 else 1
        if core is None:
            return _formats.dequantize_reference(self._data, self._dtype, self._block, self._shape).astype(np.float32)
        return require_core().dequantize(self._data, self._dtype, self._block, rows, k).reshape(self._shape)

    def __repr__(self) -> str:
        block = f", block={self._block}" if _formats.format_info(self._dtype).blocked else ""
        return f"pyrt.Tensor(shape={self._shape}, dtype={self._dtype!r}{block}, nbytes={self.nbytes})"


def quantize(array: np.ndarray, dtype: str = "q4", block: int = _formats.DEFAULT_BLOCK) -> Tensor:
    """Store ``array`` in ``dtype`` (f32, f16, bf16, q8, q4, q4a), blocked along the last axis.

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
    if core is not None:
        data = require_core().quantize(x, dtype, block)
    else:
        data = _formats.quantize_reference(x, dtype, block)
    return Tensor(data, dtype, x.shape, block)
