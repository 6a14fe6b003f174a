"""pyrt.SentenceEncoder: sentence-transformers BERT and MPNet models (all-MiniLM-L6-v2,
all-mpnet-base-v2 and their kin) on pyrt.

Both families run on one native encoder (csrc/models/encoder.h): a family is a configuration
(ENCODER_FAMILIES below says what each needs). The forward pass (embeddings, transformer layers, pooling, L2 normalisation) runs in the native
core, one call per batch, with the weights in whatever pyrt format the model file holds. This
module reads the model's own sentence-transformers files to match that library's results: the
maximum sequence length from sentence_bert_config.json (not the tokenizer's), the pooling mode
from 1_Pooling/config.json, and normalisation when modules.json lists a Normalize module.
"""
from __future__ import annotations

import json
import logging
import os
import warnings
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional, Sequence, Union

import numpy as np

from ._native import require_core
from .model_weights import native_weights
from .embeddings import (check_embedding_input, check_precision, check_similarity_function, embedding_response,
                         l2_normalize, quantize_embeddings, similarity_matrix)
from .errors import DeviceError, DtypeError, FileFormatError, RangeError, ShapeError, UnsupportedError
from .model_config import check_encoder_config
from .ops import check_activations
from .tensor import Tensor
from .tokenizer_guard import guarded_tokenizer
from .repack import resolve_repack

# Where the encoder's tensors may sit in a checkpoint: bare base-model names, a BertFor*/MPNetFor*
# head model, or a sentence-transformers module saved whole.
NAME_PREFIXES = ("", "bert.", "mpnet.", "0.auto_model.", "model.")
ANCHOR_TENSOR = "embeddings.word_embeddings.weight"

# What each family adds to the shared sizes (the native EncoderConfig fields). MPNet: Hugging Face's
# MPNetEmbeddings fixes padding_idx = 1 and numbers the non-padding tokens from padding_idx + 1; no
# token types; one bucketed relative position bias (max distance 128, both directions) for all layers.
ENCODER_FAMILIES = {
    "bert": {"position_offset": 0, "positions_skip_padding": False, "relative_attention_buckets": 0},
    "mpnet": {"position_offset": 2, "positions_skip_padding": True, "type_vocab_size": 0,
              "relative_attention_max_distance": 128},
}
MPNET_BUCKETS = 32

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
    """The native EncoderConfig fields, from a Hugging Face config.json (BERT or MPNet)."""
    model_type = config.get("model_type", "bert")
    if model_type not in ENCODER_FAMILIES:
        raise UnsupportedError(f"SentenceEncoder runs {' and '.join(sorted(ENCODER_FAMILIES))} models; this config "
                               f"has model_type {model_type!r}")
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
    out: dict[str, Any] = {"family": model_type}
    for field, key in keys.items():
        if key not in config:
            raise FileFormatError(f"model config has no {key!r}")
        out[field] = int(config[key])
    out["type_vocab_size"] = int(config.get("type_vocab_size", 2))
    out["layer_norm_eps"] = float(config.get("layer_norm_eps", 1e-12))
    out.update(ENCODER_FAMILIES[model_type])
    if model_type == "mpnet":
        # Hugging Face's MPNetEncoder buckets with its default of 32 whatever the config says, and
        # its table has relative_attention_num_buckets rows: pyrt runs the configs where they agree.
        buckets = int(config.get("relative_attention_num_buckets", MPNET_BUCKETS))
        if buckets != MPNET_BUCKETS:
            raise UnsupportedError(f"relative_attention_num_buckets {buckets} is not supported: MPNet buckets "
                                   f"relative positions into {MPNET_BUCKETS}")
        out["relative_attention_buckets"] = MPNET_BUCKETS
    return out


