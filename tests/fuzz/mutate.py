"""Mutators: each takes the seed file's bytes and a random.Random and returns a mutant. Flips,
interesting integers written over fields, truncations, splices, and JSON/header value edits."""
from __future__ import annotations

import random
import re
import struct
import zlib

INTERESTING_U64 = (0, 1, 2, 0x7F, 0xFF, 2**15, 2**16 - 1, 2**31 - 1, 2**31, 2**32 - 1, 2**32, 2**40, 2**62,
                   2**63 - 1, 2**63, 2**64 - 1)
# What a careless or hostile writer puts where a JSON value belongs.
HOSTILE_JSON = (b'"x"', b"-1", b"0", b"1e999", b"-1e999", b"NaN", b"null", b"[]", b"{}", b"true", b"[1,2]",
                b"18446744073709551616", b"2147483648", b"4611686018427387904", b'"' + b"A" * 300 + b'"',
                b"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]", b"0.5", b"[0, 1e30]")
JSON_VALUE = re.compile(rb'-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?|"(?:[^"\\]|\\.)*"|true|false|null')


def flip(data: bytes, rng: random.Random) -> bytes:
    b = bytearray(data)
    for _ in range(rng.choice((1, 1, 2, 4, 8))):
        i = rng.randrange(len(b))
        b[i] ^= 1 << rng.randrange(8)
    return bytes(b)


def set_byte(data: bytes, rng: random.Random) -> bytes:
    b = bytearray(data)
    b[rng.randrange(len(b))] = rng.choice((0, 1, 0x7F, 0x80, 0xFF))
    return bytes(b)


def set_integer(data: bytes, rng: random.Random, header_bytes: int = 512) -> bytes:
    """An interesting value over a 4- or 8-byte field, most often in the header."""
    limit = min(len(data), header_bytes) if rng.random() < 0.8 else len(data)
    width = rng.choice((4, 8))
    if limit <= width:
        return flip(data, rng)
    pos = rng.randrange(0, limit - width)
    value = rng.choice(INTERESTING_U64) % (1 << (8 * width))
    return data[:pos] + value.to_bytes(width, "little") + data[pos + width:]


def truncate(data: bytes, rng: random.Random) -> bytes:
    return data[:rng.randrange(len(data))]


def splice(data: bytes, rng: random.Random) -> bytes:
    """Copies, duplicates or deletes a chunk."""
    n = len(data)
    a, length = rng.randrange(n), rng.randint(1, 64)
    chunk = data[a:a + length]
    op = rng.randrange(3)
    b = rng.randrange(n)
    if op == 0:
        return data[:b] + chunk + data[b + len(chunk):]
    if op == 1:
        return data[:b] + chunk + data[b:]
    return data[:a] + data[a + length:]


def json_edit(data: bytes, rng: random.Random) -> bytes:
    """Replaces one JSON-looking value (a number, string, literal) with a hostile one; a safetensors
    header gets its 8-byte length rewritten so the edit reaches the parser."""
    matches = list(JSON_VALUE.finditer(data, 0, min(len(data), 1 << 16)))
    if not matches:
        return flip(data, rng)
    m = rng.choice(matches)
    out = data[:m.start()] + rng.choice(HOSTILE_JSON) + data[m.end():]
    if len(data) > 8 and data[8:9] == b"{":  # safetensors: keep the header length consistent
        (n,) = struct.unpack("<Q", data[:8])
        if m.end() <= 8 + n and 0 <= n + len(out) - len(data) < 1 << 64:  # an earlier mutation may have set n
            out = struct.pack("<Q", n + len(out) - len(data)) + out[8:]
    return out


MUTATORS = (flip, flip, set_byte, set_integer, set_integer, truncate, splice, json_edit, json_edit)


def mutant(data: bytes, rng: random.Random) -> bytes:
    """One to three stacked mutations."""
    for _ in range(rng.choice((1, 1, 2, 3))):
        if not data:
            break
        data = rng.choice(MUTATORS)(data, rng)
    return data


def fix_pyrt_checksums(data: bytes) -> bytes:
    """Recomputes a .pyrt file's table, metadata and header CRCs (docs/format.md: offsets 48-87,
    CRC over bytes 0..123 at 124), so that a mutant reaches the checks behind them."""
    if len(data) < 128:
        return data
    b = bytearray(data)
    table_offset, table_bytes, meta_offset, meta_bytes = struct.unpack_from("<4Q", b, 48)
    if table_offset + table_bytes <= len(b):
        struct.pack_into("<I", b, 80, zlib.crc32(b[table_offset:table_offset + table_bytes]))
    if meta_offset + meta_bytes <= len(b):
        struct.pack_into("<I", b, 84, zlib.crc32(b[meta_offset:meta_offset + meta_bytes]))
    struct.pack_into("<I", b, 124, zlib.crc32(b[:124]))
    return bytes(b)
