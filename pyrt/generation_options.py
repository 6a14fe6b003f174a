"""One validation of every generation option (LanguageModel.generate/stream, create_completion,
create_chat_completion) into a frozen :class:`GenerationOptions`. Bad values raise typed errors
that are also what Python users expect: :class:`ArgumentTypeError` (a TypeError) for a wrong type
or an unknown keyword, :class:`RangeError` / :class:`ArgumentError` (ValueErrors) for bad values."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from .errors import ArgumentError, ArgumentTypeError, RangeError

# Largest number of alternatives returned per token (OpenAI's own limit for top_logprobs).
MAX_TOP_LOGPROBS = 20


@dataclass(frozen=True)
class GenerationOptions:
    """Validated generation options. ``temperature == 0`` is greedy decoding; the filters apply in
    the order temperature, top_k, top_p, min_p (docs/llm.md)."""
    max_new_tokens: int = 128
    temperature: float = 0.0
    top_k: int = 0
    top_p: float = 1.0
    min_p: float = 0.0
    repetition_penalty: float = 1.0
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    logit_bias: Mapping[int, float] = field(default_factory=dict)
    seed: int | None = None
    stop: tuple[str, ...] = ()
    logprobs: bool = False
    top_logprobs: int = 0
    response_format: Mapping[str, Any] | None = None
    grammar: str | None = None

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


def _int(name: str, value: Any, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ArgumentTypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if value < low or (high is not None and value > high):
        bounds = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise RangeError(f"{name} must be {bounds}, got {value}")
    return int(value)


def _float(name: str, value: Any, low: float, high: float, low_open: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ArgumentTypeError(f"{name} must be a number, got {type(value).__name__} {value!r}")
    value = float(value)
    if not math.isfinite(value) or value < low or value > high or (low_open and value == low):
        raise RangeError(f"{name} must be in {'(' if low_open else '['}{low}, {high}], got {value}")
    return value


def _stop(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,) if value else ()
    if isinstance(value, Sequence) and all(isinstance(s, str) for s in value):
        return tuple(s for s in value if s)
    raise ArgumentTypeError(f"stop must be a string or a list of strings, got {value!r}")


def _logit_bias(value: Any, vocab_size: int | None) -> dict[int, float]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ArgumentTypeError(f"logit_bias must map token ids to biases, got {type(value).__name__}")
    out = {}
    for key, bias in value.items():
        try:  # OpenAI's JSON carries the ids as strings
            token = int(key) if not isinstance(key, (bool, float)) else None
        except (TypeError, ValueError):
            token = None
        if token is None:
            raise ArgumentTypeError(f"logit_bias keys must be token ids, got {key!r}")
        if token < 0 or (vocab_size is not None and token >= vocab_size):
            raise RangeError(f"logit_bias token id {token} is outside the vocabulary [0, {vocab_size})")
        out[token] = _float(f"logit_bias[{token}]", bias, -100.0, 100.0)
    return out


def _response_format(value: Any) -> Mapping[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping) or not isinstance(value.get("type"), str):
        raise ArgumentTypeError(f"response_format must be a dict with a 'type', got {value!r}")
    kind = value["type"]
    if kind == "text":
        return None
    if kind == "json_object":
        return dict(value)
    if kind == "json_schema":
        spec = value.get("json_schema")
        if not isinstance(spec, Mapping) or not isinstance(spec.get("schema", {}), (Mapping, bool)):
            raise ArgumentTypeError("response_format json_schema needs {'json_schema': {'name': ..., 'schema': {...}}}")
        return dict(value)
    raise ArgumentError(f"response_format type must be 'text', 'json_object' or 'json_schema', got {kind!r}")


def parse_generation_options(vocab_size: int | None = None, **options: Any) -> GenerationOptions:
    """Validates keyword options into :class:`GenerationOptions`; an unknown keyword raises
    :class:`ArgumentTypeError` (as Python does for an unexpected keyword argument)."""
    known = GenerationOptions.__dataclass_fields__
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ArgumentTypeError(f"unknown generation option(s) {unknown}; known: {sorted(known)}")
    o = {k: v for k, v in options.items() if v is not None or k in ("max_new_tokens",)}
    if "max_new_tokens" in o:
        o["max_new_tokens"] = _int("max_new_tokens", o["max_new_tokens"], 0)
    if "temperature" in o:
        o["temperature"] = _float("temperature", o["temperature"], 0.0, 100.0)
    if "top_k" in o:
        o["top_k"] = _int("top_k", o["top_k"], 0)
    if "top_p" in o:
        o["top_p"] = _float("top_p", o["top_p"], 0.0, 1.0, low_open=True)
    if "min_p" in o:
        o["min_p"] = _float("min_p", o["min_p"], 0.0, 1.0)
    if "repetition_penalty" in o:
        o["repetition_penalty"] = _float("repetition_penalty", o["repetition_penalty"], 0.0, 100.0, low_open=True)
    for name in ("frequency_penalty", "presence_penalty"):
        if name in o:
            o[name] = _float(name, o[name], -2.0, 2.0)
    if "logit_bias" in o:
        o["logit_bias"] = _logit_bias(o["logit_bias"], vocab_size)
    if "seed" in o:
        o["seed"] = _int("seed", o["seed"], 0)
    o["stop"] = _stop(options.get("stop"))
    if "logprobs" in o and not isinstance(o["logprobs"], bool):
        raise ArgumentTypeError(f"logprobs must be a bool, got {o['logprobs']!r}")
    if "top_logprobs" in o:
        o["top_logprobs"] = _int("top_logprobs", o["top_logprobs"], 0, MAX_TOP_LOGPROBS)
    if "response_format" in options:
        o["response_format"] = _response_format(options["response_format"])
    if "grammar" in o and not isinstance(o["grammar"], str):
        raise ArgumentTypeError(f"grammar must be a string (Lark or GBNF), got {type(o['grammar']).__name__}")
    if o.get("grammar") and o.get("response_format"):
        raise ArgumentError("pass either grammar or response_format, not both")
    return GenerationOptions(**o)


def check_messages(messages: Any) -> list[Mapping[str, Any]]:
    """Chat messages as a list of dicts, each with a string "role" and a "content" that is a string,
    a list of parts or (for an assistant message with tool calls) None."""
    if isinstance(messages, (str, bytes)) or not isinstance(messages, Sequence):
        raise ArgumentTypeError(f"messages must be a list of {{'role': ..., 'content': ...}} dicts, got "
                                f"{type(messages).__name__}")
    if not messages:
        raise ArgumentError("messages is empty")
    for i, m in enumerate(messages):
        if not isinstance(m, Mapping):
            raise ArgumentTypeError(f"messages[{i}] must be a dict, got {type(m).__name__}")
        if not isinstance(m.get("role"), str):
            raise ArgumentError(f"messages[{i}] has no string 'role'")
        content = m.get("content")
        if content is None and not m.get("tool_calls") and m["role"] != "assistant":
            raise ArgumentError(f"messages[{i}] ({m['role']}) has no 'content'")
        if content is not None and not isinstance(content, (str, list)):
            raise ArgumentTypeError(f"messages[{i}]['content'] must be a string or a list of parts, got "
                                    f"{type(content).__name__}")
    return list(messages)


def check_prompt(prompt: Any) -> str | list[Mapping[str, Any]]:
    """A raw text prompt, or chat messages (validated by :func:`check_messages`)."""
    if isinstance(prompt, str):
        return prompt
    if prompt is None:
        raise ArgumentTypeError("prompt must be a string or a list of chat messages, got None")
    return check_messages(prompt)
