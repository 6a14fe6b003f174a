"""Tokenizers rebuilt from a GGUF vocabulary (``tokenizer.ggml.*`` keys) with the ``tokenizers``
library, giving the ids llama.cpp's own tokenizer gives:

- ``tokenizer.ggml.model = "gpt2"``: byte-level BPE with the pre-tokenizer ``tokenizer.ggml.pre``
  names (qwen2, llama-bpe, smollm, gpt2, default and their aliases: byte_bpe_tokenizer.py);
- ``tokenizer.ggml.model = "llama"``: SentencePiece with scores and byte fallback, as Gemma uses
  (sentencepiece_tokenizer.py).

As llama.cpp does, control tokens written in the text (``<|im_start|>``, ``<start_of_turn>``) become
their ids (``parse_special``), user-defined tokens always do, and tokens whose text marks an end of
generation (``</s>``, ``<|im_end|>``, ...) count as control tokens whatever the file says.
Building Gemma's 262,144-token vocabulary takes about a second; the result is cached per vocabulary,
so loading the same model again costs nothing.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any, Iterable, Mapping, Sequence

from .byte_bpe_tokenizer import PRE_TOKENIZERS, build_byte_bpe, byte_level_text_bytes
from .errors import FileFormatError, RangeError, UnsupportedError
from .model_config import check_tokenizer_metadata
from .sentencepiece_tokenizer import build_sentencepiece, byte_token_value, piece_bytes
from .tokenizer_guard import GuardedTokenizer, guarded_call
from .tokenizer_types import (BYTE_LEVEL_BPE, SENTENCEPIECE, TOKEN_BYTE, TOKEN_CONTROL, TOKEN_NORMAL, TOKEN_UNKNOWN,
                              TOKEN_USER_DEFINED, end_of_generation_ids)

_CACHE_SIZE = 2  # built tokenizers kept per process (building Gemma 3's added 138 MiB of RSS, 2026-12-02)
_cache: "OrderedDict[tuple, tuple[Any, Any]]" = OrderedDict()
_cache_lock = threading.Lock()


def _require_tokenizers():
    try:
        import tokenizers  # noqa: PLC0415 - optional dependency
    except ImportError as exc:
        raise UnsupportedError("the LLM tokenizer needs the 'tokenizers' package: pip install tokenizers") from exc
    return tokenizers


def _build(key: tuple, model: str, tokens: Sequence[str], types: Sequence[int], merges, scores, pre: str,
           add_space_prefix: bool, unk_id: int | None):
    """(tokenizer, plain tokenizer) sharing one model: the first parses control tokens in the text,
    the second encodes them as plain text. Cached by ``key`` (the whole vocabulary)."""
    with _cache_lock:
        hit = _cache.get(key)
        if hit is not None:
            _cache.move_to_end(key)
            return hit
    tk = _require_tokenizers()
    vocab = {text: i for i, text in enumerate(tokens)}
    if model == SENTENCEPIECE:
        unk = tokens[unk_id] if unk_id is not None else None
        parts = build_sentencepiece(tk, vocab, tokens, scores, types, add_space_prefix, unk)
    else:
        parts = build_byte_bpe(tk, vocab, merges, PRE_TOKENIZERS[pre])
    added = [tk.AddedToken(tokens[i], special=kind in (TOKEN_CONTROL, TOKEN_UNKNOWN), normalized=False)
             for i, kind in enumerate(types) if kind in (TOKEN_CONTROL, TOKEN_UNKNOWN, TOKEN_USER_DEFINED)]
    pair = tuple(_assemble(tk, *parts, added, plain) for plain in (False, True))
    with _cache_lock:
        _cache[key] = pair
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return pair


def _assemble(tk, model, normalizer, pre_tokenizer, added, plain: bool):
    tok = tk.Tokenizer(model)  # the model is shared, not copied
    if normalizer is not None:
        tok.normalizer = normalizer
    if pre_tokenizer is not None:
        tok.pre_tokenizer = pre_tokenizer
    tok.add_special_tokens([t for t in added if t.special])
    tok.add_tokens([t for t in added if not t.special])
    if plain:
        if not hasattr(tok, "encode_special_tokens"):
            raise UnsupportedError("encoding control-token text as plain text needs tokenizers >= 0.19")
        tok.encode_special_tokens = True
    return tok


class GGUFTokenizer:
    """Text <-> token ids for a GGUF vocabulary: byte-level BPE ("gpt2") or SentencePiece ("llama").
    Thread-safe: nothing changes after construction."""

    def __init__(self, tokens: Sequence[str], merges: Sequence[str] | None = None,
                 token_types: Sequence[int] | None = None, pre: str = "default", bos_id: int | None = None,
                 eos_id: int | None = None, add_bos: bool | None = None, *, model: str = BYTE_LEVEL_BPE,
                 scores: Sequence[float] | None = None, add_eos: bool = False, add_space_prefix: bool | None = None,
                 unk_id: int | None = None, special_ids: Mapping[str, Any] | None = None):
        if not tokens:
            raise FileFormatError("the tokenizer vocabulary (tokenizer.ggml.tokens) is empty")
        if model not in (BYTE_LEVEL_BPE, SENTENCEPIECE):
            raise UnsupportedError(f"tokenizer model {model!r} (tokenizer.ggml.model) is not supported; "
                                   f"supported: 'gpt2' (byte-level BPE), 'llama' (SentencePiece)")
        if model == BYTE_LEVEL_BPE and pre not in PRE_TOKENIZERS:
            raise UnsupportedError(f"pre-tokenizer {pre!r} (tokenizer.ggml.pre) is not supported; "
                                   f"supported: {', '.join(sorted(PRE_TOKENIZERS))}")
        self.model = model
        self.tokens = list(tokens)
        types = [TOKEN_NORMAL] * len(self.tokens) if token_types is None else [int(t) for t in token_types]
        if len(types) != len(self.tokens):
            raise FileFormatError(f"{len(types)} token types for {len(self.tokens)} tokens")
        self.end_of_generation = end_of_generation_ids(self.tokens, {**(special_ids or {}), "eos_token_id": eos_id})
        for i in self.end_of_generation:  # llama.cpp makes them control tokens
            if types[i] in (TOKEN_NORMAL, TOKEN_USER_DEFINED):
                types[i] = TOKEN_CONTROL
        self.token_types = types
        if model == SENTENCEPIECE:
            if scores is None or len(scores) != len(self.tokens):
                raise FileFormatError("a SentencePiece vocabulary needs one score per token (tokenizer.ggml.scores)")
            merges = None
            self.add_space_prefix = True if add_space_prefix is None else bool(add_space_prefix)
            default_bos = True
        else:
            if merges is None:
                raise FileFormatError("a byte-level BPE vocabulary needs its merges (tokenizer.ggml.merges)")
            scores = None
            self.add_space_prefix = False
            default_bos = PRE_TOKENIZERS[pre].add_bos
        self.bos_id, self.eos_id = bos_id, eos_id
        self.add_bos = default_bos if add_bos is None else bool(add_bos)
        self.add_eos = bool(add_eos)
        key = (model, pre, tuple(self.tokens), tuple(types), None if merges is None else tuple(merges),
               None if scores is None else tuple(float(s) for s in scores), self.add_space_prefix, unk_id)
        tok, plain = _build(key, model, self.tokens, types, merges, scores, pre, self.add_space_prefix, unk_id)
        # no foreign exception escapes a call
        self._tok = GuardedTokenizer(tok, "GGUF tokenizer")
        self._plain = GuardedTokenizer(plain, "GGUF tokenizer")

    @classmethod
    def from_metadata(cls, md: Mapping[str, Any]) -> "GGUFTokenizer":
        """The tokenizer a GGUF's ``tokenizer.*`` keys describe; an unknown tokenizer model or
        pre-tokenizer is an UnsupportedError (check_tokenizer_metadata says which)."""
        check_tokenizer_metadata(md)
        g = {k.removeprefix("tokenizer.ggml."): v for k, v in md.items() if k.startswith("tokenizer.ggml.")}
        model = g["model"]
        return guarded_call("GGUF tokenizer", cls, g["tokens"], g.get("merges"), g.get("token_type"),
                            pre=g.get("pre", "default"), bos_id=g.get("bos_token_id"), eos_id=g.get("eos_token_id"),
                            add_bos=g.get("add_bos_token"), model=model, scores=g.get("scores"),
                            add_eos=bool(g.get("add_eos_token", False)), add_space_prefix=g.get("add_space_prefix"),
                            unk_id=g.get("unknown_token_id"), special_ids=g)

    @property
    def vocab_size(self) -> int:
        return len(self.tokens)

    def encode(self, text: str, add_bos: bool | None = None, parse_special: bool = True) -> list[int]:
        """Token ids of ``text``. With ``parse_special`` (the default), control tokens written in
        the text (e.g. ``<|im_start|>``) become their ids; without, they are plain text. BOS (and
        EOS) are added when the model asks for them (tokenizer.ggml.add_bos_token / add_eos_token)
        unless ``add_bos`` says otherwise."""
        ids = (self._tok if parse_special else self._plain).encode(text, add_special_tokens=False).ids
        add_special = self.add_bos if add_bos is None else add_bos
        if add_special and self.bos_id is not None:
            ids = [int(self.bos_id)] + ids
        if add_bos is None and self.add_eos and self.eos_id is not None:
            ids.append(int(self.eos_id))
        return ids

    def token_bytes(self, token_id: int) -> bytes:
        """The raw bytes a token stands for, as llama.cpp's token_to_piece: control, unknown and
        unused tokens give b"" (they are not text)."""
        if not 0 <= token_id < len(self.tokens):
            raise RangeError(f"token id {token_id} is outside the vocabulary [0, {len(self.tokens)})")
        kind, text = self.token_types[token_id], self.tokens[token_id]
        if kind == TOKEN_USER_DEFINED:
            return text.encode("utf-8")
        if kind == TOKEN_BYTE:
            value = byte_token_value(text)
            if value is not None:
                return bytes((value,))
            return byte_level_text_bytes(text) if self.model == BYTE_LEVEL_BPE else b""
        if kind != TOKEN_NORMAL:
            return b""
        return piece_bytes(text) if self.model == SENTENCEPIECE else byte_level_text_bytes(text)

    def decode(self, ids: Iterable[int]) -> str:
        """Text of ``ids`` without control tokens; invalid UTF-8 becomes U+FFFD. As llama.cpp's
        detokenize, the space a SentencePiece model prepends (add_space_prefix) is removed from
        the first token."""
        pieces = [self.token_bytes(int(i)) for i in ids]
        if self.add_space_prefix and pieces and pieces[0].startswith(b" "):
            pieces[0] = pieces[0][1:]
        return b"".join(pieces).decode("utf-8", errors="replace")
