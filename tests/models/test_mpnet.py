"""pyrt.SentenceEncoder on the real all-mpnet-base-v2 (MPNet) checkpoint: against sentence-transformers
on the same folder, against an independent float64 numpy MPNet written here from the published
description (Song et al. 2020; T5's bucketed relative position bias, shared by all layers;
absolute positions numbered from padding_idx + 1 = 2; no token types; post-LayerNorm blocks with
exact GELU), in every weight format, batched and threaded, and converted to .pyrt files.

Needs the model folder (python tools/fetch_models.py --only mpnet, or PYRT_MODELS) and the
safetensors + tokenizers packages; skips with the reason otherwise.
"""
from __future__ import annotations

import json
import threading

import numpy as np
import pytest

import pyrt
from pyrt.errors import ConfigError

from encoder_reference import (MPNET_ATTENTION, cosines, independent_token_ids,
                               layer_norm64, mean_pooled_unit, model_folder, per_format, post_norm_layers64,
                               read_checkpoint)
from helpers import models_dir

pytest.importorskip("safetensors.numpy", reason="tests need the safetensors package")
pytest.importorskip("tokenizers", reason="SentenceEncoder needs the tokenizers package")

MODEL_FOLDER = "all-mpnet-base-v2"
CARRIED_FILES = ("tokenizer.json", "modules.json", "sentence_bert_config.json", "1_Pooling/config.json",
                 "tokenizer_config.json", "config.json", "config_sentence_transformers.json")
MAX_SEQ_LENGTH = 384
RELATIVE_BIAS = "encoder.relative_attention_bias.weight"

_PARAGRAPH = ("Relative position buckets let an encoder tell near words from far ones without a learned "
              "vector for every distance: nearby tokens get exact buckets, distant ones share buckets "
              "on a logarithmic scale, and beyond the maximum distance every pair looks alike. ")
SENTENCES = [
    "Hi", "a", "", "OK!",
    "The cat sits on the mat.",
    "A man is playing a guitar on the street.",
    "Quantized weights keep the model small and fast.",
    "Der schnelle braune Fuchs springt über den faulen Hund.",
    "東京は日本の首都です。",
    "Привет, как у тебя дела сегодня?",
    "¿Dónde está la biblioteca? 🙂",
    _PARAGRAPH * 3,   # ~160 tokens: distances past the 128 of the last log bucket
    _PARAGRAPH * 9,   # ~420 tokens: truncated at max_seq_length = 384
]
LONG, VERY_LONG = len(SENTENCES) - 2, len(SENTENCES) - 1

F32_MAX_ABS = 1e-4  # L2-normalised embeddings, against float64 and against sentence-transformers
# Measured on this checkpoint (2026-12-02; every 2-D tensor but the bias table in the format, block
# 32, pyrt.quantize defaults), min / mean cosine to the float64 reference: f16 0.9999994 / 1.000000,
# bf16 0.999966 / 0.999991, q8 0.99957 / 0.99986, q4 0.870 / 0.964, q4a 0.921 / 0.975 (the empty
# sentence is the worst). The bounds leave room for kernel rounding, not for a regression.
MIN_COSINE = {"f16": 0.99999, "q8": 0.9993, "q4": 0.85, "q4a": 0.90}
MEAN_COSINE = {"f16": 0.999995, "q8": 0.9997, "q4": 0.955, "q4a": 0.965}


# ----------------------------------------------------------------------------- float64 reference

def relative_buckets(length: int, num_buckets: int = 32, max_distance: int = 128) -> np.ndarray:
    """[L, L] bucket of key j seen from query i: half the buckets per direction (keys after the
    query in the upper half), exact distances below a quarter of the buckets, log-spaced above up
    to max_distance, the last bucket beyond."""
    offset = np.arange(length)[:, None] - np.arange(length)[None, :]  # query minus key
    per_side = num_buckets // 2
    exact = per_side // 2
    distance = np.abs(offset)
    log_part = exact + np.floor(np.log(np.maximum(distance, 1) / exact) / np.log(max_distance / exact)
                                * (per_side - exact)).astype(np.int64)
    side = np.where(offset < 0, per_side, 0)
    return side + np.where(distance < exact, distance, np.minimum(log_part, per_side - 1))


