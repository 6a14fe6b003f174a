"""pyrt.SentenceEncoder: sentence-transformers BERT models (all-MiniLM-L6-v2 and its kin) on pyrt.

The forward pass (embeddings, transformer layers, pooling, L2 normalisation) runs in the native
core, one call per batch, with the weights in whatever pyrt format the model file holds. This
module reads the model's own sentence-transformers files to match that library's results: the
maximum sequence length from sentence_bert_config.json (not the tokenizer's), the pooling mode
from 1_Pooling/config.json, and normalisation when modules.json lists a Normalize module.
"""
from __future__ import annotations

import json
import os
from typing import Any, Iterable, Mapping, Optional, Sequence, Union

import numpy as np

from ._native import require_core
from .model_weights import native_weights
from .errors import DtypeError, FileFormatError, ShapeError, UnsupportedError
from .model_config import check_encoder_config
from .ops import check_activations
from .tensor import Tensor
from .tokenizer_guard import guarded_tokenizer

# Where the BERT tensors may sit in a checkpoint: bare BertModel names, a BertFor* head model, or a
# sentence-transformers module saved whole.
NAME_PREFIXES = ("", "bert.", "0.auto_model.", "model.")
ANCHOR_TENSOR = "embeddings.word_embeddings.weight"

# sentence-transformers Pooling config keys -> the native pooling modes.
POOLING_MODES = {"pooling_mode_mean_tokens": "mean", "pooling_mode_cls_token": "cls",
                 "pooling_mode_max_tokens": "max"}
UNSUPPORTED_POOLING = ("pooling_mode_mean_sqrt_len_tokens", "pooling_mode_weightedmean_tokens",
                       "pooling_mode_lasttoken")
ST_MODULE_PREFIX = "sentence_transformers.models."
SUPPORTED_MODULES = ("Transformer", "Pooling", "Normalize")

FileValue = Union[bytes, str, Mapping[str, Any]]


def _json_file(files: Mapping[str, FileValue], name: str) -> Optional[Any]:
    """A carried JSON file, parsed; None when absent. Accepts bytes, text or an already parsed dict."""
    if name not in files:
        return None
    value = files[name]
    if isinstance(value, Mapping) or isinstance(value, list):
        return value
    try:
        return json.loads(value.decode("utf-8") if isinstance(value, (bytes, bytearray)) else value)
    except (UnicodeDecodeError, ValueError) as exc:
        raise FileFormatError(f"carried file {name!r} is not valid JSON: {exc}") from exc


def _text_file(files: Mapping[str, FileValue], name: str) -> str:
    value = files[name]
    if isinstance(value, (bytes, bytearray)):
        return value.decode("utf-8")
    if isinstance(value, Mapping):
        return json.dumps(value)
    return str(value)


def _native_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """The BertConfig fields the native encoder takes, from a Hugging Face config.json."""
    model_type = config.get("model_type", "bert")
    if model_type != "bert":
        raise UnsupportedError(f"SentenceEncoder runs BERT models; this config has model_type {model_type!r}")
    act = config.get("hidden_act", "gelu")
    if act != "gelu":
        raise UnsupportedError(f"hidden_act {act!r} is not supported; the encoder implements the exact "
                               "(erf) GELU of hidden_act 'gelu'")
    position_type = config.get("position_embedding_type", "absolute")
    if position_type != "absolute":
        raise UnsupportedError(f"position_embedding_type {position_type!r} is not supported (only 'absolute')")
    keys = {"vocab_size": "vocab_size", "hidden_size": "hidden_size", "num_layers": "num_hidden_layers",
            "num_heads": "num_attention_heads", "intermediate_size": "intermediate_size",
            "max_positions": "max_position_embeddings"}
    out: dict[str, Any] = {}
    for field, key in keys.items():
        if key not in config:
            raise FileFormatError(f"model config has no {key!r}")
        out[field] = int(config[key])
    out["type_vocab_size"] = int(config.get("type_vocab_size", 2))
    out["layer_norm_eps"] = float(config.get("layer_norm_eps", 1e-12))
    return out


def _bert_tensors(tensors: Mapping[str, Tensor]) -> dict[str, tuple]:
    """name -> (bytes, format, block, shape) with the checkpoint's prefix removed."""
    for prefix in NAME_PREFIXES:
        if prefix + ANCHOR_TENSOR in tensors:
            break
    else:
        raise FileFormatError(f"no BERT word embeddings ('{ANCHOR_TENSOR}') among the model's tensors")
    return native_weights(tensors, prefix)


