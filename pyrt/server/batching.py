"""`pyrt serve --max-batch`: how many sequences a language model's batch engine decodes together."""
from __future__ import annotations

from typing import Any

from .registry import LANGUAGE, kind_of


def set_max_batch(model: Any, max_batch: int) -> None:
    """Gives a language model a batch engine of ``max_batch`` sequences before its first request.
    LanguageModel creates its engine lazily with the engine's default size; the server sizes it
    up front instead. Without the batch engine (an older pyrt), requests run one at a time."""
    if kind_of(model) != LANGUAGE:
        return
    try:
        from ..batch_engine import BatchEngine  # noqa: PLC0415
    except ImportError:
        return
    with model._engine_lock:  # the lazy `engine` property's own lock and slot
        if model._engine is None:
            model._engine = BatchEngine(model, max_batch=max_batch)
