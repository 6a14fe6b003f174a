"""The Starlette application: routes, error handlers, and the worker-thread pool the blocking
model calls run in."""
from __future__ import annotations

import contextlib
from typing import Any, AsyncIterator, Mapping, Union

import anyio
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.routing import Route

from ..errors import PyrtError
from . import errors, routes
from .registry import ModelRegistry

# Worker threads for model calls: a non-streaming generation holds one for its whole run, so there
# must be more than the engine's batch for it to see a full batch.
MIN_WORKER_THREADS = 64


def create_app(models: Union[ModelRegistry, Mapping[str, Any]], worker_threads: int = MIN_WORKER_THREADS,
               close_models: bool = False) -> Starlette:
    """An ASGI app serving ``models`` (a ModelRegistry, or name -> LanguageModel/SentenceEncoder).
    ``close_models``: stop the language models' batch engines when the app shuts down."""
    registry = models if isinstance(models, ModelRegistry) else ModelRegistry(models)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        app.state.limiter = anyio.CapacityLimiter(worker_threads)
        try:
            yield
        finally:
            if close_models:
                registry.close()

    app = Starlette(
        routes=[
            Route("/v1/chat/completions", routes.chat_completions, methods=["POST"]),
            Route("/v1/completions", routes.completions, methods=["POST"]),
            Route("/v1/embeddings", routes.embeddings, methods=["POST"]),
            Route("/v1/models", routes.list_models, methods=["GET"]),
            Route("/v1/models/{name:path}", routes.get_model, methods=["GET"]),
            Route("/health", routes.health, methods=["GET"]),
        ],
        exception_handlers={
            errors.APIError: errors.handle_api_error,
            PyrtError: errors.handle_pyrt_error,
            HTTPException: errors.handle_http_error,
            Exception: errors.handle_unexpected,
        },
        lifespan=lifespan,
    )
    app.state.registry = registry  # the limiter needs a running event loop: lifespan makes it
    return app
