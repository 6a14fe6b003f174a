"""Read a llama.cpp GGUF file into what :class:`pyrt.LanguageModel` needs: float32 weights (dequantized
with the ``gguf`` package) and the metadata under llama.cpp's own key names. Used until a model is
converted to a .pyrt file, and by the tests as the independent source of truth."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .errors import FileFormatError, UnsupportedError
from .tensor import Tensor, quantize


def _require_gguf():
    try:
        import gguf  # noqa: PLC0415 - optional dependency
    except ImportError as exc:
        raise UnsupportedError("reading .gguf files needs the 'gguf' package: pip install gguf") from exc
    return gguf


def read_gguf(path: str | Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Returns (float32 arrays by GGUF tensor name in [rows, cols] order, metadata by GGUF key)."""
    gguf = _require_gguf()
    try:
        reader = gguf.GGUFReader(str(path))
    except (ValueError, OSError) as exc:
        raise FileFormatError(f"{path}: not a readable GGUF file ({exc})") from exc
    metadata: dict[str, Any] = {}
    for key, field in reader.fields.items():
        if key.startswith("GGUF."):
            continue
        metadata[key] = field.contents()
    arrays: dict[str, np.ndarray] = {}
    for t in reader.tensors:
        # ggml lists dimensions fastest-first; numpy's shape from dequantize is already [rows, cols].
        values = gguf.quants.dequantize(t.data, t.tensor_type)
        shape = tuple(int(s) for s in reversed(t.shape.tolist()))
        arrays[t.name] = np.ascontiguousarray(values, dtype=np.float32).reshape(shape)
    return arrays, metadata


def quantize_weights(arrays: dict[str, np.ndarray], dtype: str, block: int = 32,
                     embedding_dtype: str | None = None) -> dict[str, Tensor]:
    """Stores every matrix in ``dtype``/``block``; 1-D tensors (norm weights) stay f32. The token
    embedding (also the tied output head) uses ``embedding_dtype`` when given: llama.cpp's 4-bit
    files keep it at 8 bits (SmolLM2's Q4_1 GGUF: Q8_0), and 4 bits there costs most of the
    quantization loss."""
    out = {}
    for name, a in arrays.items():
        fmt = "f32" if a.ndim == 1 else dtype
        if embedding_dtype and name in ("token_embd.weight", "output.weight"):
            fmt = embedding_dtype
        out[name] = quantize(a, fmt, block)
    return out
