"""The .pyrt file: writer -> C++ mmap reader round trips, and every way a file can be wrong raising
its own pyrt error (never a crash). Spec: docs/format.md."""
from __future__ import annotations

import gc
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

import pyrt
from pyrt import _native
from pyrt.convert.writer import ENTRY, ModelWriter, save_model
from pyrt.formats import FORMATS, dequantize_reference, quantize_reference

from helpers import read_layout, reseal, set_entry_field

DATA_DIR = Path(__file__).parent / "data"
SHAPES = [(3, 128), (2, 3, 256), (256,)]
FORMAT_BLOCKS = [(f, b) for f in FORMATS for b in ((32, 64, 128) if FORMATS[f].blocked else (1,))]


def _tensor(rng, shape, fmt, block=32):
    x = rng.standard_normal(shape).astype(np.float32)
    return x, pyrt.quantize(x, fmt, block)


def small_model(path, rng):
    tensors = {
        "w.q8": pyrt.quantize(rng.standard_normal((4, 64)).astype(np.float32), "q8", 32),
        "w.f16": pyrt.quantize(rng.standard_normal((2, 5)).astype(np.float32), "f16"),
        "b": pyrt.quantize(rng.standard_normal(7).astype(np.float32), "f32"),
    }
    save_model(path, tensors, {"config": {"hidden_size": 64}, "note": "ünïcode"}, {"tokenizer.json": b'{"v": 1}'})
    return tensors


@pytest.fixture
def model_bytes(tmp_path, rng):
    path = tmp_path / "m.pyrt"
    small_model(path, rng)
    return path, bytearray(path.read_bytes())


def write(tmp_path, data, name="bad.pyrt"):
    p = tmp_path / name
    p.write_bytes(bytes(data))
    return p


# ---- checksum ---------------------------------------------------------------------------------
def test_crc32_matches_zlib(rng):
    core = _native.require_core()
    blob = rng.integers(0, 256, 5000, dtype=np.uint8).tobytes()
    for start, length in [(0, 0), (0, 1), (1, 7), (3, 8), (5, 9), (7, 64), (1, 4097), (0, 5000)]:
        chunk = blob[start:start + length]
        assert core.crc32(chunk) == zlib.crc32(chunk)
        assert core.crc32(chunk, 0xDEADBEEF) == zlib.crc32(chunk, 0xDEADBEEF)


# ---- round trips --------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt,block", FORMAT_BLOCKS)
def test_round_trip_every_format(tmp_path, rng, fmt, block):
    originals = {f"t{i}": _tensor(rng, shape, fmt, block) for i, shape in enumerate(SHAPES)}
    path = save_model(tmp_path / "m.pyrt", {k: t for k, (_, t) in originals.items()}, {"config": {"k": 1}})
    with pyrt.load(path, verify=True) as model:
        assert set(model.tensors) == set(originals)
        for name, (x, written) in originals.items():
            t = model.tensors[name]
            assert (t.dtype, t.shape, t.block) == (fmt, x.shape, written.block)
            raw = t.numpy()
            assert np.array_equal(raw, written.numpy())
            assert np.array_equal(raw, quantize_reference(x, fmt, block))
            assert raw.ctypes.data % 64 == 0, "tensor data must be 64-byte aligned"
            expected = dequantize_reference(raw, fmt, t.block, x.shape)
            out = t.dequantize()
            assert np.array_equal(out.astype(np.float64), expected)
            if fmt == "f32":
                assert np.array_equal(out, x)


SCALAR = pyrt.Tensor(np.frombuffer(np.float32(3.5).tobytes(), dtype=np.uint8).copy(), "f32", ())