def reference_hidden_states(w: dict, cfg: dict, ids: list[int]) -> np.ndarray:
    """Last hidden states [L, H] of MPNetModel in float64 for one unpadded sentence."""
    L = len(ids)
    x = w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][2:2 + L]
    x = layer_norm64(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], cfg["layer_norm_eps"])
    bias = w[RELATIVE_BIAS][relative_buckets(L)].transpose(2, 0, 1)  # [heads, L, L], shared by all layers
    return post_norm_layers64(x, w, cfg, MPNET_ATTENTION, bias)


def reference_embeddings(w: dict, cfg: dict, token_ids: list[list[int]]) -> np.ndarray:
    return mean_pooled_unit([reference_hidden_states(w, cfg, ids) for ids in token_ids])


# ----------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def folder():
    return model_folder(models_dir() / MODEL_FOLDER, "mpnet")


@pytest.fixture(scope="module")
def checkpoint(folder):
    return read_checkpoint(folder, CARRIED_FILES)


@pytest.fixture(scope="module")
def token_ids(folder):
    return independent_token_ids(folder, SENTENCES, MAX_SEQ_LENGTH)


@pytest.fixture(scope="module")
def weights64(checkpoint):
    return {k: v.astype(np.float64) for k, v in checkpoint[0].items()}


@pytest.fixture(scope="module")
def reference(checkpoint, weights64, token_ids):
    return reference_embeddings(weights64, checkpoint[1], token_ids)


def quantized_tensors(weights: dict, fmt: str, block: int = 32) -> dict:
    """Every 2-D tensor in ``fmt`` except the [32, 12] bias table (f32, as the converter keeps it);
    1-D tensors f32."""
    return {k: pyrt.quantize(v, fmt if v.ndim == 2 and k != RELATIVE_BIAS else "f32", block)
            for k, v in weights.items()}


@pytest.fixture(scope="module")
def encoders(checkpoint):
    weights, config, files = checkpoint
    return per_format(lambda fmt: pyrt.SentenceEncoder.from_parts(quantized_tensors(weights, fmt), config, files))


@pytest.fixture(scope="module")
def embeddings(encoders):
    return per_format(lambda fmt: encoders(fmt).encode(SENTENCES, batch_size=8))


# ----------------------------------------------------------------------------- settings, tokens

def test_settings_follow_the_sentence_transformers_files(encoders):
    enc = encoders("f32")
    assert enc.max_seq_length == MAX_SEQ_LENGTH and enc.pooling == "mean" and enc.settings.normalize is True
    assert enc.dimension == 768 and enc._native.max_positions == 514


def test_tokenization_and_truncation_at_max_seq_length(encoders, token_ids):
    got = encoders("f32").tokenize(SENTENCES)
    assert got == token_ids
    assert 128 < len(got[LONG]) < MAX_SEQ_LENGTH
    assert len(got[VERY_LONG]) == MAX_SEQ_LENGTH and got[VERY_LONG][0] == 0 and got[VERY_LONG][-1] == 2
    assert got[2] == [0, 2]  # the empty sentence is <s> </s>


# ----------------------------------------------------------------------------- accuracy

def test_f32_matches_float64_reference(embeddings, reference):
    got = embeddings("f32")
    assert got.dtype == np.float32 and got.shape == (len(SENTENCES), 768) and np.isfinite(got).all()
    err = np.abs(got - reference).max()
    assert err <= F32_MAX_ABS, f"max abs error {err:.3g}"


def test_the_relative_bias_is_part_of_the_model(checkpoint, weights64, token_ids, reference):
    """The reference is sensitive to the bias (a zero table moves it), so agreeing with it checks
    pyrt's bias and not only the rest of the layer."""
    _, config, _ = checkpoint
    no_bias = {**weights64, RELATIVE_BIAS: np.zeros_like(weights64[RELATIVE_BIAS])}
    moved = reference_embeddings(no_bias, config, [token_ids[LONG]])
    assert np.abs(moved - reference[[LONG]]).max() > 100 * F32_MAX_ABS


def test_matches_sentence_transformers(folder, embeddings):
    st = pytest.importorskip("sentence_transformers", reason="sentence-transformers (with torch) is not installed")
    model = st.SentenceTransformer(str(folder), device="cpu")
    extra = ["  surrounding whitespace  ", "short", "a somewhat longer sentence to pad against " * 4]
    expected = model.encode(SENTENCES + extra, batch_size=8)  # batches mix lengths: padding in each
    enc = pyrt.SentenceEncoder(folder)  # the folder as it is, FP32
    assert enc.formats == [("f32", 1)] and enc.name == MODEL_FOLDER
    got = enc.encode(SENTENCES + extra, batch_size=8)
    assert np.abs(got - expected).max() <= F32_MAX_ABS
    assert np.abs(embeddings("f32") - expected[:len(SENTENCES)]).max() <= F32_MAX_ABS


