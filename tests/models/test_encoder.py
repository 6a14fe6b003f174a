"""pyrt.SentenceEncoder on the real all-MiniLM-L6-v2 checkpoint, against an independent float64
numpy BERT written here straight from the safetensors file (it shares no code with pyrt).

Needs the model folder (python tools/fetch_models.py --only minilm, or PYRT_MODELS) and the
safetensors + tokenizers packages; skips with the reason otherwise. Each format's encoder and its
embeddings are built once per module.
"""
from __future__ import annotations

import gc
import json
import threading

import numpy as np
import pytest

import pyrt

from encoder_reference import (BERT_ATTENTION, cosines, independent_token_ids,
                               layer_norm64, mean_pooled_unit, model_folder, per_format, post_norm_layers64,
                               read_checkpoint)
from helpers import models_dir

pytest.importorskip("safetensors.numpy", reason="tests need the safetensors package")
pytest.importorskip("tokenizers", reason="SentenceEncoder needs the tokenizers package")

MODEL_FOLDER = "all-MiniLM-L6-v2"
CARRIED_FILES = ("tokenizer.json", "modules.json", "sentence_bert_config.json", "1_Pooling/config.json",
                 "tokenizer_config.json", "config.json")

_PARAGRAPH = ("Inference runtimes keep weights in compact formats while the activations stay in full "
              "precision, so the accuracy of a quantized model depends mostly on how each block of "
              "weights is scaled. Engineers measure the cosine similarity between embeddings before "
              "and after conversion, and they compare the speed of batched and single requests. ")
SENTENCES = [
    "Hi", "a", "", "OK!",
    "The cat sits on the mat.",
    "A man is playing a guitar on the street.",
    "Quantized weights keep the model small and fast.",
    "Der schnelle braune Fuchs springt über den faulen Hund.",
    "東京は日本の首都です。",
    "Привет, как у тебя дела сегодня?",
    "¿Dónde está la biblioteca? 🙂",
    _PARAGRAPH * 2,   # ~150 tokens: longer than the tokenizer.json's own 128-token truncation
    _PARAGRAPH * 5,   # ~370 tokens: truncated at max_seq_length = 256
]
LONG, VERY_LONG = len(SENTENCES) - 2, len(SENTENCES) - 1

# Accuracy bounds on L2-normalised embeddings against the float64 reference (see docs/models.md).
F32_MAX_ABS = 1e-4
# q4/q4a: measured 0.885 / 0.893 (min) and 0.942 / 0.955 (mean) with every 2-D tensor, embeddings
# included, in that format; the bounds leave room for kernel rounding, not for a regression.
MIN_COSINE = {"f16": 0.9999, "q8": 0.999, "q4": 0.87, "q4a": 0.88}
MEAN_COSINE = {"f16": 0.99999, "q8": 0.9995, "q4": 0.93, "q4a": 0.945}


# ----------------------------------------------------------------------------- float64 reference

def reference_hidden_states(w: dict, cfg: dict, ids: list[int]) -> np.ndarray:
    """Last hidden states [L, H] of BertModel in float64 for one unpadded sentence."""
    L = len(ids)
    x = (w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][:L]
         + w["embeddings.token_type_embeddings.weight"][0])
    x = layer_norm64(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], cfg["layer_norm_eps"])
    return post_norm_layers64(x, w, cfg, BERT_ATTENTION)


def reference_embeddings(w: dict, cfg: dict, token_ids: list[list[int]]) -> np.ndarray:
    """Mean pooling + L2 normalisation, as the model's modules.json prescribes."""
    return mean_pooled_unit([reference_hidden_states(w, cfg, ids) for ids in token_ids])


# ----------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def folder():
    return model_folder(models_dir() / MODEL_FOLDER, "minilm")


@pytest.fixture(scope="module")
def checkpoint(folder):
    """(float32 weights by name, HF config, carried files) read without pyrt."""
    return read_checkpoint(folder, CARRIED_FILES)


