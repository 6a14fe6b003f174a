"""pyrt.LanguageModel: text generation with Llama-architecture decoders (SmolLM2, Llama-style GGUF
models). The forward pass runs in C++ (pyrt._core.LlamaDecoder, FP16 KV cache); tokenization, chat
templates and sampling live here."""
from __future__ import annotations

import codecs
import math
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from ._native import require_core
from .model_weights import native_weights
from .errors import RangeError, ShapeError, UnsupportedError
from .gguf_tokenizer import GGUFTokenizer
from .model_config import check_converted_llama_metadata, decoder_config
from .ops import check_activations
from .tensor import Tensor

DEFAULT_CONTEXT = 2048

# The metadata keys (llama.cpp GGUF names) the decoder needs; see docs/llm.md.
REQUIRED_CONFIG_KEYS = (
    "llama.block_count", "llama.embedding_length", "llama.feed_forward_length", "llama.attention.head_count",
    "llama.attention.layer_norm_rms_epsilon",
)

Messages = Sequence[Mapping[str, str]]


def _decoder_config(md: Mapping[str, Any], tensors: Mapping[str, Tensor], context_length: int,
                    kv_cache: str, activations: str = "exact") -> dict[str, Any]:
    # Types, ranges, divisibility and the tensors' shapes: one shared step (pyrt/model_config.py).
    return {**decoder_config(md, tensors, context_length, kv_cache), "activations": _decoder_activations(activations)}


def _decoder_activations(activations: str) -> str:
    if check_activations(activations) == "int16":
        # The decoder quantizes inside its own parallel region, one digit only.
        raise UnsupportedError("LanguageModel supports activations='exact' and 'int8'; 'int16' is for "
                               "pyrt.matmul, Linear and SentenceEncoder (docs/int8.md)")
    return activations


def sample_token(logits: np.ndarray, rng: np.random.Generator, temperature: float = 0.0, top_k: int = 0,
                 top_p: float = 1.0) -> int:
    """Greedy (argmax) when temperature is 0, else a draw from softmax(logits / temperature)
    restricted to the top_k most likely tokens (0: all) and to the smallest set whose probability
    reaches top_p."""
    if temperature < 0 or not math.isfinite(temperature):
        raise RangeError(f"temperature must be >= 0, got {temperature}")
    if not 0.0 < top_p <= 1.0:
        raise RangeError(f"top_p must be in (0, 1], got {top_p}")
    if top_k < 0:
        raise RangeError(f"top_k must be >= 0, got {top_k}")
    if temperature == 0:
        return int(np.argmax(logits))
    z = logits.astype(np.float64) / temperature
    order = np.argsort(-z, kind="stable")
    if top_k:
        order = order[:top_k]
    p = np.exp(z[order] - z[order[0]])
    p /= p.sum()
    if top_p < 1.0:
        keep = int(np.searchsorted(np.cumsum(p), top_p) + 1)
        order, p = order[:keep], p[:keep] / p[:keep].sum()
    return int(order[rng.choice(len(order), p=p)])


def _gguf_keys_from_model(model) -> dict[str, Any]:
    """The llama.cpp-named keys this module reads, from a .pyrt file written by pyrt-convert: it keeps
    the GGUF's scalar keys under metadata["gguf"] and the tokenizer under metadata["tokenizer"]
    (names without their "tokenizer.ggml." prefix; see docs/format.md)."""
    check_converted_llama_metadata(model.metadata)  # pyrt/model_config.py
    keys: dict[str, Any] = {**model.metadata, **model.config}
    keys.update(model.metadata.get("gguf", {}))
    for name, value in model.metadata.get("tokenizer", {}).items():
        keys["tokenizer.chat_template" if name == "chat_template" else f"tokenizer.ggml.{name}"] = value
    return keys


