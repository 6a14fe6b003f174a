"""Calibration for activation-aware quantization: run a model in pyrt on a calibration text and
collect, at every matmul, the mean squared activation of each input column of its weight, and for
the weights asked for the full second moment E[x x^T] of their input (for GPTQ,
pyrt/quantize_gptq.py).

The statistics come from the C++ op layer (pyrt/activation_stats.h): while collection is on, each
matmul adds its input's sum of x^2 per column, so the model's own forward pass is measured, with no
Python re-implementation of it. ``pyrt.quantize(w, ..., importance=stats[name])`` then weights the
scale search by them (docs/quantization.md, "Calibration").

The default calibration text (pyrt/data/calibration/default.txt) is original writing in several
languages and kinds (prose, dialogue, instructions, lists, numbers, code); it never overlaps the
evaluation sentences.
"""
from __future__ import annotations

import hashlib
import os
import re
import threading
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, Union

import numpy as np

from ._native import require_core
from .errors import DtypeError, FileIOError, ShapeError
from .tensor import Tensor

CALIBRATION_DIR = Path(__file__).parent / "data" / "calibration"
DEFAULT_CALIBRATION = CALIBRATION_DIR / "default.txt"

# Collection is process-wide in the core: one calibration at a time.
_collect_lock = threading.Lock()


def split_calibration_text(text: str) -> list[str]:
    """The passages of a calibration text: blocks separated by blank lines (a code block or a
    dialogue stays one passage)."""
    passages = [p.strip() for p in text.replace("\r\n", "\n").split("\n\n")]
    return [p for p in passages if p]


# A sentence ends after . ! ? followed by white space, or after a CJK full stop, exclamation or
# question mark (no space follows those).
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|(?<=[。！？])")


def calibration_sentences(passages: Sequence[str]) -> list[str]:
    """The passages cut into lines and sentences: what an encoder calibrates on. Embedding models
    are used on short inputs, whose special tokens ([CLS], [SEP]) make up a large share of every
    sequence; calibrating on whole passages under-weights them. Measured on all-MiniLM-L6-v2 q4a/32
    (docs/quantization.md): sentences lift the worst evaluation sentence's cosine by about 0.01."""
    out = []
    for passage in passages:
        for line in passage.splitlines():
            out += [s.strip() for s in _SENTENCE_END.split(line) if s.strip()]
    return out


def read_calibration_text(path: Union[str, os.PathLike]) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise FileIOError(f"cannot read calibration text {os.fspath(path)}: {exc}") from exc


def default_calibration_texts() -> list[str]:
    """The passages of the calibration text shipped with pyrt."""
    return split_calibration_text(read_calibration_text(DEFAULT_CALIBRATION))


def calibration_identity(name: str, text: str) -> dict[str, Any]:
    """How a conversion names the calibration it used: {"name", "sha256" (of the UTF-8 text), "passages"}."""
    return {"name": name, "sha256": hashlib.sha256(text.encode("utf-8")).hexdigest(),
            "passages": len(split_calibration_text(text))}


def _model_tensors(model: Any) -> Mapping[str, Tensor]:
    # SentenceEncoder keeps .tensors, LanguageModel ._tensors: the Tensors its native model reads.
    tensors = getattr(model, "tensors", None)
    if tensors is None:
        tensors = getattr(model, "_tensors", None)
    if not isinstance(tensors, Mapping) or not (hasattr(model, "encode") or hasattr(model, "forward")):
        raise DtypeError(f"collect_activation_stats takes a SentenceEncoder or a LanguageModel, got {type(model).__name__}")
    return tensors


def _run(model: Any, texts: Sequence[str], batch_size: int) -> None:
    if hasattr(model, "tokenizer") and hasattr(model, "forward"):  # LanguageModel: one prefill per passage
        for text in texts:
            ids = model.tokenizer.encode(text)[: model.context_length]
            if ids:
                model.reset()
                model.forward(ids)
        model.reset()
    else:
        model.encode(list(texts), batch_size=batch_size)


