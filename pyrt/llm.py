"""pyrt.LanguageModel: text generation with the Llama-like decoder families (Llama/SmolLM2, Qwen2,
Gemma 3, Gemma 2: pyrt/decoder_families.py, docs/models.md). The forward pass runs in C++
(pyrt._core.Decoder, FP16 KV cache); tokenization, chat templates and sampling live here.
Generation runs on the model's BatchEngine (pyrt/batch_engine.py): concurrent calls from several
threads decode together, each with its own KV cache."""
from __future__ import annotations

import codecs
import math
import threading
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from ._native import require_core
from .batch_engine import BatchEngine, Request
from .model_weights import native_weights
from .errors import ArgumentTypeError, RangeError, ShapeError, UnsupportedError
from .gguf_tokenizer import GGUFTokenizer
from .decoder_families import family_for
from .model_config import check_converted_llama_metadata, check_tokenizer_metadata, decoder_config
from .ops import check_activations
from .tensor import Tensor
from .chat_template import template_for
from .generation_options import check_messages, check_prompt, parse_generation_options
from .sampling import request_sampler
from .repack import resolve_repack

DEFAULT_CONTEXT = 2048

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


class _TokenSampler:
    """sample_token as a batch-engine TokenSampler (one per request: it owns the request's random
    generator). Validates its arguments when built."""

    def __init__(self, temperature: float = 0.0, top_k: int = 0, top_p: float = 1.0, seed: int | None = None):
        sample_token(np.zeros(1, np.float32), np.random.default_rng(0), temperature, top_k, top_p)
        self.temperature, self.top_k, self.top_p = temperature, top_k, top_p
        self.rng = np.random.default_rng(seed)

    def __call__(self, logits: np.ndarray, generated: Sequence[int]) -> tuple[int, object]:
        return sample_token(logits, self.rng, self.temperature, self.top_k, self.top_p), None


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


def _check_gguf_keys(kv: Mapping[str, Any]) -> None:
    """What a GGUF must say before its weights are read: a supported architecture and tokenizer
    (each an UnsupportedError in one line naming the key)."""
    family_for(kv.get("general.architecture", "llama"))
    check_tokenizer_metadata(kv)


