"""Calibration with no text (`--calibration synthetic`): an encoder's random sequences of its
ordinary tokens, a decoder's own sampled text, both drawn reproducibly; the converter weights the
search and runs GPTQ on their statistics (an encoder's with its own damping), records what it
used, and all-MiniLM-L6-v2 at q4a/32 beats the uncalibrated search by a margin on held-out
sentences."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import pyrt
from helpers import minilm_dir, models_dir
from pyrt.calibration import collect_activation_stats, collect_second_moments
from pyrt.calibration_synthetic import (DECODER_SEQUENCE_TOKENS, ENCODER_GPTQ_DAMP, ENCODER_LENGTHS, ENCODER_SEQUENCES,
                                        ordinary_token_ids, synthetic_calibration_texts)
from pyrt.quantize_gptq import DEFAULT_DAMP, quantize_gptq

pytest.importorskip("tokenizers", reason="the models' tokenizers need the 'tokenizers' package")
safetensors_numpy = pytest.importorskip("safetensors.numpy", reason="tests need the safetensors package")

HELDOUT = Path(pyrt.__file__).parent / "data" / "evaluation" / "heldout.txt"
FILES = ("tokenizer.json", "modules.json", "sentence_bert_config.json", "1_Pooling/config.json")


@pytest.fixture(scope="module")
def minilm():
    path = minilm_dir()
    arrays = {k: v.astype(np.float32) for k, v in safetensors_numpy.load_file(str(path / "model.safetensors")).items()
              if v.dtype.kind == "f"}
    files = {n: (path / n).read_text(encoding="utf-8") for n in FILES}
    config = json.loads((path / "config.json").read_text())
    model = pyrt.SentenceEncoder.from_parts({k: pyrt.quantize(v, "f32") for k, v in arrays.items()}, config, files)
    return arrays, model


@pytest.fixture(scope="module")
def smollm2_parts():
    """(f32 tensors, GGUF metadata) of SmolLM2, read once: the tests build models of two contexts."""
    pytest.importorskip("gguf", reason="reading the GGUF model needs the 'gguf' package")
    from pyrt.convert.readers.gguf_file import quantize_weights, read_gguf

    found = sorted((models_dir() / "smollm2").glob("*.gguf"))
    if not found:
        pytest.skip("SmolLM2 GGUF not found (run tools/fetch_models.py or set PYRT_MODELS)")
    arrays, md = read_gguf(found[0])
    return quantize_weights(arrays, "f32"), md


@pytest.fixture(scope="module")
def smollm2(smollm2_parts):
    tensors, md = smollm2_parts
    return pyrt.LanguageModel.from_parts(tensors, md, md, context_length=256)


def test_encoder_draws_ordinary_tokens_reproducibly(minilm):
    _, model = minilm
    ids = ordinary_token_ids(model)
    vocab = json.loads((minilm_dir() / "tokenizer.json").read_text())["model"]["vocab"]
    special = {vocab[t] for t in ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")}
    assert not special & set(ids.tolist())
    assert len(ids) == len(vocab) - len(special) and vocab["hello"] in ids and vocab["##ing"] in ids
    texts = synthetic_calibration_texts(model)
    assert texts == synthetic_calibration_texts(model)  # fixed seed: the same conversion twice
    assert texts != synthetic_calibration_texts(model, seed=1)
    assert len(texts) == ENCODER_SEQUENCES
    # lengths cycle through the mix (a re-tokenized word piece may merge or split, so roughly)
    lengths = [len(seq) - 2 for seq in model.tokenize(texts[:len(ENCODER_LENGTHS)])]  # without [CLS], [SEP]
    assert np.corrcoef(lengths, ENCODER_LENGTHS)[0, 1] > 0.95, lengths


def test_decoder_writes_its_own_text_up_to_the_budget(smollm2, smollm2_parts):
    from pyrt.calibration_synthetic import synthetic_gptq_damp
    from pyrt.tokenizer_types import TOKEN_NORMAL

    ids = ordinary_token_ids(smollm2)
    types = np.asarray(smollm2.tokenizer.token_types)
    assert (types[ids] == TOKEN_NORMAL).all() and (types != TOKEN_NORMAL).any()
    assert len(ids) == int((types == TOKEN_NORMAL).sum())
    texts = synthetic_calibration_texts(smollm2, decoder_tokens=500)
    assert len(texts) == -(-500 // DECODER_SEQUENCE_TOKENS)
    # end-of-generation is banned: every sequence runs its full length (re-tokenized, about as many)
    tokens = [len(smollm2.tokenizer.encode(t, add_bos=False)) for t in texts]
    assert all(0.8 * DECODER_SEQUENCE_TOKENS <= n <= 1.2 * DECODER_SEQUENCE_TOKENS for n in tokens), tokens
    assert len(set(texts)) == len(texts)  # each from its own random first token
    assert texts == synthetic_calibration_texts(smollm2, decoder_tokens=500)  # seeded
    # the model's own text is likelier under the model than random tokens of its vocabulary
    rng = np.random.default_rng(5)
    random_text = smollm2.tokenizer.decode(rng.choice(ids, DECODER_SEQUENCE_TOKENS).tolist())
    assert smollm2.perplexity(texts[0]) < smollm2.perplexity(random_text) / 10
    # a context shorter than a sequence bounds it
    tensors, md = smollm2_parts
    short = pyrt.LanguageModel.from_parts(tensors, md, md, context_length=40)
    assert all(len(short.tokenizer.encode(t)) <= 48 for t in synthetic_calibration_texts(short, decoder_tokens=256))
    assert synthetic_gptq_damp(smollm2) == DEFAULT_DAMP
    # generating leaves the default sequence alone: calibration's forward() runs from an empty cache
    assert smollm2._cached == []
    assert np.isfinite(smollm2.forward(smollm2.tokenizer.encode("Hello there"))).all()
    smollm2.reset()


def _convert(tmp_path, name, **kw):
    from pyrt.convert import convert_checkpoint

    out = tmp_path / f"{name}.pyrt"
    report = convert_checkpoint(minilm_dir(), out, dtype="q4a", block=32, accuracy=False, **kw)
    return pyrt.load(out), report


def test_converter_synthetic_calibration_bytes_record_and_quality(tmp_path, minilm):
    arrays, f32_model = minilm
    model, report = _convert(tmp_path, "synthetic", calibration="synthetic")
    record = model.metadata["conversion"]["calibration"]
    assert record["used"] and record["name"].startswith("synthetic") and record["seed"] == 0
    assert "sha256" not in record and record["passages_run"] == ENCODER_SEQUENCES
    assert record["gptq_damp"] == ENCODER_GPTQ_DAMP != DEFAULT_DAMP and record["gptq"] == "36 tensors"
    assert report["calibration"] == record
    from pyrt.convert.report import calibration_line

    assert "seed 0" in calibration_line(record) and "GPTQ: 36 tensors" in calibration_line(record)
    # the bytes: GPTQ with the synthetic damping on the synthetic inputs' moments, scales searched
    # with their per-column statistics
    texts = synthetic_calibration_texts(f32_model)
    names = ("encoder.layer.1.attention.self.value.weight", "encoder.layer.5.output.dense.weight")
    stats = collect_activation_stats(f32_model, texts, batch_size=64)
    moments = collect_second_moments(f32_model, texts, names, batch_size=64, dtype=np.float32)
    for name in names:
        expected = quantize_gptq(arrays[name], "q4a", 32, moments[name], damp=ENCODER_GPTQ_DAMP,
                                 importance=stats[name].astype(np.float32))
        np.testing.assert_array_equal(model.tensors[name].numpy(), expected.numpy())
    # quality on held-out sentences against no calibration at all. Measured 2026-12-04 (these two
    # conversions, embeddings q8): no calibration 0.9695 / 0.9053, synthetic 0.9856 / 0.9261.
    plain, _ = _convert(tmp_path, "plain", calibration=None)
    heldout = [line for line in HELDOUT.read_text(encoding="utf-8").splitlines() if line.strip()]
    reference = f32_model.encode(heldout)

    def cosines(m):
        emb = pyrt.SentenceEncoder(m).encode(heldout)
        return (emb * reference).sum(1) / (np.linalg.norm(emb, axis=1) * np.linalg.norm(reference, axis=1))

    synthetic, none = cosines(model), cosines(plain)
    assert synthetic.mean() >= none.mean() + 0.01 and synthetic.min() >= none.min() + 0.02, (
        synthetic.mean(), synthetic.min(), none.mean(), none.min())
    assert synthetic.mean() >= 0.98 and synthetic.min() >= 0.92, (synthetic.mean(), synthetic.min())


def test_cli_takes_synthetic_and_a_model_pyrt_cannot_run_says_why(tmp_path):
    from safetensors.numpy import save_file

    from pyrt.cli.convert import main

    src = tmp_path / "plain.safetensors"
    rng = np.random.default_rng(3)
    save_file({"w": rng.standard_normal((64, 64)).astype(np.float32)}, str(src))
    out = tmp_path / "plain.pyrt"
    assert main([str(src), "-o", str(out), "--dtype", "q4", "--calibration", "synthetic", "-q"]) == 0
    record = pyrt.load(out).metadata["conversion"]["calibration"]
    assert record["used"] is False and "cannot run" in record["reason"] and record["name"].startswith("synthetic")
