"""OpenAI-shaped completions over a LanguageModel: ``create_completion`` and
``create_chat_completion`` return the dicts of OpenAI's /v1/completions and /v1/chat/completions
(or, with ``stream=True``, an iterator of their chunk dicts; closing it cancels the request).

Requests go to ``model.engine.submit`` (the batch engine: concurrent calls decode together), or to
a serial stand-in when the model has no engine. Stop strings are found in the decoded text across
token boundaries and never emitted; the request is cancelled at the first one."""
from __future__ import annotations

import codecs
import time
import uuid
from typing import Any, Iterator, Mapping, Sequence

from .chat_template import template_for
from .errors import ArgumentError, ArgumentTypeError, RangeError
from .llm import _stop_prefix_overlap
from .generation_options import GenerationOptions, check_messages, parse_generation_options
from .sampling import Sampler, TokenInfo
from .serial_engine import engine_of
from .structured import constraint_for

# Keywords both endpoints take, mapped to GenerationOptions names (None: handled here).
_COMMON = {
    "max_tokens": "max_new_tokens", "temperature": "temperature", "top_p": "top_p", "top_k": "top_k",
    "min_p": "min_p", "presence_penalty": "presence_penalty", "frequency_penalty": "frequency_penalty",
    "repetition_penalty": "repetition_penalty", "logit_bias": "logit_bias", "seed": "seed", "stop": "stop",
    "response_format": "response_format", "grammar": "grammar",
    "n": None, "stream": None, "stream_options": None, "model": None, "user": None,
}
_COMPLETION_ONLY = {"logprobs": None, "echo": None, "best_of": None, "suffix": None}
_CHAT_ONLY = {"max_completion_tokens": "max_new_tokens", "logprobs": "logprobs", "top_logprobs": "top_logprobs",
              "tools": None, "tool_choice": None, "parallel_tool_calls": None, "documents": None,
              "chat_template_kwargs": None}
# OpenAI's limit on the completions endpoint's logprobs count.
MAX_COMPLETION_LOGPROBS = 5


# -- the shared decode loop -------------------------------------------------------------------------

class _Generation:
    """One request: yields (text piece, [(token id, TokenInfo)]) as text becomes safe to emit."""

    def __init__(self, model, prompt_ids: list[int], options: GenerationOptions):
        if len(prompt_ids) >= model.context_length:
            raise RangeError(f"the prompt has {len(prompt_ids)} tokens, the context holds {model.context_length}")
        self.model, self.options = model, options
        self.prompt_tokens = len(prompt_ids)
        self.max_new = min(options.max_new_tokens, model.context_length - len(prompt_ids))
        self.finish_reason: str | None = None
        self.request = None
        if self.max_new > 0:
            sampler = Sampler(options, model.tokenizer.vocab_size, prompt_ids,
                              constraint_for(model.tokenizer, options))
            self.request = engine_of(model).submit(prompt_ids, sampler, self.max_new,
                                                   model.tokenizer.end_of_generation)

    @property
    def completion_tokens(self) -> int:
        return self.request.completion_tokens if self.request is not None else 0

    def cancel(self) -> None:
        if self.request is not None:
            self.request.cancel()

    def pieces(self) -> Iterator[tuple[str, list[tuple[int, TokenInfo]]]]:
        if self.request is None:
            self.finish_reason = "length"
            return
        tok, stops = self.model.tokenizer, self.options.stop
        utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
        text, sent, pending = "", 0, []
        try:
            for step in self.request:
                pending.append((step.token_id, step.info))
                text += utf8.decode(tok.token_bytes(step.token_id))
                cut = min((i for i in (text.find(s, max(0, sent - len(s))) for s in stops) if i >= 0), default=-1)
                if cut >= 0:
                    self.request.cancel()
                    self.finish_reason = "stop"
                    if cut > sent:
                        yield text[sent:cut], pending
                    return
                safe = len(text) - _stop_prefix_overlap(text, stops)
                if safe > sent:
                    yield text[sent:safe], pending
                    sent, pending = safe, []
            text += utf8.decode(b"", final=True)
            reason = self.request.finish_reason
            self.finish_reason = "stop" if reason == "stop" else "length"
            if len(text) > sent or pending:
                yield text[sent:], pending
        finally:
            self.request.cancel()  # a no-op once finished; frees the slot when the consumer stops early


