"""pyrt's one reader of llama.cpp GGUF files: the header (key/values, tensor descriptions) by pyrt's
own bounded reader (gguf_limits.py: every count and length checked against the file), the tensors
dequantized to float32 by the `gguf` package's gguf.quants.dequantize; the architecture config and
the tokenizer come from the key/value fields. :func:`open_gguf` serves the converter (a lazy Source),
:func:`read_tensors` serves pyrt/gguf_weights.py (``pyrt.LanguageModel("x.gguf")``: tensors mapped in
place or converted); :func:`read_gguf` and :func:`quantize_weights` (everything dequantized, then
requantized) serve the tests and benchmarks, which use them as the independent source of truth.

Tensor names and layouts are kept as in the GGUF file (token_embd.weight, blk.N.attn_q.weight, ...,
with llama.cpp's Q/K row order), shapes in numpy order [rows, K]. The config says so
("tensor_naming": "gguf")."""
from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ...decoder_families import hf_config
from ...errors import FileFormatError, FileIOError, UnsupportedError
from ...gguf_weights import GGUF_FORMATS, gguf_tensor
from ...tensor import Tensor, quantize
from .base import Source, SourceTensor
from .gguf_limits import byte_order, read_header

SUPPORTED_TYPES = tuple(GGUF_FORMATS)  # F32 F16 BF16 Q8_0 Q4_0 Q4_1 Q5_0 Q4_K Q5_K Q6_K Q5_1

# What the gguf package raises on a file the pre-scan let through (its own checks, numpy views).
_PACKAGE_ERRORS = (ValueError, OSError, IndexError, KeyError, TypeError, ArithmeticError, AttributeError,
                   AssertionError)


def _module():
    try:
        import gguf  # type: ignore[import-not-found]
    except ImportError as exc:
        raise UnsupportedError("reading GGUF files needs the gguf package: pip install gguf") from exc
    return gguf


def llama_config(arch: str, kv: dict[str, Any], has_output: bool, n_vocab: int) -> dict[str, Any]:
    """The Hugging Face-style config of a GGUF decoder of any supported family
    (pyrt/decoder_families.py); UnsupportedError for another architecture."""
    return hf_config(arch, kv, has_output, n_vocab)


# ggml types whose data the gguf package hands over as typed numbers rather than raw blocks.
_PLAIN_DTYPES = {"F32": "f4", "F16": "f2", "F64": "f8", "I8": "i1", "I16": "i2", "I32": "i4", "I64": "i8"}


@dataclass(frozen=True)
class GGUFTensor:
    """One tensor of a GGUF file: its description and a read-only view of its bytes."""

    name: str
    tensor_type: Any    # gguf.GGMLQuantizationType
    shape: tuple[int, ...]  # numpy order [rows, K]
    n_bytes: int
    data: np.ndarray        # typed (plain types) or [blocks, bytes] view, for the gguf package
    raw: np.ndarray         # the same bytes, 1-D uint8
    little_endian: bool


def _read(path: Path) -> tuple[list[GGUFTensor], dict[str, Any]]:
    """The tensors (views of the mapped file) and the key/value fields as plain Python, read by
    pyrt's bounded header reader (gguf_limits.py); the gguf package only names types and dequantizes."""
    gguf = _module()
    kv, infos = read_header(path, {int(k): v for k, v in gguf.GGML_QUANT_SIZES.items()})
    order = byte_order(path)
    mapped = np.memmap(path, dtype=np.uint8, mode="r") if infos else None
    tensors = []
    for info in infos:
        kind = gguf.GGMLQuantizationType(info.type_id)
        if kind.name not in SUPPORTED_TYPES:
            raise UnsupportedError(f"{path}: tensor {info.name!r} has GGUF type {kind.name}; supported: "
                                   f"{', '.join(SUPPORTED_TYPES)}")
        shape = tuple(reversed(info.dims))
        raw = mapped[info.offset:info.offset + info.n_bytes]
        if kind.name in _PLAIN_DTYPES:
            data = raw.view(np.dtype(_PLAIN_DTYPES[kind.name]).newbyteorder(order)).reshape(shape)
        else:
            data = raw.reshape(gguf.quant_shape_to_byte_shape(shape, kind))
        tensors.append(GGUFTensor(info.name, kind, shape, info.n_bytes, data, raw, order == "<"))
    return tensors, kv