class _SentenceTransformersSettings:
    """What the sentence-transformers files say about tokenisation, pooling and normalisation."""

    def __init__(self, config: Mapping[str, Any], files: Mapping[str, FileValue]):
        modules = _json_file(files, "modules.json")
        pooling_path = None
        self.normalize = False
        if modules is not None:
            for module in modules:
                kind = str(module.get("type", ""))
                short = kind[len(ST_MODULE_PREFIX):] if kind.startswith(ST_MODULE_PREFIX) else kind
                if short not in SUPPORTED_MODULES:
                    raise UnsupportedError(f"sentence-transformers module {kind!r} is not supported "
                                           f"(only {', '.join(SUPPORTED_MODULES)})")
                if short == "Pooling":
                    pooling_path = str(module.get("path", ""))
                elif short == "Normalize":
                    self.normalize = True
        self.pooling = "mean"  # sentence-transformers' default for a bare transformer
        if pooling_path is not None:
            name = f"{pooling_path}/config.json" if pooling_path else "config.json"
            pooling_config = _json_file(files, name)
            if pooling_config is None:
                raise FileFormatError(f"modules.json names a Pooling module but {name!r} is not in the model")
            self.pooling = self._pooling_mode(pooling_config)

        sbert = _json_file(files, "sentence_bert_config.json") or {}
        max_positions = int(config.get("max_position_embeddings", 512))
        tokenizer_config = _json_file(files, "tokenizer_config.json") or {}
        default_len = min(int(tokenizer_config.get("model_max_length", max_positions)), max_positions)
        length = sbert.get("max_seq_length")
        self.max_seq_length = min(int(length), max_positions) if length else default_len
        self.do_lower_case = bool(sbert.get("do_lower_case", False))

    @staticmethod
    def _pooling_mode(cfg: Mapping[str, Any]) -> str:
        for key in UNSUPPORTED_POOLING:
            if cfg.get(key):
                raise UnsupportedError(f"pooling {key!r} is not supported (mean, cls or max)")
        modes = [mode for key, mode in POOLING_MODES.items() if cfg.get(key)]
        if "pooling_mode" in cfg and not modes:  # newer configs name the mode directly
            modes = [{"mean": "mean", "cls": "cls", "max": "max"}.get(cfg["pooling_mode"], cfg["pooling_mode"])]
        if len(modes) != 1 or modes[0] not in POOLING_MODES.values():
            raise UnsupportedError(f"pooling config {dict(cfg)} must select exactly one of mean, cls, max")
        return modes[0]


def _make_tokenizer(files: Mapping[str, FileValue], max_length: int) -> Any:
    try:
        from tokenizers import Tokenizer
    except ImportError as exc:
        raise UnsupportedError("SentenceEncoder needs the 'tokenizers' package: pip install tokenizers") from exc
    if "tokenizer.json" not in files:
        raise FileFormatError("the model carries no tokenizer.json (convert the sentence-transformers folder)")
    try:
        tokenizer = Tokenizer.from_str(_text_file(files, "tokenizer.json"))
    except Exception as exc:  # tokenizers raises plain Exception on malformed JSON
        raise FileFormatError(f"tokenizer.json cannot be loaded: {exc}") from exc
    # The shipped tokenizer.json may pad or truncate to its own length (128 for all-MiniLM-L6-v2);
    # sentence-transformers truncates at max_seq_length and pads only within a batch.
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length=max_length, strategy="longest_first")
    return tokenizer


