"""Whether a model keeps a second, repacked copy of its 4-bit weights (q4/q4a/q4n at blocks 32 and
64, q4/q4a at 128) for the decode (M=1) kernels (csrc/include/pyrt/repack.h; costs and gains in
docs/benchmarks.md, "Load-time repacking").

``repack=True``/``False`` on LanguageModel and SentenceEncoder decides; ``None`` takes the
``PYRT_REPACK`` environment variable ("1" on, "0" off) when it is set, else the model's default:
on for LanguageModel (each generated token is an M=1 product), off for SentenceEncoder (its
products have one row per token of the batch, M > 1, and never read the copy)."""
from __future__ import annotations

import os

from .errors import UnsupportedError


def resolve_repack(repack: bool | None, default: bool) -> bool:
    if repack is not None:
        if not isinstance(repack, bool):
            raise UnsupportedError(f"repack must be True, False or None, got {repack!r}")
        return repack
    env = os.environ.get("PYRT_REPACK")
    if env is None:
        return default
    if env not in ("0", "1"):
        raise UnsupportedError(f"PYRT_REPACK must be 0 or 1, got {env!r}")
    return env == "1"
