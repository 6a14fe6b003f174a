"""pyrt's own bounded reader of a GGUF file's header (key/values and tensor descriptions).

The `gguf` package trusts the counts and lengths it reads: an array that declares 2^40 items at the
end of a 1 KB file makes it loop (each read past the end yields an empty view) and allocate per item
until memory runs out, and even a valid array costs it a numpy view per item (minutes and gigabytes
for a few million items). This reader checks every read against the file's size (an item takes at
least one byte, so no loop runs longer than the file is long), decodes arrays of numbers in one numpy
call, caps the total number of array items, and refuses what the rest of pyrt cannot use (unknown
value or tensor types, deep nesting, an alignment that is not a power of two, tensor data past the
end). The `gguf` package is then used only to dequantize tensor data. docs/hostile-input.md gives the
bounds and the measured cost."""
from __future__ import annotations

import math
import mmap
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import FileFormatError, FileIOError

MAGIC = b"GGUF"
SUPPORTED_VERSIONS = (2, 3)
# Array items over all keys: real vocabularies hold < 1.5M (Gemma 3: 262K tokens, scores and types
# plus its merges; Llama 3: 128K tokens and types, 280K merges).
MAX_ARRAY_ITEMS = 1 << 21
MAX_ARRAY_DEPTH = 2        # an array of arrays at most
MAX_KEY_BYTES = 1 << 16
MAX_TENSOR_DIMS = 8        # ggml uses 4
MAX_ELEMENTS = 1 << 60
DEFAULT_ALIGNMENT = 32

# GGUF value types: scalars (struct code), 8 string, 9 array.
SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
STRING, ARRAY, UINT32 = 8, 9, 4


@dataclass(frozen=True)
class TensorInfo:
    name: str
    type_id: int
    dims: tuple[int, ...]   # ggml order: fastest-varying first
    offset: int             # absolute, in the file
    n_bytes: int
    n_elements: int


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

    def unpack(self, code: str, what: str) -> Any:
        start = self.take(struct.calcsize(code), what)
        return struct.unpack_from(self.order + code, self.data, start)[0]

    def raw_string(self, what: str, limit: int | None = None) -> bytes:
        n = self.unpack("Q", what + " length")
        if limit is not None and n > limit:
            raise self.fail(f"{what} of {n} bytes exceeds {limit}")
        start = self.take(n, what)
        return bytes(self.data[start:start + n])

    def name(self, what: str) -> str:
        try:
            return self.raw_string(what, MAX_KEY_BYTES).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise self.fail(f"{what} is not UTF-8") from exc

    def strings(self, count: int, what: str) -> list[str]:
        """An array of strings (a vocabulary: up to a million items), in one tight loop."""
        data, pos, end = self.data, self.pos, len(self.data)
        length = struct.Struct(self.order + "Q").unpack_from
        out = []
        for i in range(count):
            if pos + 8 > end or length(data, pos)[0] > end - pos - 8:
                self.pos = pos
                raise self.fail(f"{what}: item {i} runs past the end of the {end}-byte file")
            n = length(data, pos)[0]
            out.append(data[pos + 8:pos + 8 + n].decode("utf-8", errors="replace"))
            pos += 8 + n
        self.pos = pos
        return out

    def value(self, kind: int, what: str, depth: int = 0) -> Any:
        if kind in SCALARS:
            return self.unpack(SCALARS[kind], what)
        if kind == STRING:
            return self.raw_string(what).decode("utf-8", errors="replace")
        if kind != ARRAY:
            raise self.fail(f"{what} has unknown value type {kind}")
        if depth >= MAX_ARRAY_DEPTH:
            raise self.fail(f"{what}: arrays nested deeper than {MAX_ARRAY_DEPTH}")
        item = self.unpack("I", what + " item type")
        count = self.unpack("Q", what + " length")
        self.items += count
        if self.items > MAX_ARRAY_ITEMS:
            raise self.fail(f"{what}: arrays hold more than {MAX_ARRAY_ITEMS} items in all")
        if item in SCALARS:
            size = struct.calcsize(SCALARS[item])
            start = self.take(count * size, f"{what} ({count} items)")
            dtype = np.dtype(SCALARS[item]).newbyteorder(self.order)
            return np.frombuffer(self.data, dtype, count, start).tolist()
        # Strings and arrays take at least 8 bytes each: refuse a count the file cannot hold.
        if count * 8 > len(self.data) - self.pos:
            raise self.fail(f"{what}: {count} items cannot fit in the rest of the file")
        if item == STRING:
            return self.strings(count, what)
        values = [self.value(item, what, depth + 1) for _ in range(count)]
        if item == ARRAY:  # flattened, as the gguf package returns nested arrays
            values = [v for sub in values for v in sub]
        return values


