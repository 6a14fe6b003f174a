"""Reader of numpy .npz archives (one array per tensor; object arrays are refused, never unpickled)."""
from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from ...errors import FileFormatError, FileIOError
from .base import Source, SourceTensor


def open_npz(path: Path) -> Source:
    try:
        archive = np.load(path, allow_pickle=False)
    except OSError as exc:
        raise FileIOError(f"cannot read {path}: {exc}") from exc
    except (ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise FileFormatError(f"{path}: not a readable .npz archive: {exc}") from exc
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise FileFormatError(f"{path}: a single .npy array, not an .npz archive")

    def loader(name: str):
        def load() -> np.ndarray:
            try:
                return archive[name]
            except ValueError as exc:  # object arrays need pickle: refused
                raise FileFormatError(f"{path}: array {name!r} cannot be read without pickle: {exc}") from exc
        return load

    tensors = []
    for name in archive.files:
        # Shape and dtype from the .npy header, without reading the array.
        with archive.zip.open(name + ".npy") as member:
            try:
                version = np.lib.format.read_magic(member)
                read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
                shape, _, dtype = read(member)
            except (ValueError, OSError) as exc:
                raise FileFormatError(f"{path}: array {name!r} has a bad header: {exc}") from exc
        if dtype.hasobject:
            raise FileFormatError(f"{path}: array {name!r} holds Python objects; refusing to unpickle")
        count = int(np.prod(shape)) if shape else 1
        tensors.append(SourceTensor(name, tuple(shape), dtype.name, count * dtype.itemsize, loader(name)))
    source = Source("npz", path, tensors, source_files=[path])
    source.closers.append(archive.close)
    return source
