"""A GGUF file's tensors as pyrt Tensors, in place where the bytes allow it.

pyrt's q8, q4, q4a and q5 at block 32 have the bytes of ggml's Q8_0, Q4_0, Q4_1 and Q5_0 blocks,
and f32/f16/bf16 those of F32/F16/BF16: such tensors are views of the memory-mapped file (no copy,
no loss), as ``pyrt.load`` keeps a .pyrt file's tensors. The other supported types are converted
to the pyrt format that loses least within 1.25x their size (:data:`GGUF_FORMATS`):

  Q4_K -> q4a/32   each 32-weight sub-block's scale d*sc and minimum -dmin*m, rounded to FP16
                   (the 4-bit codes are kept; the only loss is that rounding)
  Q5_K, Q6_K, Q5_1 -> q8/32   requantized from the GGUF's own dequantized values

The error of each converted tensor is measured against the GGUF's dequantized values (the gguf
package's, an independent decoder) and reported: :class:`GGUFLoadReport`. An explicit ``dtype``
requantizes every matrix instead, as before (1-D tensors stay f32).
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .errors import FileIOError, UnsupportedError
from .tensor import Tensor, quantize

GGUF_BLOCK = 32
# ggml type -> the pyrt format (at block 32) that holds its bytes unchanged.
SAME_BYTES = {"F32": "f32", "F16": "f16", "BF16": "bf16", "Q8_0": "q8", "Q4_0": "q4", "Q4_1": "q4a", "Q5_0": "q5"}
# ggml type -> the pyrt format it is converted to (smallest measured loss within 1.25x its size).
CONVERTED = {"Q4_K": "q4a", "Q5_K": "q8", "Q6_K": "q8", "Q5_1": "q8"}
GGUF_FORMATS = {**SAME_BYTES, **CONVERTED}
EMBEDDING_NAMES = ("token_embd.weight", "output.weight")


@dataclass(frozen=True)
class TensorLoad:
    """How one GGUF tensor became a pyrt Tensor."""

    name: str
    gguf_type: str
    dtype: str
    block: int
    how: str                  # "mapped" (a view of the file), "converted" (Q4_K scales) or "requantized"
    nbytes: int               # pyrt bytes
    gguf_bytes: int
    rel_rms: float | None     # ||pyrt - GGUF dequantized|| / ||GGUF dequantized||; 0.0 when mapped


class GGUFLoadReport:
    """Per tensor: its GGUF type, its pyrt format, how it was made and the error that cost.
    Errors not measured at load (``measure=False``) are measured by :meth:`measure`."""

    def __init__(self, path: Path, tensors: list[TensorLoad], sources: dict[str, tuple[Any, Tensor]]):
        self.path = path
        self.tensors = tensors
        self._sources = sources  # name -> (GGUF tensor, pyrt tensor) of the unmeasured conversions
        self._lock = threading.Lock()

    def measure(self) -> "GGUFLoadReport":
        """Fills in each converted tensor's relative RMS error (dequantizes both sides); returns self."""
        with self._lock:
            for i, row in enumerate(self.tensors):
                if row.name in self._sources:
                    t, tensor = self._sources.pop(row.name)
                    self.tensors[i] = replace(row, rel_rms=rel_rms(_gguf_values(t), tensor))
        return self

    @property
    def mapped_bytes(self) -> int:
        return sum(t.nbytes for t in self.tensors if t.how == "mapped")

    @property
    def nbytes(self) -> int:
        return sum(t.nbytes for t in self.tensors)

    @property
    def gguf_bytes(self) -> int:
        return sum(t.gguf_bytes for t in self.tensors)

    def lines(self) -> list[str]:
        """One line per tensor that is not a plain view (errors measured first), then the totals."""
        self.measure()
        out = [f"{t.name}: {t.gguf_type} -> {t.dtype}/{t.block} {t.how}, relative RMS error {_fmt(t.rel_rms)}"
               for t in self.tensors if t.how != "mapped"]
        out.append(f"{len(self.tensors)} tensors, {self.nbytes / 1e6:.1f} MB ({self.nbytes / max(self.gguf_bytes, 1):.3f}x "
                   f"the GGUF's tensors), {self.mapped_bytes / 1e6:.1f} MB mapped from the file")
        return out


def _fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.2e}"


def _gguf_module():
    from .convert.readers.gguf_file import _module  # noqa: PLC0415 - the one place that imports gguf

    return _module()


def rel_rms(reference: np.ndarray, tensor: Tensor) -> float | None:
    """||tensor - reference|| / ||reference|| in float64 (None for an all-zero reference)."""
    from .convert.report import roundtrip_error  # noqa: PLC0415

    return roundtrip_error(reference, tensor)[0]


