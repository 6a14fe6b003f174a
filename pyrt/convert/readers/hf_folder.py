"""Reader of Hugging Face model folders (and sentence-transformers folders): config.json, weights in
model.safetensors, a sharded model.safetensors.index.json, or pytorch_model.bin (torch), plus the
tokenizer and sentence-transformers files, which are carried into the .pyrt file."""
from __future__ import annotations

import json
from pathlib import Path

from ...errors import FileFormatError, FileIOError
from .base import Source
from .safetensors_file import open_safetensors
from .torch_file import open_torch

# Files needed at inference time next to the weights; carried byte for byte.
CARRIED_FILES = (
    "config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
    "special_tokens_map.json", "added_tokens.json", "vocab.txt", "vocab.json", "merges.txt",
    "tokenizer.model", "chat_template.json", "chat_template.jinja", "modules.json",
    "sentence_bert_config.json", "config_sentence_transformers.json",
)


def _read_json(path: Path) -> dict:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise FileIOError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:  # RecursionError: nesting too deep
        raise FileFormatError(f"{path}: not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise FileFormatError(f"{path}: expected a JSON object")
    return value


def _weights(folder: Path, prefix: str, required: bool) -> list[Source]:
    """The weight files of one folder, best format first."""
    index = folder / "model.safetensors.index.json"
    if (folder / "model.safetensors").is_file():
        return [open_safetensors(folder / "model.safetensors", prefix)]
    if index.is_file():
        weight_map = _read_json(index).get("weight_map", {})
        if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
            raise FileFormatError(f"{index}: weight_map must map tensor names to file names")
        shards = sorted(set(weight_map.values()))
        if not shards:
            raise FileFormatError(f"{index}: empty weight_map")
        for shard in shards:
            if Path(shard).name != shard:
                raise FileFormatError(f"{index}: shard name {shard!r} leaves the folder")
        return [open_safetensors(folder / shard, prefix) for shard in shards]
    if (folder / "pytorch_model.bin").is_file():
        return [open_torch(folder / "pytorch_model.bin", prefix)]
    if required:
        raise FileFormatError(f"{folder}: no model.safetensors, model.safetensors.index.json or "
                              "pytorch_model.bin found")
    return []


def open_hf_folder(folder: Path) -> Source:
    if not (folder / "config.json").is_file():
        raise FileFormatError(f"{folder}: not a Hugging Face model folder (no config.json)")
    config = _read_json(folder / "config.json")
    parts = _weights(folder, "", required=True)
    files: dict[str, bytes] = {}
    for name in CARRIED_FILES:
        if (folder / name).is_file():
            files[name] = (folder / name).read_bytes()
    # sentence-transformers modules (1_Pooling, 2_Dense, ...): their configs are carried, their
    # weights (if any) become tensors named "<module folder>.<tensor>".
    if (folder / "modules.json").is_file():
        try:
            modules = json.loads(files["modules.json"])
        except (ValueError, RecursionError) as exc:
            raise FileFormatError(f"{folder / 'modules.json'}: not valid JSON: {exc}") from exc
        for module in modules if isinstance(modules, list) else []:
            sub = str(module.get("path", "")) if isinstance(module, dict) else ""
            if not sub or Path(sub).is_absolute() or ".." in Path(sub).parts or not (folder / sub).is_dir():
                continue
            for path in sorted((folder / sub).glob("*.json")):
                files[f"{sub}/{path.name}"] = path.read_bytes()
            parts += _weights(folder / sub, f"{sub}.", required=False)
    tensors = [t for part in parts for t in part.tensors]
    seen: set[str] = set()
    for t in tensors:
        if t.name in seen:
            raise FileFormatError(f"{folder}: tensor {t.name!r} appears in two weight files")
        seen.add(t.name)
    source_files = [f for part in parts for f in part.source_files] + [folder / name for name in files]
    source = Source("hf-folder", folder, tensors, config=config, files=files, source_files=source_files)
    for part in parts:
        source.closers += part.closers
    return source