class ChunkStream:
    """The iterator ``stream=True`` returns: chunk dicts; ``close()`` (or leaving a ``with`` block,
    or garbage collection) cancels the request."""

    def __init__(self, chunks: Iterator[dict], generation: _Generation):
        self._chunks, self._generation = chunks, generation

    def __iter__(self) -> "ChunkStream":
        return self

    def __next__(self) -> dict:
        return next(self._chunks)

    def close(self) -> None:
        self._chunks.close()
        self._generation.cancel()

    def __enter__(self) -> "ChunkStream":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        self._generation.cancel()


# -- argument handling --------------------------------------------------------------------------------

def _split_kwargs(kwargs: Mapping[str, Any], extra: Mapping[str, str | None], endpoint: str):
    known = {**_COMMON, **extra}
    unknown = sorted(set(kwargs) - set(known))
    if unknown:
        raise ArgumentTypeError(f"{endpoint}: unknown argument(s) {unknown}; supported: {sorted(known)}")
    options = {known[k]: v for k, v in kwargs.items() if known[k] is not None and v is not None}
    if kwargs.get("n", 1) not in (1, None):
        raise ArgumentError(f"{endpoint}: only n=1 is supported, got n={kwargs['n']!r}")
    if not isinstance(kwargs.get("stream", False), bool):
        raise ArgumentTypeError(f"stream must be a bool, got {kwargs['stream']!r}")
    so = kwargs.get("stream_options")
    if so is not None and (not isinstance(so, Mapping) or set(so) - {"include_usage"}):
        raise ArgumentTypeError(f"stream_options must be {{'include_usage': bool}}, got {so!r}")
    if kwargs.get("model") is not None and not isinstance(kwargs["model"], str):
        raise ArgumentTypeError(f"model must be a string, got {kwargs['model']!r}")
    return options


def _head(kind: str, model_name: str) -> dict:
    prefix = "chatcmpl" if kind.startswith("chat") else "cmpl"
    return {"id": f"{prefix}-{uuid.uuid4().hex}", "object": kind, "created": int(time.time()), "model": model_name}


def _usage(gen: _Generation) -> dict:
    return {"prompt_tokens": gen.prompt_tokens, "completion_tokens": gen.completion_tokens,
            "total_tokens": gen.prompt_tokens + gen.completion_tokens}


def _token_text(tokenizer, token_id: int) -> tuple[str, bytes]:
    raw = tokenizer.token_bytes(token_id) or tokenizer.tokens[token_id].encode("utf-8")  # control tokens: their name
    return raw.decode("utf-8", errors="replace"), raw


def _chat_logprobs(tokenizer, tokens: list[tuple[int, TokenInfo]]) -> list[dict]:
    out = []
    for token_id, info in tokens:
        text, raw = _token_text(tokenizer, token_id)
        alternatives = []
        for alt, lp in info.top_logprobs or ():
            alt_text, alt_raw = _token_text(tokenizer, alt)
            alternatives.append({"token": alt_text, "logprob": lp, "bytes": list(alt_raw)})
        out.append({"token": text, "logprob": info.logprob, "bytes": list(raw), "top_logprobs": alternatives})
    return out


def _completion_logprobs(tokenizer, tokens: list[tuple[int, TokenInfo]], offset: int, top: bool) -> dict:
    out: dict[str, list] = {"tokens": [], "token_logprobs": [], "top_logprobs": [], "text_offset": []}
    for token_id, info in tokens:
        text, _ = _token_text(tokenizer, token_id)
        out["tokens"].append(text)
        out["token_logprobs"].append(info.logprob)
        out["top_logprobs"].append({_token_text(tokenizer, a)[0]: lp for a, lp in info.top_logprobs or ()}
                                   if top else None)
        out["text_offset"].append(offset)
        offset += len(text)
    return out


