"""Bounded fuzzing of the .pyrt reader (~20 s): mutated files must load cleanly or raise a pyrt
error; never crash, hang or read outside the mapping. Two kinds of mutation: raw bytes (mostly
caught by the CRCs), and field edits with the CRCs recomputed, which reach the bounds checks."""
from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pyrt
from pyrt.convert.writer import ENTRY, save_model

from helpers import read_layout, reseal

SETTINGS = settings(max_examples=1000, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


def _base_model(path) -> bytes:
    rng = np.random.default_rng(7)
    tensors = {
        "a.q4": pyrt.quantize(rng.standard_normal((3, 64)).astype(np.float32), "q4", 32),
        "b.q4a": pyrt.quantize(rng.standard_normal((2, 128)).astype(np.float32), "q4a", 64),
        "c.bf16": pyrt.quantize(rng.standard_normal((5,)).astype(np.float32), "bf16"),
    }
    save_model(path, tensors, {"config": {"n": 1}, "report": {"tensors": []}}, {"vocab.txt": b"a\nb\n"})
    return path.read_bytes()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    d = tmp_path_factory.mktemp("fuzz")
    return d, _base_model(d / "base.pyrt")


def exercise(path) -> None:
    """Loads and uses everything; only pyrt errors may come out."""
    try:
        model = pyrt.load(path)
    except pyrt.PyrtError:
        return
    with model:
        for t in model.tensors.values():
            values = t.dequantize()  # reads every byte the tensor claims
            assert values.size == int(np.prod(t.shape))
        assert all(isinstance(v, bytes) for v in model.files.values())
        try:
            model.verify()
        except pyrt.ChecksumError:
            pass


BYTE_EDITS = st.lists(st.tuples(st.integers(0, 1 << 20), st.integers(0, 255)), min_size=1, max_size=6)


@SETTINGS
@given(edits=BYTE_EDITS, cut=st.one_of(st.none(), st.integers(0, 1 << 20)), extra=st.binary(max_size=70))
def test_random_byte_mutations(workdir, edits, cut, extra):
    d, base = workdir
    data = bytearray(base)
    for pos, value in edits:
        data[pos % len(data)] = value
    if cut is not None:
        data = data[:cut % (len(data) + 1)]
    data += extra
    path = d / "mutated.pyrt"
    path.write_bytes(bytes(data))
    exercise(path)


INTERESTING = [0, 1, 7, 8, 31, 32, 63, 64, 127, 128, 129, 255, 256, 4096, (1 << 31) - 1, 1 << 31,
               (1 << 32) - 1, 1 << 32, (1 << 62), (1 << 63) - 1, 1 << 63, (1 << 64) - 64, (1 << 64) - 1]
VALUES = st.one_of(st.sampled_from(INTERESTING), st.integers(0, (1 << 64) - 1), st.integers(0, 4096))
HEADER_FIELDS = ["file_size", "entry_count", "table_offset", "table_bytes", "metadata_offset", "metadata_bytes",
                 "alignment", "minor"]
# entry field -> (byte offset in the entry, struct format)
ENTRY_FIELDS = {"entry_bytes": (0, "<I"), "kind": (4, "<B"), "format": (5, "<B"), "ndim": (6, "<B"),
                "block": (8, "<I"), "name_bytes": (12, "<I"), "offset": (16, "<Q"), "size": (24, "<Q"),
                "dim0": (ENTRY.size, "<Q"), "dim1": (ENTRY.size + 8, "<Q")}
WIDTH = {"<B": 0xFF, "<I": 0xFFFFFFFF, "<Q": (1 << 64) - 1, "<H": 0xFFFF}


@SETTINGS
@given(edits=st.lists(st.tuples(st.sampled_from(HEADER_FIELDS + list(ENTRY_FIELDS)), st.integers(0, 3), VALUES),
                      min_size=1, max_size=3))
def test_field_mutations_with_valid_checksums(workdir, edits):
    d, base = workdir
    data = bytearray(base)
    header, entries = read_layout(base)
    header_changes = {}
    for field, index, value in edits:
        if field in HEADER_FIELDS:
            width = 0xFFFF if field == "minor" else 0xFFFFFFFF if field == "alignment" else WIDTH["<Q"]
            header_changes[field] = value & width
        else:
            entry = entries[index % len(entries)]
            at, fmt = ENTRY_FIELDS[field]
            struct.pack_into(fmt, data, entry["pos"] + at, value & WIDTH[fmt])
    path = d / "resealed.pyrt"
    path.write_bytes(bytes(reseal(data, **header_changes)))
    exercise(path)
