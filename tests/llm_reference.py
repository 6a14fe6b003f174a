"""Independent float64 numpy references for tests/models/test_llm.py: a Llama forward pass written the
Hugging Face way (rotate_half rotary embeddings on un-permuted Q/K weights), and llama.cpp's BPE
tokenizer algorithm (regex split, then lowest-rank merge first)."""
from __future__ import annotations

import numpy as np


def unpermute_rows(w: np.ndarray, n_heads: int) -> np.ndarray:
    """Undoes llama.cpp's convert-time permute of Q/K rows (HF rotate_half layout -> interleaved pairs):
    GGUF row (h, i, s) holds HF row (h, s, i)."""
    rows, cols = w.shape
    return w.reshape(n_heads, rows // n_heads // 2, 2, cols).swapaxes(1, 2).reshape(rows, cols)


def _rms_norm(x, w, eps):
    return x / np.sqrt((x * x).mean(axis=-1, keepdims=True) + eps) * w


def _rope(x, positions, theta, style):
    # x: [n, heads, hd]
    hd = x.shape[-1]
    inv_freq = theta ** (-np.arange(0, hd, 2, dtype=np.float64) / hd)
    ang = positions[:, None].astype(np.float64) * inv_freq[None, :]  # [n, hd/2]
    cos, sin = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
    if style == "rotate_half":
        x1, x2 = x[..., : hd // 2], x[..., hd // 2:]
        return np.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)
    # "interleaved": pairs (2i, 2i+1)
    a, b = x[..., 0::2], x[..., 1::2]
    out = np.empty_like(x)
    out[..., 0::2] = a * cos - b * sin
    out[..., 1::2] = a * sin + b * cos
    return out


def llama_logits(arrays: dict, md: dict, ids, rope_style: str = "rotate_half", fp16_kv: bool = False) -> np.ndarray:
    """float64 logits [len(ids), vocab]. Q/K weights are un-permuted to HF layout; rope_style
    "rotate_half" is the correct HF convention there ("interleaved" is the deliberate mistake the
    tests use to show they can tell the two apart). With fp16_kv, keys and values are rounded to
    FP16 as pyrt's default KV cache stores them."""
    f64 = lambda name: arrays[name].astype(np.float64)  # noqa: E731
    n_layers = int(md["llama.block_count"])
    n_heads = int(md["llama.attention.head_count"])
    n_kv = int(md["llama.attention.head_count_kv"])
    eps = float(md["llama.attention.layer_norm_rms_epsilon"])
    theta = float(md["llama.rope.freq_base"])
    ids = np.asarray(ids)
    n = len(ids)
    emb = f64("token_embd.weight")
    hd = emb.shape[1] // n_heads
    pos = np.arange(n)
    x = emb[ids]
    mask = np.triu(np.full((n, n), -np.inf), k=1)
    for layer in range(n_layers):
        p = f"blk.{layer}."
        h = _rms_norm(x, f64(p + "attn_norm.weight"), eps)
        q = h @ unpermute_rows(f64(p + "attn_q.weight"), n_heads).T
        k = h @ unpermute_rows(f64(p + "attn_k.weight"), n_kv).T
        v = h @ f64(p + "attn_v.weight").T
        q = _rope(q.reshape(n, n_heads, hd), pos, theta, rope_style)
        k = _rope(k.reshape(n, n_kv, hd), pos, theta, rope_style)
        v = v.reshape(n, n_kv, hd)
        if fp16_kv:
            k = k.astype(np.float16).astype(np.float64)
            v = v.astype(np.float16).astype(np.float64)
        group = n_heads // n_kv
        out = np.empty((n, n_heads, hd))
        for head in range(n_heads):
            s = q[:, head, :] @ k[:, head // group, :].T / np.sqrt(hd) + mask
            s = np.exp(s - s.max(axis=1, keepdims=True))
            out[:, head, :] = (s / s.sum(axis=1, keepdims=True)) @ v[:, head // group, :]
        x = x + out.reshape(n, n_heads * hd) @ f64(p + "attn_output.weight").T
        h = _rms_norm(x, f64(p + "ffn_norm.weight"), eps)
        g = h @ f64(p + "ffn_gate.weight").T
        u = h @ f64(p + "ffn_up.weight").T
        x = x + (g / (1.0 + np.exp(-g)) * u) @ f64(p + "ffn_down.weight").T
    x = _rms_norm(x, f64("output_norm.weight"), eps)
    head = f64("output.weight") if "output.weight" in arrays else emb
    return x @ head.T


# llama.cpp pre-tokenizer "smollm": "\p{N}" then the GPT-2 regex (with its whitespace fallback).
_GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


def _regex_split(text: str, pattern, regex) -> list[str]:
    # llama.cpp's unicode_regex_split keeps the text between matches as pieces of its own.
    out, last = [], 0
    for m in regex.finditer(pattern, text):
        if m.start() > last:
            out.append(text[last:m.start()])
        out.append(m.group())
        last = m.end()
    if last < len(text):
        out.append(text[last:])
    return out


def _byte_encoder() -> dict[int, str]:
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


def llama_cpp_bpe_tokenize(text: str, md: dict) -> list[int]:
    """llama.cpp's llm_tokenizer_bpe_session::tokenize for the smollm pre-tokenizer, with control
    tokens matched first (parse_special=true), written from its algorithm."""
    import regex  # noqa: PLC0415 - test-only dependency

    tokens = list(md["tokenizer.ggml.tokens"])
    types = list(md["tokenizer.ggml.token_type"])
    vocab = {t: i for i, t in enumerate(tokens)}
    ranks = {}
    for i, m in enumerate(md["tokenizer.ggml.merges"]):
        cut = m.find(" ", 1)
        ranks[(m[:cut], m[cut + 1:])] = i
    specials = sorted((t for t, ty in zip(tokens, types) if ty == 3), key=len, reverse=True)
    special_re = "(" + "|".join(regex.escape(s) for s in specials) + ")"
    enc = _byte_encoder()
    ids: list[int] = []
    for frag in regex.split(special_re, text):
        if not frag:
            continue
        if frag in specials:
            ids.append(vocab[frag])
            continue
        words = []
        for piece in _regex_split(frag, r"\p{N}", regex):
            words.extend(_regex_split(piece, _GPT2_PATTERN, regex))
        for word in words:
            sym = [enc[b] for b in word.encode("utf-8")]
            while len(sym) > 1:
                best = min(range(len(sym) - 1), key=lambda j: (ranks.get((sym[j], sym[j + 1]), 1 << 30), j))
                if (sym[best], sym[best + 1]) not in ranks:
                    break
                sym[best:best + 2] = [sym[best] + sym[best + 1]]
            ids.extend(vocab[s] for s in sym)
    return ids
