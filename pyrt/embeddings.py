"""What SentenceEncoder does with finished embeddings, with sentence-transformers' meanings:
precision quantization (``quantize_embeddings``), similarity functions, and the OpenAI embeddings
response shape. Pure numpy; the encoder calls these once per ``encode``, never per row."""
from __future__ import annotations

import base64
from typing import Any, Optional, Sequence

import numpy as np

from .errors import DtypeError, RangeError, ShapeError, UnsupportedError

PRECISIONS = ("float32", "int8", "uint8", "binary", "ubinary")
# sentence-transformers' similarity_fn_name values; the distances are negated so that larger is closer.
SIMILARITY_FUNCTIONS = ("cosine", "dot", "euclidean", "manhattan")
NORM_EPS = 1e-12  # torch.nn.functional.normalize's default, which sentence-transformers uses


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Rows divided by max(norm, 1e-12), as torch.nn.functional.normalize (a zero row stays zero)."""
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return (x / np.maximum(norms, NORM_EPS)).astype(x.dtype, copy=False)


def check_precision(precision: Any) -> str:
    if precision not in PRECISIONS:
        raise DtypeError(f"precision must be one of {', '.join(PRECISIONS)}; got {precision!r}")
    return precision


def quantize_embeddings(embeddings: np.ndarray, precision: str, ranges: Optional[np.ndarray] = None,
                        calibration_embeddings: Optional[np.ndarray] = None) -> np.ndarray:
    """sentence-transformers' ``quantize_embeddings`` (their 6.x rules) on numpy arrays [n, dim].

    int8/uint8: each dimension's [min, max] (from ``ranges`` [2, dim], else from
    ``calibration_embeddings``, else from ``embeddings`` themselves, which then need two rows or
    more) is cut into 255 steps; a value becomes floor((value - min) / step) clipped to [0, 255]
    (uint8), minus 128 for int8. A dimension whose range is empty uses a step of 1.
    binary/ubinary: one bit per dimension (value > 0), packed 8 to a byte per row with np.packbits
    (rows padded with zero bits to a whole byte); binary is the unsigned byte minus 128 as int8.
    Returns a new array; "float32" returns float32.
    """
    check_precision(precision)
    emb = np.asarray(embeddings)
    if emb.ndim != 2:
        raise ShapeError(f"embeddings must be 2-D [n, dim], got shape {emb.shape}")
    if emb.dtype.kind not in "fiu" or emb.dtype in (np.int8, np.uint8):
        raise DtypeError(f"embeddings to quantize must be float, got {emb.dtype}")
    if precision == "float32":
        return emb.astype(np.float32)
    if precision in ("binary", "ubinary"):
        packed = np.packbits(emb > 0, axis=-1)
        return (packed.astype(np.int16) - 128).astype(np.int8) if precision == "binary" else packed
    emb = emb.astype(np.float32, copy=False)
    if emb.shape[0] == 0:
        return np.zeros(emb.shape, np.int8 if precision == "int8" else np.uint8)
    if ranges is None:
        if calibration_embeddings is None and emb.shape[0] == 1:
            raise RangeError(f"cannot compute {precision} ranges from a single embedding: pass ranges or "
                             "calibration_embeddings (pyrt.embeddings.quantize_embeddings)")
        source = emb if calibration_embeddings is None else np.asarray(calibration_embeddings, np.float32)
        if source.ndim != 2 or source.shape[1] != emb.shape[1] or source.shape[0] == 0:
            raise ShapeError(f"calibration embeddings must be [m >= 1, {emb.shape[1]}], got {source.shape}")
        ranges = np.vstack((source.min(axis=0), source.max(axis=0)))
    ranges = np.asarray(ranges, np.float32)
    if ranges.shape != (2, emb.shape[1]):
        raise ShapeError(f"ranges must be [2, {emb.shape[1]}] (min row, max row), got {ranges.shape}")
    if not np.isfinite(ranges).all():
        raise RangeError("quantization ranges must be finite")
    starts = ranges[0]
    steps = (ranges[1] - starts) / np.float32(255)
    steps = np.where(steps == 0, np.float32(1), steps)
    index = np.clip(np.floor((emb - starts) / steps), 0, 255)
    return (index - 128).astype(np.int8) if precision == "int8" else index.astype(np.uint8)


def check_similarity_function(name: Any) -> str:
    if name not in SIMILARITY_FUNCTIONS:
        raise UnsupportedError(f"similarity function {name!r} is not supported ({', '.join(SIMILARITY_FUNCTIONS)})")
    return name


def _as_rows(x: Any, name: str) -> np.ndarray:
    try:
        a = np.asarray(x, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise DtypeError(f"{name} must be an array of numbers: {exc}") from exc
    if a.ndim == 1:
        a = a[None, :]
    if a.ndim != 2:
        raise ShapeError(f"{name} must be 1-D or 2-D, got shape {a.shape}")
    return a


def similarity_matrix(a: Any, b: Any, function: str = "cosine") -> np.ndarray:
    """float32 [n, m]: ``function`` between every row of ``a`` and every row of ``b`` (1-D inputs
    count as one row), as sentence-transformers' SentenceTransformer.similarity."""
    check_similarity_function(function)
    x, y = _as_rows(a, "a"), _as_rows(b, "b")
    if x.shape[1] != y.shape[1]:
        raise ShapeError(f"embeddings have different dimensions: {x.shape[1]} and {y.shape[1]}")
    if function == "cosine":
        return l2_normalize(x) @ l2_normalize(y).T
    if function == "dot":
        return x @ y.T
    diff = x[:, None, :] - y[None, :, :]
    if function == "euclidean":
        return -np.sqrt((diff * diff).sum(-1))
    return -np.abs(diff).sum(-1)


def embedding_response(vectors: np.ndarray, model: str, prompt_tokens: int, encoding_format: str) -> dict:
    """The OpenAI embeddings response for float32 ``vectors`` [n, dim]. "base64" is the vector's
    little-endian float32 bytes, which the openai client decodes with numpy."""
    data: list[dict] = []
    for i, row in enumerate(np.asarray(vectors, dtype="<f4")):
        value: Any = (base64.b64encode(row.tobytes()).decode("ascii") if encoding_format == "base64"
                      else row.tolist())
        data.append({"object": "embedding", "index": i, "embedding": value})
    return {"object": "list", "data": data, "model": model,
            "usage": {"prompt_tokens": int(prompt_tokens), "total_tokens": int(prompt_tokens)}}


def check_embedding_input(value: Any) -> tuple[list[str], bool]:
    """OpenAI ``input``: a string or a list of strings -> (texts, True when a single string)."""
    if isinstance(value, str):
        return [value], True
    if isinstance(value, Sequence) and not isinstance(value, (bytes, bytearray)):
        texts = list(value)
        if not texts:
            raise ShapeError("input must not be an empty list")
        if all(isinstance(t, str) for t in texts):
            return texts, False
        if all(isinstance(t, int) for t in texts) or all(isinstance(t, Sequence) for t in texts):
            raise UnsupportedError("input as token ids is not supported; send text")
    raise DtypeError(f"input must be a string or a list of strings, got {type(value).__name__}")