def read_header(path: Path, ggml_sizes: dict[int, tuple[int, int]]) -> tuple[dict[str, Any], list[TensorInfo]]:
    """(key/values as plain Python, tensor descriptions) of the GGUF at ``path``, every size checked
    against the file. ``ggml_sizes``: ggml type id -> (block size, bytes per block). Floats that are
    NaN/Inf become None (JSON has neither)."""
    try:
        with open(path, "rb") as f:
            size = f.seek(0, 2)
            if size < 24:
                raise FileFormatError(f"{path}: {size} bytes is too short for a GGUF file")
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
                return _parse(data, path, ggml_sizes)
    except OSError as exc:
        raise FileIOError(f"cannot read {path}: {exc.strerror or exc}") from exc


def byte_order(path: Path) -> str:
    """'<' or '>': the byte order the file was written in (as the gguf package detects it)."""
    with open(path, "rb") as f:
        head = f.read(8)
    return ">" if len(head) == 8 and struct.unpack_from("<I", head, 4)[0] & 0xFFFF == 0 else "<"


def _parse(data, path: Path, ggml_sizes: dict[int, tuple[int, int]]) -> tuple[dict[str, Any], list[TensorInfo]]:
    if bytes(data[:4]) != MAGIC:
        raise FileFormatError(f"{path}: not a GGUF file (bad magic)")
    order = "<"
    version = struct.unpack_from("<I", data, 4)[0]
    if version & 0xFFFF == 0:  # written on a machine of the other byte order
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
    kv: dict[str, Any] = {}
    alignment = DEFAULT_ALIGNMENT
    for i in range(kv_count):
        key = c.name(f"key {i}")
        kind = c.unpack("I", f"type of key {key!r}")
        value = c.value(kind, f"value of key {key!r}")
        if key in kv:
            raise c.fail(f"key {key!r} appears twice")
        if key == "general.alignment":
            if kind != UINT32 or value == 0 or value & (value - 1):
                raise c.fail("general.alignment must be a power of two stored as uint32")
            alignment = value
        kv[key] = None if isinstance(value, float) and not math.isfinite(value) else value
    infos = []
    for i in range(tensor_count):
        name = c.name(f"name of tensor {i}")
        n_dims = c.unpack("I", f"rank of tensor {name!r}")
        if n_dims > MAX_TENSOR_DIMS:
            raise c.fail(f"tensor {name!r} has {n_dims} dimensions (at most {MAX_TENSOR_DIMS})")
        dims = tuple(c.unpack("Q", f"dimension of tensor {name!r}") for _ in range(n_dims))
        kind = c.unpack("I", f"type of tensor {name!r}")
        offset = c.unpack("Q", f"offset of tensor {name!r}")
        if kind not in ggml_sizes:
            raise c.fail(f"tensor {name!r} has unknown ggml type {kind}")
        block, block_bytes = ggml_sizes[kind]
        elements = math.prod(dims)
        if elements > MAX_ELEMENTS or elements % block or (dims and dims[0] % block):
            raise c.fail(f"tensor {name!r} has dimensions {dims}: rows must be whole blocks of {block} "
                         f"and at most {MAX_ELEMENTS} elements")
        infos.append((name, kind, dims, offset, elements // block * block_bytes, elements))
    data_start = -(-c.pos // alignment) * alignment
    tensors, names = [], set()
    for name, kind, dims, offset, n_bytes, elements in infos:
        if name in names:
            raise FileFormatError(f"{path}: tensor {name!r} appears twice")
        names.add(name)
        if offset + n_bytes > len(data) - data_start:
            raise FileFormatError(f"{path}: tensor {name!r} ({n_bytes} bytes at offset {offset}) runs past the end "
                                  f"of the {len(data)}-byte file")
        tensors.append(TensorInfo(name, kind, dims, data_start + offset, n_bytes, elements))
    return kv, tensors
