"""Constrained-decoding libraries compared on SmolLM2's vocabulary, the measurement behind
pyrt.structured's choice of llguidance: the set-up cost per schema (what a server pays for every
new response_format) and the mask cost per token. xgrammar is not measured: its wheel requires
torch, transformers and triton.

    PYRT_MODELS=/work/models_cache python bench/bench_structured_backends.py"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np

from pyrt.convert.readers.gguf_file import read_gguf
from pyrt.gguf_tokenizer import TOKEN_CONTROL, GGUFTokenizer

SCHEMAS = {
    "person": {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
               "required": ["name", "age"]},
    "item": {"type": "object", "properties": {
        "colour": {"enum": ["red", "green", "blue"]}, "in_stock": {"type": "boolean"},
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 8}, "maxItems": 3},
        "owner": {"type": "object", "properties": {"name": {"type": "string"}, "email": {"type": "string"}}}},
        "required": ["colour", "in_stock", "tags"]},
    "any object (json_object)": {"type": "object"},
}
TEXT = '{"name": "Ada", "age": 36}'  # walked through the "person" schema for the per-token figure


def _tokenizer() -> GGUFTokenizer:
    root = Path(os.environ.get("PYRT_MODELS", "models")) / "smollm2"
    found = sorted(root.glob("*.gguf"))
    if not found:
        raise SystemExit(f"no SmolLM2 .gguf under {root}")
    return GGUFTokenizer.from_metadata(read_gguf(found[0])[1])


def _median_mask_us(compute, advance, ids) -> float:
    per = []
    for token in ids:
        t0 = time.thread_time()
        compute()
        per.append(time.thread_time() - t0)
        advance(token)
    return float(np.median(per)) * 1e6


def bench_llguidance(tok) -> None:
    import llguidance

    from pyrt.structured import GrammarConstraint, guidance_tokenizer

    t0 = time.perf_counter()
    guidance_tokenizer(tok)
    print(f"llguidance: tokenizer (once per model) {1e3 * (time.perf_counter() - t0):.0f} ms")
    for name, schema in SCHEMAS.items():
        t0 = time.perf_counter()
        c = GrammarConstraint(tok, llguidance.LLMatcher.grammar_from_json_schema(json.dumps(schema)))
        print(f"llguidance: set-up, {name}: {1e3 * (time.perf_counter() - t0):.1f} ms")
    c = GrammarConstraint(tok, llguidance.LLMatcher.grammar_from_json_schema(json.dumps(SCHEMAS["person"])))
    us = _median_mask_us(lambda: c._matcher.unsafe_compute_mask_ptr(c._bits.ctypes.data, c._bits.nbytes),
                         c.accept, tok.encode(TEXT))
    print(f"llguidance: mask per token {us:.0f} us (thread CPU, median)")


def bench_outlines_core(tok) -> None:
    from outlines_core import Guide, Index, Vocabulary
    from outlines_core.json_schema import build_regex_from_schema

    by_bytes: dict[bytes, list[int]] = {}
    for i, kind in enumerate(tok.token_types):
        if kind != TOKEN_CONTROL:
            by_bytes.setdefault(tok.token_bytes(i), []).append(i)
    vocab = Vocabulary(tok.eos_id, by_bytes)
    indexes = {}
    for name, schema in SCHEMAS.items():
        t0 = time.perf_counter()
        indexes[name] = Index(build_regex_from_schema(json.dumps(schema)), vocab)
        print(f"outlines-core: set-up (index), {name}: {1e3 * (time.perf_counter() - t0):.0f} ms")
    guide = Guide(indexes["person"])
    mask = np.zeros(-(-tok.vocab_size // 32), np.int32)
    us = _median_mask_us(lambda: guide.write_mask_into(mask.ctypes.data, mask.size, mask.itemsize), guide.advance,
                         tok.encode(TEXT))
    print(f"outlines-core: mask per token {us:.0f} us (thread CPU, median)")


def main() -> None:
    import machine_info  # bench/ helper

    m = machine_info.describe()
    print(f"{m['cpu_model']}, {m['cores_usable']} cores, load {m['load_average']}, {m['date_utc']}")
    tok = _tokenizer()
    for bench in (bench_llguidance, bench_outlines_core):
        try:
            bench(tok)
        except ImportError as exc:
            print(f"{bench.__name__}: not installed ({exc.name})")


if __name__ == "__main__":
    main()