def _merge_completion_logprobs(parts: list[dict]) -> dict:
    return {k: [v for p in parts for v in p[k]] for k in ("tokens", "token_logprobs", "top_logprobs", "text_offset")}


# -- the endpoints ----------------------------------------------------------------------------------------

def create_completion(model, prompt: str | Sequence[int], **kwargs: Any) -> dict | ChunkStream:
    """OpenAI /v1/completions on ``model``. ``prompt``: text (control tokens in it are parsed, as
    in a raw prompt) or token ids. Keywords: max_tokens (default 16), temperature (default 1.0),
    top_p, top_k, min_p, presence_penalty, frequency_penalty, repetition_penalty, logit_bias, seed,
    stop, n (1 only), stream, stream_options, logprobs (0-5 alternatives), echo, best_of (1 only),
    suffix (None only), response_format, grammar, model (the name reported), user (ignored)."""
    opts = _split_kwargs(kwargs, _COMPLETION_ONLY, "create_completion")
    if kwargs.get("best_of") not in (None, 1) or kwargs.get("suffix") is not None:
        raise ArgumentError("create_completion: best_of other than 1 and suffix are not supported")
    logprobs = kwargs.get("logprobs")
    if logprobs is not None:
        if isinstance(logprobs, bool) or not isinstance(logprobs, int):
            raise ArgumentTypeError(f"logprobs must be an int in [0, {MAX_COMPLETION_LOGPROBS}], got {logprobs!r}")
        if not 0 <= logprobs <= MAX_COMPLETION_LOGPROBS:
            raise RangeError(f"logprobs must be in [0, {MAX_COMPLETION_LOGPROBS}], got {logprobs}")
        opts.update(logprobs=True, top_logprobs=logprobs)
    opts.setdefault("max_new_tokens", 16)
    opts.setdefault("temperature", 1.0)
    options = parse_generation_options(model.tokenizer.vocab_size, **opts)
    if isinstance(prompt, str):
        prompt_ids, prompt_text = model.tokenizer.encode(prompt), prompt
    elif isinstance(prompt, Sequence) and prompt and all(isinstance(t, int) and not isinstance(t, bool) for t in prompt):
        prompt_ids = [int(t) for t in prompt]
        if min(prompt_ids) < 0 or max(prompt_ids) >= model.tokenizer.vocab_size:
            raise RangeError(f"prompt token ids must be in [0, {model.tokenizer.vocab_size})")
        prompt_text = model.tokenizer.decode(prompt_ids)
    elif isinstance(prompt, Sequence) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt_ids, prompt_text = model.tokenizer.encode(prompt[0]), prompt[0]
    else:
        raise ArgumentTypeError(f"prompt must be a string or a non-empty list of token ids, got {type(prompt).__name__}")
    if not prompt_ids:
        raise ArgumentError("the prompt is empty")
    echo = prompt_text if kwargs.get("echo") else ""
    gen = _Generation(model, prompt_ids, options)
    name = kwargs.get("model") or _model_name(model)
    top = bool(options.top_logprobs)
    if kwargs.get("stream"):
        return ChunkStream(_completion_chunks(gen, name, echo, top, kwargs.get("stream_options")), gen)
    text, parts = echo, []
    for piece, tokens in gen.pieces():
        if options.logprobs:
            parts.append(_completion_logprobs(model.tokenizer, tokens, len(text), top))
        text += piece
    choice = {"text": text, "index": 0, "logprobs": _merge_completion_logprobs(parts) if options.logprobs else None,
              "finish_reason": gen.finish_reason}
    return {**_head("text_completion", name), "choices": [choice], "usage": _usage(gen)}


def _completion_chunks(gen: _Generation, name: str, echo: str, top: bool, stream_options) -> Iterator[dict]:
    head = _head("text_completion", name)
    usage = bool(stream_options and stream_options.get("include_usage"))
    extra = {"usage": None} if usage else {}
    offset = 0
    if echo:
        yield {**head, "choices": [{"text": echo, "index": 0, "logprobs": None, "finish_reason": None}], **extra}
        offset = len(echo)
    for piece, tokens in gen.pieces():
        lp = _completion_logprobs(gen.model.tokenizer, tokens, offset, top) if gen.options.logprobs else None
        offset += len(piece)
        yield {**head, "choices": [{"text": piece, "index": 0, "logprobs": lp, "finish_reason": None}], **extra}
    yield {**head, "choices": [{"text": "", "index": 0, "logprobs": None, "finish_reason": gen.finish_reason}], **extra}
    if usage:
        yield {**head, "choices": [], "usage": _usage(gen)}


