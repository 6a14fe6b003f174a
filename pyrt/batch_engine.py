"""Continuous batching for a LanguageModel: one background thread decodes every active request
together, one forward pass with M = number of sequences per step, each sequence with its own KV
cache (pyrt._core.KvCache). The weights are read once per step whatever M is, so the aggregate
tokens/s grow with the number of concurrent requests instead of queueing them.

Requests are submitted from any thread; a request submitted while others run is prefilled and
joins them at the next step. See docs/llm.md ("Threads, the engine and batching")."""
from __future__ import annotations

import collections
import queue
import threading
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Collection, Iterator, Protocol, Sequence

import numpy as np

from .errors import InternalError, PyrtError, RangeError, ShapeError, UnsupportedError

if TYPE_CHECKING:
    from .llm import LanguageModel

# Prompt tokens one sequence runs per step: a long prompt is prefilled in chunks, so the sequences
# already decoding wait for at most one chunk.
PREFILL_CHUNK = 256


class TokenSampler(Protocol):
    def __call__(self, logits: np.ndarray, generated: Sequence[int]) -> tuple[int, object]:
        """logits: float32 [vocab], read-only, valid only during the call; generated: the ids the
        request has produced so far (not the prompt). Returns (token id, info): info is handed back
        unchanged in StepResult.info. Called on the engine's thread; an exception ends that
        request only and its Request re-raises it."""
        ...  # pragma: no cover


@dataclass(frozen=True)
class StepResult:
    token_id: int
    info: object


class _End:
    """The last item of a request's queue: why it ended, or the error it ended with."""

    def __init__(self, error: BaseException | None = None):
        self.error = error


class _State:
    """What a Request and the engine share. The engine never holds the Request itself, so a Request
    dropped unfinished is garbage-collected (and cancels itself)."""

    def __init__(self, prompt_ids: list[int], sampler: TokenSampler, max_new_tokens: int,
                 stop_token_ids: frozenset[int]):
        self.prompt = prompt_ids
        self.sampler = sampler
        self.max_new_tokens = max_new_tokens
        self.stop_ids = stop_token_ids
        self.items: queue.SimpleQueue = queue.SimpleQueue()
        self.lock = threading.Lock()
        self.finish_reason: str | None = None
        self.cancelled = False
        self.ended = False

    def finish(self, reason: str | None, error: BaseException | None = None) -> bool:
        """Marks the request finished (once) and wakes its consumer; False if it already was."""
        with self.lock:
            if self.ended:
                return False
            self.ended = True
            if self.finish_reason is None:
                self.finish_reason = reason
        self.items.put(_End(error))
        return True


class Request:
    """One generation submitted to a :class:`BatchEngine`. Iterate it from one thread: each item is
    a :class:`StepResult`; the iteration blocks until the next token and ends when the request
    finishes. ``finish_reason`` is None while it runs, then "stop" (a stop token: not yielded),
    "length" (max_new_tokens) or "cancelled". An error raised for this request (by its sampler, or
    by the forward pass) is re-raised by the iteration; finish_reason stays None then."""

    def __init__(self, state: _State, wake: threading.Condition):
        self._state = state
        self._wake = wake
        self.prompt_tokens = len(state.prompt)
        self.completion_tokens = 0

    @property
    def finish_reason(self) -> str | None:
        return self._state.finish_reason

    def __iter__(self) -> Iterator[StepResult]:
        state = self._state
        while True:
            item = state.items.get()
            if isinstance(item, _End):
                state.items.put(item)  # a second iteration ends at once too
                if item.error is not None:
                    raise item.error
                return
            if state.cancelled:  # cancelled by this consumer: drop what was already decoded
                return
            self.completion_tokens += 1
            yield item

    def cancel(self) -> None:
        """Stops the request (idempotent, any thread): the iteration ends, finish_reason becomes
        "cancelled" unless it had already finished, and the engine frees its slot at the next step."""
        state = self._state
        with state.lock:
            state.cancelled = True
        state.finish("cancelled")
        with self._wake:
            self._wake.notify()

    def __enter__(self) -> "Request":
        return self

    def __exit__(self, *exc) -> None:
        self.cancel()

    def __del__(self) -> None:
        try:
            if not self._state.ended:
                self.cancel()
        except Exception:  # noqa: BLE001 - interpreter shutdown: nothing left to free
            pass


