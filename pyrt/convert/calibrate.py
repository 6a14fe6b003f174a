"""Activation-aware quantization in the converter: when the source is a model pyrt can run (a BERT
sentence encoder, a Llama GGUF), build it in memory from the source's float32 weights (GGUF:
dequantized), run it on the calibration text and return each weight's per-column mean squared
activation (pyrt.calibration), which then weights the q-formats' scale search, and, for the
weights that GPTQ quantizes (pyrt/quantize_gptq.py), the full second moment of their input.

Calibration is on by default for q-formats: the text shipped with pyrt unless the user gives one;
the conversion metadata records which (name and sha256 of the text) or why none was used."""
from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path
from typing import Any, Callable, Optional, Union

import numpy as np

from ..calibration import (DEFAULT_CALIBRATION, calibration_identity, calibration_sentences, collect_activation_sums,
                           collect_second_moments,
                           read_calibration_text, split_calibration_text)
from ..calibration_synthetic import SEED as SYNTHETIC_SEED, synthetic_calibration_texts, synthetic_gptq_damp
from ..decoder_families import FAMILIES
from ..encoder import ENCODER_FAMILIES
from ..errors import PyrtError
from ..quantize_gptq import DEFAULT_DAMP, GptqFactor, gptq_factor
from ..tensor import Tensor, quantize
from .readers import Source

CalibrationChoice = Union[str, os.PathLike, None]
DEFAULT = "default"  # the calibration text shipped with pyrt
SYNTHETIC = "synthetic"  # no text: inputs the model makes for itself (pyrt.calibration_synthetic)
# A decoder's calibration is bounded in tokens so that a conversion stays quick on 2 cores.
LLM_CALIBRATION_TOKENS = 2048
LLM_CONTEXT = 512


def _float_tensors(source: Source, loaded: dict[str, np.ndarray]) -> dict[str, Tensor]:
    """The source's float tensors as f32; their values also go into ``loaded`` so that the
    conversion does not read (GGUF: dequantize) them a second time."""
    out = {}
    for st in source.tensors:
        if st.is_float:
            x = loaded.setdefault(st.name, np.ascontiguousarray(st.load(), dtype=np.float32))
            out[st.name] = quantize(x, "f32")
    return out


def _gguf_keys(source: Source) -> dict[str, Any]:
    """The llama.cpp-named keys LanguageModel.from_parts reads, from a GGUF source's metadata."""
    keys: dict[str, Any] = dict(source.metadata.get("gguf", {}))
    for name, value in source.metadata.get("tokenizer", {}).items():
        keys["tokenizer.chat_template" if name == "chat_template" else f"tokenizer.ggml.{name}"] = value
    return keys


def _bounded_passages(model: Any, passages: list[str], tokens: int) -> list[str]:
    kept, total = [], 0
    for p in passages:
        if total >= tokens:
            break
        kept.append(p)
        total += len(model.tokenizer.encode(p))
    return kept


def _runnable_model(source: Source, loaded: dict[str, np.ndarray]) -> tuple[Optional[Any], str]:
    """(a model built from the source's float32 weights, "") or (None, why not)."""
    model_type = str(source.config.get("model_type", ""))
    try:
        if source.kind == "gguf" and model_type in FAMILIES:
            from ..llm import LanguageModel  # noqa: PLC0415 - needs the llm extra

            keys = _gguf_keys(source)
            context = min(LLM_CONTEXT, int(keys.get(f"{model_type}.context_length", LLM_CONTEXT)))
            return LanguageModel.from_parts(_float_tensors(source, loaded), keys, keys, context_length=context), ""
        if model_type in ENCODER_FAMILIES:
            from ..encoder import SentenceEncoder  # noqa: PLC0415 - keeps the converter's imports light

            return SentenceEncoder.from_parts(_float_tensors(source, loaded), source.config, source.files), ""
    except (PyrtError, ImportError, KeyError, ValueError, TypeError) as exc:
        return None, f"the model could not be built for calibration ({type(exc).__name__}: {exc})"
    return None, f"pyrt cannot run model type {model_type or source.kind!r}"


