"""The models a server holds: each under a name (its file stem, or the alias given as
``NAME=PATH``), as a language model (chat and completions) or a sentence encoder (embeddings)."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional

from .errors import APIError

LANGUAGE = "language"   # LanguageModel: /v1/chat/completions, /v1/completions
EMBEDDING = "embedding"  # SentenceEncoder: /v1/embeddings
ENCODER_ANCHOR = "embeddings.word_embeddings.weight"  # a BERT tensor name (pyrt/encoder.py)


@dataclass
class ServedModel:
    name: str
    kind: str
    model: Any
    created: int = field(default_factory=lambda: int(time.time()))

    def card(self) -> dict:
        """The /v1/models entry."""
        return {"id": self.name, "object": "model", "created": self.created, "owned_by": "pyrt",
                "kind": self.kind}


def kind_of(model: Any) -> str:
    from ..encoder import SentenceEncoder  # noqa: PLC0415
    from ..llm import LanguageModel  # noqa: PLC0415

    if isinstance(model, SentenceEncoder):
        return EMBEDDING
    if isinstance(model, LanguageModel):
        return LANGUAGE
    raise TypeError(f"cannot serve a {type(model).__name__}: pass a LanguageModel or a SentenceEncoder")


def split_alias(spec: str) -> tuple[str, str]:
    """``NAME=PATH`` -> (NAME, PATH); a bare path is named by its file stem."""
    name, sep, path = spec.partition("=")
    if sep and name and path and "/" not in name:
        return name, path
    return Path(spec).stem, spec


def load_model(path: str, context_length: int) -> Any:
    """A SentenceEncoder for a converted sentence-transformers file, else a LanguageModel (.pyrt or .gguf)."""
    import pyrt  # noqa: PLC0415

    if Path(path).suffix != ".gguf":
        model = pyrt.load(path)
        if any(name.endswith(ENCODER_ANCHOR) for name in model.tensors):
            return pyrt.SentenceEncoder(model)
    return pyrt.LanguageModel(path, context_length=context_length)


class ModelRegistry:
    """Served models by name. ``get(name, kind)`` answers a request's ``model`` field: an unknown
    name is a 404, a model of the wrong kind for the route a 400; a missing name picks the only
    model of that kind."""

    def __init__(self, models: Mapping[str, Any]):
        self.models: dict[str, ServedModel] = {}
        for name, model in models.items():
            self.models[name] = ServedModel(name, kind_of(model), model)

    @classmethod
    def from_paths(cls, specs: Iterable[str], context_length: int = 2048) -> "ModelRegistry":
        loaded: dict[str, Any] = {}
        for spec in specs:
            name, path = split_alias(spec)
            if name in loaded:
                raise ValueError(f"two models are named {name!r}: give one an alias (NAME=PATH)")
            loaded[name] = load_model(path, context_length)
        return cls(loaded)

    def get(self, name: Optional[Any], kind: str) -> ServedModel:
        if name is None:
            of_kind = [m for m in self.models.values() if m.kind == kind]
            if len(of_kind) == 1:
                return of_kind[0]
            raise APIError(400, f"'model' is required (served: {', '.join(self.models)})", param="model")
        if not isinstance(name, str):
            raise APIError(400, f"'model' must be a string, got {type(name).__name__}", param="model")
        served = self.models.get(name)
        if served is None:
            raise APIError(404, f"The model '{name}' does not exist (served: {', '.join(self.models)})",
                           param="model", code="model_not_found")
        if served.kind != kind:
            route = "/v1/embeddings" if kind == EMBEDDING else "/v1/chat/completions and /v1/completions"
            article = "an" if served.kind == EMBEDDING else "a"
            raise APIError(400, f"The model '{name}' is {article} {served.kind} model; {route} need a "
                           f"{'sentence encoder' if kind == EMBEDDING else 'language model'}",
                           param="model", code="wrong_model_kind")
        return served

    def close(self) -> None:
        """Stops the language models' batch engines (cancelling what still runs)."""
        for served in self.models.values():
            close = getattr(served.model, "close", None)
            if served.kind == LANGUAGE and callable(close):
                close()
