#!/usr/bin/env python3
"""Before/after timing of two pyrt checkouts (each built in place with tools/dev_build.sh), run
back to back and interleaved (A B, B A, ...) in fresh processes, so that a refactor can show that
it left the speed alone. Prints a markdown table of medians with min-max per checkout.

    python bench/ab_checkouts.py OLD_CHECKOUT NEW_CHECKOUT --rounds 4 --minilm minilm-q8.pyrt

Cases: pyrt.matmul 11008x4096 (f16, q8, q4, q4a at M = 1, 8, 128; q8/q4 with int8 activations at
M = 1), all-MiniLM-L6-v2 sentences/s (batch 32 and 1, a converted .pyrt file), SmolLM2-135M q4a
prefill of 256 tokens and 64 decode steps (from the GGUF in $PYRT_MODELS/smollm2). Both checkouts
must accept the same public API (pyrt.matmul, SentenceEncoder, LanguageModel).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path


def median_seconds(fn, seconds: float, min_calls: int) -> float:
    fn()  # warm-up: first-touch of the weights, thread start
    samples, end = [], time.perf_counter() + seconds
    while len(samples) < min_calls or time.perf_counter() < end:
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples)


def import_pyrt_from(checkout: str):
    """pyrt as built in `checkout`. An editable install (pip install -e) puts a finder in front of
    sys.path that always returns the installed tree and its compiled core, so a plain sys.path
    insert would time the same build twice: drop such finders and check where pyrt came from."""
    sys.meta_path[:] = [f for f in sys.meta_path if not type(f).__module__.startswith("_editable")]
    sys.path.insert(0, checkout)
    import pyrt
    import pyrt._core

    for module in (pyrt, pyrt._core):
        if not Path(module.__file__).resolve().is_relative_to(Path(checkout).resolve()):
            raise SystemExit(f"{module.__name__} was imported from {module.__file__}, not from {checkout}")
    return pyrt


def worker(checkout: str, minilm: str, gguf: str) -> dict:
    pyrt = import_pyrt_from(checkout)
    import numpy as np

    rng, out = np.random.default_rng(0), {}
    n, k = 11008, 4096
    w = rng.standard_normal((n, k)).astype(np.float32)
    for fmt in ("f16", "q8", "q4", "q4a"):
        wq = pyrt.quantize(w, fmt, 32)
        for m in (1, 8, 128):
            x = rng.standard_normal((m, k)).astype(np.float32)
            y = np.empty((m, n), np.float32)
            out[f"matmul {fmt} {n}x{k} M={m} (ms)"] = 1e3 * median_seconds(lambda: pyrt.matmul(x, wq, out=y), 0.6, 5)
        if fmt in ("q8", "q4"):
            x = rng.standard_normal((1, k)).astype(np.float32)
            out[f"matmul {fmt} int8 activations M=1 (ms)"] = 1e3 * median_seconds(
                lambda: pyrt.matmul(x, wq, activations="int8"), 0.6, 5)
    if minilm:
        enc = pyrt.SentenceEncoder(minilm)
        sents = [f"The quick brown fox jumps over the lazy dog number {i}, again and again." for i in range(32)]
        out["MiniLM q8 batch 32 (sentences/s)"] = 32 / median_seconds(lambda: enc.encode(sents, batch_size=32), 1.0, 5)
        out["MiniLM q8 batch 1 (sentences/s)"] = 1 / median_seconds(lambda: enc.encode(sents[:1], batch_size=1), 0.5, 5)
    if gguf:
        lm = pyrt.LanguageModel(gguf, dtype="q4a", context_length=1024)
        ids = [int(t) for t in rng.integers(100, 40000, 256)]

        def prefill():
            lm.reset()
            lm.forward(ids)

        def decode():
            lm.reset()
            lm.forward(ids[:8])
            for t in ids[:64]:
                lm.forward([t])

        out["SmolLM2 q4a prefill 256 (tokens/s)"] = 256 / median_seconds(prefill, 1.0, 3)
        out["SmolLM2 q4a decode (tokens/s)"] = 64 / median_seconds(decode, 1.0, 3)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("old")
    p.add_argument("new")
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--minilm", default="", help="a converted all-MiniLM-L6-v2 .pyrt file (skipped if empty)")
    p.add_argument("--gguf", default=str(Path(os.environ.get("PYRT_MODELS", Path.home() / ".cache/pyrt/models"))
                                         / "smollm2" / "SmolLM2-135M-Instruct.Q4_1.gguf"))
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:  # one measurement of args.old, as JSON on stdout
        print(json.dumps(worker(args.old, args.minilm, args.gguf if Path(args.gguf).is_file() else "")))
        return 0
    runs: dict[str, list[dict]] = {args.old: [], args.new: []}
    for r in range(args.rounds):
        for checkout in ((args.old, args.new) if r % 2 == 0 else (args.new, args.old)):
            proc = subprocess.run([sys.executable, __file__, os.path.abspath(checkout), "-", "--worker",
                                   "--minilm", args.minilm, "--gguf", args.gguf],
                                  capture_output=True, text=True, cwd="/", check=False)
            if proc.returncode:
                sys.stderr.write(proc.stderr[-3000:])
                return 1
            runs[checkout].append(json.loads(proc.stdout.strip().splitlines()[-1]))
    print(f"| case | before: median (min-max) of {args.rounds} | after | after/before |")
    print("|---|---|---|---|")
    for key in runs[args.old][0]:
        a, b = [x[key] for x in runs[args.old]], [x[key] for x in runs[args.new]]
        ma, mb = statistics.median(a), statistics.median(b)
        print(f"| {key} | {ma:.4g} ({min(a):.4g}-{max(a):.4g}) | {mb:.4g} ({min(b):.4g}-{max(b):.4g}) | {mb / ma:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
