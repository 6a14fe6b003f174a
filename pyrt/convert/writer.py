"""Writer of .pyrt model files (layout: docs/format.md; reader: csrc/core/model_file.cc).

Pure Python (numpy + zlib): it works without the native core. Output is atomic: bytes go to a
temporary file beside the target, which is renamed over it only once complete; any exception,
KeyboardInterrupt included, removes the temporary file and leaves the target untouched.
"""
from __future__ import annotations

import json
import os
import secrets
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import FileIOError, FileFormatError
from ..formats import FORMATS
from ..tensor import Tensor

MAGIC = b"\x89PYRT\r\n\x1a"
BYTE_ORDER_MARK = 0x01020304
VERSION = (1, 0)
HEADER_BYTES = 128
ALIGNMENT = 64
KIND_TENSOR, KIND_FILE = 0, 1
MAX_DIMS = 8

# magic, byte-order mark, version major/minor, header bytes, alignment, required features,
# file size, entry count, table offset/bytes, metadata offset/bytes, table crc, metadata crc,
# reserved, header crc (over bytes 0..123)
HEADER = struct.Struct("<8sIHHIIQQQQQQQII36sI")
# entry bytes, kind, format id, ndim, reserved, block, name bytes, offset, size, crc32, reserved x2
ENTRY = struct.Struct("<IBBBBIIQQIIQ")
assert HEADER.size == HEADER_BYTES and ENTRY.size == 48


def pack_header(*, file_size: int, entry_count: int, table_offset: int, table_bytes: int,
                metadata_offset: int, metadata_bytes: int, table_crc: int, metadata_crc: int,
                version: tuple[int, int] = VERSION, alignment: int = ALIGNMENT, required_features: int = 0,
                magic: bytes = MAGIC, byte_order_mark: int = BYTE_ORDER_MARK) -> bytes:
    """The 128-byte header, its CRC-32 filled in (keyword arguments so tests can forge variants)."""
    fields = (magic, byte_order_mark, version[0], version[1], HEADER_BYTES, alignment, required_features,
              file_size, entry_count, table_offset, table_bytes, metadata_offset, metadata_bytes,
              table_crc, metadata_crc, bytes(36))
    body = HEADER.pack(*fields, 0)[:124]
    return body + struct.pack("<I", zlib.crc32(body))


def pack_entry(name: str, kind: int, format_id: int, block: int, shape: tuple[int, ...], offset: int,
               size: int, crc: int) -> bytes:
    encoded = name.encode("utf-8")
    body_len = ENTRY.size + 8 * len(shape) + len(encoded)
    entry_bytes = (body_len + 7) // 8 * 8
    out = ENTRY.pack(entry_bytes, kind, format_id, len(shape), 0, block, len(encoded), offset, size, crc, 0, 0)
    out += b"".join(struct.pack("<Q", d) for d in shape) + encoded
    return out + bytes(entry_bytes - body_len)


def _align(n: int, alignment: int) -> int:
    return (n + alignment - 1) // alignment * alignment


