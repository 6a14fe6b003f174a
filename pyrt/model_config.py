"""One validation step for a model's configuration, shared by every family: each value the runtime
reads from a file's config or metadata is checked here for its type, its range and its consistency
with the other values and the tensors' shapes, before anything is built, so that a hostile or
careless file ends in a :class:`~pyrt.errors.ConfigError` (or ShapeError/RangeError) naming the key
and the value rather than in a TypeError, a ZeroDivisionError or a crash (docs/hostile-input.md)."""
from __future__ import annotations

import json
import math
from typing import Any, Mapping

import numpy as np

from .errors import ConfigError, FileFormatError, RangeError, ShapeError, UnsupportedError

# The largest KV cache capacity, in tokens (mirrors kMaxContextTokens, csrc/models/decoder_limits.h).
MAX_CONTEXT = 1 << 20
# Token ids are int32 in the core; no size read from a config may exceed it.
MAX_SIZE = (1 << 31) - 1
# Nesting depth accepted in a carried JSON file (sentence-transformers files are 2-3 deep).
MAX_JSON_DEPTH = 64

_MISSING = object()


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def config_int(cfg: Mapping[str, Any], key: str, default: Any = _MISSING, low: int = 1, high: int = MAX_SIZE) -> int:
    """cfg[key] as an int in [low, high]; a float is accepted only when it is integral (JSON 384.0)."""
    value = cfg.get(key, default)
    if value is _MISSING:
        raise ConfigError(f"model config has no {key!r}")
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ConfigError(f"config {key!r} must be an integer, got {_shown(value)}")
    if isinstance(value, (float, np.floating)) and not (math.isfinite(value) and float(value).is_integer()):
        raise ConfigError(f"config {key!r} must be an integer, got {_shown(value)}")
    number = int(value)
    if not low <= number <= high:
        raise ConfigError(f"config {key!r} is {number}, must be in [{low}, {high}]")
    return number


def config_float(cfg: Mapping[str, Any], key: str, default: Any = _MISSING, high: float = math.inf) -> float:
    """cfg[key] as a finite float in (0, high]."""
    value = cfg.get(key, default)
    if value is _MISSING:
        raise ConfigError(f"model config has no {key!r}")
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ConfigError(f"config {key!r} must be a number, got {_shown(value)}")
    number = float(value)
    if not (math.isfinite(number) and 0.0 < number <= high):
        raise ConfigError(f"config {key!r} is {number}, must be finite and in (0, {high}]")
    return number


def config_str(cfg: Mapping[str, Any], key: str, default: str) -> str:
    value = cfg.get(key, default)
    if not isinstance(value, str):
        raise ConfigError(f"config {key!r} must be a string, got {_shown(value)}")
    return value


def check_divisible(what: str, value: int, divisor_key: str, divisor: int) -> None:
    if value % divisor:
        raise ConfigError(f"{what} ({value}) is not a multiple of {divisor_key!r} ({divisor})")


def check_context_length(context_length: Any, trained: int | None = None) -> int:
    """The requested KV cache capacity: an int in [1, min(trained, MAX_CONTEXT)]."""
    if isinstance(context_length, (bool, np.bool_)) or not isinstance(context_length, (int, np.integer)):
        raise RangeError(f"context_length must be an integer, got {_shown(context_length)}")
    limit = MAX_CONTEXT if trained is None else min(trained, MAX_CONTEXT)
    if not 1 <= int(context_length) <= limit:
        where = "llama.context_length" if trained is not None and trained <= MAX_CONTEXT else "pyrt's maximum context"
        raise RangeError(f"context_length {context_length} must be in [1, {limit}] ({where})")
    return int(context_length)


def dims_fit(shape) -> bool:
    """Whether the product of a shape's non-zero dimensions stays below 2^62, so that no partial
    product (rows x columns of a zero-sized tensor included) overflows int64."""
    product = 1
    for d in shape:
        product *= max(int(d), 1)
    return product < 1 << 62


def _matrix_shape(tensors: Mapping[str, Any], name: str) -> tuple[int, ...]:
    if name not in tensors:
        raise FileFormatError(f"model has no {name!r} tensor")
    shape = tuple(getattr(tensors[name], "shape", ()))
    if len(shape) != 2:
        raise ShapeError(f"tensor {name!r} has shape {shape}, expected 2 dimensions")
    return shape


