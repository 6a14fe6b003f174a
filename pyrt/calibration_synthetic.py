"""Calibration with no text: inputs the model makes for itself.

When no calibration text fits (a model for a language or domain that pyrt's shipped text does not
cover, or a user who will not ship text), the statistics that weight the scale search and GPTQ can
still come from the model:

- a decoder writes its own text: each sequence starts from one random ordinary token and is sampled
  at temperature 1 (end-of-generation tokens banned, so every sequence runs its full length);
- an encoder cannot write, so it gets random sequences of its ordinary tokens: short ones, as
  embedding models see sentences, whose special tokens weigh much in mean pooling.

Other projects report the same order: on a small LLM, GPTQ calibrated on self-generated text cost
+0.0003 bits per byte against real data, on random tokens +0.0020 (openai/parameter-golf PR #728).
Measured here (docs/quantization.md, "Calibration with no text"): on all-MiniLM-L6-v2 q4a/32 the
worst evaluation sentence goes from 0.903 (no calibration) to 0.926-0.949 on three sentence sets;
on SmolLM2 q4 the KL to the source from 0.30 to 0.126 (the shipped text: 0.121).

Everything is drawn with a fixed seed, so a conversion is reproducible. Ordinary tokens are those
a tokenizer does not mark special, control, byte or unused.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .errors import ShapeError
from .quantize_gptq import DEFAULT_DAMP
from .tokenizer_types import TOKEN_NORMAL

SEED = 0
# Encoders: 480 sequences (about the default text's sentence count), lengths cycled from a mix of
# very short and sentence-long.
ENCODER_SEQUENCES = 480
ENCODER_LENGTHS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48)
# Decoders: generated sequences of this many tokens (the first drawn) up to the token budget.
DECODER_SEQUENCE_TOKENS = 128
# GPTQ damping for an encoder's random-token statistics: their correlations are the model's on
# random tokens, so GPTQ should trust them less than a text's. MiniLM q4a/32, three draws: damping
# 0.1 against 0.01 raised the worst sentence in 8 of 9 cases (docs/quantization.md). A decoder's
# own text keeps the usual damping.
ENCODER_GPTQ_DAMP = 0.1


def _is_decoder(model: Any) -> bool:
    return hasattr(model, "forward") and hasattr(model, "tokenizer")


def ordinary_token_ids(model: Any) -> np.ndarray:
    """The ids of the ordinary tokens of a SentenceEncoder's or LanguageModel's tokenizer."""
    if _is_decoder(model):  # GGUFTokenizer: its token types
        ids = np.flatnonzero(np.asarray(model.tokenizer.token_types) == TOKEN_NORMAL)
    else:  # a tokenizers.Tokenizer (SentenceEncoder): the vocabulary without added/special tokens
        tok = getattr(model, "_tokenizer", None)
        if tok is None:
            raise ShapeError(f"{type(model).__name__} has no tokenizer to draw synthetic calibration from")
        added = set(tok.get_added_tokens_decoder())
        ids = np.array(sorted(i for i in tok.get_vocab(with_added_tokens=False).values() if i not in added))
    if ids.size == 0:
        raise ShapeError("the tokenizer has no ordinary tokens to draw synthetic calibration from")
    return ids.astype(np.int64)


def _decode(model: Any, ids: list[int]) -> str:
    return str((model.tokenizer if _is_decoder(model) else model._tokenizer).decode(ids))


def synthetic_gptq_damp(model: Any) -> float:
    """The GPTQ damping for ``model``'s synthetic statistics."""
    return DEFAULT_DAMP if _is_decoder(model) else ENCODER_GPTQ_DAMP


def _generated(model: Any, ids: np.ndarray, rng: np.random.Generator, sequences: int) -> list[str]:
    """``sequences`` texts the decoder samples at temperature 1, each from one random ordinary token,
    end-of-generation banned. All run in lockstep through one batched forward per step (not the
    batch engine, whose batches depend on thread timing), so the same seed gives the same texts."""
    tok = model.tokenizer
    bos = [int(tok.bos_id)] if tok.add_bos and tok.bos_id is not None else []
    prompts = [bos + [int(i)] for i in rng.choice(ids, sequences)]
    banned = np.array(sorted(int(i) for i in getattr(tok, "end_of_generation", ())), dtype=np.int64)
    length = max(1, min(DECODER_SEQUENCE_TOKENS, int(model.context_length) - len(bos)))  # a short context too
    decoder = model._decoder  # the native decoder: batched forward over separate KV caches
    caches = [decoder.new_cache(len(bos) + length) for _ in prompts]
    out = [list(p[len(bos):]) for p in prompts]
    inputs = prompts
    while len(out[0]) < length:
        tokens = np.fromiter((t for chunk in inputs for t in chunk), np.int32)
        counts = np.fromiter((len(c) for c in inputs), np.int64, count=len(inputs))
        logits = np.asarray(decoder.forward_batch(tokens, counts, caches), dtype=np.float64)
        logits[:, banned[banned < logits.shape[1]]] = -np.inf
        p = np.exp(logits - logits.max(axis=1, keepdims=True))
        cdf = np.cumsum(p, axis=1)
        draws = rng.random(len(out)) * cdf[:, -1]
        nxt = [min(int(np.searchsorted(cdf[i], draws[i], side="right")), cdf.shape[1] - 1) for i in range(len(out))]
        for seq, t in zip(out, nxt):
            seq.append(t)
        inputs = [[t] for t in nxt]
    return [_decode(model, seq) for seq in out]


def synthetic_calibration_texts(model: Any, decoder_tokens: int = 2048, seed: int = SEED) -> list[str]:
    """What ``model`` calibrates on without text: for a decoder (LanguageModel) its own text, about
    ``decoder_tokens`` tokens in sequences of DECODER_SEQUENCE_TOKENS; for an encoder
    ENCODER_SEQUENCES random sequences of its ordinary tokens. The same model and seed give the
    same texts."""
    ids = ordinary_token_ids(model)
    rng = np.random.default_rng(seed)
    if _is_decoder(model):
        texts = _generated(model, ids, rng, max(1, -(-int(decoder_tokens) // DECODER_SEQUENCE_TOKENS)))
    else:
        lengths = [ENCODER_LENGTHS[i % len(ENCODER_LENGTHS)] for i in range(ENCODER_SEQUENCES)]
        texts = [_decode(model, rng.choice(ids, n).tolist()) for n in lengths]
    return [t for t in texts if t.strip()]
