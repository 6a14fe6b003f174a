#!/usr/bin/env python3
"""Batched decoding: aggregate decode tokens/s of SmolLM2-135M-Instruct with 1, 2, 4 and 8
concurrent sequences on LanguageModel.engine (continuous batching: one forward with M = active
sequences per step, the weights read once per step), per weight format; and the single-stream
speed (the model's own forward loop and generate(), which runs on the engine).

Every concurrent sequence is a consumer thread iterating its Request; the aggregate rate counts the
tokens produced after every sequence has its first token (prefill done) until the last one ends.
The server's target is 8 concurrent >= 3x one stream.

    PYRT_MODELS=/work/models_cache python bench/bench_batch_decode.py --formats q4a q8
    # single-stream only, from another checkout (before/after a change; same machine, interleave):
    python bench/bench_batch_decode.py --single-only --checkout /path/to/old/checkout
"""
from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PROMPTS = [
    "The history of the printing press begins",
    "Write a short poem about the sea:",
    "Explain how a bicycle works.",
    "The main ingredients of bread are",
    "def quicksort(items):",
    "In 1969, the first humans",
    "A good breakfast should include",
    "The rules of chess say that",
]


def greedy(logits, generated):
    return int(np.argmax(logits)), None


def aggregate_decode_rate(model, concurrency: int, new_tokens: int) -> float:
    """Decode tokens/s of `concurrency` simultaneous greedy requests on model.engine."""
    engine = model.engine
    prompts = [model.tokenizer.encode(PROMPTS[i % len(PROMPTS)]) for i in range(concurrency)]
    stamps: list[list[float]] = [[] for _ in prompts]
    requests = [engine.submit(p, greedy, new_tokens) for p in prompts]

    def consume(i):
        for _ in requests[i]:
            stamps[i].append(time.perf_counter())

    threads = [threading.Thread(target=consume, args=(i,)) for i in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    start = max(s[0] for s in stamps)  # every sequence past its prefill
    end = max(s[-1] for s in stamps)
    tokens = sum(sum(1 for x in s if x > start) for s in stamps)
    return tokens / (end - start)


def fastest_step_rate(model, concurrency: int, steps: int) -> float:
    """M / (fastest of `steps` batched decode steps), M = concurrency, on the native decoder: on a
    busy machine the fastest step is the one least disturbed by other processes, so this isolates
    what batching does to the step itself (no Python engine, no sampling)."""
    dec = model._decoder
    prompts = [model.tokenizer.encode(PROMPTS[i % len(PROMPTS)]) for i in range(concurrency)]
    caches = [dec.new_cache(len(p) + steps + 1) for p in prompts]
    tokens = np.concatenate([np.array(p, np.int32) for p in prompts])
    logits = dec.forward_batch(tokens, np.array([len(p) for p in prompts], np.int64), caches)
    best = float("inf")
    for _ in range(steps):
        nxt = logits.argmax(axis=1).astype(np.int32)
        t0 = time.perf_counter()
        logits = dec.forward_batch(nxt, np.ones(concurrency, np.int64), caches)
        best = min(best, time.perf_counter() - t0)
    return concurrency / best


def forward_loop_rate(model, steps: int) -> float:
    """Single-sequence decode tokens/s with LanguageModel.forward (the M = 1 forward, no engine)."""
    ids = model.tokenizer.encode(PROMPTS[0])
    model.reset()
    logits = model.forward(ids)
    t0 = time.perf_counter()
    for _ in range(steps):
        logits = model.forward([int(np.argmax(logits))])
    return steps / (time.perf_counter() - t0)


def generate_rate(model, new_tokens: int) -> float:
    """generate() tokens/s, prompt included in the time (the user's view of one stream)."""
    ids = model.tokenizer.encode(PROMPTS[1])
    t0 = time.perf_counter()
    text = model.generate(PROMPTS[1], max_new_tokens=new_tokens)
    n = len(model.tokenizer.encode(PROMPTS[1] + text)) - len(ids)  # ~ tokens generated (re-encoded)
    return max(n, 1) / (time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--formats", nargs="+", default=["q4a", "q8"])
    p.add_argument("--concurrency", nargs="+", type=int, default=[1, 2, 4, 8])
    p.add_argument("--new-tokens", type=int, default=48)
    p.add_argument("--rounds", type=int, default=3, help="repeats per case (medians reported)")
    p.add_argument("--single-only", action="store_true", help="only the single-stream rates")
    p.add_argument("--checkout", default=str(ROOT), help="the pyrt checkout to import (built in place)")
    p.add_argument("--fastest-steps", action="store_true",
                   help="only M / fastest batched step per concurrency (busy machines)")
    args = p.parse_args(argv)
    sys.path.insert(0, args.checkout)
    sys.path.insert(1, str(ROOT / "bench"))
    import pyrt  # noqa: PLC0415 - from the chosen checkout
    from machine_info import describe, markdown_lines  # noqa: PLC0415
    from pyrt.cli.models_dir import models_dir  # noqa: PLC0415

    gguf = sorted((models_dir() / "smollm2").glob("*.gguf"))[0]
    print("\n".join(markdown_lines(describe())))
    print(f"\npyrt from {Path(pyrt.__file__).parent}, {pyrt.get_num_threads()} threads, {time.strftime('%Y-%m-%d %H:%M')}")
    print("\n| format | case | tokens/s: median (min-max) | vs 1 stream |")
    print("|---|---|---|---|")
    for fmt in args.formats:
        model = pyrt.LanguageModel(gguf, dtype=fmt, context_length=512)
        cases = {"forward loop, 1 sequence": lambda: forward_loop_rate(model, args.new_tokens),
                 "generate(), 1 stream": lambda: generate_rate(model, args.new_tokens)}
        if args.fastest_steps:
            cases = {f"fastest step, M = {m}": lambda m=m: fastest_step_rate(model, m, args.new_tokens)
                     for m in args.concurrency}
        elif not args.single_only:
            for m in args.concurrency:
                cases[f"engine, {m} concurrent"] = lambda m=m: aggregate_decode_rate(model, m, args.new_tokens)
        runs = {name: [] for name in cases}
        for _ in range(args.rounds):  # interleaved rounds: a load spike spreads over every case
            for name, fn in cases.items():
                runs[name].append(fn())
        base = statistics.median(next(v for k, v in runs.items() if k.endswith(("1 concurrent", "M = 1")))
                                 if any(k.endswith(("1 concurrent", "M = 1")) for k in runs)
                                 else runs["forward loop, 1 sequence"])
        for name, values in runs.items():
            med = statistics.median(values)
            print(f"| {fmt} | {name} | {med:.1f} ({min(values):.1f}-{max(values):.1f}) | {med / base:.2f}x |")
        if hasattr(model, "close"):
            model.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
