#!/usr/bin/env python3
"""q4n against q4 and q4a: matmul speed at equal shapes, per kernel set (docs/quantization.md).

Rounds interleave the formats (q4, q4a, q4n, q4, ...) so a busy machine's drift hits all alike;
each case reports the median of its rounds' medians. Weights stream from DRAM: a ring of copies
larger than the last-level cache, one copy per call.

    python bench/bench_q4n.py                       # 4096x4096 and the MiniLM / SmolLM2 shapes
    python bench/bench_q4n.py --shapes 4096x4096 --m 1,8 --isa avx512 --rounds 7
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))
import pyrt  # noqa: E402
from machine_info import cpu_flags, cpu_model, last_level_cache_bytes  # noqa: E402

FORMATS = ("q4", "q4a", "q4n")
# 4096x4096; MiniLM (hidden 384, FFN 1536); SmolLM2-135M (hidden 576, FFN 1536).
DEFAULT_SHAPES = "4096x4096,1536x384,384x1536,1536x576,576x1536"


def ring(w: np.ndarray, fmt: str, block: int, llc: int) -> list[pyrt.Tensor]:
    first = pyrt.quantize(w, fmt, block)
    copies = max(1, -(-2 * llc // first.nbytes))  # twice the LLC: each call's weights come from DRAM
    return [first] + [pyrt.Tensor(first.numpy().copy(), fmt, first.shape, block) for _ in range(copies - 1)]


def time_round(tensors: list[pyrt.Tensor], x: np.ndarray, calls: int) -> float:
    out = np.empty((x.shape[0], tensors[0].shape[0]), dtype=np.float32)
    for t in tensors[:2]:
        pyrt.matmul(x, t, out=out)  # warm: native views, scratch
    times = []
    for i in range(calls):
        t = tensors[i % len(tensors)]
        start = time.perf_counter()
        pyrt.matmul(x, t, out=out)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shapes", default=DEFAULT_SHAPES, help="NxK, comma-separated")
    p.add_argument("--m", default="1,8,128", help="activation rows, comma-separated")
    p.add_argument("--isa", default="avx2,avx512", help="kernel sets, comma-separated")
    p.add_argument("--block", type=int, default=32)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--calls", type=int, default=30, help="timed calls per round")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)

    pyrt.set_num_threads(args.threads)
    llc = last_level_cache_bytes()
    rng = np.random.default_rng(0)
    print(f"# q4n vs q4 / q4a, block {args.block}, {args.threads} threads, median of {args.rounds} interleaved "
          f"rounds x {args.calls} calls (ms)")
    print(f"# {cpu_model()} ({platform.machine()}), avx512f={'avx512f' in cpu_flags()}, "
          f"load average {os.getloadavg()[0]:.1f}, {time.strftime('%Y-%m-%d')}")
    print("| isa | N x K | M | " + " | ".join(FORMATS) + " | q4n / q4 |")
    print("|---|---|---|" + "---|" * (len(FORMATS) + 1))
    for shape in args.shapes.split(","):
        n, k = (int(v) for v in shape.split("x"))
        w = (rng.standard_normal((n, k)) * 0.05).astype(np.float32)
        rings = {f: ring(w, f, args.block, llc) for f in FORMATS}
        for isa in args.isa.split(","):
            pyrt.set_cpu_isa(isa)
            for m in (int(v) for v in args.m.split(",")):
                x = rng.standard_normal((m, k)).astype(np.float32)
                rounds: dict[str, list[float]] = {f: [] for f in FORMATS}
                for _ in range(args.rounds):
                    for f in FORMATS:
                        rounds[f].append(time_round(rings[f], x, args.calls))
                med = {f: statistics.median(v) * 1e3 for f, v in rounds.items()}
                cells = " | ".join(f"{med[f]:.3f}" for f in FORMATS)
                print(f"| {isa} | {n}x{k} | {m} | {cells} | {med['q4n'] / med['q4']:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