def _weight_addresses(tensors: Mapping[str, Tensor]) -> dict[int, str]:
    names: dict[int, str] = {}
    for name, t in tensors.items():
        if isinstance(t, Tensor) and t.device == "cpu":
            names.setdefault(int(t.numpy().__array_interface__["data"][0]), name)
    return names


def _collect(model: Any, texts: Sequence[str], batch_size: int, second_moment_of: Sequence[int] = ()) -> dict:
    texts = [t for t in texts if t and t.strip()]
    if not texts:
        raise ShapeError("calibration needs at least one non-empty text")
    core = require_core()
    with _collect_lock:
        core.activation_stats_start(list(second_moment_of))
        try:
            _run(model, texts, batch_size)
        finally:
            raw = core.activation_stats_stop()
    return raw


def collect_activation_sums(model: Any, texts: Sequence[str], batch_size: int = 16) -> dict[str, tuple[np.ndarray, int]]:
    """Runs ``model`` (a :class:`pyrt.SentenceEncoder` or :class:`pyrt.LanguageModel` with CPU
    weights) on ``texts``; returns, for every weight that ran a matmul, (float64 [K] sums of x^2 over
    all its input rows per input column, number of rows). A LanguageModel runs each text as one
    prefill from an empty cache (truncated to its context); its cache is left empty."""
    names = _weight_addresses(_model_tensors(model))
    out = {}
    for address, (sums, rows, _second) in _collect(model, texts, batch_size).items():
        name = names.get(int(address))
        if name is not None and rows > 0:
            out[name] = (np.asarray(sums, dtype=np.float64), int(rows))
    return out


def collect_activation_stats(model: Any, texts: Sequence[str], batch_size: int = 16) -> dict[str, np.ndarray]:
    """{tensor name: float64 [K] mean of x^2 per input column} over every input row (token) of
    that weight's matmuls while ``model`` runs on ``texts`` (see :func:`collect_activation_sums`):
    the ``importance`` that ``pyrt.quantize`` takes. Raises :class:`pyrt.ShapeError` for an empty
    ``texts``."""
    return {name: sums / float(rows) for name, (sums, rows) in collect_activation_sums(model, texts, batch_size).items()}


# Bound on the float64 second moments held at once; more weights run the texts again in groups.
DEFAULT_SECOND_MOMENT_BYTES = 1 << 30


def collect_second_moments(model: Any, texts: Sequence[str], names: Optional[Sequence[str]] = None,
                           batch_size: int = 16, max_bytes: int = DEFAULT_SECOND_MOMENT_BYTES,
                           dtype: Any = np.float64) -> dict[str, np.ndarray]:
    """{tensor name: float64 [K, K] mean of x x^T over the input rows of that weight's matmuls}
    while ``model`` runs on ``texts``: what :func:`pyrt.quantize_gptq.quantize_gptq` takes. Its
    diagonal is :func:`collect_activation_stats`'s. ``names``: the 2-D weights to collect (default:
    every 2-D weight that runs a matmul). Weights whose moments together exceed ``max_bytes`` are
    collected in groups, one run of the texts each; each group's moments are cast to ``dtype`` as
    they arrive."""
    tensors = _model_tensors(model)
    addresses = {name: address for address, name in _weight_addresses(tensors).items()}
    if names is None:
        names = [n for n in collect_activation_sums(model, texts[:1], batch_size) if len(tensors[n].shape) == 2]
    missing = [n for n in names if n not in addresses or len(tensors[n].shape) != 2]
    if missing:
        raise ShapeError(f"no 2-D CPU weight named {missing[0]!r} in the model")
    groups: list[list[str]] = [[]]
    used = 0
    for name in names:
        size = 8 * int(tensors[name].shape[1]) ** 2
        if groups[-1] and used + size > max_bytes:
            groups.append([])
            used = 0
        groups[-1].append(name)
        used += size
    out: dict[str, np.ndarray] = {}
    for group in groups:
        wanted = {addresses[n]: n for n in group}
        for address, (_sums, rows, second) in _collect(model, texts, batch_size, list(wanted)).items():
            name = wanted.get(int(address))
            if name is not None and rows > 0 and second is not None:
                out[name] = (np.asarray(second, dtype=np.float64) / float(rows)).astype(dtype, copy=False)
    return out
