"""Helpers for the decoder-family tests (Qwen2, Gemma 3): the GGUF files, models cut to their first
layers with f32 weights (nothing rounded: float64 comparisons), and llama.cpp's greedy decoding on
the same file through llama-cpp-python (the tests skip without it). Prompts are token ids from
llama.cpp's own tokenizer, so these tests do not depend on pyrt's tokenizers."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import pyrt

from helpers import llama_cpp_amx_hazard, models_dir

GEMMA3 = ("gemma3-270m", "gemma-3-270m-q4_k_m.gguf")
QWEN2 = ("qwen2.5-coder-0.5b", "qwen2.5-coder-0.5b-instruct.gguf")
# A byte-level BPE stand-in for the tokenizer: these tests run forward passes on token ids only.
STUB_TOKENIZER = {"tokenizer.ggml.model": "gpt2", "tokenizer.ggml.tokens": ["a", "b", "ab"],
                  "tokenizer.ggml.merges": ["a b"]}
# Texts whose llama.cpp token ids are the prompts (written for these tests).
PROMPTS = (b"The capital of France is", b"def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n",
           b"Water boils at 100 degrees Celsius, and")
PERPLEXITY_TEXT = (b"The Moon is the only natural satellite of the Earth. It orbits our planet at an average "
                   b"distance of about 384,000 kilometres and takes roughly 27 days to complete one orbit.")


def gguf_path(model: tuple[str, str]) -> Path:
    pytest.importorskip("gguf", reason="reading the GGUF model needs the 'gguf' package")
    path = models_dir() / model[0] / model[1]
    if not path.is_file():
        pytest.skip(f"{path} not found (run tools/fetch_models.py or set PYRT_MODELS)")
    return path


def read_parts(model: tuple[str, str]):
    """(float32 arrays by GGUF name, GGUF metadata) of the dequantized file."""
    from pyrt.convert.readers.gguf_file import read_gguf

    return read_gguf(gguf_path(model))


def first_layers(arrays: dict, md: dict, n_layers: int, **keys) -> tuple[dict, dict]:
    """The model cut to its first ``n_layers`` (the metadata says so); ``keys`` override metadata
    keys by their name after the architecture ("attention.sliding_window": 8)."""
    arch = md["general.architecture"]
    keep = {k: v for k, v in arrays.items() if not k.startswith("blk.") or int(k.split(".")[1]) < n_layers}
    return keep, {**md, f"{arch}.block_count": n_layers, **{f"{arch}.{k}": v for k, v in keys.items()}}


def f32_model(arrays: dict, md: dict, context_length: int, kv_cache: str = "f32") -> pyrt.LanguageModel:
    from pyrt.convert.readers.gguf_file import quantize_weights

    return pyrt.LanguageModel.from_parts(quantize_weights(arrays, "f32"), md, STUB_TOKENIZER,
                                         context_length=context_length, kv_cache=kv_cache)


def llama_cpp_model(path: Path, n_ctx: int = 512):
    llama_cpp = pytest.importorskip("llama_cpp", reason="the llama.cpp comparison needs llama-cpp-python")
    hazard = llama_cpp_amx_hazard()
    if hazard:
        pytest.skip(hazard)
    return llama_cpp.Llama(model_path=str(path), n_ctx=n_ctx, n_threads=2, logits_all=True, verbose=False)


def greedy_pyrt(model: pyrt.LanguageModel, ids: list[int], n: int) -> list[int]:
    model.reset()
    logits, out = model.forward(ids), []
    for _ in range(n):
        out.append(int(np.argmax(logits)))
        logits = model.forward(out[-1:])
    return out


def greedy_llama_cpp(llm, ids: list[int], n: int) -> list[int]:
    llm.reset()
    llm.eval(ids)
    out = []
    for _ in range(n):
        out.append(int(np.argmax(llm.scores[llm.n_tokens - 1])))
        llm.eval(out[-1:])
    return out


def llama_cpp_logits(llm, ids: list[int]) -> np.ndarray:
    llm.reset()
    llm.eval(ids)
    return np.array(llm.scores[:len(ids)], np.float64)


def perplexity(logits: np.ndarray, ids: list[int]) -> float:
    """exp(mean NLL) of ids[1:] under logits[:-1] (float64)."""
    z = np.asarray(logits, np.float64)[:-1]
    log_z = z.max(axis=1) + np.log(np.exp(z - z.max(axis=1, keepdims=True)).sum(axis=1))
    return float(np.exp((log_z - z[np.arange(len(ids) - 1), ids[1:]]).mean()))


def check_greedy_against_llama_cpp(model: pyrt.LanguageModel, path: Path, reference, arrays: dict, md: dict,
                                   steps: int = 24) -> None:
    """Greedy continuations of PROMPTS by pyrt and by llama.cpp on the same GGUF: equal tokens, or,
    where llama.cpp's quantized activations pick the other side of a near tie, pyrt's token is the
    float64 forward's argmax (``reference(arrays, md, ids, last=1)``) and the two tokens' float64
    logits are within 0.5. At least one prompt must agree all the way."""
    llm = llama_cpp_model(path)
    equal = 0
    for text in PROMPTS:
        ids = llm.tokenize(text, add_bos=True)
        ours, theirs = greedy_pyrt(model, ids, steps), greedy_llama_cpp(llm, ids, steps)
        k = next((i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b), None)
        print(f"{text[:30]!r}: {len(ids)} prompt tokens, first difference at step {k}")
        if k is None:
            equal += 1
            continue
        want = reference(arrays, md, ids + ours[:k], last=1)[0]
        print(f"  float64 logits: pyrt's token {want[ours[k]]:.4f}, llama.cpp's {want[theirs[k]]:.4f}")
        assert ours[k] == int(np.argmax(want))
        assert want[ours[k]] - want[theirs[k]] < 0.5
    assert equal >= 1


def perplexities(model: pyrt.LanguageModel, path: Path) -> tuple[float, float]:
    """(pyrt's, llama.cpp's) perplexity of PERPLEXITY_TEXT, tokenized by llama.cpp."""
    llm = llama_cpp_model(path)
    ids = llm.tokenize(PERPLEXITY_TEXT, add_bos=True)
    theirs = perplexity(llama_cpp_logits(llm, ids), ids)
    model.reset()
    ours = perplexity(model.forward(ids, all_logits=True), ids)
    print(f"perplexity of {len(ids)} tokens: pyrt {ours:.3f}, llama.cpp {theirs:.3f}")
    return ours, theirs
