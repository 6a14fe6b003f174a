"""A bounded pre-scan of a GGUF file's header, run before the `gguf` package parses it.

The package trusts the counts and lengths it reads: an array that declares 2^40 items at the end of
a 1 KB file makes it loop (each read past the end yields an empty view) and allocate per item until
memory runs out. This scan walks the same structure with every read checked against the file's size
(an item needs at least one byte, so no loop runs longer than the file is long), refuses what the
package would choke on (unknown value types, nesting, alignment 0, tensor data past the end), and
caps the total number of array items, since the package keeps a numpy view per item
(docs/hostile-input.md gives the bounds and the measured peak memory)."""
from __future__ import annotations

import mmap
import struct
from pathlib import Path

from ...errors import FileFormatError, FileIOError

MAGIC = b"GGUF"
SUPPORTED_VERSIONS = (2, 3)
# Array items over all keys: real vocabularies hold < 1M (tokens + merges + types + scores); the
# gguf package costs ~200 bytes per item, so this caps its field parsing near 1 GB.
MAX_ARRAY_ITEMS = 1 << 22
MAX_ARRAY_DEPTH = 2        # an array of arrays at most (the package flattens deeper ones)
MAX_KEY_BYTES = 1 << 16
MAX_TENSOR_DIMS = 8        # ggml uses 4
MAX_ELEMENTS = 1 << 60
DEFAULT_ALIGNMENT = 32

# GGUF value types: 0..7, 10..12 scalars (item size), 8 string, 9 array.
SCALAR_SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
STRING, ARRAY, UINT32 = 8, 9, 4


class _Cursor:
    """Reads from a buffer, refusing any read that would pass its end."""

    def __init__(self, data, path: Path, byte_order: str):
        self.data, self.path, self.order, self.pos, self.items = data, path, byte_order, 0, 0

    def fail(self, message: str) -> FileFormatError:
        return FileFormatError(f"{self.path}: GGUF header at byte {self.pos}: {message}")

    def take(self, n: int, what: str) -> int:
        if n < 0 or n > len(self.data) - self.pos:
            raise self.fail(f"{what} of {n} bytes runs past the end of the {len(self.data)}-byte file")
        start = self.pos
        self.pos += n
        return start

    def unpack(self, code: str, what: str) -> int:
        start = self.take(struct.calcsize(code), what)
        return struct.unpack_from(self.order + code, self.data, start)[0]

    def string(self, what: str, limit: int | None = None) -> bytes:
        n = self.unpack("Q", what + " length")
        if limit is not None and n > limit:
            raise self.fail(f"{what} of {n} bytes exceeds {limit}")
        start = self.take(n, what)
        return bytes(self.data[start:start + n]) if limit is not None else b""

    def value(self, kind: int, what: str, depth: int = 0) -> None:
        if kind in SCALAR_SIZES:
            self.take(SCALAR_SIZES[kind], what)
        elif kind == STRING:
            self.string(what)
        elif kind == ARRAY:
            if depth >= MAX_ARRAY_DEPTH:
                raise self.fail(f"{what}: arrays nested deeper than {MAX_ARRAY_DEPTH}")
            item = self.unpack("I", what + " item type")
            count = self.unpack("Q", what + " length")
            self.items += count
            if self.items > MAX_ARRAY_ITEMS:
                raise self.fail(f"{what}: arrays hold more than {MAX_ARRAY_ITEMS} items in all")
            if item in SCALAR_SIZES:
                self.take(count * SCALAR_SIZES[item], f"{what} ({count} items)")
                return
            # Strings and arrays take at least 8 bytes each: refuse a count the file cannot hold.
            if count * 8 > len(self.data) - self.pos:
                raise self.fail(f"{what}: {count} items cannot fit in the rest of the file")
            for _ in range(count):
                self.value(item, what, depth + 1)
        else:
            raise self.fail(f"{what} has unknown value type {kind}")


def prescan_gguf(path: Path, ggml_sizes: dict[int, tuple[int, int]]) -> None:
    """Checks the whole header of the GGUF at ``path`` against its size. ``ggml_sizes``: ggml tensor
    type id -> (block size, bytes per block), e.g. from gguf.GGML_QUANT_SIZES."""
    try:
        with open(path, "rb") as f:
            size = f.seek(0, 2)
            if size < 24:
                raise FileFormatError(f"{path}: {size} bytes is too short for a GGUF file")
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
                _scan(data, path, ggml_sizes)
    except OSError as exc:
        raise FileIOError(f"cannot read {path}: {exc.strerror or exc}") from exc


def _scan(data, path: Path, ggml_sizes: dict[int, tuple[int, int]]) -> None:
    if bytes(data[:4]) != MAGIC:
        raise FileFormatError(f"{path}: not a GGUF file (bad magic)")
    version = struct.unpack_from("<I", data, 4)[0]
    order = "<"
    if version & 0xFFFF == 0:  # written on a machine of the other byte order, as the package detects
        order, version = ">", struct.unpack_from(">I", data, 4)[0]
    if version not in SUPPORTED_VERSIONS:
        raise FileFormatError(f"{path}: GGUF version {version} is not supported ({SUPPORTED_VERSIONS})")
    c = _Cursor(data, path, order)
    c.pos = 8
    tensor_count = c.unpack("Q", "tensor count")
    kv_count = c.unpack("Q", "key/value count")
    # A key/value takes at least 13 bytes, a tensor description at least 24.
    if kv_count * 13 + tensor_count * 24 > len(data) - c.pos:
        raise c.fail(f"{kv_count} keys and {tensor_count} tensors cannot fit in a {len(data)}-byte file")
    alignment = DEFAULT_ALIGNMENT
    for i in range(kv_count):
        key = c.string(f"key {i}", MAX_KEY_BYTES)
        kind = c.unpack("I", f"type of key {key!r}")
        start = c.pos
        c.value(kind, f"value of key {key!r}")
        if key == b"general.alignment":
            alignment = struct.unpack_from(order + "I", data, start)[0] if kind == UINT32 else 0
            if alignment == 0 or alignment & (alignment - 1):
                raise c.fail("general.alignment must be a power of two stored as uint32")
    tensors = []
    for i in range(tensor_count):
        name = c.string(f"name of tensor {i}", MAX_KEY_BYTES)
        n_dims = c.unpack("I", f"rank of tensor {name!r}")
        if n_dims > MAX_TENSOR_DIMS:
            raise c.fail(f"tensor {name!r} has {n_dims} dimensions (at most {MAX_TENSOR_DIMS})")
        elements = 1
        for _ in range(n_dims):
            elements *= c.unpack("Q", f"dimension of tensor {name!r}")
        kind = c.unpack("I", f"type of tensor {name!r}")
        offset = c.unpack("Q", f"offset of tensor {name!r}")
        if kind not in ggml_sizes:
            raise c.fail(f"tensor {name!r} has unknown ggml type {kind}")
        block, block_bytes = ggml_sizes[kind]
        if elements > MAX_ELEMENTS or elements % block:
            raise c.fail(f"tensor {name!r} has {elements} elements (a multiple of {block}, at most {MAX_ELEMENTS})")
        tensors.append((name, offset, elements // block * block_bytes))
    data_start = -(-c.pos // alignment) * alignment
    for name, offset, nbytes in tensors:
        if offset + nbytes > len(data) - data_start:
            raise FileFormatError(f"{path}: tensor {name!r} ({nbytes} bytes at offset {offset}) runs past the end "
                                  f"of the {len(data)}-byte file")