@pytest.mark.parametrize("fmt", ["f16", "q8", "q4", "q4a"])
def test_weight_formats_stay_close_to_reference(fmt, embeddings, reference):
    cos = cosines(embeddings(fmt), reference)
    assert cos.min() >= MIN_COSINE[fmt], f"{fmt}: min cosine {cos.min():.6f} (per sentence {np.round(cos, 6)})"
    assert cos.mean() >= MEAN_COSINE[fmt], f"{fmt}: mean cosine {cos.mean():.6f}"


def test_quantized_forward_is_exact_for_its_own_weights(checkpoint, encoders, embeddings, token_ids):
    """q4 against the float64 model on its own dequantized weights: only FP32 arithmetic is left."""
    _, config, _ = checkpoint
    w64 = {k: t.dequantize().astype(np.float64) for k, t in encoders("q4").tensors.items()}
    idx = [0, 5, 8, LONG]
    ref = reference_embeddings(w64, config, [token_ids[i] for i in idx])
    err = np.abs(embeddings("q4")[idx] - ref).max()
    assert err <= F32_MAX_ABS, f"max abs error {err:.3g} against its own dequantized weights"


def test_every_cpu_isa_matches_reference(cpu_isa, encoders, reference):
    idx = [0, 4, 7, LONG]
    got = encoders("f32").encode([SENTENCES[i] for i in idx])
    assert np.abs(got - reference[idx]).max() <= F32_MAX_ABS


def test_bias_table_in_another_format(checkpoint, embeddings):
    """The bias table stored f16 (any format is dequantized once at load) and names under an
    'mpnet.' prefix (an MPNetFor* checkpoint): the same model to f16 rounding."""
    weights, config, files = checkpoint
    tensors = {"mpnet." + k: pyrt.quantize(v, "f16" if k == RELATIVE_BIAS else "f32") for k, v in weights.items()}
    got = pyrt.SentenceEncoder.from_parts(tensors, config, files).encode(SENTENCES[4:8])
    assert cosines(got, embeddings("f32")[4:8]).min() >= 0.99999


# ----------------------------------------------------------------------------- batching, padding, threads

def test_batch_and_single_agree(encoders, embeddings):
    enc, full = encoders("f32"), embeddings("f32")
    idx = [LONG, 3, 0, 6, 9, 1, 4]
    for batch_size in (1, 3):
        got = enc.encode([SENTENCES[i] for i in idx], batch_size=batch_size)
        np.testing.assert_allclose(got, full[idx], rtol=0, atol=5e-6)


def test_padding_on_either_side_is_ignored(encoders, token_ids, rng):
    """Random ids under a zero mask, right and left of the tokens: positions count kept tokens
    (as Hugging Face's MPNet numbers non-padding tokens), so both match the unpadded rows."""
    enc = encoders("f32")
    rows = [token_ids[i] for i in (0, 4, 7)]
    width = max(len(r) for r in rows) + 5
    single = np.concatenate([enc._native.encode(np.array([row], np.int32), None, None, "mean", True) for row in rows])
    for side in ("right", "left"):
        ids = rng.integers(1000, 30000, size=(len(rows), width)).astype(np.int32)
        mask = np.zeros_like(ids)
        for r, row in enumerate(rows):
            cols = slice(0, len(row)) if side == "right" else slice(width - len(row), width)
            ids[r, cols] = row
            mask[r, cols] = 1
        types = rng.integers(0, 2, size=ids.shape).astype(np.int32)  # MPNet has no token types: ignored
        got = enc._native.encode(ids, types, mask, "mean", True)
        np.testing.assert_allclose(got, single, rtol=0, atol=5e-6, err_msg=side)


def test_concurrent_calls_from_threads(encoders, embeddings):
    enc, full = encoders("q8"), embeddings("q8")
    results: dict = {}
    errors: list = []

    def work(t: int) -> None:
        try:
            idx = [(t + j) % len(SENTENCES) for j in range(4)]
            results[t] = (idx, enc.encode([SENTENCES[i] for i in idx], batch_size=2))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(6)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors and len(results) == 6
    for idx, got in results.values():
        np.testing.assert_allclose(got, full[idx], rtol=0, atol=5e-6)