def calibration_importance(source: Source, calibration: CalibrationChoice,
                           loaded: Optional[dict[str, np.ndarray]] = None,
                           second_moment_of: Optional[Callable[[str], bool]] = None,
                           ) -> tuple[dict[str, np.ndarray], dict[str, Any], dict[str, np.ndarray]]:
    """({tensor name: float32 [K] importance}, the record for the conversion metadata,
    {tensor name: float32 [K, K] second moment of its input}).

    ``calibration``: "default" (the text shipped with pyrt), "synthetic" (no text: a decoder's own
    sampled text, an encoder's random token sequences; pyrt.calibration_synthetic), a path to a
    UTF-8 text (passages separated by blank lines), or None (no calibration). A source pyrt cannot run is converted
    without calibration, and the record says why. ``loaded`` receives the float32 values read
    from the source (by name), for the caller to reuse. ``second_moment_of(name)``: whether to
    collect a weight's second moment too (for GPTQ; default: none). The record's "gptq_damp" is
    the damping GPTQ should use with these moments."""
    loaded = {} if loaded is None else loaded
    if calibration is None:
        return {}, {"used": False, "reason": "disabled (--no-calibration)"}, {}
    start = time.perf_counter()
    if calibration == SYNTHETIC:
        identity: dict[str, Any] = {"name": "synthetic (no text: the model's own)", "seed": SYNTHETIC_SEED}
    else:
        path = DEFAULT_CALIBRATION if calibration == DEFAULT else Path(calibration)
        text = read_calibration_text(path)
        identity = calibration_identity("pyrt default" if calibration == DEFAULT else Path(calibration).name, text)
    model, why_not = _runnable_model(source, loaded)
    if model is None:
        return {}, {"used": False, "reason": why_not, **identity}, {}
    if calibration == SYNTHETIC:
        inputs = synthetic_calibration_texts(model, LLM_CALIBRATION_TOKENS)
        damp = synthetic_gptq_damp(model)
    else:
        inputs = _inputs(model, split_calibration_text(text))
        damp = DEFAULT_DAMP
    importance, rows = inputs_statistics(model, inputs)
    wanted = [n for n in gptq_candidates(importance, rows) if second_moment_of is not None and second_moment_of(n)]
    moments = inputs_second_moments(model, inputs, wanted) if wanted else {}
    return importance, {"used": True, **identity, "passages_run": len(inputs), "tensors": len(importance),
                        "second_moments": len(moments), "gptq_damp": damp,
                        "seconds": round(time.perf_counter() - start, 2)}, moments


def _inputs(model: Any, passages: list[str]) -> list[str]:
    """What a model calibrates on: a decoder the first LLM_CALIBRATION_TOKENS tokens' passages, an
    encoder the passages' sentences (calibration_sentences)."""
    if hasattr(model, "tokenizer") and hasattr(model, "forward"):
        return _bounded_passages(model, passages, LLM_CALIBRATION_TOKENS)
    return calibration_sentences(passages)


def inputs_second_moments(model: Any, inputs: list[str], names: list[str]) -> dict[str, np.ndarray]:
    """{tensor name: float32 [K, K] mean of x x^T over its inputs} of a built model run on
    ``inputs`` as they are. Weights fed the same inputs (Q, K and V; gate and up) share one array."""
    moments = collect_second_moments(model, inputs, names, batch_size=64, dtype=np.float32)
    shared: dict[bytes, np.ndarray] = {}
    out = {}
    for name, h in moments.items():
        out[name] = shared.setdefault(hashlib.blake2b(h.tobytes(), digest_size=16).digest(), h)
    return out


def inputs_statistics(model: Any, inputs: list[str]) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """({tensor name: float32 [K] importance}, {tensor name: input rows seen}) of a built model
    (SentenceEncoder or LanguageModel) run on ``inputs`` as they are."""
    # batches of 64 short sentences: a third of the CPU time of 16 (statistics identical: no padding rows)
    sums = collect_activation_sums(model, inputs, batch_size=64)
    importance = {n: (s / float(rows)).astype(np.float32) for n, (s, rows) in sums.items()}
    return importance, {n: rows for n, (_, rows) in sums.items()}


def model_second_moments(model: Any, passages: list[str], names: list[str]) -> dict[str, np.ndarray]:
    """inputs_second_moments on calibration passages, run as model_statistics runs them."""
    return inputs_second_moments(model, _inputs(model, passages), names)


def model_statistics(model: Any, passages: list[str]) -> tuple[dict[str, np.ndarray], dict[str, int], int]:
    """({tensor name: float32 [K] importance}, {tensor name: input rows seen}, inputs run) of a built
    model (SentenceEncoder or LanguageModel) on calibration passages (see _inputs)."""
    inputs = _inputs(model, passages)
    importance, rows = inputs_statistics(model, inputs)
    return importance, rows, len(inputs)


def gptq_candidates(importance: dict[str, np.ndarray], rows: dict[str, int]) -> list[str]:
    """The weights whose inputs' second moment calibration can estimate: at least as many input rows
    as columns. A tied LM head sees one row per passage: GPTQ on so few would fit them, not the
    model (and the same table is the token embedding)."""
    return [n for n, imp in importance.items() if rows.get(n, 0) >= len(imp)]


class GptqFactors:
    """The GPTQ factors (pyrt.quantize_gptq.gptq_factor) of a conversion's second moments, each
    computed once for the weights that share an input and dropped after the last of them."""

    def __init__(self, moments: dict[str, np.ndarray], damp: float = DEFAULT_DAMP):
        self._moments = dict(moments)
        self._damp = damp
        self._users: dict[int, int] = {}
        for h in self._moments.values():
            self._users[id(h)] = self._users.get(id(h), 0) + 1
        self._factors: dict[int, GptqFactor] = {}

    def take(self, name: str) -> Optional[GptqFactor]:
        """The factor for tensor ``name`` (None without a second moment); each name once."""
        h = self._moments.pop(name, None)
        if h is None:
            return None
        key = id(h)  # h stays referenced by the other users' entries until the last takes it
        factor = self._factors.get(key)
        if factor is None:
            factor = gptq_factor(h, self._damp)
        self._users[key] -= 1
        if self._users[key]:
            self._factors[key] = factor
        else:
            self._factors.pop(key, None)
        return factor
