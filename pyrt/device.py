"""Where tensors live: device names, CUDA availability, and zero-copy access to device arrays
(``__cuda_array_interface__``, e.g. cupy).

The bottom of the device stack: :mod:`pyrt.tensor` and :mod:`pyrt.ops` import it, it imports
neither. cupy is optional and imported lazily, only to allocate an output array.
"""
from __future__ import annotations

from typing import Any, NamedTuple, Optional

import numpy as np

from ._native import core, require_core
from .errors import DeviceError, DtypeError, UnsupportedError


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


def device_name(index: Optional[int]) -> str:
    """The inverse of :func:`parse_device`: 'cpu' or 'cuda:N'."""
    return "cpu" if index is None else f"cuda:{index}"


class DeviceArray(NamedTuple):
    """What pyrt needs from a ``__cuda_array_interface__`` (version 0..3)."""

    ptr: int
    shape: tuple[int, ...]
    typestr: str
    readonly: bool
    stream: int  # cudaStream_t as an integer; 0 = the legacy default stream


def is_device_array(obj: Any) -> bool:
    return hasattr(obj, "__cuda_array_interface__")


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


def overlaps(a: DeviceArray, a_bytes: int, b: DeviceArray, b_bytes: int) -> bool:
    return a.ptr < b.ptr + b_bytes and b.ptr < a.ptr + a_bytes


def empty_float32(shape: tuple[int, ...], device: int):
    """A float32 cupy array on ``device`` (the output of a CUDA matmul called without ``out=``)."""
    try:
        import cupy
    except ImportError:
        raise UnsupportedError("allocating the output of a CUDA matmul needs cupy; install cupy or pass "
                               "out= (a float32 device array)") from None
    with cupy.cuda.Device(device):
        return cupy.empty(shape, dtype=cupy.float32)


__all__ = [
    "DeviceArray", "device_array", "device_count", "device_name", "empty_float32", "is_available",
    "is_device_array", "overlaps", "parse_device", "unavailable_reason",
]
