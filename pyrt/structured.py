"""Structured output: JSON, JSON-schema and grammar constrained decoding with llguidance (the
``structured`` extra). A :class:`GrammarConstraint` is the Sampler's LogitsConstraint: before each
token it sets the logits the grammar forbids to -inf, after it advances the matcher.

Why llguidance: no dependency besides numpy's ABI (xgrammar requires torch, transformers and
triton), masks computed lazily per token in native code (no per-schema index over the vocabulary
to build first), Lark and GBNF grammars as well as JSON schema; see docs/llm.md for the measured
per-token cost."""
from __future__ import annotations

import json
import threading
import weakref
from typing import Any, Mapping

import numpy as np

from .errors import ArgumentError, InternalError, UnsupportedError
from .generation_options import GenerationOptions
from .gguf_tokenizer import TOKEN_CONTROL

# Compact JSON with fixed separators and no free whitespace: a small model cannot loop on blanks.
JSON_OPTIONS = {"item_separator": ", ", "key_separator": ": ", "whitespace_flexible": False}

_tokenizers: "weakref.WeakKeyDictionary[Any, Any]" = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def _require_llguidance():
    try:
        import llguidance  # noqa: PLC0415 - optional dependency (the structured extra)
    except ImportError as exc:
        raise UnsupportedError("structured output (response_format, grammar) needs llguidance: "
                               "pip install 'pyrt[structured]'") from exc
    return llguidance


class _TokenizerView:
    """What llguidance.TokenizerWrapper reads from a tokenizer: every token's bytes, the special
    ids, EOS/BOS, and a callable that encodes text."""

    def __init__(self, tokenizer):
        self._tok = tokenizer
        self.tokens = [text.encode("utf-8") if kind == TOKEN_CONTROL else tokenizer.token_bytes(i)
                       for i, (text, kind) in enumerate(zip(tokenizer.tokens, tokenizer.token_types))]
        self.special_token_ids = [i for i, kind in enumerate(tokenizer.token_types) if kind == TOKEN_CONTROL]
        self.eos_token_id = tokenizer.eos_id
        self.bos_token_id = tokenizer.bos_id

    def __call__(self, text: str | bytes) -> list[int]:
        if isinstance(text, bytes):
            text = text.decode("utf-8", errors="replace")
        return self._tok.encode(text, add_bos=False)


def guidance_tokenizer(tokenizer):
    """llguidance's view of a GGUFTokenizer (built once per tokenizer, about a second)."""
    cached = _tokenizers.get(tokenizer)
    if cached is None:
        llg = _require_llguidance()
        with _lock:
            cached = _tokenizers.get(tokenizer)
            if cached is None:
                cached = llg.LLTokenizer(llg.TokenizerWrapper(_TokenizerView(tokenizer)),
                                         eos_token=sorted(tokenizer.end_of_generation))
                _tokenizers[tokenizer] = cached
    return cached


def grammar_source(options: GenerationOptions) -> str | None:
    """The llguidance grammar of ``options.response_format`` / ``options.grammar`` (None: free text)."""
    llg = None
    fmt = options.response_format
    if fmt is not None:
        llg = _require_llguidance()
        if fmt["type"] == "json_object":
            schema: Any = {"type": "object"}
        else:
            schema = fmt["json_schema"].get("schema", {})
        try:
            return llg.LLMatcher.grammar_from_json_schema(json.dumps(schema), defaults=JSON_OPTIONS)
        except (ValueError, TypeError) as exc:
            raise ArgumentError(f"response_format schema is not usable: {exc}") from exc
    if options.grammar:
        llg = _require_llguidance()
        try:
            return llg.grammar_from("grammar", options.grammar)  # Lark, or GBNF converted to Lark
        except ValueError as exc:
            raise ArgumentError(f"grammar: {exc}") from exc
    return None


class GrammarConstraint:
    """One request's grammar state (an llguidance matcher) applied to the logits."""

    def __init__(self, tokenizer, grammar: str):
        llg = _require_llguidance()
        lltok = guidance_tokenizer(tokenizer)
        is_error, messages = llg.LLMatcher.validate_grammar_with_warnings(grammar, lltok)
        if is_error:
            raise ArgumentError(f"grammar is not valid: {'; '.join(messages)}")
        self._matcher = llg.LLMatcher(lltok, grammar, log_level=0)
        self._vocab = tokenizer.vocab_size
        self._bits = np.zeros(-(-self._vocab // 32), np.int32)

    def mask(self, logits: np.ndarray) -> None:
        self._matcher.unsafe_compute_mask_ptr(self._bits.ctypes.data, self._bits.nbytes)
        self._check()
        allowed = np.unpackbits(self._bits.view(np.uint8), bitorder="little")[:len(logits)]
        logits[allowed == 0] = -np.inf

    def accept(self, token_id: int) -> None:
        self._matcher.consume_token(int(token_id))
        self._check()

    @property
    def finished(self) -> bool:
        return self._matcher.is_stopped() or self._matcher.is_accepting()

    def _check(self) -> None:
        if self._matcher.is_error():
            raise InternalError(f"constrained decoding failed: {self._matcher.get_error()}")


def constraint_for(tokenizer, options: GenerationOptions) -> GrammarConstraint | None:
    """The constraint ``options`` ask for, or None."""
    source = grammar_source(options)
    return None if source is None else GrammarConstraint(tokenizer, source)


def response_format_schema(fmt: Mapping[str, Any] | None) -> Any:
    """The JSON schema a response_format promises (for validation by callers and tests)."""
    if fmt is None:
        return None
    return {"type": "object"} if fmt["type"] == "json_object" else fmt["json_schema"].get("schema", {})