class _Sequence:
    """A request admitted to the batch: its cache, the tokens it still has to run, what it produced."""

    def __init__(self, state: _State, cache):
        self.state = state
        self.cache = cache
        self.pending: list[int] = list(state.prompt)  # tokens to run before the next sample
        self.generated: list[int] = []


class _Scheduler:
    """The engine's thread and its batch. Holds the native decoder, not the LanguageModel, so a model
    nobody references is freed (its BatchEngine closes this)."""

    def __init__(self, decoder, context_length: int, vocab: int, max_batch: int):
        self.decoder = decoder
        self.context_length = context_length
        self.vocab = vocab
        self.max_batch = max_batch
        self.wake = threading.Condition()
        self.waiting: collections.deque[_State] = collections.deque()
        self.active: list[_Sequence] = []
        self.closed = False
        self.batch_sizes: collections.Counter[int] = collections.Counter()  # steps run, by sequences in them
        self.thread = threading.Thread(target=self._loop, name="pyrt-batch-engine", daemon=True)
        self.thread.start()

    # -- any thread ------------------------------------------------------------------------------

    def add(self, state: _State) -> None:
        with self.wake:
            if self.closed:
                raise UnsupportedError("the batch engine is closed")
            self.waiting.append(state)
            self.wake.notify()

    def close(self) -> None:
        with self.wake:
            self.closed = True
            self.wake.notify()
        if self.thread is not threading.current_thread():
            self.thread.join()

    # -- the engine's thread ---------------------------------------------------------------------

    def _loop(self) -> None:
        try:
            while self._next_step():
                pass
            reason, error = "cancelled", None
        except BaseException as exc:  # noqa: BLE001 - a bug: fail every request rather than hang its consumer
            reason, error = None, InternalError(f"the batch engine stopped: {type(exc).__name__}: {exc}")
            with self.wake:
                self.closed = True
        for seq in self.active:
            seq.state.finish(reason, error)
        self.active = []
        with self.wake:
            while self.waiting:
                self.waiting.popleft().finish(reason, error)

    def _next_step(self) -> bool:
        with self.wake:
            while True:
                self._drop_finished()
                if self.closed or self.waiting or self.active:
                    break
                self.wake.wait()
            if self.closed:
                return False
            admitted = []
            while self.waiting and len(self.active) + len(admitted) < self.max_batch:
                admitted.append(self.waiting.popleft())
        for state in admitted:
            self._admit(state)
        if self.active:
            self._step()
        return True

    def _drop_finished(self) -> None:
        # A finished sequence's cache goes with it: the slot is free for a waiting request.
        self.active = [s for s in self.active if not s.state.ended]

    def _admit(self, state: _State) -> None:
        if state.ended:  # cancelled while waiting
            return
        if state.max_new_tokens == 0:
            state.finish("length")
            return
        try:
            cache = self.decoder.new_cache(len(state.prompt) + state.max_new_tokens)
        except Exception as exc:  # noqa: BLE001 - e.g. MemoryError: this request only
            state.finish(None, exc)
            return
        self.active.append(_Sequence(state, cache))

    def _step(self) -> None:
        """One forward over every active sequence: its next prompt chunk or its last sampled token."""
        seqs = self.active
        inputs = [s.pending[:PREFILL_CHUNK] for s in seqs]
        self.batch_sizes[len(seqs)] += 1
        try:
            logits = self._forward(seqs, inputs)
        except Exception:  # noqa: BLE001
            # Nothing changed (the decoder's guarantee): find the sequences that fail on their own.
            logits = None
        for i, seq in enumerate(seqs):
            if logits is None:
                try:
                    row = self._forward([seq], [inputs[i]])[0]
                except Exception as exc:  # noqa: BLE001 - this request only
                    seq.state.finish(None, exc)
                    continue
            else:
                row = logits[i]
            del seq.pending[:len(inputs[i])]
            if not seq.pending and not seq.state.ended:
                self._sample(seq, row)

    def _forward(self, seqs: list[_Sequence], inputs: list[list[int]]) -> np.ndarray:
        tokens = np.fromiter((t for chunk in inputs for t in chunk), np.int32)
        counts = np.fromiter((len(c) for c in inputs), np.int64, count=len(inputs))
        logits = self.decoder.forward_batch(tokens, counts, [s.cache for s in seqs])
        logits.flags.writeable = False
        return logits

    def _sample(self, seq: _Sequence, logits: np.ndarray) -> None:
        state = seq.state
        try:
            token, info = state.sampler(logits, seq.generated)
            token = int(token)
            if not 0 <= token < self.vocab:
                raise RangeError(f"the sampler returned token id {token}, outside the vocabulary [0, {self.vocab})")
        except PyrtError as exc:
            state.finish(None, exc)
            return
        except Exception as exc:  # noqa: BLE001 - the consumer gets a typed error naming the cause
            err = InternalError(f"the token sampler raised {type(exc).__name__}: {exc}")
            err.__cause__ = exc
            state.finish(None, err)
            return
        if token in state.stop_ids:
            state.finish("stop")
            return
        seq.generated.append(token)
        state.items.put(StepResult(token, info))
        if len(seq.generated) >= state.max_new_tokens:
            state.finish("length")
        else:
            seq.pending.append(token)


