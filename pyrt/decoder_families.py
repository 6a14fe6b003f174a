"""The decoder families pyrt runs, as data: for each GGUF ``general.architecture`` the features its
forward pass needs, which become the native decoder's configuration (csrc/models/decoder.h). Adding
a Llama-like family is a row here, plus an op when it needs a new numerical piece.

The facts follow llama.cpp's graph builders and hyper-parameter loader (src/llama-model.cpp,
src/models/*.cpp) and Hugging Face's modeling files; docs/models.md has the table in prose."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

from .errors import ConfigError, ShapeError, UnsupportedError
from .model_config import (_matrix_shape, _shown, check_context_length, check_divisible, config_float,
                           config_int)


@dataclass(frozen=True)
class DecoderFamily:
    name: str                  # in messages and errors
    hf_architecture: str       # the Hugging Face class, for a converted file's config
    rope_layout: str           # "norm": pairs (2i, 2i+1), GGUF-permuted Llama; "neox": (i, i + d/2)
    ffn: str = "swiglu"        # "swiglu" or "gelu_tanh" (gated)
    qkv_bias: bool = False     # blk.N.attn_{q,k,v}.bias
    qk_norm: bool = False      # blk.N.attn_{q,k}_norm.weight, RMSNorm per head before the rotation
    post_norms: bool = False   # blk.N.post_attention_norm / post_ffw_norm on each block's output
    scaled_embedding: bool = False  # embedding rows times sqrt(d_model)
    # Sliding-window layers: layer l is local when l % swa_pattern < swa_pattern - 1 (llama.cpp's
    # set_swa_pattern), with <arch>.attention.sliding_window positions; 0: no local layers.
    swa_pattern: int = 0
    rope_theta_local: float = 0.0   # the local layers' rotary base (llama.cpp hard-codes it); 0: global's
    softcapping: bool = False  # reads <arch>.attn_logit_softcapping / final_logit_softcapping
    # Layers of the one size whose attention scale is 1/sqrt(d_model / n_heads) rather than
    # 1/sqrt(head_dim) (the 27B Gemmas, as llama.cpp's loader has it); 0: none.
    scale_by_width_layers: int = 0


FAMILIES: dict[str, DecoderFamily] = {
    # Llama 2/3, SmolLM/SmolLM2, Mistral-style GGUFs (llama.cpp writes them all as "llama").
    "llama": DecoderFamily("Llama", "LlamaForCausalLM", rope_layout="norm"),
    "qwen2": DecoderFamily("Qwen2", "Qwen2ForCausalLM", rope_layout="neox", qkv_bias=True),
    "gemma3": DecoderFamily("Gemma 3", "Gemma3ForCausalLM", rope_layout="neox", ffn="gelu_tanh", qk_norm=True,
                            post_norms=True, scaled_embedding=True, swa_pattern=6, rope_theta_local=10000.0,
                            scale_by_width_layers=62),
    "gemma2": DecoderFamily("Gemma 2", "Gemma2ForCausalLM", rope_layout="neox", ffn="gelu_tanh", post_norms=True,
                            scaled_embedding=True, swa_pattern=2, softcapping=True, scale_by_width_layers=46),
}


def family_for(arch: Any) -> DecoderFamily:
    """The family of a GGUF ``general.architecture``; UnsupportedError (one line naming it and the
    supported ones) otherwise. Call it before reading any weight."""
    family = FAMILIES.get(arch) if isinstance(arch, str) else None
    if family is None:
        raise UnsupportedError(f"architecture {_shown(arch)} (general.architecture) is not supported; "
                               f"supported: {', '.join(sorted(FAMILIES))}")
    return family


def _head_dim(md: Mapping[str, Any], arch: str, d_model: int, n_heads: int) -> int:
    """<arch>.attention.key_length when given (Gemma 3: 256 with d_model 640 and 4 heads), else
    d_model / n_heads; values must have the keys' size and the rotation must cover the head."""
    key = f"{arch}.attention.key_length"
    if key in md:
        head_dim = config_int(md, key)
    else:
        check_divisible(f"{arch}.embedding_length", d_model, f"{arch}.attention.head_count", n_heads)
        head_dim = d_model // n_heads
    if config_int(md, f"{arch}.attention.value_length", head_dim) != head_dim:
        raise UnsupportedError(f"{arch}.attention.value_length differs from the key length {head_dim}")
    if head_dim % 2:
        raise ConfigError(f"head size {head_dim} must be even for rotary embeddings")
    if config_int(md, f"{arch}.rope.dimension_count", head_dim) != head_dim:
        raise UnsupportedError(f"partial rotary embeddings ({arch}.rope.dimension_count != head size {head_dim}) "
                               "are not supported")
    return head_dim