def test_too_long_input_is_a_shape_error(encoders):
    """512 tokens fit the 514 position embeddings (numbered from 2); 513 do not."""
    enc = encoders("f32")
    assert enc._native.encode(np.full((1, 512), 100, np.int32), None, None, "mean", True).shape == (1, 768)
    with pytest.raises(pyrt.ShapeError, match="at most 514 positions"):
        enc._native.encode(np.full((1, 513), 100, np.int32), None, None, "mean", True)


# ----------------------------------------------------------------------------- bad configs

def _one_line_error(kind, call, match):
    with pytest.raises(kind, match=match) as info:
        call()
    assert "\n" not in str(info.value)


def test_bad_configs_raise_typed_one_line_errors(checkpoint):
    weights, config, files = checkpoint
    small = {k: pyrt.quantize(v, "f32") for k, v in weights.items()}
    build = pyrt.SentenceEncoder.from_parts
    _one_line_error(pyrt.UnsupportedError, lambda: build(small, {**config, "relative_attention_num_buckets": 64},
                                                          files), "relative_attention_num_buckets 64")
    _one_line_error(ConfigError, lambda: build(small, {**config, "relative_attention_num_buckets": "32"},
                                                     files), "relative_attention_num_buckets")
    _one_line_error(ConfigError, lambda: build(small, {**config, "max_position_embeddings": 2}, files),
                    "positions start at 2")
    _one_line_error(pyrt.UnsupportedError, lambda: build(small, {**config, "model_type": "roberta"}, files),
                    "model_type 'roberta'")
    missing = {k: v for k, v in small.items() if k != RELATIVE_BIAS}
    _one_line_error(pyrt.FileFormatError, lambda: build(missing, config, files), "relative_attention_bias")
    wrong = {**small, RELATIVE_BIAS: pyrt.quantize(weights[RELATIVE_BIAS][:16], "f32")}
    _one_line_error(pyrt.ShapeError, lambda: build(wrong, config, files), "relative_attention_bias")
    bert_named = {k.replace("attention.attn.q.", "attention.self.query."): v for k, v in small.items()}
    _one_line_error(pyrt.FileFormatError, lambda: build(bert_named, config, files), "attention.attn.q.weight")


# ----------------------------------------------------------------------------- converted files, CLI

@pytest.fixture(scope="module")
def convert():
    return pytest.importorskip("pyrt.convert", reason="pyrt.convert (convert_checkpoint) is not available")


@pytest.mark.parametrize("fmt", ["f32", "f16", "bf16", "q8", "q4", "q4a", "q4n"])
def test_converted_files_run(fmt, convert, folder, tmp_path, reference):
    out = tmp_path / f"mpnet-{fmt}.pyrt"
    convert.convert_checkpoint(str(folder), str(out), dtype=fmt, block=32, calibration=None)
    enc = pyrt.SentenceEncoder(out)
    assert enc.max_seq_length == MAX_SEQ_LENGTH and enc.tensors[RELATIVE_BIAS].dtype == "f32"
    idx = [4, 7, 9, LONG]
    cos = cosines(enc.encode([SENTENCES[i] for i in idx]), reference[idx])
    floor = {"f32": 1 - 1e-7, "f16": 1 - 1e-5, "bf16": 0.999, "q8": MIN_COSINE["q8"]}.get(fmt, MIN_COSINE["q4"])
    assert cos.min() >= floor, f"{fmt}: cosines {np.round(cos, 6)}"


def test_convert_and_embed_commands(folder, tmp_path, capsys, reference):
    from pyrt.cli import main

    out = tmp_path / "mpnet-q8.pyrt"
    assert main(["convert", str(folder), "-o", str(out), "--dtype", "q8", "--no-calibration", "--no-accuracy",
                 "-q"]) == 0
    capsys.readouterr()
    assert main(["embed", str(out), SENTENCES[4], SENTENCES[7]]) == 0
    got = np.array(json.loads(capsys.readouterr().out)["embeddings"])
    assert got.shape == (2, 768) and cosines(got, reference[[4, 7]]).min() >= MIN_COSINE["q8"]
