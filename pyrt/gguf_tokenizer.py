"""Byte-level BPE tokenizer rebuilt from a GGUF vocabulary (``tokenizer.ggml.*`` keys) with the
``tokenizers`` library, matching llama.cpp's tokenizer for the pre-tokenizers it supports here.

llama.cpp's "smollm" pre-tokenizer (shared with starcoder, refact, command-r, codeshell, exaone,
minerva) splits every digit on its own ("\\p{N}"), then applies the GPT-2 regex; control and
user-defined tokens are matched verbatim in the text before that (llama.cpp's ``parse_special``).
"""
from __future__ import annotations

from functools import lru_cache
from typing import Any, Iterable, Sequence

from .errors import FileFormatError, RangeError, UnsupportedError
from .model_config import check_tokenizer_metadata
from .tokenizer_guard import GuardedTokenizer, guarded_call

# llama.cpp token types (enum llama_token_type / gguf.TokenType)
TOKEN_NORMAL, TOKEN_UNKNOWN, TOKEN_CONTROL, TOKEN_USER_DEFINED, TOKEN_UNUSED, TOKEN_BYTE = 1, 2, 3, 4, 5, 6

# Pre-tokenizer names (tokenizer.ggml.pre) whose llama.cpp regexes are "\p{N}" then GPT-2's.
_DIGITS_THEN_GPT2 = {"smollm", "starcoder", "refact", "command-r", "codeshell", "exaone", "minerva"}
# Plain GPT-2 regex.
_GPT2 = {"gpt2", "mpt", "olmo", "jais", "default"}

# Token texts that end a generation besides the EOS id (llama.cpp's end-of-generation set).
_END_OF_GENERATION_TEXTS = {"<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<|end|>", "</s>", "<end_of_turn>"}


@lru_cache(maxsize=1)
def _byte_decoder() -> dict[str, int]:
    """GPT-2's byte <-> printable-unicode map, inverted: vocabulary text -> raw byte."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    chars = printable[:]
    n = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(printable, chars)}


def _require_tokenizers():
    try:
        import tokenizers  # noqa: PLC0415 - optional dependency
    except ImportError as exc:
        raise UnsupportedError("the LLM tokenizer needs the 'tokenizers' package: pip install tokenizers") from exc
    return tokenizers


class GGUFTokenizer:
    """Text <-> token ids for a GGUF "gpt2" (byte-level BPE) vocabulary."""

    def __init__(self, tokens: Sequence[str], merges: Sequence[str], token_types: Sequence[int] | None = None,
                 pre: str = "default", bos_id: int | None = None, eos_id: int | None = None,
                 add_bos: bool = False):
        tk = _require_tokenizers()
        if not tokens:
            raise FileFormatError("the tokenizer vocabulary (tokenizer.ggml.tokens) is empty")
        self.tokens = list(tokens)
        self.token_types = [TOKEN_NORMAL] * len(self.tokens) if token_types is None else [int(t) for t in token_types]
        if len(self.token_types) != len(self.tokens):
            raise FileFormatError(f"{len(self.token_types)} token types for {len(self.tokens)} tokens")
        self.bos_id, self.eos_id, self.add_bos = bos_id, eos_id, bool(add_bos)
        vocab = {text: i for i, text in enumerate(self.tokens)}
        pairs = []
        for m in merges:
            cut = m.find(" ", 1)  # as llama.cpp: the separator is the first space after position 0
            if cut < 0:
                raise FileFormatError(f"malformed BPE merge {m!r}")
            pairs.append((m[:cut], m[cut + 1:]))
        model = tk.models.BPE(vocab=vocab, merges=pairs, fuse_unk=False, ignore_merges=False)
        self._tok = tk.Tokenizer(model)
        byte_level = tk.pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
        if pre in _DIGITS_THEN_GPT2:
            self._tok.pre_tokenizer = tk.pre_tokenizers.Sequence(
                [tk.pre_tokenizers.Digits(individual_digits=True), byte_level])
        elif pre in _GPT2:
            self._tok.pre_tokenizer = byte_level
        else:
            raise UnsupportedError(f"pre-tokenizer '{pre}' (tokenizer.ggml.pre) is not supported; "
                                   f"supported: {sorted(_DIGITS_THEN_GPT2 | _GPT2)}")
        self._tok.decoder = tk.decoders.ByteLevel()
        specials = [tk.AddedToken(self.tokens[i], special=True, normalized=False)
                    for i, t in enumerate(self.token_types) if t in (TOKEN_CONTROL, TOKEN_USER_DEFINED)]
        self._tok.add_special_tokens(specials)
        self.end_of_generation = {i for i, text in enumerate(self.tokens)
                                  if self.token_types[i] == TOKEN_CONTROL and text in _END_OF_GENERATION_TEXTS}
        if eos_id is not None:
            self.end_of_generation.add(int(eos_id))
        self._tok = GuardedTokenizer(self._tok, "GGUF tokenizer")  # no foreign exception escapes a call

    @classmethod
    def from_metadata(cls, md: dict[str, Any]) -> "GGUFTokenizer":
        model = md.get("tokenizer.ggml.model")
        if model != "gpt2":
            raise UnsupportedError(f"tokenizer model '{model}' (tokenizer.ggml.model) is not supported; only 'gpt2' "
                                   "(byte-level BPE) is")
        for key in ("tokenizer.ggml.tokens", "tokenizer.ggml.merges"):
            if key not in md:
                raise FileFormatError(f"model metadata lacks '{key}'")
        check_tokenizer_metadata(md)
        return guarded_call("GGUF tokenizer", cls,
                   md["tokenizer.ggml.tokens"], md["tokenizer.ggml.merges"], md.get("tokenizer.ggml.token_type"),
                   pre=md.get("tokenizer.ggml.pre", "default"), bos_id=md.get("tokenizer.ggml.bos_token_id"),
                   eos_id=md.get("tokenizer.ggml.eos_token_id"),
                   add_bos=bool(md.get("tokenizer.ggml.add_bos_token", False)))

    @property
    def vocab_size(self) -> int:
        return len(self.tokens)

    def encode(self, text: str, add_bos: bool | None = None) -> list[int]:
        """Token ids of ``text``; control tokens written in the text (e.g. ``<|im_start|>``) become
        their ids. BOS is prepended when the model asks for it (tokenizer.ggml.add_bos_token)."""
        ids = self._tok.encode(text, add_special_tokens=False).ids
        if (self.add_bos if add_bos is None else add_bos) and self.bos_id is not None:
            ids = [int(self.bos_id)] + ids
        return ids

    def token_bytes(self, token_id: int) -> bytes:
        """The raw bytes a token stands for; control tokens give b"" (they are not text)."""
        if not 0 <= token_id < len(self.tokens):
            raise RangeError(f"token id {token_id} is outside the vocabulary [0, {len(self.tokens)})")
        if self.token_types[token_id] == TOKEN_CONTROL:
            return b""
        text = self.tokens[token_id]
        if self.token_types[token_id] == TOKEN_USER_DEFINED:
            return text.encode("utf-8")
        table = _byte_decoder()
        return bytes(table[c] for c in text if c in table)

    def decode(self, ids: Iterable[int]) -> str:
        """Text of ``ids`` without control tokens; invalid UTF-8 becomes U+FFFD."""
        return b"".join(self.token_bytes(int(i)) for i in ids).decode("utf-8", errors="replace")
