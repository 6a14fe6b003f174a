"""A stand-in with BatchEngine's submit() API (docs/llm.md, the engine contract) for models without
an ``engine``: requests decode one step at a time under the model's lock, each step re-entering
the KV cache through ``prefill`` (which reuses the cached prefix, so a lone request runs one new
token per step). Correct under threads, but serial: the batch engine replaces it when present."""
from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass
from typing import Any, Collection, Iterator, Sequence

from .errors import RangeError, ShapeError

_engines: "weakref.WeakKeyDictionary[Any, SerialEngine]" = weakref.WeakKeyDictionary()
_engines_lock = threading.Lock()


@dataclass(frozen=True)
class StepResult:
    token_id: int
    info: object


class SerialRequest:
    def __init__(self, engine: "SerialEngine", prompt_ids: list[int], sampler, max_new_tokens: int,
                 stop_token_ids: Collection[int]):
        self._engine, self._prompt, self._sampler = engine, prompt_ids, sampler
        self._max_new, self._stop = max_new_tokens, frozenset(int(t) for t in stop_token_ids)
        self._cancelled = False
        self.finish_reason: str | None = None
        self.prompt_tokens = len(prompt_ids)
        self.completion_tokens = 0

    def cancel(self) -> None:
        self._cancelled = True

    def __enter__(self) -> "SerialRequest":
        return self

    def __exit__(self, *exc) -> None:
        self.cancel()

    def __iter__(self) -> Iterator[StepResult]:
        generated: list[int] = []
        model = self._engine.model
        while self.finish_reason is None:
            if self._cancelled:
                self.finish_reason = "cancelled"
                return
            if len(generated) >= self._max_new:
                self.finish_reason = "length"
                return
            with self._engine.lock:
                logits = model.prefill(self._prompt + generated)
            token, info = self._sampler(logits, generated)
            if token in self._stop:
                self.finish_reason = "stop"
                return
            generated.append(int(token))
            self.completion_tokens += 1
            yield StepResult(int(token), info)


class SerialEngine:
    def __init__(self, model):
        self.model = model
        self.lock = threading.Lock()

    def submit(self, prompt_ids: Sequence[int], sampler, max_new_tokens: int,
               stop_token_ids: Collection[int] = ()) -> SerialRequest:
        ids = [int(i) for i in prompt_ids]
        if not ids:
            raise ShapeError("the prompt is empty")
        if len(ids) + max_new_tokens > self.model.context_length:
            raise RangeError(f"prompt ({len(ids)} tokens) + max_new_tokens ({max_new_tokens}) exceed the context "
                             f"({self.model.context_length})")
        return SerialRequest(self, ids, sampler, max_new_tokens, stop_token_ids)

    def close(self) -> None:
        pass


def engine_of(model):
    """The model's batch engine when it has one, else its serial stand-in (one per model)."""
    engine = getattr(model, "engine", None)
    if engine is not None:
        return engine
    with _engines_lock:
        engine = _engines.get(model)
        if engine is None:
            engine = _engines[model] = SerialEngine(model)
    return engine