class LanguageModel:
    """A Llama-architecture language model.

    ``LanguageModel(path)`` loads a .pyrt file (pyrt.load) or, directly, a llama.cpp .gguf file
    whose weights are requantized to ``dtype``/``block`` (default q4a/32, which holds GGUF Q4_1
    weights exactly) with the token embedding in ``embedding_dtype`` (default q8, as the GGUF).
    ``context_length`` sizes the KV cache (tokens of prompt + generation); ``kv_cache`` is its
    storage, "f16" (default) or "f32" (exact, twice the memory). ``activations="int8"`` opts into
    int8 activations for the q-format weight products (faster, approximate: docs/int8.md has the
    measured perplexity cost); the default "exact" keeps them FP32. "int16" raises
    :class:`UnsupportedError` here (it exists for pyrt.matmul, Linear and SentenceEncoder).
    """

    def __init__(self, path: str | Path, *, context_length: int = DEFAULT_CONTEXT, dtype: str = "q4a",
                 block: int = 32, embedding_dtype: str | None = "q8", kv_cache: str = "f16",
                 activations: str = "exact"):
        _decoder_activations(activations)
        path = Path(path)
        if path.suffix == ".gguf":
            from .convert.readers.gguf_file import quantize_weights, read_gguf  # noqa: PLC0415 - needs the gguf package

            arrays, metadata = read_gguf(path)
            tensors = quantize_weights(arrays, dtype, block, embedding_dtype)
        else:
            from . import load  # type: ignore[attr-defined]  # noqa: PLC0415 - provided by pyrt.convert

            model = load(path)
            tensors, metadata = dict(model.tensors), _gguf_keys_from_model(model)
        self._init(tensors, metadata, metadata, context_length, kv_cache, activations)

    @classmethod
    def from_parts(cls, tensors: Mapping[str, Tensor], config: Mapping[str, Any], tokenizer_info: Mapping[str, Any],
                   *, context_length: int = DEFAULT_CONTEXT, kv_cache: str = "f16",
                   activations: str = "exact") -> "LanguageModel":
        """Builds a model from pyrt Tensors by GGUF name, the architecture keys (``llama.*``) and the
        tokenizer keys (``tokenizer.*``), both under llama.cpp's GGUF key names."""
        self = cls.__new__(cls)
        self._init(tensors, config, tokenizer_info, context_length, kv_cache, activations)
        return self

    def _init(self, tensors, config, tokenizer_info, context_length, kv_cache, activations="exact"):
        self.config = _decoder_config(config, tensors, context_length, kv_cache, activations)
        self.tokenizer = GGUFTokenizer.from_metadata(tokenizer_info)
        self.chat_template: str | None = tokenizer_info.get("tokenizer.chat_template")
        self._decoder = require_core().LlamaDecoder(self.config, native_weights(tensors))
        self._tensors = dict(tensors)  # the decoder reads their bytes in place
        self._cached: list[int] = []   # token ids whose keys/values are in the cache

    # -- forward passes ---------------------------------------------------------------------------

    @property
    def context_length(self) -> int:
        return self.config["max_context"]

    def reset(self) -> None:
        """Empties the KV cache."""
        self._decoder.reset()
        self._cached = []

    def forward(self, ids: Sequence[int], all_logits: bool = False) -> np.ndarray:
        """Appends ``ids`` to the cached sequence; returns float32 logits of the last token [vocab]
        (or of every new token, [len(ids), vocab])."""
        arr = np.ascontiguousarray(ids, dtype=np.int32).reshape(-1)
        logits = self._decoder.forward(arr, all_logits)
        self._cached.extend(int(i) for i in arr)
        return logits

    def prefill(self, ids: Sequence[int]) -> np.ndarray:
        """Logits after ``ids``, reusing the cache for a prefix shared with the previous sequence."""
        ids = [int(i) for i in ids]
        if not ids:
            raise ShapeError("the prompt is empty")
        if len(ids) > self.context_length:
            raise RangeError(f"the prompt has {len(ids)} tokens, the context holds {self.context_length}")
        common = 0
        for a, b in zip(self._cached, ids[:-1]):  # at least one token must run to produce logits
            if a != b:
                break
            common += 1
        self._decoder.truncate(common)
        self._cached = self._cached[:common]
        return self.forward(ids[common:])

    def perplexity(self, text: str) -> float:
        """exp(mean negative log-likelihood) of the tokens of ``text`` (each predicted from its prefix)."""
        ids = self.tokenizer.encode(text)
        if len(ids) < 2:
            raise ShapeError("perplexity needs a text of at least two tokens")
        self.reset()
        logits = self.forward(ids, all_logits=True).astype(np.float64)
        self.reset()
        logits = logits[:-1]
        log_z = logits.max(axis=1) + np.log(np.exp(logits - logits.max(axis=1, keepdims=True)).sum(axis=1))
        nll = log_z - logits[np.arange(len(ids) - 1), ids[1:]]
        return float(np.exp(nll.mean()))

    # -- text -------------------------------------------------------------------------------------

    def render_chat(self, messages: Messages, add_generation_prompt: bool = True) -> str:
        """The prompt text of ``messages`` ([{"role": ..., "content": ...}]) under the model's own
        chat template (tokenizer.chat_template), rendered with jinja2."""
        if not self.chat_template:
            raise UnsupportedError("this model has no chat template (tokenizer.chat_template); pass a plain string")
        try:
            from jinja2.sandbox import ImmutableSandboxedEnvironment  # noqa: PLC0415 - optional dependency
        except ImportError as exc:
            raise UnsupportedError("chat messages need jinja2 to render the chat template: pip install jinja2") from exc

        def raise_exception(message):
            raise ValueError(f"chat template: {message}")

        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        env.globals["raise_exception"] = raise_exception
        tok = self.tokenizer
        return env.from_string(self.chat_template).render(
            messages=list(messages), add_generation_prompt=add_generation_prompt,
            bos_token=tok.tokens[tok.bos_id] if tok.bos_id is not None else "",
            eos_token=tok.tokens[tok.eos_id] if tok.eos_id is not None else "")

    def encode_prompt(self, prompt: str | Messages) -> list[int]:
        text = prompt if isinstance(prompt, str) else self.render_chat(prompt)
        return self.tokenizer.encode(text)

    def stream(self, prompt: str | Messages, max_new_tokens: int = 128, temperature: float = 0.0, top_k: int = 0,
               top_p: float = 1.0, seed: int | None = None, stop: str | Sequence[str] | None = None) -> Iterator[str]:
        """Yields the generated text piece by piece (whole UTF-8 characters; never past a stop
        string). ``prompt``: raw text, or chat messages rendered with the model's template.
        Ends at an end-of-generation token, a stop string, max_new_tokens or a full context."""
        if max_new_tokens < 0:
            raise RangeError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
        stops = [stop] if isinstance(stop, str) else [s for s in (stop or ()) if s]
        rng = np.random.default_rng(seed)
        sample_token(np.zeros(1, np.float32), rng, temperature, top_k, top_p)  # validates the arguments early
        rng = np.random.default_rng(seed)
        ids = self.encode_prompt(prompt)
        logits = self.prefill(ids)
        utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
        text, sent = "", 0
        for step in range(max_new_tokens):
            token = sample_token(logits, rng, temperature, top_k, top_p)
            if token in self.tokenizer.end_of_generation:
                break
            text += utf8.decode(self.tokenizer.token_bytes(token))
            cut = min((i for i in (text.find(s) for s in stops) if i >= 0), default=-1)
            if cut >= 0:
                if cut > sent:
                    yield text[sent:cut]
                return
            safe = len(text) - _stop_prefix_overlap(text, stops)
            if safe > sent:
                yield text[sent:safe]
                sent = safe
            if step + 1 == max_new_tokens or len(self._cached) >= self.context_length:
                break
            logits = self.forward([token])
        text += utf8.decode(b"", final=True)
        if len(text) > sent:
            yield text[sent:]

    def generate(self, prompt: str | Messages, max_new_tokens: int = 128, temperature: float = 0.0, top_k: int = 0,
                 top_p: float = 1.0, seed: int | None = None, stop: str | Sequence[str] | None = None) -> str:
        """The generated text (see :meth:`stream` for the arguments)."""
        return "".join(self.stream(prompt, max_new_tokens, temperature, top_k, top_p, seed, stop))


def _stop_prefix_overlap(text: str, stops: Sequence[str]) -> int:
    """Length of the longest end of ``text`` that could still grow into a stop string."""
    best = 0
    for s in stops:
        for n in range(min(len(s) - 1, len(text)), best, -1):
            if text.endswith(s[:n]):
                best = n
                break
    return best