def _encoder_tensors(tensors: Mapping[str, Tensor]) -> dict[str, tuple]:
    """name -> (bytes, format, block, shape) with the checkpoint's prefix removed."""
    for prefix in NAME_PREFIXES:
        if prefix + ANCHOR_TENSOR in tensors:
            break
    else:
        raise FileFormatError(f"no word embeddings ('{ANCHOR_TENSOR}') among the model's tensors")
    return native_weights(tensors, prefix)


def _folder_parts(folder: Union[str, os.PathLike]) -> tuple[dict[str, Tensor], dict[str, Any], dict[str, bytes]]:
    """(tensors, config, carried files) of a Hugging Face / sentence-transformers folder, its float
    weights as f32 (safetensors arrays wrapped without a copy); integer buffers are left out."""
    from .convert.readers import open_source

    with open_source(folder) as source:
        tensors = {}
        for st in source.tensors:
            if not st.is_float:
                continue
            array = np.ascontiguousarray(st.load(), dtype=np.float32)
            tensors[st.name] = Tensor(array.reshape(-1).view(np.uint8), "f32", array.shape, 1)
        return tensors, dict(source.config), dict(source.files)


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
        self.include_prompt = True
        if pooling_path is not None:
            name = f"{pooling_path}/config.json" if pooling_path else "config.json"
            pooling_config = _json_file(files, name)
            if pooling_config is None:
                raise FileFormatError(f"modules.json names a Pooling module but {name!r} is not in the model")
            self.pooling = self._pooling_mode(pooling_config)
            self.include_prompt = bool(pooling_config.get("include_prompt", True))

        sbert = _json_file(files, "sentence_bert_config.json") or {}
        max_positions = int(config.get("max_position_embeddings", 512))
        tokenizer_config = _json_file(files, "tokenizer_config.json") or {}
        default_len = min(int(tokenizer_config.get("model_max_length", max_positions)), max_positions)
        length = sbert.get("max_seq_length")
        self.max_seq_length = min(int(length), max_positions) if length else default_len
        self.do_lower_case = bool(sbert.get("do_lower_case", False))
        self._read_model_config(_json_file(files, "config_sentence_transformers.json") or {})

    def _read_model_config(self, st_config: Mapping[str, Any]) -> None:
        """Prompts and the similarity function from config_sentence_transformers.json."""
        prompts = st_config.get("prompts") or {}
        if not isinstance(prompts, Mapping) or not all(isinstance(v, str) for v in prompts.values()):
            raise FileFormatError("config_sentence_transformers.json: 'prompts' must map names to strings")
        # sentence-transformers gives every model empty "query" and "document" prompts.
        self.prompts: dict[str, str] = {"query": "", "document": "", **prompts}
        self.default_prompt_name: Optional[str] = st_config.get("default_prompt_name") or None
        if self.default_prompt_name is not None and self.default_prompt_name not in self.prompts:
            raise FileFormatError(f"config_sentence_transformers.json: default_prompt_name "
                                  f"{self.default_prompt_name!r} is not among its prompts")
        self.similarity_fn_name = check_similarity_function(st_config.get("similarity_fn_name") or "cosine")

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
    """Sentence embeddings from a sentence-transformers BERT or MPNet model (``.tensors``: the
    weights it runs, by checkpoint name; ``.settings``: what the sentence-transformers files say).

    ``SentenceEncoder(path)`` opens a .pyrt file with :func:`pyrt.load`, or a sentence-transformers
    (Hugging Face) folder as it is, in FP32; ``SentenceEncoder(model)``
    takes an already loaded :class:`pyrt.Model`; :meth:`from_parts` takes the tensors, config and
    carried files directly. The weights are used where they are (zero-copy).

    ``activations="int8"`` opts into int8 activations for the q8/q4/q4a matmuls (faster on CPUs
    with integer dot-product instructions, slightly less accurate: docs/int8.md); ``"int16"``
    uses two int8 digits per activation (about 16 bits: on all-MiniLM-L6-v2 as accurate as exact,
    at about twice int8's matmul cost); the default "exact" keeps FP32 activations. Both modes need
    AVX-512 VNNI to be faster than exact (on AVX2-only CPUs they are slower: docs/int8.md).
    ``repack=True`` adds a copy of the q4/q4a/q4n matrices in the layout of the one-row (M=1)
    kernels; None (the default) follows ``PYRT_REPACK`` and is otherwise off, since an encoder's
    products have one row per token and read the file's layout (pyrt/repack.py).
    """

    def __init__(self, path_or_model: Union[str, os.PathLike, Any], activations: str = "exact",
                 repack: bool | None = None):
        self.activations = check_activations(activations)
        self.repack = resolve_repack(repack, default=False)
        model = path_or_model
        if isinstance(path_or_model, (str, os.PathLike)) and os.path.isdir(path_or_model):
            # A sentence-transformers folder runs as it is, in FP32 (convert it for other formats).
            self._setup(*_folder_parts(path_or_model))
            self.model = None
            self.name = Path(path_or_model).name
            return
        if isinstance(path_or_model, (str, os.PathLike)):
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
        if isinstance(path_or_model, (str, os.PathLike)):
            self.name = Path(path_or_model).stem

    @classmethod
    def from_parts(cls, tensors: Mapping[str, Tensor], config: Mapping[str, Any],
                   files: Mapping[str, FileValue], activations: str = "exact",
                   repack: bool | None = None) -> "SentenceEncoder":
        """Builds an encoder from ``tensors`` (checkpoint names -> :class:`pyrt.Tensor`), the Hugging
        Face ``config`` dict and the sentence-transformers ``files`` (relative name -> bytes, text
        or parsed JSON): tokenizer.json, modules.json, sentence_bert_config.json,
        1_Pooling/config.json."""
        self = cls.__new__(cls)
        self.activations = check_activations(activations)
        self.repack = resolve_repack(repack, default=False)
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
        native_config = {**_native_config(config), "repack": getattr(self, "repack", False)}
        self._native = require_core().Encoder(native_config, _encoder_tensors(tensors), self.activations)
        self.tensors: dict[str, Tensor] = dict(tensors)
        self.name = "pyrt-encoder"  # what create_embedding reports as the model (the file stem when loaded from one)
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

    def encode(self, sentences: Union[str, Iterable[str]], batch_size: int = 32, *,
               show_progress_bar: Optional[bool] = None, convert_to_numpy: bool = True,
               convert_to_tensor: bool = False, normalize_embeddings: bool = False,
               prompt: Optional[str] = None, prompt_name: Optional[str] = None, precision: str = "float32",
               truncate_dim: Optional[int] = None, output_value: Optional[str] = "sentence_embedding",
               device: Optional[str] = None, normalize: Optional[bool] = None) -> Any:
        """Embeds ``sentences``, with sentence-transformers' ``encode`` keywords and meanings: a
        float32 array [n, dimension] (or [dimension] for a single string) by default.

        The model's own modules run as they are (for all-MiniLM-L6-v2 that includes its Normalize
        module); ``normalize_embeddings=True`` L2-normalises the result once more, after
        ``truncate_dim`` keeps the first dimensions. ``prompt`` is prepended to every sentence;
        ``prompt_name`` picks one of the model's prompts (config_sentence_transformers.json), whose
        ``default_prompt_name`` applies when neither is given. ``precision`` "int8", "uint8",
        "binary" or "ubinary" quantizes the embeddings as sentence-transformers' quantize_embeddings
        does (int8 ranges from this call's embeddings: pyrt.embeddings.quantize_embeddings takes
        ``ranges`` or calibration embeddings). ``convert_to_tensor`` returns a torch tensor (needs
        torch); ``convert_to_numpy=False`` a list of 1-D arrays. ``show_progress_bar`` (tqdm, when
        installed) defaults to on when the "pyrt" logger is at INFO or DEBUG. ``device``: None or
        "cpu"; ``output_value``: "sentence_embedding" only.

        ``normalize`` is deprecated (DeprecationWarning): ``normalize=False`` drops the model's
        Normalize module (raw pooled vectors), ``True`` adds one; use ``normalize_embeddings``.
        Sentences are sorted by token count into batches of ``batch_size`` to limit padding; the
        result is in the input order. The GIL is released while a batch runs.
        """
        if normalize is not None:
            warnings.warn("SentenceEncoder.encode(normalize=...) is deprecated; use normalize_embeddings "
                          "(sentence-transformers' meaning: the model's Normalize module always runs)",
                          DeprecationWarning, stacklevel=2)
        if output_value != "sentence_embedding":
            raise UnsupportedError(f"output_value {output_value!r} is not supported (only 'sentence_embedding')")
        if device not in (None, "cpu"):
            raise DeviceError(f"SentenceEncoder runs on the CPU; device {device!r} is not supported")
        check_precision(precision)
        single = isinstance(sentences, str)
        texts = self._check_sentences([sentences] if single else sentences)
        texts = self._with_prompt(texts, prompt, prompt_name)
        model_normalize = self.settings.normalize if normalize is None else bool(normalize)
        out = self._embed(texts, batch_size, model_normalize, self._progress(show_progress_bar, len(texts)))
        if truncate_dim is not None:
            out = out[:, :self._check_truncate_dim(truncate_dim)]
        if normalize_embeddings:
            out = l2_normalize(out)
        if precision != "float32":
            out = quantize_embeddings(out, precision)
        return self._convert(out, single, convert_to_numpy, convert_to_tensor)

    def encode_query(self, sentences: Union[str, Iterable[str]], batch_size: int = 32, **kwargs: Any) -> Any:
        """:meth:`encode` with the model's "query" prompt unless ``prompt``/``prompt_name`` is given
        (sentence-transformers' encode_query)."""
        return self._encode_as("query", sentences, batch_size, kwargs)

    def encode_document(self, sentences: Union[str, Iterable[str]], batch_size: int = 32, **kwargs: Any) -> Any:
        """:meth:`encode` with the model's "document" prompt unless ``prompt``/``prompt_name`` is
        given (sentence-transformers' encode_document)."""
        return self._encode_as("document", sentences, batch_size, kwargs)

    def _encode_as(self, role: str, sentences: Any, batch_size: int, kwargs: dict) -> Any:
        if kwargs.get("prompt") is None and kwargs.get("prompt_name") is None and role in self.settings.prompts:
            kwargs = {**kwargs, "prompt_name": role}
        return self.encode(sentences, batch_size, **kwargs)

    def _embed(self, texts: list[str], batch_size: Any, normalize: bool, progress: Any = None) -> np.ndarray:
        """float32 [n, dimension] for checked texts; ``normalize``: L2 after pooling (the Normalize module)."""
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ShapeError(f"batch_size must be a positive integer, got {batch_size!r}")
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
            if progress is not None:
                progress.update(len(index))
        if progress is not None:
            progress.close()
        return out

    def _with_prompt(self, texts: list[str], prompt: Optional[str], prompt_name: Optional[str]) -> list[str]:
        if prompt is None:
            name = prompt_name if prompt_name is not None else self.settings.default_prompt_name
            if name is not None:
                if name not in self.settings.prompts:
                    raise RangeError(f"prompt_name {name!r} is not one of the model's prompts "
                                     f"{sorted(self.settings.prompts)} (config_sentence_transformers.json)")
                prompt = self.settings.prompts[name]
        if prompt is None or prompt == "":
            return texts
        if not isinstance(prompt, str):
            raise DtypeError(f"prompt must be a str, got {type(prompt).__name__}")
        self._check_sentences([prompt])
        if not self.settings.include_prompt:
            raise UnsupportedError("this model's Pooling excludes prompt tokens (include_prompt: false), "
                                   "which SentenceEncoder does not implement")
        return [prompt + t for t in texts]

    def _check_truncate_dim(self, truncate_dim: Any) -> int:
        if isinstance(truncate_dim, bool) or not isinstance(truncate_dim, (int, np.integer)) \
                or not 1 <= truncate_dim <= self.dimension:
            raise ShapeError(f"truncate_dim must be an integer in [1, {self.dimension}], got {truncate_dim!r}")
        return int(truncate_dim)

    @staticmethod
    def _progress(show: Optional[bool], total: int) -> Any:
        if show is None:
            show = logging.getLogger("pyrt").getEffectiveLevel() <= logging.INFO
        if not show:
            return None
        try:
            from tqdm.auto import tqdm
        except ImportError:  # the bar is a convenience: without tqdm, encode runs without one
            return None
        return tqdm(total=total, desc="Batches", unit="sentence")

    @staticmethod
    def _convert(out: np.ndarray, single: bool, convert_to_numpy: bool, convert_to_tensor: bool) -> Any:
        if convert_to_tensor:
            try:
                import torch
            except ImportError as exc:
                raise UnsupportedError("convert_to_tensor=True needs torch (pip install torch)") from exc
            tensor = torch.from_numpy(np.ascontiguousarray(out))
            return tensor[0] if single else tensor
        if single:
            return out[0]
        return out if convert_to_numpy else list(out)

    @property
    def similarity_fn_name(self) -> str:
        """The model's similarity function (config_sentence_transformers.json; "cosine" by default)."""
        return self.settings.similarity_fn_name

    def similarity(self, embeddings1: Any, embeddings2: Any) -> np.ndarray:
        """float32 [n, m]: the model's similarity function (cosine unless its config names "dot",
        "euclidean" or "manhattan"; distances negated) between every pair of rows; 1-D inputs are
        one row."""
        return similarity_matrix(embeddings1, embeddings2, self.similarity_fn_name)

    def create_embedding(self, input: Union[str, Sequence[str]], model: Optional[str] = None,
                         encoding_format: str = "float", dimensions: Optional[int] = None) -> dict:
        """OpenAI's embeddings call: ``{"object": "list", "data": [{"object": "embedding", "index",
        "embedding"}], "model", "usage": {"prompt_tokens", "total_tokens"}}``. ``input``: a string
        or a list of strings. ``encoding_format`` "float" (lists of floats) or "base64" (little-endian
        float32 bytes); ``dimensions`` keeps the first dimensions and, for a normalising model,
        normalises again (as OpenAI's shortened embeddings are unit length). ``model`` is echoed
        (default: the model file's stem)."""
        texts, _ = check_embedding_input(input)
        texts = self._check_sentences(texts)
        if encoding_format not in ("float", "base64"):
            raise DtypeError(f"encoding_format must be 'float' or 'base64', got {encoding_format!r}")
        if model is not None and not isinstance(model, str):
            raise DtypeError(f"model must be a str, got {type(model).__name__}")
        out = self._embed(texts, 32, self.settings.normalize)
        if dimensions is not None:
            out = out[:, :self._check_truncate_dim(dimensions)]
            if self.settings.normalize:
                out = l2_normalize(out)
        prompt_tokens = sum(len(e.ids) for e in self._encodings(texts))
        return embedding_response(out, model or self.name, prompt_tokens, encoding_format)

    @staticmethod
    def _check_sentences(sentences: Iterable[str]) -> list[str]:
        if isinstance(sentences, (bytes, bytearray)):
            raise DtypeError("sentences must be str (decode bytes first)")
        if sentences is None or not isinstance(sentences, Iterable):
            raise DtypeError(f"sentences must be a str or a list of str, got {type(sentences).__name__}")
        texts = list(sentences)
        for i, s in enumerate(texts):
            if not isinstance(s, str):
                raise DtypeError(f"sentence {i} is a {type(s).__name__}, expected str")
            try:
                s.encode("utf-8")
            except UnicodeEncodeError as exc:  # a lone surrogate: not text the tokenizer can take
                raise DtypeError(f"sentence {i} is not valid Unicode text: {exc.reason} at {exc.start}") from exc
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