def decoder_config(md: Mapping[str, Any], tensors: Mapping[str, Any], context_length: Any,
                   kv_cache: str) -> dict[str, Any]:
    """The native DecoderConfig fields from llama.cpp-named metadata, every value checked, the
    architecture's features from the family table (pyrt/decoder_families.py)."""
    from .decoder_families import decoder_config as family_decoder_config  # noqa: PLC0415 - it builds on this module

    return family_decoder_config(md, tensors, context_length, kv_cache)


def bounded_json(text: str | bytes, name: str) -> Any:
    """Parses a carried JSON file; a nesting deeper than MAX_JSON_DEPTH (or one that would exhaust
    the parser's recursion) is a FileFormatError, not a RecursionError."""
    try:
        value = json.loads(text)
    except RecursionError as exc:
        raise FileFormatError(f"carried file {name!r} nests deeper than the parser allows") from exc
    except (UnicodeDecodeError, ValueError) as exc:
        raise FileFormatError(f"carried file {name!r} is not valid JSON: {exc}") from exc
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise FileFormatError(f"carried file {name!r} nests deeper than {MAX_JSON_DEPTH} levels")
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return value


def _carried(files: Mapping[str, Any], name: str, kind: type) -> Any:
    """A carried JSON file of the given top-level kind (dict or list), None when absent."""
    if name not in files:
        return None
    value = files[name]
    if isinstance(value, (bytes, bytearray, str)):
        value = bounded_json(value, name)
    if not isinstance(value, kind):
        raise ConfigError(f"carried file {name!r} must hold a JSON {kind.__name__}, got {type(value).__name__}")
    return value


# Relative position buckets an MPNet config may ask for (the native encoder's limit).
MAX_RELATIVE_BUCKETS = 1 << 16
# MPNet numbers positions from padding_idx + 1 = 2 (Hugging Face's MPNetEmbeddings).
MPNET_FIRST_POSITION = 2


def check_encoder_config(config: Mapping[str, Any], tensors: Mapping[str, Any], files: Mapping[str, Any]) -> None:
    """Checks a BERT or MPNet (sentence-transformers) model's config.json and carried JSON files:
    every value SentenceEncoder reads has the right type and range, and the word embeddings match
    the config."""
    if not isinstance(config, Mapping):
        raise ConfigError(f"config must be a dict, got {type(config).__name__}")
    if not isinstance(files, Mapping):
        raise ConfigError(f"files must be a dict, got {type(files).__name__}")
    for key in ("model_type", "hidden_act", "position_embedding_type"):
        if key in config and not isinstance(config[key], str):
            raise ConfigError(f"config {key!r} must be a string, got {_shown(config[key])}")
    # A missing key is reported where the encoder needs it (after the tokenizer's own checks).
    sizes = {key: config_int(config, key) for key in ("hidden_size", "num_attention_heads", "vocab_size",
                                                      "num_hidden_layers", "intermediate_size",
                                                      "max_position_embeddings", "type_vocab_size") if key in config}
    if "hidden_size" in sizes and "num_attention_heads" in sizes:
        check_divisible("hidden_size", sizes["hidden_size"], "num_attention_heads", sizes["num_attention_heads"])
    config_float(config, "layer_norm_eps", 1e-12, high=1.0)
    if config.get("model_type") == "mpnet":
        config_int(config, "relative_attention_num_buckets", 32, high=MAX_RELATIVE_BUCKETS)
        if "max_position_embeddings" in sizes and sizes["max_position_embeddings"] <= MPNET_FIRST_POSITION:
            raise ConfigError(f"config 'max_position_embeddings' is {sizes['max_position_embeddings']}, MPNet "
                              f"positions start at {MPNET_FIRST_POSITION}")
    hidden = sizes.get("hidden_size")
    for prefix in ("", "bert.", "mpnet.", "0.auto_model.", "model."):
        name = prefix + "embeddings.word_embeddings.weight"
        if name in tensors:
            shape = tuple(getattr(tensors[name], "shape", ()))
            if hidden is not None and "vocab_size" in sizes and shape != (sizes["vocab_size"], hidden):
                raise ShapeError(f"tensor {name!r} has shape {shape}, config says vocab_size {config['vocab_size']} "
                                 f"x hidden_size {hidden}")
            break
    modules = _carried(files, "modules.json", list) or []
    for module in modules:
        if not isinstance(module, dict) or not all(isinstance(module.get(k, ""), str) for k in ("type", "path")):
            raise ConfigError(f"modules.json entry {_shown(module)} must be an object with string 'type' and 'path'")
        path = module.get("path", "")
        _carried(files, f"{path}/config.json" if path else "config.json", dict)
    sbert = _carried(files, "sentence_bert_config.json", dict) or {}
    if sbert.get("max_seq_length") is not None:
        config_int(sbert, "max_seq_length")
    tokenizer_config = _carried(files, "tokenizer_config.json", dict) or {}
    if "model_max_length" in tokenizer_config:  # tokenizers write 1e30 for "no limit"
        config_int(tokenizer_config, "model_max_length", high=1 << 100)


