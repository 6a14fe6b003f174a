"""Server-sent events over a blocking chunk iterator (LanguageModel.create_*(stream=True)).

Each ``next()`` runs in a worker thread, so many streams advance together and the batch engine
sees their requests at once. The iterator is closed whatever ends the stream: its last chunk, an
error, or the client going away (Starlette cancels the response; closing the iterator cancels the
request in the engine, which frees its slot at the next step)."""
from __future__ import annotations

import json
from typing import Any, AsyncIterator, Iterator

import anyio
import anyio.to_thread

from ..errors import PyrtError
from .errors import APIError, from_pyrt_error

DONE = b"data: [DONE]\n\n"
_END = object()


def event(payload: Any) -> bytes:
    return b"data: " + json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8") + b"\n\n"


def _next(chunks: Iterator[dict]) -> Any:
    return next(chunks, _END)


async def first_chunk(chunks: Iterator[dict], limiter: anyio.CapacityLimiter) -> Any:
    """The first chunk, fetched before the response starts, so a request the model rejects
    still gets its 4xx JSON error rather than a broken stream. Closes the iterator on error."""
    try:
        return await anyio.to_thread.run_sync(_next, chunks, limiter=limiter)
    except BaseException:
        await close_quietly(chunks)
        raise


async def close_quietly(chunks: Iterator[dict]) -> None:
    close = getattr(chunks, "close", None)
    if close is not None:
        with anyio.CancelScope(shield=True):  # even while the response task is being cancelled
            await anyio.to_thread.run_sync(close)


async def events(chunks: Iterator[dict], first: Any, limiter: anyio.CapacityLimiter,
                 model: str) -> AsyncIterator[bytes]:
    """``data: {chunk}`` per chunk (its "model" set to the served name), then ``data: [DONE]``; an
    error after the start becomes one ``data: {"error": ...}`` event (the status line is sent)."""
    try:
        chunk = first
        while chunk is not _END:
            yield event({**chunk, "model": model})
            chunk = await anyio.to_thread.run_sync(_next, chunks, limiter=limiter)
        yield DONE
    except PyrtError as exc:
        yield event(from_pyrt_error(exc).body())
    except APIError as exc:
        yield event(exc.body())
    finally:
        await close_quietly(chunks)
