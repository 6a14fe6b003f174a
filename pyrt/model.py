"""pyrt.load and pyrt.Model: a converted model file, memory-mapped.

The native reader (csrc/core/model_file.cc) maps the file and validates its structure; the JSON
metadata is parsed here. Tensors are zero-copy read-only views of the mapping: opening a model
reads only its header, table and metadata, and a tensor's pages are read when it is used.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ._native import require_core
from .errors import FileFormatError, FileIOError, PyrtError
from .model_config import dims_fit
from .tensor import Tensor


class Model:
    """A loaded .pyrt file. Use :func:`pyrt.load` to create one.

    Attributes:
      tensors:  dict name -> :class:`pyrt.Tensor` (read-only views of the mapped file)
      config:   architecture config (HF config.json contents, or the llama config derived from GGUF)
      metadata: the whole JSON header (config, provenance, conversion settings, report, tokenizer)
      files:    carried files by relative name ("tokenizer.json", "1_Pooling/config.json", ...)
      report:   per-tensor conversion report (list of dicts, see docs/format.md)
      path:     the file's path
    """

    def __init__(self, path: str | os.PathLike, verify: bool = False):
        self.path = Path(path)
        core = require_core()
        try:
            self._file = core.ModelFile(os.fspath(self.path))
        except (TypeError, UnicodeError) as exc:  # a path pybind11 cannot turn into a string
            raise FileIOError(f"cannot open {path!r}: {exc}") from exc
        try:
            self._init_from_file(verify)
        except BaseException:
            self._file.close()
            raise

    def _init_from_file(self, verify: bool) -> None:
        f = self._file
        if verify:
            f.verify_all()
        try:
            metadata = json.loads(f.metadata_json.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise FileFormatError(f"{self.path}: metadata is not valid JSON: {exc}") from exc
        if not isinstance(metadata, dict):
            raise FileFormatError(f"{self.path}: metadata must be a JSON object")
        for key, kind in (("config", dict), ("report", dict), ("provenance", dict)):
            if key in metadata and not isinstance(metadata[key], kind):
                raise FileFormatError(f"{self.path}: metadata[{key!r}] must be a JSON {kind.__name__}")
        self.metadata: dict[str, Any] = metadata
        self.config: dict[str, Any] = metadata.get("config", {})
        report = metadata.get("report", {}).get("tensors", [])
        if not isinstance(report, list):
            raise FileFormatError(f"{self.path}: metadata['report']['tensors'] must be a list")
        self.report: list[dict[str, Any]] = report
        self.format_version: tuple[int, int] = tuple(f.version)
        self.tensors: dict[str, Tensor] = {}
        self.files: dict[str, bytes] = {}
        for index, entry in enumerate(f.entries):
            if entry["kind"] == "tensor":
                if not dims_fit(entry["shape"]):  # zero-sized, but its other dimensions overflow int64
                    raise FileFormatError(f"{self.path}: tensor {entry['name']!r} has shape {entry['shape']}")
                try:
                    self.tensors[entry["name"]] = Tensor(f.entry_array(index), entry["format"], entry["shape"],
                                                         entry["block"])
                except PyrtError as exc:  # the reader checked sizes; this is a disagreement, not a crash
                    raise FileFormatError(f"{self.path}: tensor {entry['name']!r}: {exc}") from exc
            elif entry["kind"] == "file":
                self.files[entry["name"]] = bytes(f.entry_array(index))
            # Entries of kinds added by newer minor versions are skipped (docs/format.md).

    def verify(self) -> None:
        """Recomputes every tensor's and file's CRC-32; raises :class:`pyrt.ChecksumError` on mismatch."""
        self._file.verify_all()

    @property
    def closed(self) -> bool:
        return self._file.closed

    def close(self) -> None:
        """Releases the model's hold on the mapping. Tensors still referenced elsewhere stay valid
        (each keeps the mapping alive); the file is unmapped when the last of them goes."""
        self._file.close()
        self.tensors = {}

    def __enter__(self) -> "Model":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        arch = self.config.get("model_type") or self.metadata.get("architecture", "?")
        state = "closed" if self.closed else f"{len(self.tensors)} tensors, {len(self.files)} files"
        return f"pyrt.Model({str(self.path)!r}, {arch}, {state})"


def load(path: str | os.PathLike, verify: bool = False) -> Model:
    """Opens a .pyrt model file written by ``pyrt-convert``.

    The file is memory-mapped, never copied; every offset, size and shape in it is checked against
    the file first. ``verify=True`` also checks each tensor's CRC-32 (reads the whole file).

    Raises :class:`pyrt.TruncatedFileError`, :class:`pyrt.FileFormatError` (not a pyrt file, bad
    offsets, overlapping tensors, bad shapes), :class:`pyrt.VersionError` (written by a newer,
    incompatible pyrt), :class:`pyrt.ChecksumError` and :class:`pyrt.FileIOError` (OS errors).
    """
    return Model(path, verify=verify)
