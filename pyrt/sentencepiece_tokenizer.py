"""SentencePiece-style vocabularies (``tokenizer.ggml.model = "llama"``: Gemma, Llama 1/2, Mistral)
rebuilt as a BPE model of the ``tokenizers`` library, tokenizing as llama.cpp's llm_tokenizer_spm.

llama.cpp's algorithm: spaces become U+2581 (after one is prepended when add_space_prefix is set
and the text starts or follows a special token); the text is split into characters; repeatedly, of
all adjacent pairs whose concatenation is a token, the one whose token has the highest score (the
leftmost on a tie) is merged; what remains is a token, or, for a character outside the vocabulary,
its UTF-8 bytes as <0xNN> tokens. There is no pre-tokenizer: merges may cross spaces.

The same as BPE: a merge (left, right) for every way of cutting a normal token into two tokens,
ranked by the token's score, highest first; byte fallback on. Every character of a normal token is
itself a token in these vocabularies (checked: Gemma 3), so the pairs BPE can see are exactly the
ones llama.cpp can merge. Merges into control, byte or user-defined tokens are left out: llama.cpp
could only form them from text that already matched them whole (user-defined tokens are split out
before merging) or, for control and byte tokens, from pieces that Gemma's vocabulary does not have
(checked: none), and leaving them out keeps plain text from ever becoming a control token."""
from __future__ import annotations

from typing import Sequence

from .tokenizer_types import TOKEN_NORMAL

SPACE = "\u2581"  # how SentencePiece writes a space


def score_merges(tokens: Sequence[str], scores: Sequence[float], types: Sequence[int],
                 vocab: dict[str, int]) -> list[tuple[str, str]]:
    """(left, right) pairs for every cut of a normal token into two tokens, best score first (a
    stable sort: equal scores keep the order of the cuts)."""
    # One cut position at a time over all tokens long enough: comprehensions run the ~1.2 M
    # slices and look-ups of Gemma's vocabulary several times faster than a loop per token.
    longer = [(text, -score) for text, score, kind in zip(tokens, scores, types) if kind == TOKEN_NORMAL and len(text) > 1]
    found: list[tuple[float, str, str]] = []
    cut = 1
    while longer:
        found += [(key, text[:cut], text[cut:]) for text, key in longer if text[:cut] in vocab and text[cut:] in vocab]
        cut += 1
        longer = [item for item in longer if len(item[0]) > cut]
    found.sort(key=lambda m: m[0])
    return [(left, right) for _, left, right in found]


def build_sentencepiece(tk, vocab: dict[str, int], tokens: Sequence[str], scores: Sequence[float],
                        types: Sequence[int], add_space_prefix: bool, unk: str | None):
    """The tokenizers.Model and normalizer for a SentencePiece vocabulary."""
    model = tk.models.BPE(vocab=vocab, merges=score_merges(tokens, scores, types, vocab), unk_token=unk,
                          fuse_unk=False, byte_fallback=True)
    steps = [tk.normalizers.Replace(" ", SPACE)]
    if add_space_prefix:  # applied to each piece between special tokens, as llama.cpp does
        steps.insert(0, tk.normalizers.Prepend(SPACE))
    return model, tk.normalizers.Sequence(steps), None


def byte_token_value(text: str) -> int | None:
    """The byte a <0xNN> token stands for."""
    if len(text) == 6 and text.startswith("<0x") and text.endswith(">"):
        try:
            return int(text[3:5], 16)
        except ValueError:
            return None
    return None


def piece_bytes(text: str) -> bytes:
    """The raw bytes of a normal SentencePiece token (U+2581 is a space)."""
    return text.replace(SPACE, " ").encode("utf-8")