@pytest.fixture(scope="module")
def token_ids(folder):
    """Tokenisation set up independently, as sentence-transformers does for this model."""
    max_len = json.loads((folder / "sentence_bert_config.json").read_text())["max_seq_length"]
    return independent_token_ids(folder, SENTENCES, max_len)


@pytest.fixture(scope="module")
def reference(checkpoint, token_ids):
    weights, config, _ = checkpoint
    w64 = {k: v.astype(np.float64) for k, v in weights.items()}
    return reference_embeddings(w64, config, token_ids)


def quantized_tensors(weights: dict, fmt: str, block: int = 32) -> dict:
    """Every 2-D tensor (embedding tables included) in ``fmt``; 1-D tensors f32."""
    return {k: pyrt.quantize(v, fmt if v.ndim == 2 else "f32", block) for k, v in weights.items()}


@pytest.fixture(scope="module")
def encoders(checkpoint):
    weights, config, files = checkpoint
    return per_format(lambda fmt: pyrt.SentenceEncoder.from_parts(quantized_tensors(weights, fmt), config, files))


@pytest.fixture(scope="module")
def embeddings(encoders):
    return per_format(lambda fmt: encoders(fmt).encode(SENTENCES))


# ----------------------------------------------------------------------------- tokenisation, settings

def test_settings_follow_the_sentence_transformers_files(encoders):
    enc = encoders("f32")
    assert enc.max_seq_length == 256  # sentence_bert_config.json, not tokenizer.json's 128 or 512
    assert enc.pooling == "mean"
    assert enc.settings.normalize is True
    assert enc.dimension == 384


def test_tokenization_matches_independent_setup(encoders, token_ids):
    got = encoders("f32").tokenize(SENTENCES)
    assert got == token_ids
    assert 128 < len(got[LONG]) < 256
    assert len(got[VERY_LONG]) == 256 and got[VERY_LONG][0] == 101 and got[VERY_LONG][-1] == 102
    assert got[2] == [101, 102]  # the empty sentence is [CLS] [SEP]


# ----------------------------------------------------------------------------- accuracy per format

def test_f32_matches_float64_reference(embeddings, reference):
    got = embeddings("f32")
    assert got.dtype == np.float32 and got.shape == (len(SENTENCES), 384)
    assert np.isfinite(got).all()
    err = np.abs(got - reference).max()
    assert err <= F32_MAX_ABS, f"max abs error {err:.3g}"
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize("fmt", ["f16", "q8", "q4", "q4a"])
def test_weight_formats_stay_close_to_reference(fmt, embeddings, reference):
    cos = cosines(embeddings(fmt), reference)
    assert cos.min() >= MIN_COSINE[fmt], f"{fmt}: min cosine {cos.min():.6f} (per sentence {np.round(cos, 6)})"
    assert cos.mean() >= MEAN_COSINE[fmt], f"{fmt}: mean cosine {cos.mean():.6f}"


@pytest.mark.parametrize("fmt", ["q4", "q4a"])
def test_quantized_forward_is_exact_for_its_own_weights(fmt, checkpoint, encoders, embeddings, token_ids):
    """Against the float64 model run on the dequantized weights, the only error left is FP32
    arithmetic: this separates kernel bugs from quantization error."""
    _, config, _ = checkpoint
    tensors = {k: t for k, t in encoders(fmt).tensors.items()}
    w64 = {k: t.dequantize().astype(np.float64) for k, t in tensors.items()}
    ref = reference_embeddings(w64, config, [token_ids[i] for i in (0, 5, 8, LONG)])
    got = embeddings(fmt)[[0, 5, 8, LONG]]
    err = np.abs(got - ref).max()
    assert err <= F32_MAX_ABS, f"{fmt}: max abs error {err:.3g} against its own dequantized weights"


