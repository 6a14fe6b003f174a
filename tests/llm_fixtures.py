"""SmolLM2-135M-Instruct fixtures for the batched-decoding and thread tests (import the fixtures by
name into a test module). Skips when the GGUF is not in <models_dir()>/smollm2."""
from __future__ import annotations

import pytest

import pyrt

from helpers import models_dir


def smollm2_gguf():
    pytest.importorskip("gguf", reason="reading the GGUF model needs the 'gguf' package")
    pytest.importorskip("tokenizers", reason="the LLM tokenizer needs the 'tokenizers' package")
    found = sorted((models_dir() / "smollm2").glob("*.gguf"))
    if not found:
        pytest.skip(f"SmolLM2 GGUF not found under {models_dir() / 'smollm2'} (run tools/fetch_models.py "
                    "or set PYRT_MODELS)")
    return found[0]


@pytest.fixture(scope="module")
def smollm2_parts():
    """(float32 arrays by GGUF name, GGUF metadata)."""
    from pyrt.convert.readers import gguf_file

    return gguf_file.read_gguf(smollm2_gguf())


@pytest.fixture(scope="module")
def smollm2_q4a():
    """The model as shipped (q4a layers, q8 embedding, FP16 KV cache), 256 tokens of context."""
    model = pyrt.LanguageModel(smollm2_gguf(), context_length=256)
    yield model
    model.close()


@pytest.fixture(scope="module")
def smollm2_f32(smollm2_parts):
    """f32 weights and an f32 KV cache: nothing rounded on the way, for float64 comparisons."""
    from pyrt.convert.readers.gguf_file import quantize_weights

    arrays, md = smollm2_parts
    model = pyrt.LanguageModel.from_parts(quantize_weights(arrays, "f32"), md, md, context_length=128,
                                          kv_cache="f32")
    yield model
    model.close()
