"""Hostile and careless inputs (issue 21): every case ends in a pyrt.PyrtError, within a time and
memory bound, never in a crash, a hang or a foreign exception. The tiny files are generated here."""
from __future__ import annotations

import json
import math
import struct
import textwrap

import numpy as np
import pytest

import pyrt
from fuzz import seeds
from helpers import run_python
from pyrt.errors import ConfigError


def _run_isolated(code: str, timeout: float = 120) -> tuple[int, str]:
    """Runs ``code`` in a fresh interpreter (a crash there fails this test instead of killing pytest);
    the code prints a result line; returns (exit status, stdout + stderr)."""
    r = run_python("-c", textwrap.dedent(code), timeout=timeout)
    return r.returncode, r.stdout + r.stderr


# ---- 1. sizes: a context length whose KV cache would wrap ------------------------------------------
def test_huge_context_without_trained_length_is_a_range_error(tmp_path):
    path = seeds.write_llama_pyrt(tmp_path / "no_context.pyrt", context_length=None)
    status, out = _run_isolated(f"""
        import pyrt
        try:
            pyrt.LanguageModel({str(path)!r}, context_length=2**57)
        except pyrt.RangeError as exc:
            print("RangeError", exc)
    """)
    assert status == 0, out  # was exit 139 (SIGSEGV): the cache size wrapped to 0
    assert "RangeError" in out and "context_length" in out


def test_native_decoder_checks_sizes_itself(tmp_path):
    """The C++ check holds without the Python one: LlamaDecoder with max_context 2^57 or a layer
    count whose cache overflows int64 raises RangeError; 2^20 tokens (the documented maximum) builds."""
    path = seeds.write_llama_pyrt(tmp_path / "m.pyrt", context_length=None)
    status, out = _run_isolated(f"""
        import pyrt
        from pyrt._native import require_core
        from pyrt.model_weights import native_weights
        model = pyrt.LanguageModel({str(path)!r}, context_length=16)
        for key, value in (("max_context", 2**57), ("max_context", 2**20 + 1), ("n_layers", 2**62), ("vocab", 2**61)):
            try:
                require_core().LlamaDecoder({{**model.config, key: value}}, native_weights(model._tensors))
                print("built", key)
            except pyrt.RangeError as exc:
                print("RangeError", key, exc)
    """)
    assert status == 0, out
    assert out.count("RangeError") == 4, out


def test_documented_maximum_context_builds(tmp_path):
    path = seeds.write_llama_pyrt(tmp_path / "m.pyrt", context_length=None)
    model = pyrt.LanguageModel(path, context_length=1 << 20)  # 1 layer x 8 x 2^20 x 2 bytes: 16 MiB per cache
    assert model.context_length == 1 << 20
    with pytest.raises(pyrt.RangeError, match="context_length"):
        pyrt.LanguageModel(path, context_length=(1 << 20) + 1)
    for bad in (0, -1, 2.5, "64", True, None):
        with pytest.raises(pyrt.RangeError, match="context_length"):
            pyrt.LanguageModel(path, context_length=bad)


# ---- 2. configuration values of the wrong type or range -----------------------------------------
LLAMA_BAD_VALUES = [
    ("llama.embedding_length", "16"), ("llama.block_count", math.inf), ("llama.block_count", None),
    ("llama.block_count", 2**64), ("llama.attention.layer_norm_rms_epsilon", [1e-5]),
    ("llama.attention.layer_norm_rms_epsilon", -1.0), ("llama.attention.head_count", 0),
    ("llama.attention.head_count", 3), ("llama.attention.head_count_kv", 0), ("llama.feed_forward_length", -5),
    ("llama.context_length", "many"), ("llama.rope.freq_base", math.nan),
]


@pytest.fixture(scope="module")
def llama_parts():
    tensors = {name: pyrt.quantize(a, "f32") for name, a in seeds.llama_arrays(1).items()}
    tok = {f"tokenizer.ggml.{k}": v for k, v in seeds.tokenizer_metadata().items()}
    return tensors, {**seeds.llama_metadata(), **tok}


@pytest.mark.parametrize("key,value", LLAMA_BAD_VALUES, ids=[f"{k}={v!r}" for k, v in LLAMA_BAD_VALUES])
def test_llama_config_values_are_checked(llama_parts, key, value):
    tensors, md = llama_parts
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        pyrt.LanguageModel.from_parts(tensors, {**md, key: value}, md, context_length=16)


