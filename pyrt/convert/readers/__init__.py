"""Checkpoint readers. :func:`open_source` picks one from the path: a folder (Hugging Face),
.safetensors, .npz, .bin/.pt/.pth (PyTorch, needs torch), .gguf; unknown suffixes by magic bytes."""
from __future__ import annotations

import os
from pathlib import Path

from ...errors import FileIOError, UnsupportedError
from .base import Source, SourceTensor
from .gguf_file import open_gguf
from .hf_folder import open_hf_folder
from .npz_file import open_npz
from .safetensors_file import open_safetensors
from .torch_file import open_torch

SUFFIXES = {
    ".safetensors": open_safetensors, ".npz": open_npz, ".gguf": open_gguf,
    ".bin": open_torch, ".pt": open_torch, ".pth": open_torch,
}


def _sniff(path: Path):
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError as exc:
        raise FileIOError(f"cannot read {path}: {exc.strerror or exc}") from exc
    if head.startswith(b"GGUF"):
        return open_gguf
    if len(head) > 8 and head[8:9] == b"{":
        return open_safetensors
    if head.startswith(b"PK"):
        return open_npz  # a zip: .npz (a zipped torch file would need its suffix)
    return None


def open_source(path: str | os.PathLike) -> Source:
    path = Path(path)
    if not path.exists():
        raise FileIOError(f"{path}: no such file or folder")
    if path.is_dir():
        return open_hf_folder(path)
    opener = SUFFIXES.get(path.suffix.lower()) or _sniff(path)
    if opener is None:
        raise UnsupportedError(f"{path}: unknown checkpoint type (expected a Hugging Face folder, "
                               ".safetensors, .npz, .bin/.pt or .gguf)")
    return opener(path)


__all__ = ["Source", "SourceTensor", "open_source"]