def test_every_cpu_isa_matches_reference(cpu_isa, encoders, reference):
    idx = [0, 4, 7, 8]
    got = encoders("f32").encode([SENTENCES[i] for i in idx])
    assert np.abs(got - reference[idx]).max() <= F32_MAX_ABS
    got_q8 = encoders("q8").encode([SENTENCES[i] for i in idx])
    assert cosines(got_q8, reference[idx]).min() >= MIN_COSINE["q8"]


# ----------------------------------------------------------------------------- batching, padding, API

def test_batching_and_order_do_not_change_results(encoders, embeddings):
    enc, full = encoders("q8"), embeddings("q8")
    idx = [3, 0, 6, 9, 1, 4]
    for batch_size in (1, 4):
        got = enc.encode([SENTENCES[i] for i in idx], batch_size=batch_size)
        np.testing.assert_allclose(got, full[idx], rtol=0, atol=2e-6)


def test_padding_tokens_are_ignored(encoders, token_ids, rng):
    """Native call with random (valid) ids in the padded tail: the mask must hide them completely."""
    enc = encoders("f32")
    rows = [token_ids[i] for i in (0, 4, 7)]
    width = max(len(r) for r in rows) + 5
    ids = rng.integers(1000, 30000, size=(len(rows), width)).astype(np.int32)
    mask = np.zeros_like(ids)
    for r, row in enumerate(rows):
        ids[r, :len(row)] = row
        mask[r, :len(row)] = 1
    types = rng.integers(0, 2, size=ids.shape).astype(np.int32) * (1 - mask)  # junk types in padding too
    padded = enc._native.encode(ids, types, mask, "mean", True)
    single = np.concatenate([enc._native.encode(np.array([row], np.int32), None, None, "mean", True)
                             for row in rows])
    np.testing.assert_allclose(padded, single, rtol=0, atol=2e-6)


def test_cls_and_max_pooling_against_reference(checkpoint, encoders, token_ids):
    weights, config, _ = checkpoint
    enc = encoders("f32")
    w64 = {k: v.astype(np.float64) for k, v in weights.items()}
    for i in (4, 7):
        states = reference_hidden_states(w64, config, token_ids[i])
        ids = np.array([token_ids[i]], np.int32)
        for pooling, expected in (("cls", states[0]), ("max", states.max(0)), ("mean", states.mean(0))):
            got = enc._native.encode(ids, None, None, pooling, False)[0]
            np.testing.assert_allclose(got, expected, rtol=0, atol=5e-4, err_msg=pooling)


def test_normalize_flag_and_single_string(encoders, embeddings):
    enc, full = encoders("q8"), embeddings("q8")
    with pytest.warns(DeprecationWarning, match="normalize_embeddings"):  # the old keyword, deprecated
        raw = enc.encode(SENTENCES[4:7], normalize=False)
    norms = np.linalg.norm(raw, axis=1)
    assert np.all(np.abs(norms - 1.0) > 1e-2)  # mean-pooled BERT states are far from unit length
    np.testing.assert_allclose(raw / norms[:, None], full[4:7], rtol=0, atol=2e-6)
    one = enc.encode(SENTENCES[5])
    assert one.shape == (384,)
    np.testing.assert_allclose(one, full[5], rtol=0, atol=2e-6)
    assert enc.encode([]).shape == (0, 384)


def test_weights_outlive_the_callers_dict(checkpoint, token_ids, reference):
    weights, config, files = checkpoint
    tensors = quantized_tensors({k: v.copy() for k, v in weights.items()}, "f32")
    enc = pyrt.SentenceEncoder.from_parts(tensors, config, files)
    del tensors
    gc.collect()
    got = enc.encode([SENTENCES[i] for i in (4, 8)])
    assert np.abs(got - reference[[4, 8]]).max() <= F32_MAX_ABS


