"""The family table (pyrt/decoder_families.py) and the config-only features no shipped model
exercises: unsupported architectures fail in one line before any weight is read, and a small random
Gemma 2-style model (attention and final softcapping, every other layer local, no QK-norm) matches
the independent float64 forward."""
from __future__ import annotations

import numpy as np
import pytest

import pyrt
from pyrt.decoder_families import FAMILIES, family_for, hf_config

from decoder_fixtures import STUB_TOKENIZER
from decoder_reference import gemma2_logits


def test_unsupported_architecture_is_one_line_naming_the_supported_ones():
    with pytest.raises(pyrt.UnsupportedError) as err:
        pyrt.LanguageModel.from_parts({}, {"general.architecture": "mamba"}, STUB_TOKENIZER)  # no weights at all
    message = str(err.value)
    assert "\n" not in message and "'mamba'" in message and all(arch in message for arch in FAMILIES)
    with pytest.raises(pyrt.UnsupportedError, match="mamba"):
        hf_config("mamba", {}, False, 10)  # the converter's config: also before the tensors
    with pytest.raises(pyrt.UnsupportedError):
        family_for(None)


def test_every_family_names_its_features():
    for arch, family in FAMILIES.items():
        assert family.rope_layout in ("norm", "neox") and family.ffn in ("swiglu", "gelu_tanh"), arch
        assert family.swa_pattern >= 0 and (family.rope_theta_local == 0 or family.swa_pattern), arch
    assert FAMILIES["llama"].rope_layout == "norm" and FAMILIES["qwen2"].qkv_bias


def gemma2_like(rng, n_layers=4, d=32, heads=2, kv_heads=1, head_dim=16, ffn=64, vocab=50):
    """Random GGUF-named arrays and metadata of a small Gemma 2-style model (norms stored as 1 + w)."""
    arrays = {"token_embd.weight": rng.normal(0, 0.5, (vocab, d)), "output_norm.weight": 1 + rng.normal(0, 0.1, d)}
    for layer in range(n_layers):
        b = f"blk.{layer}."
        arrays.update({
            b + "attn_norm.weight": 1 + rng.normal(0, 0.1, d), b + "ffn_norm.weight": 1 + rng.normal(0, 0.1, d),
            b + "post_attention_norm.weight": 1 + rng.normal(0, 0.1, d),
            b + "post_ffw_norm.weight": 1 + rng.normal(0, 0.1, d),
            b + "attn_q.weight": rng.normal(0, 0.3, (heads * head_dim, d)),
            b + "attn_k.weight": rng.normal(0, 0.3, (kv_heads * head_dim, d)),
            b + "attn_v.weight": rng.normal(0, 0.3, (kv_heads * head_dim, d)),
            b + "attn_output.weight": rng.normal(0, 0.3, (d, heads * head_dim)),
            b + "ffn_gate.weight": rng.normal(0, 0.3, (ffn, d)), b + "ffn_up.weight": rng.normal(0, 0.3, (ffn, d)),
            b + "ffn_down.weight": rng.normal(0, 0.3, (d, ffn)),
        })
    md = {"general.architecture": "gemma2", "gemma2.block_count": n_layers, "gemma2.embedding_length": d,
          "gemma2.feed_forward_length": ffn, "gemma2.attention.head_count": heads,
          "gemma2.attention.head_count_kv": kv_heads, "gemma2.attention.key_length": head_dim,
          "gemma2.attention.value_length": head_dim, "gemma2.attention.layer_norm_rms_epsilon": 1e-6,
          "gemma2.rope.freq_base": 10000.0, "gemma2.attention.sliding_window": 3,
          "gemma2.attn_logit_softcapping": 2.0, "gemma2.final_logit_softcapping": 1.5}
    return {k: v.astype(np.float32) for k, v in arrays.items()}, md


def test_gemma2_softcapping_and_alternating_windows_match_float64(rng):
    arrays, md = gemma2_like(rng)
    model = pyrt.LanguageModel.from_parts({k: pyrt.quantize(v, "f32") for k, v in arrays.items()}, md,
                                          STUB_TOKENIZER, context_length=32, kv_cache="f32")
    assert model.config["local_layers"] == [True, False, True, False]
    ids = [int(i) for i in rng.integers(0, 50, 12)]
    got = model.forward(ids, all_logits=True)
    want = gemma2_logits(arrays, md, ids)
    assert np.abs(got - want).max() < 1e-4
    assert np.abs(got).max() <= 1.5  # the final cap
    uncapped = gemma2_logits(arrays, {**md, "gemma2.attn_logit_softcapping": 1e9}, ids)
    assert np.abs(uncapped - want).max() > 1e-2  # the attention cap changes the result
