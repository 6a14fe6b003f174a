"""Independent float64 forward passes of Qwen2 and Gemma 3 (and Gemma 2's softcapping), written from
the published architecture descriptions (the Qwen2 / Gemma 3 papers and Hugging Face's
modeling_qwen2.py / modeling_gemma3.py), not from pyrt's code: every layer spelled out per family,
Hugging Face's rotate_half rotary, masks built as boolean matrices.

Weights are the dequantized GGUF arrays by GGUF name (numpy [out, in]). llama.cpp's converter
stores Gemma's norm weights as 1 + w (Hugging Face's Gemma RMSNorm multiplies by 1 + w): the
reference undoes that and applies Hugging Face's formula, so the +1 is visible here."""
from __future__ import annotations

import math

import numpy as np


def rms_norm(x, w, eps):
    return x / np.sqrt((x * x).mean(axis=-1, keepdims=True) + eps) * w


def gemma_rms_norm(x, w_gguf, eps):
    return rms_norm(x, 1.0 + (w_gguf.astype(np.float64) - 1.0), eps)


def linear(x, arrays, name, bias=None):
    y = x @ arrays[name].astype(np.float64).T
    return y if bias is None else y + arrays[bias].astype(np.float64)


def rotary(x, positions, theta):
    """x [T, heads, D] rotated as Hugging Face's apply_rotary_pos_emb: x cos + rotate_half(x) sin."""
    d = x.shape[-1]
    inv_freq = 1.0 / theta ** (np.arange(0, d, 2, dtype=np.float64) / d)
    angles = np.outer(np.asarray(positions, np.float64), inv_freq)
    emb = np.concatenate([angles, angles], axis=-1)[:, None, :]
    rotated = np.concatenate([-x[..., d // 2:], x[..., :d // 2]], axis=-1)
    return x * np.cos(emb) + rotated * np.sin(emb)


def attention(q, k, v, scale, window=None, softcap=None):
    """Causal grouped-query attention, q [T, H, D], k/v [T, Hkv, D]; with window, position i sees
    positions j with i - window < j <= i (Hugging Face's sliding_window mask)."""
    T, H, _ = q.shape
    group = H // k.shape[1]
    i, j = np.arange(T)[:, None], np.arange(T)[None, :]
    visible = j <= i
    if window is not None:
        visible &= j > i - window
    out = np.empty_like(q)
    for h in range(H):
        s = q[:, h] @ k[:, h // group].T * scale
        if softcap is not None:
            s = softcap * np.tanh(s / softcap)
        s = np.where(visible, s, -np.inf)
        p = np.exp(s - s.max(axis=1, keepdims=True))
        out[:, h] = (p / p.sum(axis=1, keepdims=True)) @ v[:, h // group]
    return out


def gelu_tanh(x):
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def silu(x):
    return x / (1.0 + np.exp(-x))


def output_logits(x, head):
    """x [T, d] @ head^T in float64, the vocabulary in slices (a 262144-row head upcast at once
    would take 1.3 GB)."""
    out = np.empty((x.shape[0], head.shape[0]))
    for r in range(0, head.shape[0], 16384):
        out[:, r:r + 16384] = x @ head[r:r + 16384].astype(np.float64).T
    return out


def qwen2_logits(arrays, md, ids, n_layers=None, last=None):
    """Qwen2: pre-norm RMSNorm blocks, Q/K/V projections with biases, rotary (rotate_half, base
    rope.freq_base) on Q and K, grouped-query attention scaled by 1/sqrt(head_dim), SwiGLU MLP,
    final RMSNorm and a separate lm_head."""
    eps = md["qwen2.attention.layer_norm_rms_epsilon"]
    theta = md["qwen2.rope.freq_base"]
    H, Hkv = md["qwen2.attention.head_count"], md["qwen2.attention.head_count_kv"]
    L = n_layers or md["qwen2.block_count"]
    x = arrays["token_embd.weight"][ids].astype(np.float64)
    T, d = x.shape
    D = d // H
    pos = np.arange(T)
    for layer in range(L):
        b = f"blk.{layer}."
        h = rms_norm(x, arrays[b + "attn_norm.weight"], eps)
        q = linear(h, arrays, b + "attn_q.weight", b + "attn_q.bias").reshape(T, H, D)
        k = linear(h, arrays, b + "attn_k.weight", b + "attn_k.bias").reshape(T, Hkv, D)
        v = linear(h, arrays, b + "attn_v.weight", b + "attn_v.bias").reshape(T, Hkv, D)
        a = attention(rotary(q, pos, theta), rotary(k, pos, theta), v, 1.0 / math.sqrt(D))
        x = x + linear(a.reshape(T, H * D), arrays, b + "attn_output.weight")
        h = rms_norm(x, arrays[b + "ffn_norm.weight"], eps)
        f = silu(linear(h, arrays, b + "ffn_gate.weight")) * linear(h, arrays, b + "ffn_up.weight")
        x = x + linear(f, arrays, b + "ffn_down.weight")
    x = rms_norm(x[-(last or T):], arrays["output_norm.weight"], eps)
    return output_logits(x, arrays["output.weight"])


def gemma3_logits(arrays, md, ids, n_layers=None, sliding_window=None, last=None):
    """Gemma 3 (text): embeddings times sqrt(hidden); per layer RMSNorm(1 + w) before attention,
    per-head RMSNorm on Q and K (q_norm, k_norm), rotary with base 1e4 on the five local layers of
    every six and rope.freq_base on the sixth (global) layer, local layers attending to the last
    sliding_window positions, scores scaled by query_pre_attn_scalar^-1/2 = head_dim^-1/2, an RMSNorm
    after attention and another after the MLP, gated GELU (tanh) MLP, final RMSNorm, tied head.
    sliding_window=0: every layer global (to show that the window matters); last: logits of the
    last rows only."""
    eps = md["gemma3.attention.layer_norm_rms_epsilon"]
    H, Hkv = md["gemma3.attention.head_count"], md["gemma3.attention.head_count_kv"]
    D = md["gemma3.attention.key_length"]
    window = md["gemma3.attention.sliding_window"] if sliding_window is None else sliding_window
    L = n_layers or md["gemma3.block_count"]
    emb = arrays["token_embd.weight"]
    x = emb[ids].astype(np.float64) * math.sqrt(emb.shape[1])
    T = x.shape[0]
    pos = np.arange(T)
    for layer in range(L):
        b = f"blk.{layer}."
        is_global = (layer + 1) % 6 == 0
        theta = md["gemma3.rope.freq_base"] if is_global else 10000.0
        h = gemma_rms_norm(x, arrays[b + "attn_norm.weight"], eps)
        q = linear(h, arrays, b + "attn_q.weight").reshape(T, H, D)
        k = linear(h, arrays, b + "attn_k.weight").reshape(T, Hkv, D)
        v = linear(h, arrays, b + "attn_v.weight").reshape(T, Hkv, D)
        q = rotary(gemma_rms_norm(q, arrays[b + "attn_q_norm.weight"], eps), pos, theta)
        k = rotary(gemma_rms_norm(k, arrays[b + "attn_k_norm.weight"], eps), pos, theta)
        a = attention(q, k, v, D ** -0.5, window=None if is_global or not window else window)
        a = linear(a.reshape(T, H * D), arrays, b + "attn_output.weight")
        x = x + gemma_rms_norm(a, arrays[b + "post_attention_norm.weight"], eps)
        h = gemma_rms_norm(x, arrays[b + "ffn_norm.weight"], eps)
        f = gelu_tanh(linear(h, arrays, b + "ffn_gate.weight")) * linear(h, arrays, b + "ffn_up.weight")
        f = linear(f, arrays, b + "ffn_down.weight")
        x = x + gemma_rms_norm(f, arrays[b + "post_ffw_norm.weight"], eps)
    x = gemma_rms_norm(x[-(last or T):], arrays["output_norm.weight"], eps)
    return output_logits(x, emb)


def gemma2_logits(arrays, md, ids):
    """Gemma 2: as Gemma 3 without QK-norm, one base for every layer, even layers local, and
    softcapping: attention scores cap * tanh(s / cap) (attn_logit_softcapping) and the final logits
    likewise (final_logit_softcapping)."""
    eps = md["gemma2.attention.layer_norm_rms_epsilon"]
    H, Hkv = md["gemma2.attention.head_count"], md["gemma2.attention.head_count_kv"]
    emb = arrays["token_embd.weight"]
    d = emb.shape[1]
    D = md.get("gemma2.attention.key_length", d // H)
    theta = md["gemma2.rope.freq_base"]
    x = emb[ids].astype(np.float64) * math.sqrt(d)
    T = x.shape[0]
    pos = np.arange(T)
    for layer in range(md["gemma2.block_count"]):
        b = f"blk.{layer}."
        h = gemma_rms_norm(x, arrays[b + "attn_norm.weight"], eps)
        q = rotary(linear(h, arrays, b + "attn_q.weight").reshape(T, H, D), pos, theta)
        k = rotary(linear(h, arrays, b + "attn_k.weight").reshape(T, Hkv, D), pos, theta)
        v = linear(h, arrays, b + "attn_v.weight").reshape(T, Hkv, D)
        window = md["gemma2.attention.sliding_window"] if layer % 2 == 0 else None
        a = attention(q, k, v, D ** -0.5, window=window, softcap=md["gemma2.attn_logit_softcapping"])
        a = linear(a.reshape(T, H * D), arrays, b + "attn_output.weight")
        x = x + gemma_rms_norm(a, arrays[b + "post_attention_norm.weight"], eps)
        h = gemma_rms_norm(x, arrays[b + "ffn_norm.weight"], eps)
        f = gelu_tanh(linear(h, arrays, b + "ffn_gate.weight")) * linear(h, arrays, b + "ffn_up.weight")
        x = x + gemma_rms_norm(linear(f, arrays, b + "ffn_down.weight"), arrays[b + "post_ffw_norm.weight"], eps)
    logits = output_logits(gemma_rms_norm(x, arrays["output_norm.weight"], eps), emb)
    cap = md["gemma2.final_logit_softcapping"]
    return cap * np.tanh(logits / cap)
