"""The one shape in which every native model takes its weights (csrc/bindings/weight_table.cc):
{name: (uint8 bytes, format, block, shape)}. The C++ side checks presence, shapes and formats
against the model's config (csrc/models/weights.h), with the same errors for every model."""
from __future__ import annotations

from typing import Mapping

from .errors import DtypeError
from .tensor import Tensor


def native_weights(tensors: Mapping[str, Tensor], prefix: str = "") -> dict[str, tuple]:
    """The tensors whose names start with ``prefix``, keyed by the rest of the name."""
    out = {}
    for name, t in tensors.items():
        if not name.startswith(prefix):
            continue
        if not isinstance(t, Tensor):
            raise DtypeError(f"tensor {name!r} must be a pyrt.Tensor (see pyrt.quantize), got {type(t).__name__}")
        out[name[len(prefix):]] = (t.numpy(), t.dtype, t.block, tuple(t.shape))
    return out
