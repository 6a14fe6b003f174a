"""Chat templates (tokenizer.chat_template) rendered in the environment transformers gives them,
and encoded so that message text cannot inject control tokens.

The environment: a jinja2 ImmutableSandboxedEnvironment with trim_blocks and lstrip_blocks, the
loopcontrols extension, a ``{% generation %}`` block (rendered as its body), a ``tojson`` filter
that keeps non-ASCII text and accepts indent/separators/sort_keys, and the globals
``raise_exception`` and ``strftime_now``; the variables are messages, tools, documents,
add_generation_prompt, bos_token, eos_token and any extra keyword.

No injection: every string in the messages, tools and documents has its control-token texts
(e.g. ``<|im_end|>``) replaced by private-use markers before rendering. The rendered prompt is
then split at the control tokens the template itself wrote (those become their ids) and the text
between them, markers restored, is encoded as plain text (tokenizers' encode_special_tokens)."""
from __future__ import annotations

import json
import re
import threading
import weakref
from datetime import datetime
from typing import Any, Mapping, Sequence

from .errors import TemplateError, UnsupportedError
from .tokenizer_types import TOKEN_CONTROL

# Private-use code points that frame a marker: MARK_OPEN <index> MARK_CLOSE.
MARK_OPEN, MARK_CLOSE = "\U000f0000", "\U000f0001"
_MARKER = MARK_OPEN + r"\d+" + MARK_CLOSE
# Compiled templates, per model.
_templates: "weakref.WeakKeyDictionary[Any, ChatTemplate]" = weakref.WeakKeyDictionary()
_cache_lock = threading.Lock()


def _require_jinja():
    try:
        import jinja2  # noqa: PLC0415 - optional dependency (the llm extra)
        from jinja2 import ext, nodes, sandbox  # noqa: PLC0415, F401
    except ImportError as exc:
        raise UnsupportedError("chat messages need jinja2 to render the chat template: pip install jinja2") from exc
    return jinja2


def _tojson(value: Any, ensure_ascii: bool = False, indent: int | None = None, separators=None,
            sort_keys: bool = False) -> str:
    # transformers' filter: plain json.dumps (jinja's own escapes <, >, & and ' for HTML).
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def _raise_exception(message: Any):
    raise TemplateError(f"chat template: {message}")


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


def _generation_extension(jinja2):
    class GenerationBlock(jinja2.ext.Extension):
        """``{% generation %}...{% endgeneration %}`` (transformers marks assistant text with it)."""
        tags = {"generation"}

        def parse(self, parser):
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
            return jinja2.nodes.Scope(body, lineno=lineno)
    return GenerationBlock