def test_metadata_files_and_report_round_trip(tmp_path, rng):
    report = {"tensors": [{"name": "w", "rel_error": 0.5}], "totals": {"tensors": 1}}
    meta = {"config": {"model_type": "bert", "hidden_size": 8}, "report": report, "provenance": {"converter": "x"},
            "architecture": "BertModel"}
    files = {"tokenizer.json": b"\x00\xff binary ok", "1_Pooling/config.json": b"{}", "empty.txt": b""}
    w = pyrt.quantize(rng.standard_normal((2, 32)).astype(np.float32), "q4a")
    path = save_model(tmp_path / "m.pyrt", {"w": w, "scalar": SCALAR}, meta, files)
    with pyrt.load(path) as model:
        assert model.config == meta["config"]
        assert model.metadata == meta
        assert model.report == report["tensors"]
        assert model.files == files
        assert model.path == path
        assert model.format_version == (1, 0)
        assert model.tensors["scalar"].shape == ()
        assert model.tensors["scalar"].dequantize() == np.float32(3.5)
        model.verify()
        assert "1 files" not in repr(model) and "2 tensors" in repr(model)


def test_tensors_are_zero_copy_read_only_and_outlive_close(tmp_path, rng):
    path = tmp_path / "m.pyrt"
    written = small_model(path, rng)
    model = pyrt.load(path)
    t = model.tensors["w.q8"]
    raw = t.numpy()
    assert not raw.flags.writeable and not raw.flags.owndata
    with pytest.raises(ValueError):
        raw[0] = 1
    # Two reads see the same memory: the mapping, not copies.
    assert np.shares_memory(model.tensors["w.q8"].numpy(), raw)
    model.close()
    assert model.closed and model.tensors == {}
    del model
    gc.collect()
    # The tensor keeps the mapping alive after close.
    assert np.array_equal(t.dequantize(), written["w.q8"].dequantize())
    with pyrt.load(path) as m2:
        pass
    with pytest.raises(pyrt.FileIOError):
        m2.verify()


def test_writer_refuses_duplicates_and_cleans_up(tmp_path, rng):
    t = pyrt.quantize(rng.standard_normal(4).astype(np.float32), "f32")
    with pytest.raises(pyrt.FileFormatError, match="duplicate"):
        with ModelWriter(tmp_path / "d.pyrt") as w:
            w.add_tensor("a", t)
            w.add_tensor("a", t)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(RuntimeError):
        with ModelWriter(tmp_path / "e.pyrt") as w:
            w.add_tensor("a", t)
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_newer_minor_version_and_unknown_entry_kinds_still_load(model_bytes, tmp_path):
    path, data = model_bytes
    h, entries = read_layout(bytes(data))
    set_entry_field(data, entries[-1], "kind", 7)  # the carried file becomes a kind from the future
    p = write(tmp_path, reseal(data, minor=9))
    with pyrt.load(p, verify=True) as model:
        assert model.format_version == (1, 9)
        assert model.files == {} and len(model.tensors) == 3


def test_old_v1_fixture_still_loads():
    """tests/formats/data/v1_tiny.pyrt was written by the v1.0 writer (make_v1_fixture below); readers must
    keep loading it."""
    path = DATA_DIR / "v1_tiny.pyrt"
    with pyrt.load(path, verify=True) as model:
        assert model.format_version == (1, 0)
        expected = v1_fixture_content()
        assert set(model.tensors) == set(expected["tensors"])
        for name, (x, fmt, block) in expected["tensors"].items():
            t = model.tensors[name]
            assert (t.dtype, t.block, t.shape) == (fmt, block, x.shape)
            # the v1.0 writer quantized by round to nearest (before the searched scales)
            assert np.array_equal(t.numpy(), quantize_reference(x, fmt, block, method="rtn"))
        assert model.files == expected["files"]
        assert model.config == expected["metadata"]["config"]


def v1_fixture_content():
    rng = np.random.default_rng(20240601)
    tensors = {}
    for fmt, block in [("f32", 1), ("f16", 1), ("bf16", 1), ("q8", 32), ("q4", 64), ("q4a", 32)]:
        tensors[f"layer.{fmt}.weight"] = (rng.standard_normal((2, 64)).astype(np.float32), fmt, block)
    return {"tensors": tensors, "files": {"tokenizer.json": b'{"model": "tiny"}'},
            "metadata": {"config": {"model_type": "tiny", "hidden_size": 64}, "architecture": "Tiny"}}


