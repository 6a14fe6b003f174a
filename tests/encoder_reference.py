"""Shared by the sentence-encoder tests (tests/models/test_encoder.py: BERT, test_mpnet.py: MPNet):
the float64 numpy pieces of their independent references, and the checkpoint, tokens and
per-format caches their fixtures build. Nothing here uses pyrt's forward pass."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Callable

import numpy as np
import pytest


def gelu64(x: np.ndarray) -> np.ndarray:
    """Exact GELU x * Phi(x) in float64."""
    try:
        from scipy.special import erf
        erf_x = erf(x / math.sqrt(2.0))
    except ImportError:
        erf_x = np.frompyfunc(math.erf, 1, 1)(x / math.sqrt(2.0)).astype(np.float64)
    return 0.5 * x * (1.0 + erf_x)


def layer_norm64(x, gamma, beta, eps):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * gamma + beta


def softmax_rows64(scores: np.ndarray) -> np.ndarray:
    probs = np.exp(scores - scores.max(-1, keepdims=True))
    return probs / probs.sum(-1, keepdims=True)


def mean_pooled_unit(states: list[np.ndarray]) -> np.ndarray:
    """Mean pooling + L2 normalisation per sentence (the models' Pooling and Normalize modules)."""
    out = np.stack([s.mean(0) for s in states])
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def model_folder(path: Path, fetch_name: str) -> Path:
    if not (path / "model.safetensors").is_file():
        pytest.skip(f"{path} is absent: run python tools/fetch_models.py --only {fetch_name} (or set PYRT_MODELS)")
    return path


def read_checkpoint(folder: Path, carried: tuple[str, ...]) -> tuple[dict, dict, dict]:
    """(float32 weights by name, HF config, carried files), read with safetensors, not pyrt."""
    from safetensors.numpy import load_file

    weights = {k: v for k, v in load_file(str(folder / "model.safetensors")).items() if v.dtype == np.float32}
    config = json.loads((folder / "config.json").read_text())
    files = {name: (folder / name).read_bytes() for name in carried if (folder / name).is_file()}
    return weights, config, files


def independent_token_ids(folder: Path, sentences: list[str], max_length: int) -> list[list[int]]:
    """Tokenisation set up with the tokenizers package, as sentence-transformers does: stripped
    text, no padding, truncation at max_seq_length."""
    import tokenizers

    tok = tokenizers.Tokenizer.from_file(str(folder / "tokenizer.json"))
    tok.no_padding()
    tok.enable_truncation(max_length=max_length)
    return [e.ids for e in tok.encode_batch([s.strip() for s in sentences])]


def per_format(make: Callable[[str], object]) -> Callable[[str], object]:
    """make(fmt), computed once per format (module-scoped fixtures hand this out)."""
    cache: dict = {}

    def get(fmt: str):
        if fmt not in cache:
            cache[fmt] = make(fmt)
        return cache[fmt]

    return get


# Where each family keeps a layer's attention tensors (the feed-forward names are shared).
BERT_ATTENTION = {"q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
                  "o": "attention.output.dense", "norm": "attention.output.LayerNorm"}
MPNET_ATTENTION = {"q": "attention.attn.q", "k": "attention.attn.k", "v": "attention.attn.v",
                   "o": "attention.attn.o", "norm": "attention.LayerNorm"}


def post_norm_layers64(x: np.ndarray, w: dict, cfg: dict, names: dict, score_bias=None) -> np.ndarray:
    """The transformer layers of a post-LayerNorm encoder in float64 on embeddings x [L, H]:
    softmax(Q K^T / sqrt(d) (+ score_bias [heads, L, L])) V, output projection, residual, LayerNorm;
    exact-GELU FFN, residual, LayerNorm."""
    H, heads, eps = cfg["hidden_size"], cfg["num_attention_heads"], cfg["layer_norm_eps"]
    dh, L = H // heads, len(x)

    def dense(h, name):
        return h @ w[name + ".weight"].T + w[name + ".bias"]

    for i in range(cfg["num_hidden_layers"]):
        p = f"encoder.layer.{i}."
        q, k, v = (dense(x, p + names[n]).reshape(L, heads, dh).transpose(1, 0, 2) for n in "qkv")
        scores = q @ k.transpose(0, 2, 1) / math.sqrt(dh)
        probs = softmax_rows64(scores if score_bias is None else scores + score_bias)
        ctx = (probs @ v).transpose(1, 0, 2).reshape(L, H)
        x = layer_norm64(x + dense(ctx, p + names["o"]), w[p + names["norm"] + ".weight"],
                         w[p + names["norm"] + ".bias"], eps)
        f = gelu64(dense(x, p + "intermediate.dense"))
        x = layer_norm64(x + dense(f, p + "output.dense"), w[p + "output.LayerNorm.weight"],
                         w[p + "output.LayerNorm.bias"], eps)
    return x