@pytest.mark.parametrize("key,value", [("tokenizer.ggml.eos_token_id", 2**31), ("tokenizer.ggml.bos_token_id", -1),
                                       ("tokenizer.ggml.tokens", ["a", 5]), ("tokenizer.ggml.merges", "a b"),
                                       ("tokenizer.ggml.token_type", [1.5]), ("tokenizer.chat_template", 5)])
def test_tokenizer_metadata_is_checked(llama_parts, key, value):
    tensors, md = llama_parts
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        pyrt.LanguageModel.from_parts(tensors, md, {**md, key: value}, context_length=16)


@pytest.mark.parametrize("edit", [{"gguf": [1, 2]}, {"tokenizer": [1]}, {"config": "llama"}])
def test_converted_llama_metadata_sections_are_checked(tmp_path, edit):
    from pyrt.convert.writer import save_model

    tensors = {name: pyrt.quantize(a, "f32") for name, a in seeds.llama_arrays(2).items()}
    metadata = {"architecture": "llama", "gguf": seeds.llama_metadata(), "tokenizer": seeds.tokenizer_metadata(), **edit}
    path = save_model(tmp_path / "m.pyrt", tensors, metadata)
    with pytest.raises(pyrt.FileFormatError, match=list(edit)[0]):
        pyrt.LanguageModel(path, context_length=16)


def test_valid_llama_parts_still_generate(llama_parts):
    tensors, md = llama_parts
    model = pyrt.LanguageModel.from_parts(tensors, md, md, context_length=16)
    assert isinstance(model.generate("abc", max_new_tokens=3), str)


BERT_BAD_VALUES = [("hidden_size", "16"), ("num_hidden_layers", math.inf), ("vocab_size", None),
                   ("vocab_size", 2**64), ("layer_norm_eps", [1e-12]), ("num_attention_heads", 0),
                   ("num_attention_heads", 3), ("max_position_embeddings", -1), ("intermediate_size", 1.5)]


@pytest.mark.parametrize("key,value", BERT_BAD_VALUES, ids=[f"{k}={v!r}" for k, v in BERT_BAD_VALUES])
def test_bert_config_values_are_checked(key, value):
    tensors = {n: pyrt.quantize(a, "f32") for n, a in seeds.bert_arrays().items()}
    with pytest.raises(ConfigError, match=key):
        pyrt.SentenceEncoder.from_parts(tensors, {**seeds.bert_config(), key: value}, seeds.bert_files())


@pytest.mark.parametrize("name,content", [
    ("modules.json", "[" * 100_000 + "]" * 100_000),  # RecursionError in json
    ("modules.json", json.dumps([{"type": ["Pooling"]}])),
    ("sentence_bert_config.json", json.dumps({"max_seq_length": -3})),
    ("tokenizer_config.json", json.dumps({"model_max_length": "long"})),
    ("1_Pooling/config.json", "[[[[[]]]]]"),
])
def test_bert_carried_files_are_checked(name, content):
    tensors = {n: pyrt.quantize(a, "f32") for n, a in seeds.bert_arrays().items()}
    with pytest.raises(pyrt.FileFormatError):
        pyrt.SentenceEncoder.from_parts(tensors, seeds.bert_config(), {**seeds.bert_files(), name: content.encode()})


def test_tokenizer_panic_is_a_file_format_error():
    """A tokenizer.json whose template names a special token it does not define: tokenizers panics
    (pyo3_runtime.PanicException, a BaseException) at encode time."""
    template = {"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}},
                                                         {"Sequence": {"id": "A", "type_id": 0}}],
                "pair": [{"Sequence": {"id": "A", "type_id": 0}}], "special_tokens": {}}
    tensors = {n: pyrt.quantize(a, "f32") for n, a in seeds.bert_arrays().items()}
    files = {**seeds.bert_files(), "tokenizer.json": seeds.bert_tokenizer_json(template).encode()}
    encoder = pyrt.SentenceEncoder.from_parts(tensors, seeds.bert_config(), files)
    with pytest.raises(pyrt.FileFormatError, match="panicked"):
        encoder.encode(["hello world"])
    good = pyrt.SentenceEncoder.from_parts(tensors, seeds.bert_config(), seeds.bert_files())
    assert np.isfinite(good.encode(["hello world"])).all()


