"""Byte-level BPE (``tokenizer.ggml.model = "gpt2"``) rebuilt with the ``tokenizers`` library: the
pre-tokenizer regexes as llama.cpp defines them per ``tokenizer.ggml.pre`` (llama-vocab.cpp), applied
in sequence, each splitting the pieces of the previous one; then GPT-2's byte-to-unicode map and
the merges ranked in file order.

Families (llama.cpp's pre-tokenizer names that share one regex list):

- ``qwen2``: contractions in either case, letters with one leading non-letter, single digits,
  punctuation runs with their trailing newlines, newline runs, whitespace.
- ``llama-bpe`` (Llama 3): the same with digit runs of up to three, and ``ignore_merges`` (a piece
  that is itself a token stays whole).
- ``smollm`` (and starcoder, refact, command-r, codeshell, exaone, minerva): every digit alone, then GPT-2's.
- ``gpt2`` (gpt-2, phi-2, mpt, olmo, jais): GPT-2's regex.
- ``default``: llama.cpp's fallback for a file without a pre-tokenizer name.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Sequence

from .errors import FileFormatError

_CONTRACTIONS = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])"
GPT2_REGEX = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)"
LLAMA3_REGEX = (_CONTRACTIONS + r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+"
                r"|\s+(?!\S)|\s+")
QWEN2_REGEX = (_CONTRACTIONS + r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+"
               r"|\s+(?!\S)|\s+")


@dataclass(frozen=True)
class PreTokenizer:
    regexes: tuple[str, ...]
    ignore_merges: bool = False   # a piece found whole in the vocabulary is one token
    add_bos: bool = False         # llama.cpp's default when the file has no add_bos_token key


_QWEN2 = PreTokenizer((QWEN2_REGEX,))
_LLAMA3 = PreTokenizer((LLAMA3_REGEX,), ignore_merges=True, add_bos=True)
_SMOLLM = PreTokenizer((r"\p{N}", GPT2_REGEX))
_GPT2 = PreTokenizer((GPT2_REGEX,))
_DEFAULT = PreTokenizer((r"[\p{P}\$\+<=>\^~\|]+", GPT2_REGEX, r"\p{N}+", r"[0-9][0-9][0-9]"))

PRE_TOKENIZERS: dict[str, PreTokenizer] = {
    **dict.fromkeys(("qwen2", "deepseek-r1-qwen", "stablelm2", "megrez"), _QWEN2),
    **dict.fromkeys(("llama-bpe", "llama3", "llama-v3", "falcon3", "pixtral"), _LLAMA3),
    **dict.fromkeys(("dbrx", "smaug-bpe"), PreTokenizer((LLAMA3_REGEX,))),
    **dict.fromkeys(("smollm", "starcoder", "refact", "command-r", "codeshell", "exaone", "minerva",
                     "minerva-7b"), _SMOLLM),
    **dict.fromkeys(("gpt2", "gpt-2", "phi-2", "mpt", "olmo", "jais"), _GPT2),
    "default": _DEFAULT,
}


@lru_cache(maxsize=1)
def byte_decoder() -> dict[str, int]:
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


def byte_level_text_bytes(text: str) -> bytes:
    """The raw bytes of a byte-level vocabulary entry (characters outside the map are dropped)."""
    table = byte_decoder()
    return bytes(table[c] for c in text if c in table)


def split_merges(merges: Sequence[str]) -> list[tuple[str, str]]:
    pairs = []
    for m in merges:
        cut = m.find(" ", 1)  # as llama.cpp: the separator is the first space after position 0
        if cut < 0:
            raise FileFormatError(f"malformed BPE merge {m!r}")
        pairs.append((m[:cut], m[cut + 1:]))
    return pairs


def build_byte_bpe(tk, vocab: dict[str, int], merges: Sequence[str], pre: PreTokenizer):
    """The tokenizers.Model and pre-tokenizer for a byte-level BPE vocabulary."""
    model = tk.models.BPE(vocab=vocab, merges=split_merges(merges), fuse_unk=False, ignore_merges=pre.ignore_merges)
    splits = [tk.pre_tokenizers.Split(tk.Regex(r), behavior="isolated") for r in pre.regexes]
    byte_level = tk.pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    return model, None, tk.pre_tokenizers.Sequence(splits + [byte_level])
