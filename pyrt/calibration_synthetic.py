"""Calibration with no text: random sequences of the model's own ordinary tokens.

When no calibration text fits (a model for a language or domain that pyrt's shipped text does not
cover, or a user who will not ship text), the statistics that weight the scale search and GPTQ can
still come from the model itself: its activations on random token sequences are those of its own
embeddings and layers, if not of its usual inputs. Other projects report the same: random-token GPTQ
calibration costs little against real text on a small LLM (openai/parameter-golf PR #728: +0.0020
bits per byte against +0.0003 for self-generated text). On all-MiniLM-L6-v2 q4a/32
(docs/quantization.md, "Calibration with no text") it lifts the worst evaluation sentence from
0.903 (no calibration) to 0.926-0.949 on three sentence sets.

The sequences are drawn with a fixed seed, so a conversion is reproducible: uniformly from the
tokens a tokenizer marks as ordinary (not special, control, byte or unused), decoded to text and run
as the converter runs calibration text. An encoder gets many short sequences (its inputs are
sentences, whose special tokens weigh much in mean pooling), a decoder a few long ones.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .errors import ShapeError
from .tokenizer_types import TOKEN_NORMAL

SEED = 0
# Encoders: 480 sequences (about the default text's sentence count), lengths cycled from a mix of
# very short and sentence-long.
ENCODER_SEQUENCES = 480
ENCODER_LENGTHS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48)
# Decoders: sequences of this many tokens up to the converter's token budget.
DECODER_SEQUENCE_TOKENS = 128
# GPTQ damping for synthetic statistics: their correlations are the model's on random tokens, so
# GPTQ should trust them less than a real text's. MiniLM q4a/32, seeds 0-2: damping 0.1 against
# 0.01 raised the worst sentence on all three evaluation sets in 8 of 9 cases (docs/quantization.md).
GPTQ_DAMP = 0.1


def ordinary_token_ids(model: Any) -> np.ndarray:
    """The ids of the ordinary tokens of a SentenceEncoder's or LanguageModel's tokenizer."""
    tokenizer = getattr(model, "tokenizer", None)
    types = getattr(tokenizer, "token_types", None)
    if types is not None:  # GGUFTokenizer (LanguageModel)
        ids = np.flatnonzero(np.asarray(types) == TOKEN_NORMAL)
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
    tokenizer = getattr(model, "tokenizer", None)
    if tokenizer is not None and hasattr(tokenizer, "token_types"):
        return str(tokenizer.decode(ids))
    return str(model._tokenizer.decode(ids))


def synthetic_calibration_texts(model: Any, decoder_tokens: int = 2048, seed: int = SEED) -> list[str]:
    """Random token sequences of ``model``'s ordinary tokens, decoded to text: ENCODER_SEQUENCES
    short ones for an encoder, ``decoder_tokens`` tokens in sequences of DECODER_SEQUENCE_TOKENS for
    a decoder. The same model and seed give the same texts."""
    ids = ordinary_token_ids(model)
    rng = np.random.default_rng(seed)
    decoder = hasattr(model, "forward") and hasattr(model, "tokenizer")
    if decoder:
        lengths = [DECODER_SEQUENCE_TOKENS] * max(1, -(-int(decoder_tokens) // DECODER_SEQUENCE_TOKENS))
    else:
        lengths = [ENCODER_LENGTHS[i % len(ENCODER_LENGTHS)] for i in range(ENCODER_SEQUENCES)]
    texts = [_decode(model, rng.choice(ids, n).tolist()) for n in lengths]
    return [t for t in texts if t.strip()]