class ModelWriter:
    """Streams tensors and files into ``path`` (a temporary file until :meth:`commit`).

    Layout: header | data (each entry aligned) | entry table | metadata JSON. The table and
    metadata go last so that tensors can be written as they are converted, in bounded memory.
    """

    def __init__(self, path: str | os.PathLike, alignment: int = ALIGNMENT):
        self.path = Path(path)
        self.alignment = alignment
        self._tmp = self.path.parent / f".{self.path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
        self._entries: list[bytes] = []
        self._names: set[tuple[int, str]] = set()
        try:
            self._file = open(self._tmp, "xb")
            self._file.write(bytes(HEADER_BYTES))  # placeholder until commit
        except OSError as exc:
            raise FileIOError(f"cannot create {self._tmp}: {exc.strerror or exc}") from exc
        self._pos = HEADER_BYTES

    @property
    def temp_path(self) -> Path:
        return self._tmp

    def _write_blob(self, kind: int, name: str, data: memoryview | bytes) -> tuple[int, int, int]:
        if not name or "\0" in name:
            raise FileFormatError(f"invalid entry name {name!r}")
        if (kind, name) in self._names:
            raise FileFormatError(f"duplicate {'tensor' if kind == KIND_TENSOR else 'file'} name {name!r}")
        self._names.add((kind, name))
        offset = _align(self._pos, self.alignment)
        try:
            self._file.write(bytes(offset - self._pos))
            self._file.write(data)
        except OSError as exc:
            raise FileIOError(f"cannot write {self._tmp}: {exc.strerror or exc}") from exc
        size = memoryview(data).nbytes
        self._pos = offset + size
        return offset, size, zlib.crc32(data)

    def add_tensor(self, name: str, tensor: Tensor) -> None:
        if len(tensor.shape) > MAX_DIMS:
            raise FileFormatError(f"tensor {name!r} has {len(tensor.shape)} dimensions (max {MAX_DIMS})")
        raw = np.ascontiguousarray(tensor.numpy())
        offset, size, crc = self._write_blob(KIND_TENSOR, name, memoryview(raw))
        fmt = FORMATS[tensor.dtype]
        self._entries.append(pack_entry(name, KIND_TENSOR, fmt.id, tensor.block, tensor.shape, offset, size, crc))

    def add_file(self, name: str, data: bytes) -> None:
        offset, size, crc = self._write_blob(KIND_FILE, name, bytes(data))
        self._entries.append(pack_entry(name, KIND_FILE, 0, 0, (), offset, size, crc))

    def commit(self, metadata: dict[str, Any]) -> Path:
        """Writes table, metadata and header, then renames the temporary file onto ``path``."""
        try:
            meta = json.dumps(metadata, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()
        except (TypeError, ValueError) as exc:
            raise FileFormatError(f"metadata is not JSON-serializable: {exc}") from exc
        table = b"".join(self._entries)
        table_offset = _align(self._pos, 8)
        metadata_offset = table_offset + len(table)
        file_size = metadata_offset + len(meta)
        header = pack_header(file_size=file_size, entry_count=len(self._entries), table_offset=table_offset,
                             table_bytes=len(table), metadata_offset=metadata_offset, metadata_bytes=len(meta),
                             table_crc=zlib.crc32(table), metadata_crc=zlib.crc32(meta), alignment=self.alignment)
        try:
            self._file.write(bytes(table_offset - self._pos))
            self._file.write(table)
            self._file.write(meta)
            self._file.seek(0)
            self._file.write(header)
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            os.replace(self._tmp, self.path)
        except OSError as exc:
            self.abort()
            raise FileIOError(f"cannot write {self.path}: {exc.strerror or exc}") from exc
        except BaseException:
            self.abort()
            raise
        return self.path

    def abort(self) -> None:
        """Discards everything written; safe to call more than once."""
        try:
            self._file.close()
        finally:
            try:
                self._tmp.unlink()
            except FileNotFoundError:
                pass

    def __enter__(self) -> "ModelWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None or self._tmp.exists():
            self.abort()  # an exception, or commit() was never called


def save_model(path: str | os.PathLike, tensors: dict[str, Tensor], metadata: dict[str, Any] | None = None,
               files: dict[str, bytes] | None = None) -> Path:
    """Writes ``tensors`` (pyrt.Tensor), carried ``files`` and ``metadata`` to ``path`` atomically."""
    with ModelWriter(path) as writer:
        for name, tensor in tensors.items():
            if not isinstance(tensor, Tensor):
                raise FileFormatError(f"tensor {name!r} must be a pyrt.Tensor, got {type(tensor).__name__}")
            writer.add_tensor(name, tensor)
        for name, data in (files or {}).items():
            writer.add_file(name, data)
        return writer.commit(dict(metadata or {}))


__all__ = ["ModelWriter", "save_model", "pack_header", "pack_entry", "HEADER", "ENTRY", "MAGIC",
           "VERSION", "ALIGNMENT", "HEADER_BYTES", "KIND_TENSOR", "KIND_FILE"]
