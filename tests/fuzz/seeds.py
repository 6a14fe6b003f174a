"""Tiny valid inputs to mutate: a one-layer Llama .pyrt file with its GGUF tokenizer, the same model
as a GGUF file, and a safetensors file. Random weights (seeded), built in well under a second."""
from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np

VOCAB, D_MODEL, HEADS, KV_HEADS, D_FFN, CONTEXT = 40, 16, 2, 1, 32, 64
TOKENS = [chr(c) for c in range(ord("a"), ord("a") + 26)] + ["<|endoftext|>"] + [str(d) for d in range(10)] + \
         ["ab", "abc", " "]


def llama_arrays(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    kv_dim = D_MODEL // HEADS * KV_HEADS

    def m(rows, cols):
        return (rng.standard_normal((rows, cols)) * 0.2).astype(np.float32)
    out = {"token_embd.weight": m(VOCAB, D_MODEL), "output_norm.weight": 1 + 0.1 * rng.standard_normal(D_MODEL).astype(np.float32)}
    p = "blk.0."
    out.update({p + "attn_norm.weight": np.ones(D_MODEL, np.float32), p + "attn_q.weight": m(D_MODEL, D_MODEL),
                p + "attn_k.weight": m(kv_dim, D_MODEL), p + "attn_v.weight": m(kv_dim, D_MODEL),
                p + "attn_output.weight": m(D_MODEL, D_MODEL), p + "ffn_norm.weight": np.ones(D_MODEL, np.float32),
                p + "ffn_gate.weight": m(D_FFN, D_MODEL), p + "ffn_up.weight": m(D_FFN, D_MODEL),
                p + "ffn_down.weight": m(D_MODEL, D_FFN)})
    return out


def llama_metadata(context_length: int | None = CONTEXT) -> dict:
    md = {"general.architecture": "llama", "llama.block_count": 1, "llama.embedding_length": D_MODEL,
          "llama.feed_forward_length": D_FFN, "llama.attention.head_count": HEADS,
          "llama.attention.head_count_kv": KV_HEADS, "llama.attention.layer_norm_rms_epsilon": 1e-5,
          "llama.rope.freq_base": 10000.0}
    if context_length is not None:
        md["llama.context_length"] = context_length
    return md


def tokenizer_metadata() -> dict:
    types = [3 if t == "<|endoftext|>" else 1 for t in TOKENS]
    return {"model": "gpt2", "tokens": TOKENS, "merges": ["a b", "ab c"], "token_type": types, "pre": "default",
            "eos_token_id": TOKENS.index("<|endoftext|>")}


def write_llama_pyrt(path: Path, context_length: int | None = CONTEXT, seed: int = 0) -> Path:
    """A .pyrt file as pyrt-convert writes one from a GGUF (metadata["gguf"], metadata["tokenizer"])."""
    import pyrt
    from pyrt.convert.writer import save_model

    tensors = {name: pyrt.quantize(a, "f32") for name, a in llama_arrays(seed).items()}
    metadata = {"architecture": "llama", "config": {"model_type": "llama"}, "gguf": llama_metadata(context_length),
                "tokenizer": tokenizer_metadata()}
    return save_model(path, tensors, metadata)


# ---- GGUF (written by hand: the layout is small, and the fuzzer needs to know where fields sit) ----
def _gguf_string(s: str | bytes) -> bytes:
    b = s.encode() if isinstance(s, str) else s
    return struct.pack("<Q", len(b)) + b


def gguf_kv(key: str, value) -> bytes:
    """One key/value: ints as uint32 (int32 when negative), floats as float32, strings, lists of
    strings or of ints (int32)."""
    head = _gguf_string(key)
    if isinstance(value, bool):
        return head + struct.pack("<IB", 7, value)
    if isinstance(value, int):
        return head + (struct.pack("<II", 4, value) if value >= 0 else struct.pack("<Ii", 5, value))
    if isinstance(value, float):
        return head + struct.pack("<If", 6, value)
    if isinstance(value, str):
        return head + struct.pack("<I", 8) + _gguf_string(value)
    if all(isinstance(v, str) for v in value):
        return head + struct.pack("<IIQ", 9, 8, len(value)) + b"".join(_gguf_string(v) for v in value)
    return head + struct.pack("<IIQ", 9, 5, len(value)) + np.asarray(value, "<i4").tobytes()


def gguf_bytes(kvs: dict, arrays: dict[str, np.ndarray], alignment: int = 32) -> bytes:
    """A GGUF v3 file of F32 tensors."""
    infos, data = b"", b""
    for name, a in arrays.items():
        pad = -len(data) % alignment
        data += b"\0" * pad
        dims = list(reversed(a.shape))
        infos += _gguf_string(name) + struct.pack("<I", len(dims)) + struct.pack(f"<{len(dims)}Q", *dims) + \
            struct.pack("<IQ", 0, len(data))
        data += np.ascontiguousarray(a, "<f4").tobytes()
    body = b"GGUF" + struct.pack("<IQQ", 3, len(arrays), len(kvs)) + b"".join(gguf_kv(k, v) for k, v in kvs.items()) + infos
    return body + b"\0" * (-len(body) % alignment) + data


def llama_gguf_bytes(seed: int = 0, **overrides) -> bytes:
    tok = tokenizer_metadata()
    kvs = {**llama_metadata(), "tokenizer.ggml.model": tok["model"], "tokenizer.ggml.tokens": tok["tokens"],
           "tokenizer.ggml.merges": tok["merges"], "tokenizer.ggml.token_type": tok["token_type"],
           "tokenizer.ggml.eos_token_id": tok["eos_token_id"], **overrides}
    return gguf_bytes(kvs, llama_arrays(seed))


# ---- safetensors ----
def safetensors_bytes(arrays: dict[str, np.ndarray], header_edit=None) -> bytes:
    header, data = {}, b""
    for name, a in arrays.items():
        raw = np.ascontiguousarray(a, "<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    if header_edit is not None:
        header_edit(header)
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + data


def small_safetensors_bytes(seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    return safetensors_bytes({"layer.weight": rng.standard_normal((8, 32)).astype(np.float32),
                              "layer.bias": rng.standard_normal(8).astype(np.float32)})


# ---- a tiny sentence-transformers BERT (one layer, word-level tokenizer) ----
BERT_WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "hello", "world", "pyrt", "fast", "model", "file"]


def bert_config() -> dict:
    return {"model_type": "bert", "vocab_size": len(BERT_WORDS), "hidden_size": 16, "num_hidden_layers": 1,
            "num_attention_heads": 2, "intermediate_size": 32, "max_position_embeddings": 16,
            "type_vocab_size": 2, "layer_norm_eps": 1e-12, "hidden_act": "gelu"}


def bert_arrays(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    c = bert_config()
    H, I = c["hidden_size"], c["intermediate_size"]

    def m(*shape):
        return (rng.standard_normal(shape) * 0.2).astype(np.float32)
    out = {"embeddings.word_embeddings.weight": m(c["vocab_size"], H),
           "embeddings.position_embeddings.weight": m(c["max_position_embeddings"], H),
           "embeddings.token_type_embeddings.weight": m(2, H),
           "embeddings.LayerNorm.weight": 1 + m(H), "embeddings.LayerNorm.bias": m(H)}
    p = "encoder.layer.0."
    for name, shape in (("attention.self.query", (H, H)), ("attention.self.key", (H, H)),
                        ("attention.self.value", (H, H)), ("attention.output.dense", (H, H)),
                        ("intermediate.dense", (I, H)), ("output.dense", (H, I))):
        out[p + name + ".weight"] = m(*shape)
        out[p + name + ".bias"] = m(shape[0])
    for name in ("attention.output.LayerNorm", "output.LayerNorm"):
        out[p + name + ".weight"] = 1 + m(H)
        out[p + name + ".bias"] = m(H)
    return out


def bert_tokenizer_json(post_processor: dict | None = None) -> str:
    ids = {w: i for i, w in enumerate(BERT_WORDS)}
    if post_processor is None:
        post_processor = {"type": "BertProcessing", "sep": ["[SEP]", ids["[SEP]"]], "cls": ["[CLS]", ids["[CLS]"]]}
    return json.dumps({"version": "1.0", "truncation": None, "padding": None, "added_tokens": [],
                       "normalizer": None, "pre_tokenizer": {"type": "Whitespace"}, "decoder": None,
                       "post_processor": post_processor,
                       "model": {"type": "WordLevel", "vocab": ids, "unk_token": "[UNK]"}})


def bert_files() -> dict[str, bytes]:
    return {"tokenizer.json": bert_tokenizer_json().encode(),
            "modules.json": json.dumps([{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
                                        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]).encode(),
            "1_Pooling/config.json": json.dumps({"pooling_mode_mean_tokens": True}).encode(),
            "sentence_bert_config.json": json.dumps({"max_seq_length": 16}).encode()}


def write_bert_pyrt(path: Path, seed: int = 0) -> Path:
    import pyrt
    from pyrt.convert.writer import save_model

    tensors = {name: pyrt.quantize(a, "f32") for name, a in bert_arrays(seed).items()}
    return save_model(path, tensors, {"architecture": "bert", "config": bert_config()}, files=bert_files())