def decoder_config(md: Mapping[str, Any], tensors: Mapping[str, Any], context_length: Any,
                   kv_cache: str) -> dict[str, Any]:
    """The native DecoderConfig fields from llama.cpp-named metadata, every value checked; the
    family's features from FAMILIES."""
    arch = md.get("general.architecture", "llama")
    family = family_for(arch)
    vocab, d_model = _matrix_shape(tensors, "token_embd.weight")
    n_heads = config_int(md, f"{arch}.attention.head_count")
    n_kv_heads = config_int(md, f"{arch}.attention.head_count_kv", n_heads, high=n_heads)
    embedding = config_int(md, f"{arch}.embedding_length")
    if embedding != d_model:
        raise ShapeError(f"{arch}.embedding_length is {embedding} but token_embd.weight has shape {(vocab, d_model)}")
    check_divisible(f"{arch}.attention.head_count", n_heads, f"{arch}.attention.head_count_kv", n_kv_heads)
    head_dim = _head_dim(md, arch, d_model, n_heads)
    if kv_cache not in ("f16", "f32"):
        raise UnsupportedError(f"kv_cache must be 'f16' or 'f32', got {_shown(kv_cache)}")
    trained = config_int(md, f"{arch}.context_length") if f"{arch}.context_length" in md else None
    n_layers = config_int(md, f"{arch}.block_count")
    config = {
        "family": family.name,
        "n_layers": n_layers,
        "d_model": d_model,
        "n_heads": n_heads,
        "n_kv_heads": n_kv_heads,
        "head_dim": head_dim,
        "d_ffn": config_int(md, f"{arch}.feed_forward_length"),
        "vocab": vocab,
        "max_context": check_context_length(context_length, trained),
        "rms_eps": config_float(md, f"{arch}.attention.layer_norm_rms_epsilon", high=1.0),
        "rope_theta": config_float(md, f"{arch}.rope.freq_base", 10000.0),
        "kv_f32": kv_cache == "f32",
        "rope_layout": family.rope_layout,
        "ffn": family.ffn,
        "qkv_bias": family.qkv_bias,
        "qk_norm": family.qk_norm,
        "post_norms": family.post_norms,
        # GGUF norms are used as stored: llama.cpp's converter already added Gemma's +1.
        "norm_offset": 0.0,
        "embedding_scale": math.sqrt(d_model) if family.scaled_embedding else 1.0,
        "attention_scale": 1.0 / math.sqrt(d_model // n_heads if n_layers == family.scale_by_width_layers
                                           else head_dim),
    }
    if family.swa_pattern:
        p = family.swa_pattern
        config["sliding_window"] = config_int(md, f"{arch}.attention.sliding_window")
        config["local_layers"] = [layer % p < p - 1 for layer in range(n_layers)]
        config["rope_theta_local"] = family.rope_theta_local
    if family.softcapping:
        for key, field in (("attn_logit_softcapping", "attn_softcap"), ("final_logit_softcapping", "final_softcap")):
            if f"{arch}.{key}" in md:
                config[field] = config_float(md, f"{arch}.{key}")
    return config


# GGUF "<arch>.<key>" -> Hugging Face config key, for a converted file's config.json-like config.
_HF_KEYS = {
    "embedding_length": "hidden_size",
    "feed_forward_length": "intermediate_size",
    "block_count": "num_hidden_layers",
    "attention.head_count": "num_attention_heads",
    "attention.head_count_kv": "num_key_value_heads",
    "attention.layer_norm_rms_epsilon": "rms_norm_eps",
    "attention.key_length": "head_dim",
    "attention.sliding_window": "sliding_window",
    "rope.freq_base": "rope_theta",
    "context_length": "max_position_embeddings",
    "rope.dimension_count": "rope_dimension_count",
    "vocab_size": "vocab_size",
}
_HF_FLOAT_KEYS = ("rms_norm_eps", "rope_theta")
_TOKENIZER_IDS = ("bos_token_id", "eos_token_id", "unknown_token_id", "padding_token_id")


def hf_config(arch: Any, kv: Mapping[str, Any], has_output: bool, n_vocab: int) -> dict[str, Any]:
    """The Hugging Face-style config of a GGUF decoder (pyrt-convert keeps it beside the GGUF keys);
    UnsupportedError for an architecture outside FAMILIES, before any tensor is read."""
    family = family_for(arch)
    config: dict[str, Any] = {"model_type": arch, "tensor_naming": "gguf", "source_format": "gguf",
                              "architectures": [family.hf_architecture]}
    for key, hf in _HF_KEYS.items():
        if f"{arch}.{key}" in kv:  # types and ranges checked (pyrt/model_config.py)
            check = config_float if hf in _HF_FLOAT_KEYS else config_int
            config[hf] = check(kv, f"{arch}.{key}")
    config.setdefault("vocab_size", n_vocab)
    if "hidden_size" in config and "num_attention_heads" in config:
        config.setdefault("head_dim", config["hidden_size"] // config["num_attention_heads"])
    config.setdefault("num_key_value_heads", config.get("num_attention_heads"))
    config["tie_word_embeddings"] = not has_output  # no output.weight: the head reuses token_embd
    for key in _TOKENIZER_IDS:
        if f"tokenizer.ggml.{key}" in kv:
            config[key.replace("unknown", "unk").replace("padding", "pad")] = kv[f"tokenizer.ggml.{key}"]
    return config