def q4_k_to_q4a(raw: np.ndarray, shape: tuple[int, ...]) -> Tensor:
    """ggml Q4_K blocks (256 weights: fp16 d, dmin, 12 bytes of 6-bit scales and minima, 128 bytes
    of nibbles) -> q4a/32: each 32-weight sub-block keeps its nibbles, its scale d*sc and minimum
    -dmin*m become the q4a block's FP16 d and m (products in float32, as ggml dequantizes)."""
    blocks = raw.reshape(-1, 144)
    n = blocks.shape[0]
    d = blocks[:, 0:2].copy().view(np.float16).astype(np.float32)
    dmin = blocks[:, 2:4].copy().view(np.float16).astype(np.float32)
    s = blocks[:, 4:16].reshape(n, 3, 4)
    a, b, c = s[:, 0], s[:, 1], s[:, 2]
    sc = np.concatenate([a & 0x3F, (c & 0x0F) | ((a >> 2) & 0x30)], axis=1).astype(np.float32)
    mn = np.concatenate([b & 0x3F, (c >> 4) | ((b >> 2) & 0x30)], axis=1).astype(np.float32)
    scale = (d * sc).astype(np.float16)            # [n, 8]
    minimum = (-(dmin * mn)).astype(np.float16)    # value = d*sc*q - dmin*m
    qs = blocks[:, 16:].reshape(n, 4, 32)          # 32 bytes per pair of sub-blocks
    codes = np.stack([qs & 0x0F, qs >> 4], axis=2).reshape(n * 8, 32)  # sub-block 2i: low, 2i+1: high
    out = np.empty((n * 8, 20), dtype=np.uint8)
    out[:, 0:2] = scale.reshape(-1, 1).view(np.uint8)
    out[:, 2:4] = minimum.reshape(-1, 1).view(np.uint8)
    out[:, 4:] = codes[:, :16] | (codes[:, 16:] << 4)   # q4a nibbles: byte j holds j and j + 16
    return Tensor(out.reshape(-1), "q4a", shape, GGUF_BLOCK)


def _gguf_values(t) -> np.ndarray:
    from .convert.readers.gguf_file import _values  # noqa: PLC0415

    return _values(t)


def gguf_tensor(t, values: np.ndarray | None = None, method: str = "rtn") -> tuple[Tensor, str]:
    """(pyrt Tensor, how) of one GGUF tensor (a ``GGUFTensor`` of gguf_file.py) under the mapping
    :data:`GGUF_FORMATS`; ``values``: its dequantized values when the caller has them already.
    1-D tensors (norm weights, biases) are f32."""
    kind = t.tensor_type.name
    if len(t.shape) == 1 and kind != "F32":
        return Tensor(_f32_bytes(values if values is not None else _gguf_values(t)), "f32", t.shape, 1), "requantized"
    if kind in SAME_BYTES and t.little_endian:
        return Tensor(t.raw, SAME_BYTES[kind], t.shape, GGUF_BLOCK), "mapped"
    if kind == "Q4_K" and t.little_endian:
        return q4_k_to_q4a(t.raw, t.shape), "converted"
    target = GGUF_FORMATS.get(kind)
    if target is None:
        raise UnsupportedError(f"tensor {t.name!r} has GGUF type {kind}; supported: {', '.join(GGUF_FORMATS)}")
    x = values if values is not None else _gguf_values(t)
    return quantize(x, target, GGUF_BLOCK, method=method), "requantized"


def _f32_bytes(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x, dtype=np.float32).reshape(-1).view(np.uint8)


def _requested(name: str, ndim: int, dtype: str | None, embedding_dtype: str | None) -> str | None:
    """The format asked for this tensor, or None to keep the GGUF's type (the mapping)."""
    if ndim == 1:
        return None if dtype is None and embedding_dtype is None else "f32"
    if name in EMBEDDING_NAMES and embedding_dtype is not None:
        return embedding_dtype
    return dtype


def load_gguf_tensors(path: str | Path, dtype: str | None = None, block: int = GGUF_BLOCK,
                      embedding_dtype: str | None = None, method: str = "rtn",
                      measure: bool = True, check_keys: Callable[[dict[str, Any]], Any] | None = None,
                      ) -> tuple[dict[str, Tensor], dict[str, Any], GGUFLoadReport]:
    """(Tensors by GGUF name, the GGUF's key/values, a report) of a GGUF file.

    ``dtype`` None keeps each tensor's GGUF type where pyrt has the same bytes (a view of the mapped
    file) and converts the others by :data:`GGUF_FORMATS`; a format name requantizes every matrix
    to it at ``block`` (1-D tensors: f32). ``embedding_dtype`` applies to token_embd/output
    (None: as the other matrices). ``method``: the quantizer of requantized tensors (round to
    nearest by default: no calibration text here). ``measure``: report each converted tensor's
    relative RMS error against the GGUF's dequantized values now (mapped ones are exact: 0);
    False leaves them to ``report.measure()`` (faster loading). ``check_keys(kv)`` runs on the
    key/values before any tensor is read or converted (LanguageModel: architecture and tokenizer).
    Raises UnsupportedError (a ggml type pyrt cannot read, one line naming the tensor), FileIOError,
    FileFormatError."""
    from .convert.readers.gguf_file import read_tensors  # noqa: PLC0415 - needs the gguf package

    path = Path(path)
    if not path.is_file():
        raise FileIOError(f"cannot open '{path}': no such file")
    gguf_tensors, kv = read_tensors(path)
    if check_keys is not None:
        check_keys(kv)
    out: dict[str, Tensor] = {}
    rows = []
    unmeasured: dict[str, tuple[Any, Tensor]] = {}
    for t in gguf_tensors:
        want = _requested(t.name, len(t.shape), dtype, embedding_dtype)
        kind = t.tensor_type.name
        keep = want is None or (want == SAME_BYTES.get(kind) and block == GGUF_BLOCK and t.little_endian)
        values = None
        if keep:
            tensor, how = gguf_tensor(t, method=method)
        else:
            values = _gguf_values(t)
            target_block = block if len(t.shape) > 1 else 1
            tensor, how = quantize(values, want, target_block, method=method), "requantized"
        err: float | None = 0.0 if how == "mapped" else None
        if how != "mapped":
            if measure:
                err = rel_rms(values if values is not None else _gguf_values(t), tensor)
            else:
                unmeasured[t.name] = (t, tensor)
        out[t.name] = tensor
        rows.append(TensorLoad(t.name, kind, tensor.dtype, tensor.block, how, tensor.nbytes, int(t.n_bytes), err))
    return out, kv, GGUFLoadReport(path, rows, unmeasured)
