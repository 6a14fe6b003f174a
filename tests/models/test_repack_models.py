"""repack on LanguageModel and SentenceEncoder: the repacked copy is made where it applies (and
not with repack=False / PYRT_REPACK=0), and the model's outputs are bit for bit those of the file's
layout (every M=1 product sums in the same order; larger M reads the file's layout)."""
from __future__ import annotations

import numpy as np
import pytest

import pyrt
from pyrt.repack import resolve_repack

from helpers import model_gguf, models_dir

SENTENCES = ["a", "The cat sits on the mat.", "Quantized weights keep the model small and fast. " * 4]


def needs_avx512():
    if pyrt.get_cpu_isa() != "avx512":
        pytest.skip("the repacked copy is made for the avx512 kernels only")


def test_resolve_repack(monkeypatch):
    monkeypatch.delenv("PYRT_REPACK", raising=False)
    assert resolve_repack(None, default=True) is True and resolve_repack(None, default=False) is False
    assert resolve_repack(False, default=True) is False and resolve_repack(True, default=False) is True
    monkeypatch.setenv("PYRT_REPACK", "0")
    assert resolve_repack(None, default=True) is False and resolve_repack(True, default=True) is True
    monkeypatch.setenv("PYRT_REPACK", "1")
    assert resolve_repack(None, default=False) is True
    monkeypatch.setenv("PYRT_REPACK", "yes")
    with pytest.raises(pyrt.UnsupportedError, match="PYRT_REPACK"):
        resolve_repack(None, default=True)
    with pytest.raises(pyrt.UnsupportedError, match="repack"):
        resolve_repack(1, default=True)


@pytest.fixture(scope="module")
def smollm2_pair():
    path = model_gguf("smollm2")
    return pyrt.LanguageModel(path, context_length=64, repack=True), pyrt.LanguageModel(path, context_length=64,
                                                                                         repack=False)


def test_smollm2_logits_equal_with_and_without_repack(smollm2_pair):
    needs_avx512()
    on, off = smollm2_pair
    assert on.repack and not off.repack
    # SmolLM2 Q4_1: every q4a matrix at block 32 gets a copy, as many bytes as its whole groups.
    assert on._decoder.repacked_bytes > 0 and off._decoder.repacked_bytes == 0
    ids = np.random.default_rng(7).integers(100, on.config["vocab"], 24).tolist()
    previous = pyrt.get_num_threads()
    for threads in (2, 1):
        pyrt.set_num_threads(threads)
        try:
            for lm in (on, off):
                lm.reset()
            a, b = on.forward(ids[:8], all_logits=True), off.forward(ids[:8], all_logits=True)  # M = 8: file layout
            assert np.array_equal(a, b)
            for t in ids[8:]:  # decode steps: M = 1, the repacked copy
                a, b = on.forward([t]), off.forward([t])
                assert np.all(np.isfinite(a))
                assert np.array_equal(a.view(np.uint32), b.view(np.uint32))
        finally:
            pyrt.set_num_threads(previous)


def test_pyrt_repack_env_turns_it_off(monkeypatch):
    needs_avx512()
    monkeypatch.setenv("PYRT_REPACK", "0")
    lm = pyrt.LanguageModel(model_gguf("smollm2"), context_length=16)
    assert not lm.repack and lm._decoder.repacked_bytes == 0


def test_sentence_encoder_repack_is_opt_in(monkeypatch):
    """Off by default (an encoder's products have a row per token); on, the embeddings keep their bits."""
    needs_avx512()
    monkeypatch.delenv("PYRT_REPACK", raising=False)
    pytest.importorskip("safetensors.numpy", reason="needs the safetensors package")
    pytest.importorskip("tokenizers", reason="SentenceEncoder needs the tokenizers package")
    from encoder_reference import model_folder, read_checkpoint  # noqa: PLC0415

    carried = ("tokenizer.json", "modules.json", "sentence_bert_config.json", "1_Pooling/config.json",
               "tokenizer_config.json", "config.json")
    weights, config, files = read_checkpoint(model_folder(models_dir() / "all-MiniLM-L6-v2", "minilm"), carried)
    tensors = {k: pyrt.quantize(v, "q4a" if v.ndim == 2 else "f32", 32) for k, v in weights.items()}
    default = pyrt.SentenceEncoder.from_parts(tensors, config, files)
    on = pyrt.SentenceEncoder.from_parts(tensors, config, files, repack=True)
    assert not default.repack and default._native.repacked_bytes == 0
    assert on.repack and on._native.repacked_bytes > 0
    a, b = on.encode(SENTENCES), default.encode(SENTENCES)
    assert np.array_equal(a.view(np.uint32), b.view(np.uint32))
