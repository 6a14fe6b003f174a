"""GGUF tensors as pyrt Tensors (pyrt.gguf_weights): the types pyrt has the bytes of are views of the
mapped file and decode exactly as the gguf package decodes them; Q4_K -> q4a/32 and the requantized
types stay within their bounds; an unsupported type is one line naming the tensor; the converter
keeps the types by default; the real GGUFs convert within 1.25x (skipped when absent)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

import pyrt
from pyrt.formats import dequantize_reference

gguf = pytest.importorskip("gguf", reason="reading GGUF files needs the 'gguf' package")

from pyrt.gguf_weights import GGUF_FORMATS, SAME_BYTES, load_gguf_tensors, q4_k_to_q4a  # noqa: E402

from helpers import models_dir  # noqa: E402

Q = gguf.GGMLQuantizationType
# Byte offsets of each block's fp16 fields (scales, minima), which random bytes must not make NaN/Inf.
FP16_FIELDS = {"Q8_0": (0,), "Q4_0": (0,), "Q4_1": (0, 2), "Q5_0": (0,), "Q5_1": (0, 2), "Q4_K": (0, 2),
               "Q5_K": (0, 2), "Q6_K": (208,)}


def random_blocks(rng, kind: str, rows: int, cols: int) -> np.ndarray:
    """[rows, bytes per row] of random ggml blocks of `kind` with finite, varied fp16 headers."""
    block, nbytes = gguf.GGML_QUANT_SIZES[Q[kind]]
    n = rows * cols // block
    data = rng.integers(0, 256, (n, nbytes), dtype=np.uint8)
    for off in FP16_FIELDS.get(kind, ()):
        v = (rng.uniform(0.002, 0.05, n) * rng.choice([-1.0, 1.0], n)).astype(np.float16)
        data[:, off:off + 2] = v.view(np.uint8).reshape(n, 2)
    return data.reshape(rows, -1)


def gguf_values(kind: str, data: np.ndarray, rows: int, cols: int) -> np.ndarray:
    return np.asarray(gguf.quants.dequantize(data, Q[kind]), dtype=np.float64).reshape(rows, cols)


def write_gguf(path: Path, tensors: dict[str, tuple[str, np.ndarray, tuple[int, int]]]) -> Path:
    w = gguf.GGUFWriter(str(path), "llama")
    for name, (kind, data, shape) in tensors.items():
        if kind in ("F32", "F16"):
            w.add_tensor(name, data)
        else:
            w.add_tensor(name, data, raw_shape=data.shape, raw_dtype=Q[kind])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


@pytest.fixture(scope="module")
def mixed_gguf(tmp_path_factory):
    """A GGUF with one matrix of every supported type (64 x 512, random blocks) and an F32 vector."""
    rng = np.random.default_rng(17)
    rows, cols = 64, 512
    tensors = {f"blk.0.{kind.lower()}.weight": (kind, random_blocks(rng, kind, rows, cols), (rows, cols))
               for kind in GGUF_FORMATS if kind not in ("F32", "F16", "BF16")}
    tensors["blk.0.f16.weight"] = ("F16", rng.standard_normal((rows, cols)).astype(np.float16), (rows, cols))
    tensors["blk.0.attn_norm.weight"] = ("F32", rng.standard_normal(cols).astype(np.float32), (cols,))
    path = write_gguf(tmp_path_factory.mktemp("gguf") / "mixed.gguf", tensors)
    return path, tensors


def mapped_ranges(path: Path) -> list[tuple[int, int]]:
    """Address ranges at which this process maps `path` (Linux /proc/self/maps)."""
    target = os.path.realpath(path)
    out = []
    with open("/proc/self/maps") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 6 and os.path.realpath(parts[5]) == target:
                lo, hi = (int(v, 16) for v in parts[0].split("-"))
                out.append((lo, hi))
    return out


def test_same_byte_types_decode_exactly_as_the_gguf_package(rng):
    # Q8_0, Q4_0, Q4_1 and Q5_0 blocks read as pyrt's q8, q4, q4a, q5 at block 32: bit-identical values.
    for kind in ("Q8_0", "Q4_0", "Q4_1", "Q5_0"):
        rows, cols = 6, 256
        data = random_blocks(rng, kind, rows, cols)
        t = pyrt.Tensor(data.reshape(-1), SAME_BYTES[kind], (rows, cols), 32)
        want = gguf_values(kind, data, rows, cols)
        np.testing.assert_array_equal(t.dequantize().astype(np.float64), want, err_msg=kind)
        np.testing.assert_array_equal(dequantize_reference(data.reshape(-1), SAME_BYTES[kind], 32, (rows, cols)), want)


def test_q4_k_to_q4a_keeps_the_codes_and_rounds_only_the_scales(rng):
    rows, cols = 8, 1024
    data = random_blocks(rng, "Q4_K", rows, cols)
    t = q4_k_to_q4a(data.reshape(-1), (rows, cols))
    assert (t.dtype, t.block, t.nbytes) == ("q4a", 32, rows * cols // 32 * 20)
    want = gguf_values("Q4_K", data, rows, cols)
    got = t.dequantize().astype(np.float64)
    # Each 32-weight sub-block: d*sc and -dmin*m rounded to FP16 (half an ulp, 2^-11 relative), the
    # 4-bit code (<= 15) unchanged: |error| <= 2^-11 (15 |d sc| + |dmin m|) + FP32 rounding.
    sub = data.reshape(-1, 144)
    d = sub[:, 0:2].copy().view(np.float16).astype(np.float64)
    dmin = sub[:, 2:4].copy().view(np.float16).astype(np.float64)
    bound = 2.0**-11 * (15 * np.abs(d) * 63 + np.abs(dmin) * 63) * 1.01
    err = np.abs(got - want).reshape(-1, 256).max(axis=1)
    assert np.all(err <= bound.ravel())
    assert err.max() > 0  # the scales do round
    rel = np.linalg.norm(got - want) / np.linalg.norm(want)
    # ... which is far below what requantizing the same values to q8/32 loses.
    q8 = pyrt.quantize(want.astype(np.float32), "q8", 32, method="rtn").dequantize()
    assert rel < 0.5 * np.linalg.norm(q8 - want) / np.linalg.norm(want)


def test_mixed_file_maps_same_byte_types_and_converts_the_rest(mixed_gguf):
    path, tensors = mixed_gguf
    got, kv, report = load_gguf_tensors(path)
    assert kv["general.architecture"] == "llama"
    ranges = mapped_ranges(path)
    rows = {r.name: r for r in report.tensors}
    for name, (kind, data, shape) in tensors.items():
        t = got[name]
        row = rows[name]
        if name.endswith("attn_norm.weight"):
            assert (t.dtype, row.how, row.rel_rms) == ("f32", "mapped", 0.0)
            continue
        want = gguf_values(kind, data, *shape) if kind != "F16" else data.astype(np.float64)
        assert (t.dtype, t.block) == (GGUF_FORMATS[kind], 1 if kind == "F16" else 32), name
        if kind in SAME_BYTES:
            # zero copy: the tensor's bytes lie inside this process's mapping of the file
            address = t.numpy().__array_interface__["data"][0]
            assert any(lo <= address and address + t.nbytes <= hi for lo, hi in ranges), name
            assert row.how == "mapped" and row.rel_rms == 0.0
            np.testing.assert_array_equal(t.dequantize().astype(np.float64), want, err_msg=name)
        else:
            assert row.how in ("converted", "requantized") and row.rel_rms is not None
            rel = np.linalg.norm(t.dequantize() - want) / np.linalg.norm(want)
            assert row.rel_rms == pytest.approx(rel, rel=1e-3)
            # q8/32 of random 5/6-bit blocks: <= half a step of absmax/127; q4a of Q4_K: scales only
            assert rel < (1e-2 if t.dtype == "q8" else 2e-3), (name, rel)
    assert report.lines()[-1].startswith(f"{len(tensors)} tensors")


def test_explicit_dtype_requantizes_every_matrix(mixed_gguf):
    path, tensors = mixed_gguf
    got, _, report = load_gguf_tensors(path, dtype="q4", block=64, embedding_dtype="q8", measure=False)
    for name in tensors:
        want = "f32" if name.endswith("norm.weight") else "q4"
        assert got[name].dtype == want, name
    assert all(r.how == "requantized" or r.name.endswith("norm.weight") for r in report.tensors)
    # errors were left for later; measure() fills them in
    assert all(r.rel_rms is not None for r in report.measure().tensors)


def test_unsupported_type_names_the_tensor_in_one_line(tmp_path, rng):
    block, nbytes = gguf.GGML_QUANT_SIZES[Q.IQ2_XXS]
    data = rng.integers(0, 256, (4, 256 // block * nbytes), dtype=np.uint8)
    path = write_gguf(tmp_path / "iq2.gguf", {"blk.3.ffn_up.weight": ("IQ2_XXS", data, (4, 256))})
    with pytest.raises(pyrt.UnsupportedError) as info:
        load_gguf_tensors(path)
    msg = str(info.value)
    assert "\n" not in msg and "'blk.3.ffn_up.weight'" in msg and "IQ2_XXS" in msg
    assert all(kind in msg for kind in ("Q4_K", "Q5_0", "Q5_1", "Q6_K", "Q8_0"))


def test_converter_keeps_gguf_types_by_default(mixed_gguf, tmp_path):
    from pyrt.convert.pipeline import convert_checkpoint

    path, tensors = mixed_gguf
    out = tmp_path / "mixed.pyrt"
    result = convert_checkpoint(path, out, quiet=True, accuracy=False)
    rows = {r["name"]: r for r in result["tensors"]}
    model = pyrt.load(out)
    raw, _, _ = load_gguf_tensors(path, measure=False)
    for name, (kind, _, _) in tensors.items():
        assert rows[name]["format"] == GGUF_FORMATS[kind], name
        assert rows[name]["note"].startswith(f"GGUF {kind}")
        if kind in SAME_BYTES:  # the file holds the GGUF's own bytes
            np.testing.assert_array_equal(model.tensors[name].numpy(), raw[name].numpy())
            assert rows[name]["rel_error"] == 0.0
        else:
            assert 0 < rows[name]["rel_error"] < 1e-2
    # an explicit --dtype still requantizes
    result = convert_checkpoint(path, tmp_path / "q4.pyrt", dtype="q4", quiet=True, accuracy=False,
                                calibration=None)
    assert {r["format"] for r in result["tensors"] if not r["name"].endswith("norm.weight")} == {"q4"}


REAL_GGUFS = ["smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", "gemma3-270m/gemma-3-270m-q4_k_m.gguf",
              "qwen2.5-coder-0.5b/qwen2.5-coder-0.5b-instruct.gguf"]


@pytest.mark.parametrize("rel", REAL_GGUFS)
def test_real_gguf_loads_in_place_within_a_quarter_more_bytes(rel):
    path = models_dir() / rel
    if not path.is_file():
        pytest.skip(f"{rel} not fetched (tools/fetch_models.py)")
    tensors, _, report = load_gguf_tensors(path, measure=False)
    assert report.nbytes <= 1.25 * report.gguf_bytes
    assert report.mapped_bytes >= 0.8 * report.gguf_bytes  # most of every file is used in place
    for row in report.tensors:
        assert row.dtype == ("f32" if row.gguf_type == "F32" else GGUF_FORMATS[row.gguf_type]), row
    # The converted tensors' errors: Q4_K -> q4a ~7e-4, Q6_K -> q8 ~5e-3 (docs/format.md).
    converted = [r for r in report.tensors if r.how != "mapped"][:4]
    report.tensors = [r for r in report.tensors if r.how == "mapped" or r in converted]
    for row in report.measure().tensors:
        if row.how != "mapped":
            assert row.rel_rms < 1e-2, row


@pytest.mark.slow
@pytest.mark.parametrize("rel", REAL_GGUFS)
def test_real_gguf_converts_within_a_quarter_more_bytes(rel, tmp_path):
    from pyrt.convert.pipeline import convert_checkpoint

    path = models_dir() / rel
    if not path.is_file():
        pytest.skip(f"{rel} not fetched (tools/fetch_models.py)")
    out = tmp_path / "m.pyrt"
    result = convert_checkpoint(path, out, quiet=True, accuracy=False, quant_method="rtn")
    ratio = out.stat().st_size / path.stat().st_size
    print(f"{rel}: {out.stat().st_size / 1e6:.1f} MB .pyrt / {path.stat().st_size / 1e6:.1f} MB GGUF = {ratio:.3f}x")
    assert ratio <= 1.25
    assert json.dumps(result["totals"])  # the report carries the per-tensor errors
    assert max(r["rel_error"] for r in result["tensors"]) < 1e-2