def test_concurrent_calls_from_threads(encoders, embeddings):
    enc, full = encoders("q8"), embeddings("q8")
    results: dict = {}

    def work(key, idx):
        results[key] = enc.encode([SENTENCES[i] for i in idx])

    jobs = {"a": [4, 5, 6], "b": [7, 8, 9, 10]}
    threads = [threading.Thread(target=work, args=(k, v)) for k, v in jobs.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for key, idx in jobs.items():
        np.testing.assert_allclose(results[key], full[idx], rtol=0, atol=2e-6)


# ----------------------------------------------------------------------------- errors

def test_bad_token_inputs_raise_typed_errors(encoders):
    native = encoders("f32")._native
    ok = np.array([[101, 2023, 102]], np.int32)
    with pytest.raises(pyrt.RangeError, match="vocabulary"):
        native.encode(np.array([[101, 30522, 102]], np.int32), None, None, "mean", True)
    with pytest.raises(pyrt.RangeError, match="vocabulary"):
        native.encode(np.array([[101, -1, 102]], np.int32), None, None, "mean", True)
    with pytest.raises(pyrt.RangeError, match="token type"):
        native.encode(ok, np.array([[0, 2, 0]], np.int32), None, "mean", True)
    with pytest.raises(pyrt.RangeError, match="mask"):
        native.encode(ok, None, np.array([[1, 2, 1]], np.int32), "mean", True)
    with pytest.raises(pyrt.ShapeError, match="no token"):
        native.encode(np.vstack([ok, ok]), None, np.array([[1, 1, 1], [0, 0, 0]], np.int32), "mean", True)
    with pytest.raises(pyrt.ShapeError, match="positions"):
        native.encode(np.full((1, 513), 1000, np.int32), None, None, "mean", True)
    with pytest.raises(pyrt.ShapeError):
        native.encode(ok, None, np.ones((1, 4), np.int32), "mean", True)
    with pytest.raises(pyrt.DtypeError):
        native.encode(ok.astype(np.int64), None, None, "mean", True)
    with pytest.raises(pyrt.ShapeError):
        native.encode(ok[0], None, None, "mean", True)
    with pytest.raises(pyrt.UnsupportedError):
        native.encode(ok, None, None, "median", True)


def test_bad_python_arguments_raise_typed_errors(encoders):
    enc = encoders("f32")
    with pytest.raises(pyrt.DtypeError):
        enc.encode(["fine", 3])
    with pytest.raises(pyrt.DtypeError):
        enc.encode(b"bytes")
    with pytest.raises(pyrt.ShapeError):
        enc.encode(["x"], batch_size=0)


def test_bad_checkpoints_raise_typed_errors(checkpoint, encoders):
    weights, config, files = checkpoint
    good = encoders("f32").tensors
    missing = dict(good)
    del missing["encoder.layer.3.output.dense.weight"]
    with pytest.raises(pyrt.FileFormatError, match="encoder.layer.3.output.dense.weight"):
        pyrt.SentenceEncoder.from_parts(missing, config, files)
    wrong = dict(good)
    wrong["encoder.layer.1.attention.self.key.weight"] = pyrt.quantize(np.ones((384, 320), np.float32), "f32")
    with pytest.raises(pyrt.ShapeError, match="attention.self.key.weight"):
        pyrt.SentenceEncoder.from_parts(wrong, config, files)
    with pytest.raises(pyrt.DtypeError):
        pyrt.SentenceEncoder.from_parts({**good, "embeddings.LayerNorm.bias": np.zeros(384)}, config, files)
    with pytest.raises(pyrt.UnsupportedError, match="gelu_new"):
        pyrt.SentenceEncoder.from_parts(good, {**config, "hidden_act": "gelu_new"}, files)
    with pytest.raises(pyrt.FileFormatError, match="num_hidden_layers"):
        pyrt.SentenceEncoder.from_parts(good, {k: v for k, v in config.items() if k != "num_hidden_layers"}, files)
    with pytest.raises(pyrt.FileFormatError, match="tokenizer.json"):
        pyrt.SentenceEncoder.from_parts(good, config, {k: v for k, v in files.items() if k != "tokenizer.json"})
    modules = json.loads(files["modules.json"]) + [{"idx": 3, "name": "3", "path": "3_Dense",
                                                     "type": "sentence_transformers.models.Dense"}]
    with pytest.raises(pyrt.UnsupportedError, match="Dense"):
        pyrt.SentenceEncoder.from_parts(good, config, {**files, "modules.json": json.dumps(modules)})
    with pytest.raises(pyrt.DtypeError):
        pyrt.SentenceEncoder(42)
    with pytest.raises(pyrt.FileFormatError, match="no config.json"):  # a folder that is no model
        pyrt.SentenceEncoder(models_dir())


def test_other_1d_formats_and_prefixed_names(checkpoint, embeddings):
    """Biases and norms stored as f16, names under a 'bert.' prefix: still the same model."""
    weights, config, files = checkpoint
    tensors = {"bert." + k: pyrt.quantize(v, "q8" if v.ndim == 2 else "f16") for k, v in weights.items()}
    enc = pyrt.SentenceEncoder.from_parts(tensors, config, files)
    got = enc.encode(SENTENCES[4:7])
    assert cosines(got, embeddings("q8")[4:7]).min() >= 0.99999


# ----------------------------------------------------------------------------- with pyrt.load, CLI, peers

@pytest.fixture(scope="module")
def converted_q8(folder, tmp_path_factory):
    convert = pytest.importorskip("pyrt.convert", reason="pyrt.convert (convert_checkpoint) is not available")
    out = tmp_path_factory.mktemp("minilm") / "minilm-q8.pyrt"
    # without calibration: the same quantizer as the from_parts models (pyrt.quantize's defaults)
    convert.convert_checkpoint(str(folder), str(out), dtype="q8", block=32, calibration=None)
    return out


def test_converted_file_gives_the_same_embeddings(converted_q8, embeddings):
    enc = pyrt.SentenceEncoder(converted_q8)
    assert enc.max_seq_length == 256 and enc.pooling == "mean"
    assert ("q8", 32) in enc.formats
    got = enc.encode(SENTENCES[4:9])
    # Same quantizer, same blocks: the converted q8 model is the from_parts q8 model.
    np.testing.assert_allclose(got, embeddings("q8")[4:9], rtol=0, atol=2e-6)


def _cli(*argv: str) -> int:
    import argparse

    from pyrt.cli import demo, embed

    parser = argparse.ArgumentParser(prog="pyrt")
    sub = parser.add_subparsers(dest="command")
    demo.register(sub)
    embed.register(sub)
    args = parser.parse_args(list(argv))
    return args.func(args)


def test_embed_command(converted_q8, embeddings, tmp_path, capsys):
    assert _cli("embed", str(converted_q8), SENTENCES[4], SENTENCES[7]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["dimension"] == 384 and out["normalized"] is True
    np.testing.assert_allclose(np.array(out["embeddings"]), embeddings("q8")[[4, 7]], rtol=0, atol=2e-6)
    npy = tmp_path / "e.npy"
    assert _cli("embed", str(converted_q8), SENTENCES[5], "--output", str(npy), "--no-normalize") == 0
    raw = np.load(npy)
    assert raw.shape == (1, 384) and abs(np.linalg.norm(raw) - 1.0) > 1e-2
    assert _cli("embed", str(tmp_path / "missing.pyrt"), "x") == 1
    assert _cli("embed", str(converted_q8), "x", "--output", str(tmp_path / "e.txt")) == 2


def test_demo_command(folder, tmp_path, capsys, monkeypatch):
    pytest.importorskip("pyrt.convert", reason="pyrt.convert (convert_checkpoint) is not available")
    monkeypatch.setenv("PYRT_MODELS", str(folder.parent))
    assert _cli("demo", "--formats", "q8", "--out-dir", str(tmp_path)) == 0
    out = capsys.readouterr().out
    row = next(line.split() for line in out.splitlines() if line.startswith("q8 "))
    assert float(row[2]) == pytest.approx(8.5, abs=0.1)  # bits per weight: q8/32 everywhere but 1-D tensors
    assert float(row[5]) > 0  # sentences/s
    assert "semantic search" in out
    best = out.split("Which famous landmark is in France?")[1].splitlines()[1]
    assert "Eiffel" in best
    assert "Espresso" in out.split("How do you make coffee?")[1].splitlines()[1]
    monkeypatch.setenv("PYRT_MODELS", str(tmp_path / "empty"))
    assert _cli("demo") == 1


def test_folder_runs_as_it_is(folder, embeddings):
    """SentenceEncoder(folder): the sentence-transformers folder in FP32, no conversion step (it
    replaced the 'convert it first' error once folders became loadable)."""
    enc = pyrt.SentenceEncoder(folder)
    assert enc.formats == [("f32", 1)] and enc.max_seq_length == 256 and enc.name == MODEL_FOLDER
    np.testing.assert_allclose(enc.encode(SENTENCES), embeddings("f32"), rtol=0, atol=1e-6)


def test_matches_sentence_transformers(folder, encoders, embeddings):
    st = pytest.importorskip("sentence_transformers", reason="sentence-transformers (with torch) is not installed")
    model = st.SentenceTransformer(str(folder), device="cpu")
    extra = ["  surrounding whitespace  "]
    expected = model.encode(SENTENCES + extra, batch_size=8)
    got = np.concatenate([embeddings("f32"), encoders("f32").encode(extra)])
    assert np.abs(got - expected).max() <= F32_MAX_ABS


# ----------------------------------------------------------------------------- int8 activations

# Measured (docs/int8.md): q8 weights with int8 activations, min 0.9981 / mean 0.9993 against the
# f32 run on every kernel set; the bounds leave margin for other CPUs' summation orders.
INT8_MIN_COSINE_Q8, INT8_MEAN_COSINE_Q8 = 0.996, 0.9985


def test_int8_activations_stay_close_to_reference(cpu_isa, checkpoint, reference):
    weights, config, files = checkpoint
    enc = pyrt.SentenceEncoder.from_parts(quantized_tensors(weights, "q8"), config, files, activations="int8")
    assert enc.activations == "int8" and enc._native.activations == "int8"
    cos = cosines(enc.encode(SENTENCES), reference)
    assert cos.min() >= INT8_MIN_COSINE_Q8, f"min cosine {cos.min():.6f} (per sentence {np.round(cos, 6)})"
    assert cos.mean() >= INT8_MEAN_COSINE_Q8, f"mean cosine {cos.mean():.6f}"


def test_int16_activations_keep_exact_accuracy(cpu_isa, checkpoint, reference, embeddings):
    # Two int8 digits per activation (~16 bits): measured identical to exact q8 to 6 digits
    # (min cosine 0.999522); this is what lets the fast q8 encoder keep the 0.999 bound.
    weights, config, files = checkpoint
    enc = pyrt.SentenceEncoder.from_parts(quantized_tensors(weights, "q8"), config, files, activations="int16")
    assert enc.activations == "int16"
    got = enc.encode(SENTENCES)
    cos = cosines(got, reference)
    assert cos.min() >= MIN_COSINE["q8"], f"min cosine {cos.min():.6f}"
    assert np.abs(got - embeddings("q8")).max() <= 2e-4


def test_invalid_activation_mode_raises(checkpoint):
    weights, config, files = checkpoint
    with pytest.raises(pyrt.DtypeError):
        pyrt.SentenceEncoder.from_parts(quantized_tensors(weights, "q8"), config, files, activations="int4")