class LanguageModel:
    """A decoder-only language model of a supported family (``general.architecture`` llama, qwen2,
    gemma3 or gemma2; another architecture raises :class:`UnsupportedError` naming the supported ones).

    ``LanguageModel(path)`` loads a .pyrt file (pyrt.load) or, directly, a llama.cpp .gguf file.
    A GGUF's tensors keep their types by default (``dtype=None``): Q8_0, Q4_0, Q4_1, Q5_0 and
    F32/F16/BF16 are the bytes of pyrt's q8, q4, q4a, q5 (block 32) and f32/f16/bf16, mapped from the
    file without a copy; Q4_K becomes q4a/32 (its sub-block scales rounded to FP16), Q5_K, Q6_K and
    Q5_1 q8/32 (pyrt.gguf_weights; ``gguf_report.lines()`` measures and lists each conversion's
    error against the GGUF's own dequantized values). A format
    name in ``dtype`` requantizes every matrix to it at ``block`` instead, the token embedding
    (and output head) to ``embedding_dtype`` (None: q8 for q-formats, else ``dtype``).
    ``context_length`` sizes the KV cache (tokens of prompt + generation); ``kv_cache`` is its
    storage, "f16" (default) or "f32" (exact, twice the memory). ``activations="int8"`` opts into
    int8 activations for the q-format weight products (faster, approximate: docs/int8.md has the
    measured perplexity cost); the default "exact" keeps them FP32. "int16" raises
    :class:`UnsupportedError` here (it exists for pyrt.matmul, Linear and SentenceEncoder).
    ``repack`` (None: ``PYRT_REPACK``, else on) keeps a second copy of the q4/q4a/q4n (blocks 32
    and 64; q4/q4a at 128) matrices in the decode kernel's layout where the CPU's kernels use one
    (AVX-512): faster decoding, the same logits at block 32 (64/128: equal up to FP32 rounding), about
    twice those weights' memory (docs/benchmarks.md);
    ``repack=False`` keeps the file's layout only.

    Thread safety: every method may be called from any number of threads. :meth:`generate`,
    :meth:`stream` and :meth:`generate_batch` run on :attr:`engine`, where each request has its own
    KV cache and concurrent requests decode together, so each thread gets exactly what it would get
    alone (up to float32 summation order: docs/llm.md). :meth:`forward`, :meth:`prefill`,
    :meth:`reset` and :meth:`perplexity` use the model's one default sequence under a lock: each
    call is atomic, but a sequence built over several calls is shared by every thread using them.
    """

    gguf_report = None  # set by a GGUF load (pyrt.gguf_weights.GGUFLoadReport)

    def __init__(self, path: str | Path, *, context_length: int = DEFAULT_CONTEXT, dtype: str | None = None,
                 block: int = 32, embedding_dtype: str | None = None, kv_cache: str = "f16",
                 activations: str = "exact", repack: bool | None = None):
        _decoder_activations(activations)
        repack = resolve_repack(repack, default=True)
        path = Path(path)
        if path.suffix == ".gguf":
            from .gguf_weights import load_gguf_tensors  # noqa: PLC0415 - needs the gguf package

            if dtype is not None and embedding_dtype is None:
                embedding_dtype = "q8" if dtype.startswith("q") else dtype
            tensors, metadata, report = load_gguf_tensors(path, dtype, block, embedding_dtype, measure=False,
                                                          check_keys=_check_gguf_keys)
            self.gguf_report = report
        else:
            from . import load  # type: ignore[attr-defined]  # noqa: PLC0415 - provided by pyrt.convert

            model = load(path)
            tensors, metadata = dict(model.tensors), _gguf_keys_from_model(model)
        self._init(tensors, metadata, metadata, context_length, kv_cache, activations, repack)

    @classmethod
    def from_parts(cls, tensors: Mapping[str, Tensor], config: Mapping[str, Any], tokenizer_info: Mapping[str, Any],
                   *, context_length: int = DEFAULT_CONTEXT, kv_cache: str = "f16",
                   activations: str = "exact", repack: bool | None = None) -> "LanguageModel":
        """Builds a model from pyrt Tensors by GGUF name, the architecture keys (``general.architecture``
        and ``<arch>.*``) and the tokenizer keys (``tokenizer.*``), both under llama.cpp's GGUF key names."""
        self = cls.__new__(cls)
        self._init(tensors, config, tokenizer_info, context_length, kv_cache, activations,
                   resolve_repack(repack, default=True))
        return self

    def _init(self, tensors, config, tokenizer_info, context_length, kv_cache, activations="exact", repack=False):
        self.config = _decoder_config(config, tensors, context_length, kv_cache, activations)
        self.tokenizer = GGUFTokenizer.from_metadata(tokenizer_info)
        self.chat_template: str | None = tokenizer_info.get("tokenizer.chat_template")
        self.repack = repack  # whether the 4-bit matrices have a repacked copy (pyrt/repack.py)
        self._decoder = require_core().Decoder({**self.config, "repack": repack}, native_weights(tensors))
        self._tensors = dict(tensors)  # the decoder reads their bytes in place
        self._cached: list[int] = []   # token ids whose keys/values are in the default sequence's cache
        self._lock = threading.RLock()  # the default sequence: forward, prefill, reset, perplexity
        self._engine: BatchEngine | None = None
        self._engine_lock = threading.Lock()

    # -- forward passes ---------------------------------------------------------------------------

    @property
    def context_length(self) -> int:
        return self.config["max_context"]

    @property
    def engine(self) -> BatchEngine:
        """The model's batch engine (created on first use): generation requests from any thread
        decode together on its background thread."""
        engine = self._engine
        if engine is None:
            with self._engine_lock:
                if self._engine is None:
                    self._engine = BatchEngine(self)
                engine = self._engine
        return engine

    def close(self) -> None:
        """Stops the batch engine (cancelling what runs on it); a later generation starts a new one."""
        with self._engine_lock:
            engine, self._engine = self._engine, None
        if engine is not None:
            engine.close()

    def reset(self) -> None:
        """Empties the KV cache of the default sequence (forward/prefill)."""
        with self._lock:
            self._decoder.reset()
            self._cached = []

    def forward(self, ids: Sequence[int], all_logits: bool = False) -> np.ndarray:
        """Appends ``ids`` to the cached sequence; returns float32 logits of the last token [vocab]
        (or of every new token, [len(ids), vocab])."""
        arr = np.ascontiguousarray(ids, dtype=np.int32).reshape(-1)
        with self._lock:
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
        with self._lock:
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
        with self._lock:
            self.reset()
            logits = self.forward(ids, all_logits=True).astype(np.float64)
            self.reset()
        logits = logits[:-1]
        log_z = logits.max(axis=1) + np.log(np.exp(logits - logits.max(axis=1, keepdims=True)).sum(axis=1))
        nll = log_z - logits[np.arange(len(ids) - 1), ids[1:]]
        return float(np.exp(nll.mean()))

    # -- text -------------------------------------------------------------------------------------

    def render_chat(self, messages: Messages, add_generation_prompt: bool = True, **template_vars: Any) -> str:
        """The prompt text of ``messages`` ([{"role": ..., "content": ...}]) under the model's own
        chat template (tokenizer.chat_template) in transformers' jinja environment
        (pyrt.chat_template); ``template_vars``: tools, documents, ..."""
        return template_for(self).render(check_messages(messages), add_generation_prompt, **template_vars)

    def encode_prompt(self, prompt: str | Messages) -> list[int]:
        """Token ids of a raw text prompt (control tokens in it parsed), or of chat messages under
        the chat template (message text encoded as plain text: it cannot inject control tokens)."""
        prompt = check_prompt(prompt)
        if isinstance(prompt, str):
            return self.tokenizer.encode(prompt)
        return template_for(self).encode(self.tokenizer, prompt)

    def create_completion(self, prompt: str | Sequence[int], /, **kwargs: Any):
        """OpenAI-shaped /v1/completions result (or chunk iterator with ``stream=True``); see
        :func:`pyrt.openai_api.create_completion`."""
        from .openai_api import create_completion  # noqa: PLC0415 - the API layer builds on this module

        return create_completion(self, prompt, **kwargs)

    def create_chat_completion(self, messages: Messages, /, tools: Sequence[Mapping[str, Any]] | None = None,
                               **kwargs: Any):
        """OpenAI-shaped /v1/chat/completions result (or chunk iterator with ``stream=True``); see
        :func:`pyrt.openai_api.create_chat_completion`."""
        from .openai_api import create_chat_completion  # noqa: PLC0415 - the API layer builds on this module

        return create_chat_completion(self, messages, tools=tools, **kwargs)

    def stream(self, prompt: str | Messages, max_new_tokens: int = 128, temperature: float = 0.0, top_k: int = 0,
               top_p: float = 1.0, seed: int | None = None, stop: str | Sequence[str] | None = None,
               **options: Any) -> Iterator[str]:
        """Yields the generated text piece by piece (whole UTF-8 characters; never past a stop
        string). ``prompt``: raw text, or chat messages rendered with the model's template.
        Ends at an end-of-generation token, a stop string, max_new_tokens or a full context.
        Closing the iterator early cancels the request. ``options``: min_p, repetition_penalty,
        frequency_penalty, presence_penalty, logit_bias, response_format, grammar
        (pyrt.generation_options; docs/llm.md)."""
        request, stops = self._submit(prompt, max_new_tokens=max_new_tokens, temperature=temperature, top_k=top_k,
                                      top_p=top_p, seed=seed, stop=stop, **options)
        with request:
            yield from self._text_pieces(request, stops)

    def generate(self, prompt: str | Messages, max_new_tokens: int = 128, temperature: float = 0.0, top_k: int = 0,
                 top_p: float = 1.0, seed: int | None = None, stop: str | Sequence[str] | None = None,
                 **options: Any) -> str:
        """The generated text (see :meth:`stream` for the arguments)."""
        return "".join(self.stream(prompt, max_new_tokens, temperature, top_k, top_p, seed, stop, **options))

    def generate_batch(self, prompts: Sequence[str | Messages], max_new_tokens: int = 128, temperature: float = 0.0,
                       top_k: int = 0, top_p: float = 1.0, seed: int | None = None,
                       stop: str | Sequence[str] | None = None, **options: Any) -> list[str]:
        """The generated text of every prompt, in order: the same as ``[generate(p, ...) for p in
        prompts]`` (a seed seeds each prompt's sampling alike), but the prompts decode together on
        :attr:`engine` (up to its max_batch at once)."""
        if isinstance(prompts, (str, bytes)) or not isinstance(prompts, Sequence):
            raise ArgumentTypeError("generate_batch takes a list of prompts (use generate for one)")
        submitted: list[tuple[Request, list[str]]] = []
        try:
            for prompt in prompts:
                submitted.append(self._submit(prompt, max_new_tokens=max_new_tokens, temperature=temperature,
                                              top_k=top_k, top_p=top_p, seed=seed, stop=stop, **options))
            return ["".join(self._text_pieces(r, stops)) for r, stops in submitted]
        finally:
            for r, _ in submitted:
                r.cancel()

    def _submit(self, prompt: str | Messages, **options: Any) -> tuple[Request, list[str]]:
        """Validates the options (pyrt.generation_options), encodes the prompt and submits it to the
        engine with its sampler; the generation stops at max_new_tokens or when the context is full.
        Returns the request and its stop strings."""
        opts = parse_generation_options(self.tokenizer.vocab_size, **options)
        ids = self.encode_prompt(prompt)
        if not ids:
            raise ShapeError("the prompt is empty")
        if len(ids) > self.context_length:
            raise RangeError(f"the prompt has {len(ids)} tokens, the context holds {self.context_length}")
        sampler = request_sampler(self, ids, opts)
        budget = min(opts.max_new_tokens, self.context_length - len(ids))
        return self.engine.submit(ids, sampler, budget, self.tokenizer.end_of_generation), list(opts.stop)

    def _text_pieces(self, request: Request, stops: Sequence[str]) -> Iterator[str]:
        """The request's text in whole UTF-8 characters, held back while it may grow into a stop
        string; cancels the request at a stop string."""
        utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
        text, sent = "", 0
        for step in request:
            text += utf8.decode(self.tokenizer.token_bytes(step.token_id))
            cut = min((i for i in (text.find(s) for s in stops) if i >= 0), default=-1)
            if cut >= 0:
                request.cancel()
                if cut > sent:
                    yield text[sent:cut]
                return
            safe = len(text) - _stop_prefix_overlap(text, stops)
            if safe > sent:
                yield text[sent:safe]
                sent = safe
        text += utf8.decode(b"", final=True)
        if len(text) > sent:
            yield text[sent:]



def _stop_prefix_overlap(text: str, stops: Sequence[str]) -> int:
    """Length of the longest end of ``text`` that could still grow into a stop string."""
    best = 0
    for s in stops:
        for n in range(min(len(s) - 1, len(text)), best, -1):
            if text.endswith(s[:n]):
                best = n
                break
    return best