class BatchEngine:
    """Decodes the requests of one :class:`LanguageModel` together (continuous batching) on a
    background thread; :meth:`submit` is safe from any thread. ``max_batch`` sequences decode at
    once; more requests wait for a free slot. Each running sequence holds a KV cache of
    prompt + max_new_tokens tokens."""

    def __init__(self, model: "LanguageModel", max_batch: int = 8) -> None:
        if isinstance(max_batch, bool) or not isinstance(max_batch, int):
            raise TypeError(f"max_batch must be an int, got {type(max_batch).__name__}")
        if max_batch < 1:
            raise RangeError(f"max_batch must be >= 1, got {max_batch}")
        self.max_batch = max_batch
        self.context_length = model.context_length
        self._vocab = model.config["vocab"]
        self._scheduler = _Scheduler(model._decoder, self.context_length, self._vocab, max_batch)
        # Closes the thread when the engine is dropped without close().
        self._finalizer = weakref.finalize(self, _Scheduler.close, self._scheduler)

    def submit(self, prompt_ids: Sequence[int], sampler: TokenSampler, max_new_tokens: int,
               stop_token_ids: Collection[int] = ()) -> Request:
        """Queues a generation; returns its :class:`Request` at once. Raises ShapeError for an empty
        prompt, RangeError for ids outside the vocabulary, a negative max_new_tokens or a prompt +
        max_new_tokens longer than the context, TypeError for arguments of the wrong type and
        UnsupportedError once the engine is closed."""
        ids = _token_ids(prompt_ids, self._vocab)
        if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, (int, np.integer)):
            raise TypeError(f"max_new_tokens must be an int, got {type(max_new_tokens).__name__}")
        max_new_tokens = int(max_new_tokens)
        if max_new_tokens < 0:
            raise RangeError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
        if len(ids) + max_new_tokens > self.context_length:
            raise RangeError(f"the prompt's {len(ids)} tokens + max_new_tokens {max_new_tokens} exceed the "
                             f"context of {self.context_length} tokens")
        if not callable(sampler):
            raise TypeError("sampler must be callable: (logits, generated) -> (token id, info)")
        stops = frozenset(int(t) for t in stop_token_ids)
        state = _State(ids, sampler, max_new_tokens, stops)
        request = Request(state, self._scheduler.wake)
        self._scheduler.add(state)
        return request

    def close(self) -> None:
        """Cancels every running and waiting request and joins the thread; idempotent."""
        self._finalizer()

    def batch_sizes(self) -> dict[int, int]:
        """How many forward steps ran with each number of sequences (M: steps), since the start."""
        return dict(self._scheduler.batch_sizes)

    @property
    def closed(self) -> bool:
        return not self._finalizer.alive


def _token_ids(prompt_ids: Sequence[int], vocab: int) -> list[int]:
    if isinstance(prompt_ids, (str, bytes)):
        raise TypeError("prompt_ids must be a sequence of token ids, not text (encode it first)")
    try:
        arr = np.asarray(prompt_ids)
    except Exception as exc:  # noqa: BLE001
        raise TypeError(f"prompt_ids must be a sequence of token ids: {exc}") from exc
    if arr.ndim != 1:
        raise ShapeError(f"prompt_ids must be one sequence of token ids, got shape {arr.shape}")
    if arr.size == 0:
        raise ShapeError("the prompt is empty")
    if arr.dtype.kind not in "iu":
        raise TypeError(f"prompt_ids must be integers, got {arr.dtype}")
    bad = (arr < 0) | (arr >= vocab)
    if bad.any():
        raise RangeError(f"token id {int(arr[bad][0])} is outside the vocabulary [0, {vocab})")
    return [int(t) for t in arr]


__all__ = ["BatchEngine", "Request", "StepResult", "TokenSampler", "PREFILL_CHUNK"]