class ChatTemplate:
    """A compiled chat template. ``render(messages, ...)`` gives the prompt text; ``encode(tokenizer,
    messages, ...)`` gives its token ids with the message text encoded as plain text. Thread-safe
    (a compiled jinja template renders concurrently)."""

    def __init__(self, source: str, bos_token: str = "", eos_token: str = "",
                 special_tokens: Mapping[str, int] | None = None):
        if not isinstance(source, str) or not source:
            raise UnsupportedError("this model has no chat template (tokenizer.chat_template); pass a plain string")
        jinja2 = _require_jinja()
        env = jinja2.sandbox.ImmutableSandboxedEnvironment(
            trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols, _generation_extension(jinja2)])
        env.filters["tojson"] = _tojson
        env.globals["raise_exception"] = _raise_exception
        env.globals["strftime_now"] = _strftime_now
        self._jinja = jinja2
        try:
            self._template = env.from_string(source)
        except jinja2.TemplateError as exc:
            raise TemplateError(f"chat template does not compile: {exc}") from exc
        self.source, self.bos_token, self.eos_token = source, bos_token, eos_token
        self._special_ids = {text: int(i) for text, i in (special_tokens or {}).items() if text}
        specials = sorted(self._special_ids, key=len, reverse=True)  # longest match first
        escaped = [re.escape(s) for s in specials] + [re.escape(MARK_OPEN), re.escape(MARK_CLOSE)]
        self._special_or_mark = re.compile("|".join(escaped))
        self._split = re.compile("(" + "|".join([_MARKER] + [re.escape(s) for s in specials]) + ")")

    def render(self, messages: Sequence[Mapping[str, Any]], add_generation_prompt: bool = True,
               tools: Sequence[Mapping[str, Any]] | None = None, documents: Sequence[Any] | None = None,
               **extra: Any) -> str:
        """The prompt text of ``messages`` (control tokens in message text stay as written)."""
        return self._render(messages, add_generation_prompt, tools, documents, extra)

    def encode(self, tokenizer, messages: Sequence[Mapping[str, Any]], add_generation_prompt: bool = True,
               tools: Sequence[Mapping[str, Any]] | None = None, documents: Sequence[Any] | None = None,
               **extra: Any) -> list[int]:
        """Token ids of the rendered prompt: the template's control tokens as their ids, every
        string that came from the caller (message text, tools, documents) as plain text."""
        table: list[str] = []
        protect = _Protector(self._special_or_mark, table)
        text = self._render(protect(list(messages)), add_generation_prompt, protect(tools), protect(documents),
                            protect(extra))
        ids: list[int] = []
        plain: list[str] = []
        for i, piece in enumerate(self._split.split(text)):
            if i % 2 == 0:
                plain.append(piece)
            elif piece.startswith(MARK_OPEN):
                plain.append(table[int(piece[len(MARK_OPEN):-len(MARK_CLOSE)])])
            else:
                ids += plain_encode(tokenizer, "".join(plain))
                plain = []
                ids.append(self._special_ids[piece])
        ids += plain_encode(tokenizer, "".join(plain))
        if tokenizer.add_bos and tokenizer.bos_id is not None and ids[:1] != [tokenizer.bos_id]:
            ids.insert(0, int(tokenizer.bos_id))
        return ids

    def _render(self, messages, add_generation_prompt, tools, documents, extra) -> str:
        try:
            return self._template.render(messages=messages, add_generation_prompt=bool(add_generation_prompt),
                                         tools=tools, documents=documents, bos_token=self.bos_token,
                                         eos_token=self.eos_token, **extra)
        except TemplateError:
            raise
        except (self._jinja.TemplateError, TypeError, ValueError, KeyError, AttributeError, IndexError) as exc:
            raise TemplateError(f"chat template failed to render: {type(exc).__name__}: {exc}") from exc


class _Protector:
    """Replaces control-token texts (and stray marker characters) in every string of a JSON-like
    value by markers, recording the originals in ``table``."""

    def __init__(self, pattern: re.Pattern, table: list[str]):
        self.pattern, self.table = pattern, table

    def _mark(self, match: re.Match) -> str:
        self.table.append(match.group(0))
        return f"{MARK_OPEN}{len(self.table) - 1}{MARK_CLOSE}"

    def __call__(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.pattern.sub(self._mark, value)
        if isinstance(value, Mapping):
            return {k: self(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self(v) for v in value]
        return value


def plain_encode(tokenizer, text: str) -> list[int]:
    """``text`` encoded with control-token texts as ordinary text (no BOS)."""
    if not text:
        return []
    return tokenizer.encode(text, add_bos=False, parse_special=False)


def template_for(model) -> ChatTemplate:
    """The model's compiled chat template, built once (thread-safe)."""
    cached = _templates.get(model)
    if cached is not None and cached.source == model.chat_template:
        return cached
    tok = model.tokenizer
    # Control tokens only: user-defined ones (Gemma's runs of spaces and newlines) are text that
    # the tokenizer matches itself, in message text as anywhere.
    specials = {text: i for i, (text, kind) in enumerate(zip(tok.tokens, tok.token_types)) if kind == TOKEN_CONTROL}
    template = ChatTemplate(model.chat_template or "",
                            tok.tokens[tok.bos_id] if tok.bos_id is not None else "",
                            tok.tokens[tok.eos_id] if tok.eos_id is not None else "", specials)
    with _cache_lock:
        _templates[model] = template
    return template
