"""The CUDA backend's Python face: availability, device names, ``__cuda_array_interface__``
parsing (all from :mod:`pyrt.device`) and the device plane layout for inspection.

GPU products go through :func:`pyrt.matmul` with a weight moved by ``Tensor.to("cuda")``. Without
a CUDA build or a GPU every device entry point raises :class:`pyrt.DeviceError`;
:func:`is_available` tells in advance.
"""
from __future__ import annotations

import warnings
from typing import Any, Optional

import numpy as np

from ._native import require_core
from .device import (DeviceArray, device_array, device_count, is_available, parse_device,
                     unavailable_reason)
from .tensor import Tensor

# Weight formats the CUDA kernels read; f32 and bf16 would need their own kernels.
DEVICE_FORMATS = ("f16", "q8", "q4", "q4a", "q4n")


def split_planes(data: np.ndarray, dtype: str, block: int, rows: int, cols: int):
    """pyrt bytes -> (codes, scales, mins), flat uint8 arrays as ``Tensor.to('cuda')`` uploads them;
    scales/mins are None where the format has none. Built in C++ from the format's block layout.

    The code bytes keep pyrt's order inside each block (low nibble = element j, high = j + B/2);
    only the fp16 headers move out, so every code row starts 16-byte aligned on the device.
    """
    data = np.ascontiguousarray(data, dtype=np.uint8).reshape(-1)
    return tuple(require_core().cuda_split_planes(data, dtype, block, rows, cols))


def join_planes(codes: np.ndarray, scales: Optional[np.ndarray], mins: Optional[np.ndarray], dtype: str,
                block: int, rows: int, cols: int) -> np.ndarray:
    """The inverse of :func:`split_planes`: pyrt's interleaved bytes (what ``to('cpu')`` rebuilds)."""
    return require_core().cuda_join_planes(codes, scales, mins, dtype, block, rows, cols)


def __getattr__(name: str) -> Any:
    if name == "CudaTensor":  # one tensor type now: Tensor.device says where it lives
        warnings.warn("pyrt.cuda.CudaTensor is pyrt.Tensor now (see Tensor.device)", DeprecationWarning,
                      stacklevel=2)
        return Tensor
    raise AttributeError(f"module 'pyrt.cuda' has no attribute {name!r}")


__all__ = [
    "DEVICE_FORMATS", "DeviceArray", "device_array", "device_count", "is_available", "join_planes",
    "parse_device", "split_planes", "unavailable_reason",
]
