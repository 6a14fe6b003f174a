"""Reader of .safetensors files: the `safetensors` package (numpy API) when installed, else (and for
dtypes numpy lacks, such as BF16) a small reader of the documented layout: an 8-byte little-endian
header length, a JSON header {name: {dtype, shape, data_offsets}}, then the data."""
from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np

from ...errors import FileFormatError, FileIOError
from ...formats import bf16_bits_to_fp32
from ...model_config import dims_fit
from .base import Source, SourceTensor

# safetensors dtype -> (numpy dtype of the stored bits, item size)
DTYPES = {
    "F64": np.float64, "F32": np.float32, "F16": np.float16, "BF16": np.uint16,
    "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8,
    "U16": np.uint16, "U32": np.uint32, "U64": np.uint64, "BOOL": np.bool_,
}
MAX_HEADER_BYTES = 100 << 20  # the format's own limit


def read_header(path: Path) -> tuple[dict, int, int]:
    """(tensor entries, data start, file size), validated against the file's size."""
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(0)
            prefix = f.read(8)
            if len(prefix) < 8:
                raise FileFormatError(f"{path}: too short for a safetensors file")
            (n,) = struct.unpack("<Q", prefix)
            if n > MAX_HEADER_BYTES or 8 + n > size:
                raise FileFormatError(f"{path}: safetensors header length {n} is invalid for a {size}-byte file")
            raw = f.read(n)
    except OSError as exc:
        raise FileIOError(f"cannot read {path}: {exc.strerror or exc}") from exc
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise FileFormatError(f"{path}: safetensors header is not JSON: {exc}") from exc
    if not isinstance(header, dict):
        raise FileFormatError(f"{path}: safetensors header is not a JSON object")
    header.pop("__metadata__", None)
    data_start = 8 + n
    for name, info in header.items():
        _check_entry(path, name, info, size - data_start)
    return header, data_start, size


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_entry(path: Path, name: str, info, data_bytes: int) -> None:
    """One header entry: dtype a known name, shape a list of non-negative ints, offsets two ints
    inside the data whose span is exactly the shape's size (exact integer product: no overflow)."""
    if not isinstance(info, dict):
        raise FileFormatError(f"{path}: safetensors entry {name!r} is not an object")
    dtype, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
    if not isinstance(dtype, str) or dtype not in DTYPES:
        raise FileFormatError(f"{path}: tensor {name!r} has unsupported dtype {dtype!r}")
    if not isinstance(shape, list) or not all(_is_int(d) and d >= 0 for d in shape):
        raise FileFormatError(f"{path}: tensor {name!r} has invalid shape {shape!r}")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(_is_int(o) for o in offsets)):
        raise FileFormatError(f"{path}: tensor {name!r} has invalid data_offsets {offsets!r}")
    begin, end = offsets
    count = 1
    for d in shape:
        count *= d
    if not (0 <= begin <= end <= data_bytes) or end - begin != count * np.dtype(DTYPES[dtype]).itemsize:
        raise FileFormatError(f"{path}: tensor {name!r} has inconsistent offsets {begin}..{end} for {dtype}{shape}")
    if not dims_fit(shape):  # a zero-sized tensor whose other dimensions overflow any product
        raise FileFormatError(f"{path}: tensor {name!r} has shape {shape}: its non-zero dimensions overflow")


def _package():
    try:
        from safetensors import safe_open  # type: ignore[import-not-found]
    except ImportError:
        return None
    return safe_open


def open_safetensors(path: Path, prefix: str = "", use_package: bool | None = None) -> Source:
    """Tensors of one safetensors file; names get `prefix` prepended."""
    header, data_start, _ = read_header(path)
    safe_open = _package() if use_package in (None, True) else None
    try:
        handle = safe_open(str(path), framework="numpy") if safe_open is not None else None
    except Exception as exc:  # noqa: BLE001 - the package's own error type
        raise FileFormatError(f"{path}: the safetensors package refused the file: {exc}") from exc
    mm = np.memmap(path, dtype=np.uint8, mode="r") if len(header) else None

    def loader(name: str, info: dict):
        shape = tuple(int(s) for s in info["shape"])
        dtype = info["dtype"]

        def load() -> np.ndarray:
            if handle is not None and dtype != "BF16":
                try:
                    return handle.get_tensor(name)
                except Exception as exc:  # noqa: BLE001 - SafetensorError is not importable by name everywhere
                    raise FileFormatError(f"{path}: cannot read tensor {name!r}: {exc}") from exc
            begin, end = info["data_offsets"]
            raw = mm[data_start + begin:data_start + end].view(DTYPES[dtype]).reshape(shape)
            return bf16_bits_to_fp32(raw).reshape(shape) if dtype == "BF16" else raw
        return load

    tensors = [SourceTensor(prefix + name, tuple(int(s) for s in info["shape"]), info["dtype"],
                            info["data_offsets"][1] - info["data_offsets"][0], loader(name, info))
               for name, info in header.items()]
    source = Source("safetensors", path, tensors, source_files=[path])
    if handle is not None and hasattr(handle, "__exit__"):
        source.closers.append(lambda: handle.__exit__(None, None, None))
    return source