def check_tokenizer_metadata(md: Mapping[str, Any]) -> None:
    """The tokenizer.ggml.* values GGUFTokenizer reads: a tokenizer model and pre-tokenizer pyrt
    rebuilds (UnsupportedError naming the key otherwise, before anything else is read or built),
    lists of strings and numbers of matching lengths, special ids inside the vocabulary, boolean
    flags."""
    from .byte_bpe_tokenizer import PRE_TOKENIZERS  # noqa: PLC0415 - tokenizer tables, no heavy import
    from .tokenizer_types import BYTE_LEVEL_BPE, TOKENIZER_MODELS  # noqa: PLC0415

    model = md.get("tokenizer.ggml.model")
    if not isinstance(model, str) or model not in TOKENIZER_MODELS:
        raise UnsupportedError(f"tokenizer model {_shown(model)} (tokenizer.ggml.model) is not supported; supported: "
                               "'gpt2' (byte-level BPE), 'llama' (SentencePiece)")
    pre = config_str(md, "tokenizer.ggml.pre", "default")
    if model == BYTE_LEVEL_BPE and pre not in PRE_TOKENIZERS:
        raise UnsupportedError(f"pre-tokenizer {_shown(pre)} (tokenizer.ggml.pre) is not supported; supported: "
                               f"{', '.join(sorted(PRE_TOKENIZERS))}")
    lists = [("tokenizer.ggml.tokens", str), ("tokenizer.ggml.token_type", int),
             ("tokenizer.ggml.merges", str) if model == BYTE_LEVEL_BPE else ("tokenizer.ggml.scores", float)]
    tokens = md.get("tokenizer.ggml.tokens")
    for key, kind in lists:
        value = md.get(key)
        if value is None and key == "tokenizer.ggml.token_type":
            continue
        if value is None:
            raise FileFormatError(f"model metadata lacks {key!r}")
        allowed = {int, float} if kind is float else {kind}  # exact types: a bool is no int here
        if not isinstance(value, (list, tuple)) or not set(map(type, value)) <= allowed:
            raise ConfigError(f"{key} must be a list of {kind.__name__}, got {_shown(value)}")
        if kind is float and not all(map(math.isfinite, value)):
            raise ConfigError(f"{key} must hold finite numbers")
        if key in ("tokenizer.ggml.token_type", "tokenizer.ggml.scores") and len(value) != len(tokens):
            raise ConfigError(f"{key} has {len(value)} entries for {len(tokens)} tokens")
    for key in ("tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id", "tokenizer.ggml.unknown_token_id"):
        if md.get(key) is not None:
            config_int(md, key, low=0, high=len(tokens) - 1 if tokens else 0)
    template = md.get("tokenizer.chat_template")
    if template is not None and not isinstance(template, str):
        raise ConfigError(f"tokenizer.chat_template must be a string, got {_shown(template)}")
    for key in ("tokenizer.ggml.add_bos_token", "tokenizer.ggml.add_eos_token", "tokenizer.ggml.add_space_prefix"):
        if not isinstance(md.get(key, False), (bool, int)):
            raise ConfigError(f"{key} must be a boolean, got {_shown(md[key])}")


def check_converted_llama_metadata(metadata: Mapping[str, Any]) -> None:
    """A .pyrt file converted from a GGUF keeps the GGUF's keys under metadata["gguf"] and its
    tokenizer under metadata["tokenizer"]: both must be JSON objects."""
    for key in ("gguf", "tokenizer", "config"):
        if not isinstance(metadata.get(key, {}), Mapping):
            raise ConfigError(f"metadata[{key!r}] must be a JSON object, got {_shown(metadata[key])}")