def create_chat_completion(model, messages: Sequence[Mapping[str, Any]], tools: Sequence[Mapping[str, Any]] | None = None,
                           **kwargs: Any) -> dict | ChunkStream:
    """OpenAI /v1/chat/completions on ``model``: ``messages`` rendered with the model's chat template
    (``tools`` and ``documents`` passed to it; message text cannot inject control tokens).
    Keywords: max_tokens / max_completion_tokens (default: the rest of the context), temperature
    (default 1.0), top_p, top_k, min_p, presence_penalty, frequency_penalty, repetition_penalty,
    logit_bias, seed, stop, n (1 only), stream, stream_options, logprobs (bool), top_logprobs
    (0-20), response_format, grammar, tool_choice / parallel_tool_calls (accepted, the template
    decides), chat_template_kwargs (extra template variables), model (the name reported), user."""
    opts = _split_kwargs(kwargs, _CHAT_ONLY, "create_chat_completion")
    if "max_tokens" in kwargs and kwargs.get("max_completion_tokens") is not None:
        raise ArgumentError("pass max_tokens or max_completion_tokens, not both")
    if opts.get("top_logprobs") and not opts.get("logprobs"):
        raise ArgumentError("top_logprobs needs logprobs=True")
    messages = check_messages(messages)
    if tools is not None and (isinstance(tools, (str, Mapping)) or not isinstance(tools, Sequence)):
        raise ArgumentTypeError(f"tools must be a list of tool dicts, got {type(tools).__name__}")
    extra = kwargs.get("chat_template_kwargs") or {}
    if not isinstance(extra, Mapping):
        raise ArgumentTypeError("chat_template_kwargs must be a dict")
    prompt_ids = template_for(model).encode(model.tokenizer, messages, True, tools=tools,
                                            documents=kwargs.get("documents"), **extra)
    opts.setdefault("max_new_tokens", model.context_length)  # clamped to the room left in the context
    opts.setdefault("temperature", 1.0)
    options = parse_generation_options(model.tokenizer.vocab_size, **opts)
    gen = _Generation(model, prompt_ids, options)
    name = kwargs.get("model") or _model_name(model)
    if kwargs.get("stream"):
        return ChunkStream(_chat_chunks(gen, name, kwargs.get("stream_options")), gen)
    text, tokens = "", []
    for piece, step_tokens in gen.pieces():
        text += piece
        tokens += step_tokens
    logprobs = {"content": _chat_logprobs(model.tokenizer, tokens)} if options.logprobs else None
    choice = {"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": logprobs,
              "finish_reason": gen.finish_reason}
    return {**_head("chat.completion", name), "choices": [choice], "usage": _usage(gen)}


def _chat_chunks(gen: _Generation, name: str, stream_options) -> Iterator[dict]:
    head = _head("chat.completion.chunk", name)
    usage = bool(stream_options and stream_options.get("include_usage"))
    extra = {"usage": None} if usage else {}

    def chunk(delta: dict, logprobs=None, finish_reason=None) -> dict:
        return {**head, "choices": [{"index": 0, "delta": delta, "logprobs": logprobs,
                                     "finish_reason": finish_reason}], **extra}

    yield chunk({"role": "assistant", "content": ""})
    for piece, tokens in gen.pieces():
        lp = {"content": _chat_logprobs(gen.model.tokenizer, tokens)} if gen.options.logprobs else None
        yield chunk({"content": piece}, lp)
    yield chunk({}, finish_reason=gen.finish_reason)
    if usage:
        yield {**head, "choices": [], "usage": _usage(gen)}


def _model_name(model) -> str:
    return str(getattr(model, "name", None) or "pyrt")


__all__ = ["create_completion", "create_chat_completion", "ChunkStream"]