class SentenceEncoder:
    """Sentence embeddings from a converted sentence-transformers BERT model (``.tensors``: the
    weights it runs, by checkpoint name; ``.settings``: what the sentence-transformers files say).

    ``SentenceEncoder(path)`` opens a .pyrt file with :func:`pyrt.load`; ``SentenceEncoder(model)``
    takes an already loaded :class:`pyrt.Model`; :meth:`from_parts` takes the tensors, config and
    carried files directly. The weights are used where they are (zero-copy).

    ``activations="int8"`` opts into int8 activations for the q8/q4/q4a matmuls (faster on CPUs
    with integer dot-product instructions, slightly less accurate: docs/int8.md); ``"int16"``
    uses two int8 digits per activation (about 16 bits: on all-MiniLM-L6-v2 as accurate as exact,
    at about twice int8's matmul cost); the default "exact" keeps FP32 activations. Both modes need
    AVX-512 VNNI to be faster than exact (on AVX2-only CPUs they are slower: docs/int8.md).
    """

    def __init__(self, path_or_model: Union[str, os.PathLike, Any], activations: str = "exact"):
        self.activations = check_activations(activations)
        model = path_or_model
        if isinstance(path_or_model, (str, os.PathLike)):
            if os.path.isdir(path_or_model):
                raise FileFormatError(f"{os.fspath(path_or_model)} is a folder: convert it first "
                                      "(pyrt-convert FOLDER model.pyrt, or pyrt.convert.convert_checkpoint)")
            try:
                from . import load  # the model file reader may be absent in older builds
            except ImportError as exc:
                raise UnsupportedError("pyrt.load is not available in this build; use "
                                       "SentenceEncoder.from_parts(tensors, config, files)") from exc
            model = load(path_or_model)
        for attr in ("tensors", "config", "files"):
            if not hasattr(model, attr):
                raise DtypeError(f"SentenceEncoder takes a path or a pyrt.Model, got {type(model).__name__}")
        self._setup(model.tensors, model.config, model.files)
        self.model = model

    @classmethod
    def from_parts(cls, tensors: Mapping[str, Tensor], config: Mapping[str, Any],
                   files: Mapping[str, FileValue], activations: str = "exact") -> "SentenceEncoder":
        """Builds an encoder from ``tensors`` (checkpoint names -> :class:`pyrt.Tensor`), the Hugging
        Face ``config`` dict and the sentence-transformers ``files`` (relative name -> bytes, text
        or parsed JSON): tokenizer.json, modules.json, sentence_bert_config.json,
        1_Pooling/config.json."""
        self = cls.__new__(cls)
        self.activations = check_activations(activations)
        self._setup(tensors, config, files)
        self.model = None
        return self

    def _setup(self, tensors: Mapping[str, Tensor], config: Mapping[str, Any], files: Mapping[str, FileValue]) -> None:
        if not isinstance(config, Mapping):
            raise DtypeError(f"config must be a dict, got {type(config).__name__}")
        self.config = dict(config)
        check_encoder_config(config, tensors, files)  # types, ranges, shapes (pyrt/model_config.py)
        self.settings = _SentenceTransformersSettings(config, files)
        self._tokenizer = guarded_tokenizer(lambda: _make_tokenizer(files, self.settings.max_seq_length))
        self._native = require_core().BertEncoder(_native_config(config), _bert_tensors(tensors), self.activations)
        self.tensors: dict[str, Tensor] = dict(tensors)
        self.formats = sorted({(t.dtype, t.block) for t in self.tensors.values() if t.ndim == 2})

    @property
    def dimension(self) -> int:
        """Length of the embedding vectors (the model's hidden size)."""
        return int(self._native.hidden_size)

    @property
    def max_seq_length(self) -> int:
        """Tokens per sentence, [CLS] and [SEP] included; longer sentences are truncated."""
        return self.settings.max_seq_length

    @property
    def pooling(self) -> str:
        return self.settings.pooling

    def tokenize(self, sentences: Sequence[str]) -> list[list[int]]:
        """Token ids per sentence exactly as :meth:`encode` feeds them to the model."""
        return [e.ids for e in self._encodings(self._check_sentences(sentences))]

    def encode(self, sentences: Union[str, Iterable[str]], batch_size: int = 32,
               normalize: Optional[bool] = None) -> np.ndarray:
        """Embeds ``sentences``: float32 array [n, dimension] (or [dimension] for a single string).

        ``normalize``: L2-normalise each embedding; None (the default) does what the model's
        modules.json says (True for all-MiniLM-L6-v2, which ends in a Normalize module).
        Sentences are sorted by token count into batches of ``batch_size`` to limit padding; the
        result is in the input order. The GIL is released while a batch runs.
        """
        single = isinstance(sentences, str)
        texts = self._check_sentences([sentences] if single else sentences)
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ShapeError(f"batch_size must be a positive integer, got {batch_size!r}")
        normalize = self.settings.normalize if normalize is None else bool(normalize)
        encodings = self._encodings(texts)
        out = np.empty((len(texts), self.dimension), dtype=np.float32)
        lengths = np.array([len(e.ids) for e in encodings], dtype=np.int64)
        order = np.argsort(-lengths, kind="stable")  # longest first, as sentence-transformers does
        for start in range(0, len(texts), int(batch_size)):
            index = order[start:start + int(batch_size)]
            width = int(lengths[index].max())
            ids = np.zeros((len(index), width), dtype=np.int32)
            type_ids = np.zeros_like(ids)
            mask = np.zeros_like(ids)
            for row, i in enumerate(index):
                e = encodings[i]
                n = len(e.ids)
                ids[row, :n] = e.ids
                type_ids[row, :n] = e.type_ids
                mask[row, :n] = 1
            out[index] = self._native.encode(ids, type_ids, mask, self.settings.pooling, normalize)
        return out[0] if single else out

    @staticmethod
    def _check_sentences(sentences: Iterable[str]) -> list[str]:
        if isinstance(sentences, (bytes, bytearray)):
            raise DtypeError("sentences must be str (decode bytes first)")
        texts = list(sentences)
        for i, s in enumerate(texts):
            if not isinstance(s, str):
                raise DtypeError(f"sentence {i} is a {type(s).__name__}, expected str")
        return texts

    def _encodings(self, texts: list[str]) -> list[Any]:
        # sentence-transformers strips surrounding whitespace and lowercases when its config asks.
        texts = [t.strip() for t in texts]
        if self.settings.do_lower_case:
            texts = [t.lower() for t in texts]
        return self._tokenizer.encode_batch(texts, add_special_tokens=True) if texts else []

    def __repr__(self) -> str:
        formats = ", ".join(f"{d}" + (f"/{b}" if b > 1 else "") for d, b in self.formats)
        return (f"pyrt.SentenceEncoder(dim={self.dimension}, max_seq_length={self.max_seq_length}, "
                f"pooling={self.pooling!r}, normalize={self.settings.normalize}, weights={formats})")