def test_guard_passes_interrupts_through():
    from pyrt.tokenizer_guard import GuardedTokenizer

    class Inner:
        def boom(self):
            raise KeyboardInterrupt

        def fails(self):
            raise TypeError("bad")
    with pytest.raises(KeyboardInterrupt):
        GuardedTokenizer(Inner()).boom()
    with pytest.raises(pyrt.FileFormatError, match="TypeError: bad"):
        GuardedTokenizer(Inner()).fails()


def test_zero_element_tensor_with_huge_dimensions_is_refused(tmp_path):
    from pyrt.convert.writer import save_model

    t = pyrt.Tensor(np.zeros(0, np.uint8), "f32", (2**62, 0, 2**62))
    path = save_model(tmp_path / "zero.pyrt", {"z": t}, {"config": {}})
    with pytest.raises(pyrt.FileFormatError, match="'z'"):
        pyrt.load(path)
    ok = save_model(tmp_path / "ok.pyrt", {"z": pyrt.Tensor(np.zeros(0, np.uint8), "f32", (3, 0, 5))}, {"config": {}})
    assert pyrt.load(ok).tensors["z"].shape == (3, 0, 5)


# ---- 3. GGUF: bounded before the gguf package parses ---------------------------------------------
def _hostile_ggufs() -> dict[str, bytes]:
    head = b"GGUF" + struct.pack("<I", 3)
    key = struct.pack("<Q", 4) + b"toks"
    return {
        # 1 KB declaring an array of 2^40 strings / 2^40 uint8 / nested arrays
        "string_array": head + struct.pack("<QQ", 0, 1) + key + struct.pack("<IIQ", 9, 8, 2**40) + b"\0" * 960,
        "scalar_array": head + struct.pack("<QQ", 0, 1) + key + struct.pack("<IIQ", 9, 0, 2**40) + b"\0" * 960,
        "nested_arrays": head + struct.pack("<QQ", 0, 1) + key + struct.pack("<IIQ", 9, 9, 2**40) + b"\0" * 960,
        "many_keys": head + struct.pack("<QQ", 0, 2**60) + b"\0" * 1000,
        "many_tensors": head + struct.pack("<QQ", 2**50, 0) + b"\0" * 1000,
        "huge_string": head + struct.pack("<QQ", 0, 1) + key + struct.pack("<IQ", 8, 2**62) + b"\0" * 960,
        "huge_tensor": seeds.gguf_bytes({}, {"t": np.ones((4, 8), np.float32)}).replace(
            struct.pack("<2Q", 8, 4), struct.pack("<2Q", 2**31, 2**31)),
        "alignment_0": seeds.gguf_bytes({"general.alignment": 0}, {"t": np.ones((4, 8), np.float32)}),
    }


@pytest.mark.parametrize("name", list(_hostile_ggufs()))
def test_hostile_gguf_is_refused_fast_in_bounded_memory(tmp_path, name):
    path = tmp_path / f"{name}.gguf"
    path.write_bytes(_hostile_ggufs()[name])
    status, out = _run_isolated(f"""
        import resource, time, pyrt
        from pyrt.convert.readers.gguf_file import open_gguf, read_gguf
        from pathlib import Path
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        start = time.perf_counter()
        for load in (lambda p: open_gguf(Path(p)), read_gguf, lambda p: pyrt.LanguageModel(p)):
            try:
                load({str(path)!r})
                print("LOADED")
            except pyrt.PyrtError as exc:
                print("typed", type(exc).__name__)
        grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
        print("seconds", time.perf_counter() - start, "grown_kib", grown)
    """, timeout=60)
    assert status == 0, out
    assert out.count("typed") == 3 and "LOADED" not in out, out
    seconds, grown = out.split("seconds", 1)[1].split()[0], out.split("grown_kib", 1)[1].split()[0]
    assert float(seconds) < 10 and int(grown) < 64 * 1024, out  # was: 15 GB and a hang


def test_gguf_with_head_count_zero(tmp_path):
    path = tmp_path / "heads0.gguf"
    path.write_bytes(seeds.llama_gguf_bytes(**{"llama.attention.head_count": 0}))
    with pytest.raises(ConfigError, match="head_count"):
        pyrt.LanguageModel(path, dtype="f32", embedding_dtype=None)
    from pyrt.cli.convert import main
    assert main([str(path), "-o", str(tmp_path / "out.pyrt"), "-q"]) == 3
    good = tmp_path / "good.gguf"
    good.write_bytes(seeds.llama_gguf_bytes())
    assert main([str(good), "-o", str(tmp_path / "good.pyrt"), "-q", "--dtype", "f32"]) == 0