def make_v1_fixture(path):  # pragma: no cover - run by hand once, when the fixture was created
    c = v1_fixture_content()
    tensors = {name: pyrt.quantize(x, fmt, block if block > 1 else 32, method="rtn")
               for name, (x, fmt, block) in c["tensors"].items()}
    save_model(path, tensors, c["metadata"], c["files"])


# ---- broken files -------------------------------------------------------------------------------
def test_truncated_anywhere_raises_truncated(model_bytes, tmp_path):
    path, data = model_bytes
    cuts = sorted(set(list(range(0, 140)) + list(range(140, len(data), 37)) + [len(data) - 1]))
    for cut in cuts:
        with pytest.raises(pyrt.TruncatedFileError):
            pyrt.load(write(tmp_path, data[:cut]))


def test_wrong_magic_and_foreign_files(model_bytes, tmp_path):
    _, data = model_bytes
    bad = bytearray(data)
    bad[1:5] = b"GGUF"
    for blob in (bad, b"hello, this is a text file and not a model at all" * 4, b"\x00" * 200, b"P"):
        with pytest.raises(pyrt.FileFormatError) as info:
            pyrt.load(write(tmp_path, blob))
        assert type(info.value) is pyrt.FileFormatError


def test_big_endian_marker_and_trailing_bytes(model_bytes, tmp_path):
    _, data = model_bytes
    with pytest.raises(pyrt.FileFormatError, match="byte-order"):
        pyrt.load(write(tmp_path, reseal(bytearray(data), bom=0x04030201)))
    with pytest.raises(pyrt.FileFormatError, match="unexpected bytes"):
        pyrt.load(write(tmp_path, data + b"\x00" * 64))


def test_future_major_version_and_features_raise_version_error(model_bytes, tmp_path):
    _, data = model_bytes
    future = bytearray(data)
    struct.pack_into("<H", future, 12, 2)  # major 2: the header may be laid out differently, no reseal
    with pytest.raises(pyrt.VersionError, match="newer"):
        pyrt.load(write(tmp_path, future))
    with pytest.raises(pyrt.VersionError, match="features"):
        pyrt.load(write(tmp_path, reseal(bytearray(data), features=1 << 5)))
    unknown_format = bytearray(data)
    _, entries = read_layout(bytes(data))
    set_entry_field(unknown_format, entries[0], "format", 42)
    with pytest.raises(pyrt.VersionError, match="format id 42"):
        pyrt.load(write(tmp_path, reseal(unknown_format)))


@pytest.mark.parametrize("offset", ["beyond", "huge", "unaligned", "into_header", "wraps"])
def test_bad_offsets_raise_format_error(model_bytes, tmp_path, offset):
    _, data = model_bytes
    _, entries = read_layout(bytes(data))
    e = entries[0]
    value = {"beyond": len(data) + 64 * 10, "huge": (1 << 64) - 64, "unaligned": e["offset"] + 8,
             "into_header": 64, "wraps": (1 << 64) - 64}[offset]
    set_entry_field(data, e, "offset", value)
    if offset == "wraps":
        set_entry_field(data, e, "size", 1 << 63)
    with pytest.raises(pyrt.FileFormatError) as info:
        pyrt.load(write(tmp_path, reseal(data)))
    assert type(info.value) is pyrt.FileFormatError


def test_overlapping_tensors_raise_format_error(model_bytes, tmp_path):
    _, data = model_bytes
    _, entries = read_layout(bytes(data))
    set_entry_field(data, entries[1], "offset", entries[0]["offset"])  # both start at the same place
    with pytest.raises(pyrt.FileFormatError, match="overlaps"):
        pyrt.load(write(tmp_path, reseal(data)))


def test_table_or_metadata_outside_the_file(model_bytes, tmp_path):
    _, data = model_bytes
    h, _ = read_layout(bytes(data))
    with pytest.raises(pyrt.FileFormatError, match="table"):
        pyrt.load(write(tmp_path, reseal(bytearray(data), table_bytes=len(data))))
    with pytest.raises(pyrt.FileFormatError, match="metadata"):
        pyrt.load(write(tmp_path, reseal(bytearray(data), metadata_offset=(1 << 64) - 1)))
    with pytest.raises(pyrt.FileFormatError, match="entry count"):
        pyrt.load(write(tmp_path, reseal(bytearray(data), entry_count=1 << 60)))