def read_tensors(path: Path) -> tuple[list[GGUFTensor], dict[str, Any]]:
    """The tensors (views of the memory-mapped file) and the key/value fields of a GGUF file."""
    return _read(path)


def _shape(t: GGUFTensor) -> tuple[int, ...]:
    return t.shape


def _values(t: GGUFTensor) -> np.ndarray:
    try:
        values = _module().quants.dequantize(t.data, t.tensor_type)
        return np.ascontiguousarray(values, dtype=np.float32).reshape(t.shape)
    except _PACKAGE_ERRORS as exc:
        raise FileFormatError(f"GGUF tensor {t.name!r} cannot be dequantized: {exc}") from exc


def open_gguf(path: Path) -> Source:
    gguf_tensors, kv = _read(path)
    # native: the tensor under pyrt.gguf_weights' mapping (the converter's default for a GGUF).
    tensors = [SourceTensor(t.name, _shape(t), t.tensor_type.name, int(t.n_bytes), functools.partial(_values, t),
                            native=functools.partial(gguf_tensor, t))
               for t in gguf_tensors]
    arch = kv.get("general.architecture", "unknown")
    tokens = kv.get("tokenizer.ggml.tokens") or []
    if not isinstance(arch, str) or not isinstance(tokens, list):
        raise FileFormatError(f"{path}: general.architecture must be a string and tokenizer.ggml.tokens a list")
    names = {t.name for t in tensors}
    config = llama_config(arch, kv, "output.weight" in names, len(tokens))
    # The tokenizer (vocabulary, merges, token types, special ids, chat template) goes into the
    # metadata: "tokenizer.ggml.tokens" -> metadata["tokenizer"]["tokens"], and so on.
    tokenizer = {k.removeprefix("tokenizer.").removeprefix("ggml."): v for k, v in kv.items()
                 if k.startswith("tokenizer.")}
    other = {k: v for k, v in kv.items() if not k.startswith("tokenizer.")}
    return Source("gguf", path, tensors, config=config, metadata={"tokenizer": tokenizer, "gguf": other},
                  source_files=[path])


def read_gguf(path: str | Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """(float32 arrays by GGUF tensor name in [rows, cols] order, metadata by GGUF key), all read now."""
    path = Path(path)
    if not path.is_file():
        raise FileIOError(f"cannot open '{path}': no such file")
    tensors, kv = _read(path)
    return {t.name: _values(t) for t in tensors}, kv


def quantize_weights(arrays: dict[str, np.ndarray], dtype: str, block: int = 32,
                     embedding_dtype: str | None = None, method: str = "rtn") -> dict[str, Tensor]:
    """Stores every matrix in ``dtype``/``block``; 1-D tensors (norm weights) stay f32. The token
    embedding (also the tied output head) uses ``embedding_dtype`` when given: llama.cpp's 4-bit
    files keep it at 8 bits (SmolLM2's Q4_1 GGUF: Q8_0), and 4 bits there costs most of the
    quantization loss.

    ``method``: round to nearest by default here. This path (a GGUF loaded in place) has no
    calibration text, and the uncalibrated scale search measured mixed on SmolLM2's already-4-bit
    weights (perplexity of a 101-token paragraph, 2026-12-02: q4a/64 18.1 searched vs 21.0 RTN,
    but q4/64 20.0 vs 15.2 and q4a/32 15.4 vs 14.6); `pyrt convert` calibrates and searches
    (docs/quantization.md)."""
    out = {}
    for name, a in arrays.items():
        fmt = "f32" if a.ndim == 1 else dtype
        if embedding_dtype and name in ("token_embd.weight", "output.weight"):
            fmt = embedding_dtype
        out[name] = quantize(a, fmt, block, method=method)
    return out
