"""What every checkpoint reader produces: named tensors loaded on demand, plus config and files."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np


@dataclass
class SourceTensor:
    name: str
    shape: tuple[int, ...]
    source_dtype: str                 # as the source names it: "F32", "BF16", "Q4_1", "float16", ...
    source_bytes: int                 # bytes it takes in the source
    load: Callable[[], np.ndarray]    # the values (any numeric dtype), shape `shape`; read lazily
    # GGUF only: (values, method) -> (pyrt Tensor, how), the tensor in the pyrt format that holds its
    # type best (pyrt.gguf_weights); the converter's default for a GGUF without --dtype.
    native: Callable[..., tuple[Any, str]] | None = None

    @property
    def is_float(self) -> bool:
        """False for integer buffers (e.g. BERT's position_ids), which are not weights."""
        return not self.source_dtype.upper().startswith(("I", "U", "BOOL"))


@dataclass
class Source:
    kind: str                                     # "safetensors", "hf-folder", "npz", "pytorch", "gguf"
    path: Path
    tensors: list[SourceTensor]
    config: dict[str, Any] = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict)        # carried into the .pyrt file
    metadata: dict[str, Any] = field(default_factory=dict)       # extra metadata keys (tokenizer, gguf)
    source_files: list[Path] = field(default_factory=list)       # hashed for provenance
    closers: list[Callable[[], None]] = field(default_factory=list)

    def close(self) -> None:
        for close in self.closers:
            close()
        self.closers.clear()

    def __enter__(self) -> "Source":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