@pytest.mark.parametrize("change", ["size", "ndim", "dim_overflow", "block", "duplicate_name"])
def test_bad_shapes_and_entries_raise_format_error(model_bytes, tmp_path, change):
    _, data = model_bytes
    _, entries = read_layout(bytes(data))
    e = entries[0]  # "w.q8": q8 [4, 64] block 32
    if change == "size":
        set_entry_field(data, e, "size", e["size"] + 1)
    elif change == "ndim":
        set_entry_field(data, e, "ndim", 9)
    elif change == "dim_overflow":
        struct.pack_into("<QQ", data, e["pos"] + ENTRY.size, 1 << 40, 1 << 40)
    elif change == "block":
        set_entry_field(data, e, "block", 48)
    else:
        second = entries[1]  # "w.f16" renamed "w.q8": the name field shrinks by one byte
        name_at = second["pos"] + ENTRY.size + 8 * second["ndim"]
        struct.pack_into("<I", data, second["pos"] + 12, 4)
        data[name_at:name_at + 4] = b"w.q8"
    with pytest.raises(pyrt.FileFormatError) as info:
        pyrt.load(write(tmp_path, reseal(data)))
    assert type(info.value) is pyrt.FileFormatError


def test_invalid_metadata_json(tmp_path, model_bytes):
    _, data = model_bytes
    h, _ = read_layout(bytes(data))
    m0 = h["metadata_offset"]
    data[m0] = ord("[")
    with pytest.raises(pyrt.FileFormatError, match="JSON"):
        pyrt.load(write(tmp_path, reseal(data)))


def test_checksum_mismatch(model_bytes, tmp_path):
    _, data = model_bytes
    h, entries = read_layout(bytes(data))
    corrupt = bytearray(data)
    corrupt[entries[0]["offset"] + 5] ^= 0x01  # one bit in a tensor
    p = write(tmp_path, corrupt)
    with pyrt.load(p) as model:  # structure intact: loads without verify
        with pytest.raises(pyrt.ChecksumError, match="w.q8"):
            model.verify()
    with pytest.raises(pyrt.ChecksumError, match="w.q8"):
        pyrt.load(p, verify=True)
    for where in (h["metadata_offset"] + 2, h["table_offset"] + 20, 40):  # metadata, table, header
        corrupt = bytearray(data)
        corrupt[where] ^= 0x10
        with pytest.raises(pyrt.ChecksumError):
            pyrt.load(write(tmp_path, corrupt))


def test_os_errors_are_file_io_errors(tmp_path):
    with pytest.raises(pyrt.FileIOError):
        pyrt.load(tmp_path / "missing.pyrt")
    with pytest.raises(pyrt.FileIOError):
        pyrt.load(tmp_path)
    with pytest.raises(pyrt.TruncatedFileError):
        pyrt.load(write(tmp_path, b""))


def test_larger_alignment_and_metadata_shape_checks(tmp_path, rng):
    t = pyrt.quantize(rng.standard_normal((2, 64)).astype(np.float32), "q4", 32)
    with ModelWriter(tmp_path / "a.pyrt", alignment=4096) as w:
        w.add_tensor("x", t)
        w.add_tensor("y", t)
        w.commit({"config": {}})
    with pyrt.load(tmp_path / "a.pyrt", verify=True) as model:
        for tensor in model.tensors.values():
            assert tensor.numpy().ctypes.data % 4096 == 0
            assert np.array_equal(tensor.numpy(), t.numpy())
    for meta in ({"config": [1]}, {"report": {"tensors": 5}}, {"provenance": "x"}):
        save_model(tmp_path / "b.pyrt", {"x": t}, meta)
        with pytest.raises(pyrt.FileFormatError, match="metadata"):
            pyrt.load(tmp_path / "b.pyrt")
    save_model(tmp_path / "c.pyrt", {"x": t}, {})
    with pyrt.load(tmp_path / "c.pyrt") as model:  # a bare file: empty config, no report
        assert model.config == {} and model.report == [] and model.files == {}
