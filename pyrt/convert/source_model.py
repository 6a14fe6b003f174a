"""A checkpoint's float32 values held in memory, and runnable models built from any choice of
stored tensors: the planner and `pyrt advise` try many formats without writing a file per trial.

Supported: sentence-transformers BERT and MPNet encoders (SentenceEncoder) and Llama GGUF decoders
(LanguageModel). Other architectures raise UnsupportedError (the converter then skips the
accuracy report)."""
from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, Callable, Mapping

import numpy as np

from ..decoder_families import FAMILIES
from ..encoder import ENCODER_FAMILIES
from ..errors import UnsupportedError
from ..tensor import Tensor, quantize
from .readers import Source, SourceTensor, open_source
from .rules import default_choice

DECODER_CONTEXT = 1024  # KV cache of the in-memory decoders: enough for every probe text


def model_kind(source: Source) -> str | None:
    """"encoder", "decoder", or None when pyrt cannot run the checkpoint's architecture."""
    config = source.config
    if config.get("model_type") in ENCODER_FAMILIES and "tokenizer.json" in source.files:
        return "encoder"
    if source.kind == "gguf" and config.get("model_type") in FAMILIES:
        return "decoder"
    return None


@dataclass
class SourceModel:
    kind: str
    arrays: dict[str, np.ndarray]              # float32 source values, by tensor name
    config: dict[str, Any]
    files: dict[str, bytes]
    metadata: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_source(cls, source: Source, loader: Callable[[SourceTensor], np.ndarray] | None = None) -> "SourceModel":
        """Loads every float tensor of ``source`` (with ``loader``: the converter's, which checks
        shapes and turns a reader library's exceptions into pyrt errors)."""
        kind = model_kind(source)
        if kind is None:
            raise UnsupportedError(f"{source.path.name}: pyrt measures quality only for BERT/MPNet sentence encoders "
                                   "and Llama GGUF decoders")
        load = loader or (lambda st: st.load())
        arrays = {st.name: np.ascontiguousarray(load(st), dtype=np.float32) for st in source.tensors if st.is_float}
        return cls(kind, dict(arrays), dict(source.config), dict(source.files), dict(source.metadata))

    @classmethod
    def load(cls, path: str | os.PathLike) -> "SourceModel":
        with open_source(path) as source:
            return cls.from_source(source)

    @property
    def elements(self) -> int:
        return sum(a.size for a in self.arrays.values())

    def plannable(self) -> list[str]:
        """Tensors whose format is a choice: the ones the converter's defaults do not keep f32
        (matmul weights and embedding tables)."""
        return [n for n, a in self.arrays.items() if default_choice(n, a.shape, "q8")[0] != "f32"]

    def reference_tensors(self) -> dict[str, Tensor]:
        """Every tensor as f32: the source model itself."""
        return {n: quantize(a, "f32", 1) for n, a in self.arrays.items()}

    def build(self, tensors: Mapping[str, Tensor]) -> Any:
        """A SentenceEncoder or LanguageModel running ``tensors`` (zero-copy)."""
        if self.kind == "encoder":
            return self._encoder(tensors)
        from ..llm import LanguageModel, _gguf_keys_from_model

        keys = _gguf_keys_from_model(SimpleNamespace(metadata=self.metadata, config=self.config))
        arch = self.config.get("model_type", "llama")
        context = min(DECODER_CONTEXT, int(keys.get(f"{arch}.context_length", DECODER_CONTEXT)))
        return LanguageModel.from_parts(tensors, keys, keys, context_length=context)

    def _encoder(self, tensors: Mapping[str, Tensor]) -> Any:
        """Encoders after the first share its tokenizer and settings (parsing tokenizer.json costs
        more than building the native model): only the native model is new."""
        from ..encoder import SentenceEncoder, _encoder_tensors, _native_config
        from .._native import require_core

        template = getattr(self, "_template", None)
        if template is None:
            self._template = SentenceEncoder.from_parts(tensors, self.config, self.files)
            return self._template
        encoder = copy.copy(template)
        encoder._native = require_core().Encoder(_native_config(self.config), _encoder_tensors(tensors), "exact")
        encoder.tensors = dict(tensors)
        encoder.formats = sorted({(t.dtype, t.block) for t in encoder.tensors.values() if t.ndim == 2})
        return encoder
