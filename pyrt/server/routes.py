"""The endpoints. Request bodies are checked here for what the server itself needs (a JSON
object, the model, the stream flag); every other field goes as is to the model's OpenAI-shaped
method, whose typed errors become 400s (errors.py)."""
from __future__ import annotations

import json
from typing import Any, Callable

import anyio
import anyio.to_thread
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from .errors import APIError
from .registry import EMBEDDING, LANGUAGE, ModelRegistry
from .sse import events, first_chunk

EMBEDDING_FIELDS = ("input", "model", "encoding_format", "dimensions", "user")
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


async def json_body(request: Request) -> dict:
    raw = await request.body()
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as exc:
        raise APIError(400, f"We could not parse the JSON body of your request: {exc}") from exc
    if not isinstance(body, dict):
        raise APIError(400, f"The request body must be a JSON object, got {type(body).__name__}")
    return body


def _registry(request: Request) -> ModelRegistry:
    return request.app.state.registry


def _limiter(request: Request) -> anyio.CapacityLimiter:
    return request.app.state.limiter


async def _generate(request: Request, method: str, required: str) -> Response:
    body = await json_body(request)
    if required not in body:
        raise APIError(400, f"'{required}' is required", param=required)
    served = _registry(request).get(body.get("model"), LANGUAGE)
    body.pop("model", None)  # the answer names the model as the request did (set below)
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise APIError(400, f"'stream' must be a boolean, got {stream!r}", param="stream")
    first_arg = body.pop(required)  # messages / prompt: positional-only in the model's API
    call: Callable[[], Any] = lambda: getattr(served.model, method)(first_arg, **body)  # noqa: E731
    limiter = _limiter(request)
    if not stream:
        result = await anyio.to_thread.run_sync(call, limiter=limiter)
        return JSONResponse({**result, "model": served.name})
    chunks = await anyio.to_thread.run_sync(call, limiter=limiter)
    first = await first_chunk(chunks, limiter)
    return StreamingResponse(events(chunks, first, limiter, model=served.name), media_type="text/event-stream",
                             headers=SSE_HEADERS)


async def chat_completions(request: Request) -> Response:
    return await _generate(request, "create_chat_completion", "messages")


async def completions(request: Request) -> Response:
    return await _generate(request, "create_completion", "prompt")


async def embeddings(request: Request) -> Response:
    body = await json_body(request)
    unknown = sorted(set(body) - set(EMBEDDING_FIELDS))
    if unknown:
        raise APIError(400, f"Unrecognized request argument supplied: {', '.join(unknown)}", param=unknown[0])
    if "input" not in body:
        raise APIError(400, "'input' is required", param="input")
    served = _registry(request).get(body.get("model"), EMBEDDING)
    result = await anyio.to_thread.run_sync(
        lambda: served.model.create_embedding(body["input"], model=served.name,
                                              encoding_format=body.get("encoding_format") or "float",
                                              dimensions=body.get("dimensions")),
        limiter=_limiter(request))
    return JSONResponse(result)


async def list_models(request: Request) -> Response:
    return JSONResponse({"object": "list", "data": [m.card() for m in _registry(request).models.values()]})


async def get_model(request: Request) -> Response:
    name = request.path_params["name"]
    served = _registry(request).models.get(name)
    if served is None:
        raise APIError(404, f"The model '{name}' does not exist", param="model", code="model_not_found")
    return JSONResponse(served.card())


async def health(request: Request) -> Response:
    return JSONResponse({"status": "ok", "models": list(_registry(request).models)})
