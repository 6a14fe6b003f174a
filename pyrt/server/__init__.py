"""pyrt's OpenAI-compatible HTTP server (`pyrt serve`, docs/serving.md): Starlette routes over
LanguageModel.create_completion / create_chat_completion and SentenceEncoder.create_embedding,
served by uvicorn. Needs the optional extra: pip install 'pyrt-infer[server]'.

- registry.py: the served models, by name (file stem or alias), and their kind
- app.py: the Starlette application (routes, error handlers, shutdown)
- routes.py: one handler per endpoint; blocking model calls run in worker threads
- sse.py: chunk iterators as server-sent events; a disconnect closes (cancels) the iterator
- errors.py: OpenAI's error body and how pyrt's typed errors map onto HTTP status codes
"""
from __future__ import annotations

from .app import create_app
from .registry import ModelRegistry, ServedModel

__all__ = ["create_app", "ModelRegistry", "ServedModel"]
