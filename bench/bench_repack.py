#!/usr/bin/env python3
"""Load-time repacking (csrc/include/pyrt/repack.h): the repacked copy against the file's layout in
the same run, interleaved round by round (A B, B A, ...), so a busy machine disturbs both alike.

1. The M=1 GEMV of a q4/q4a (block 32, 64 or 128) matrix streamed from DRAM (a ring of copies larger than
   twice the last-level cache), against the DRAM read bound measured in the same run.
2. SmolLM2 decode (the GGUF's own bits): LanguageModel(repack=True) against repack=False, and the
   resident memory (RSS) each adds, measured in a fresh process per setting.

Outputs are compared before anything is timed (bit for bit at block 32). Reports median (min-max) of the rounds,
the per-round ratio, and CPU seconds per call (process time / calls: with N threads busy, about
N x the wall time; less means the threads waited).

    python bench/bench_repack.py                         # both parts (~2 minutes)
    python bench/bench_repack.py --rounds 8 --skip-model
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

import numpy as np

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(BENCH.parent))

import pyrt  # noqa: E402
from pyrt._native import require_core  # noqa: E402

import bandwidth  # noqa: E402
import bench_cases  # noqa: E402
import machine_info  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shape", default="11008x4096", help="N x K of the GEMV matrix")
    p.add_argument("--cache-shape", default="256x4096", help="N x K of a matrix that stays in L2 (the decode-bound case)")
    p.add_argument("--formats", default="q4,q4a", help="format[/block] list (block 32 unless given), formats with a copy: q4,q4a,q4n")
    p.add_argument("--threads", type=int, help="pyrt threads (default: pyrt's)")
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--seconds", type=float, default=0.6, help="timed seconds per setting and round")
    p.add_argument("--gen-tokens", type=int, default=48, help="decode steps per setting and round")
    p.add_argument("--model", help="SmolLM2 GGUF (default: the one under PYRT_MODELS/smollm2)")
    p.add_argument("--skip-model", action="store_true")
    p.add_argument("--rss-child", choices=["on", "off"], help=argparse.SUPPRESS)
    return p.parse_args(argv)


def spread(values):
    return f"{statistics.median(values):.4g} ({min(values):.4g}-{max(values):.4g})"


def timed_calls(fn, seconds):
    """(wall seconds per call, CPU seconds per call) over about ``seconds``."""
    fn()
    calls, t0, c0 = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - t0 < seconds:
        fn()
        calls += 1
    return (time.perf_counter() - t0) / calls, (time.process_time() - c0) / calls


def gemv_part(args, shape, llc, dram_gbps):
    n, k = (int(v) for v in shape.lower().split("x"))
    rng = np.random.default_rng(0)
    base = rng.standard_normal((n, k), dtype=np.float32)
    x = rng.standard_normal((1, k), dtype=np.float32)
    rows = []
    for spec in args.formats.split(","):
        fmt, _, block = spec.partition("/")
        block = int(block or 32)
        t = pyrt.quantize(base, fmt, block)
        copies = bench_cases.ring_copies(t.nbytes, llc) if llc else 1
        raw = t.numpy().reshape(n, -1)
        files, repacked = [], []
        for shift in bench_cases.ring_shifts(n, copies):
            w = require_core().Weights(np.ascontiguousarray(np.roll(raw, shift, axis=0)).reshape(-1), fmt, block, n, k)
            files.append(w)
            repacked.append(w.repacked())
        assert repacked[0].repacked_nbytes > 0, f"no repacked copy of {spec}: not an avx512 build/CPU, or no kernel reads one"
        outs = {}
        for label, ws in (("file", files), ("repacked", repacked)):
            outs[label] = [np.full((1, n), np.nan, np.float32) for _ in ws]
            for w, o in zip(ws, outs[label]):
                require_core().matmul(x, w, None, o)
        for a, b in zip(outs["file"], outs["repacked"]):
            if block == 32:  # same summation order: the same bits
                assert np.array_equal(a.view(np.uint32), b.view(np.uint32)), "repacked GEMV differs from the file layout"
            else:  # the file kernel sums per block: equal up to FP32 rounding (tests/ops/test_repack.py bounds it)
                np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-4 * float(np.abs(a).max()))

        def cycling(ws):
            state = {"i": 0}
            out = np.empty((1, n), np.float32)

            def call():
                require_core().matmul(x, ws[state["i"]], None, out)
                state["i"] = (state["i"] + 1) % len(ws)
            return call

        fns = {"file": cycling(files), "repacked": cycling(repacked)}
        res = {"file": [], "repacked": [], "file_cpu": [], "repacked_cpu": [], "ratio": []}
        for r in range(args.rounds):
            order = ("file", "repacked") if r % 2 == 0 else ("repacked", "file")
            got = {}
            for label in order:
                wall, cpu = timed_calls(fns[label], args.seconds)
                got[label] = wall
                res[label].append(wall * 1e3)
                res[label + "_cpu"].append(cpu * 1e3)
            res["ratio"].append(got["file"] / got["repacked"])
        gb = t.nbytes / 1e9
        for label in ("file", "repacked"):
            ms = statistics.median(res[label])
            where = f"ring x{copies}" if copies > 1 else "in cache"
            share = f"{100 * gb / ms * 1e3 / dram_gbps:.0f} %" if copies > 1 else "n/a"
            rows.append(f"| {fmt}/{block} {n}x{k} M=1, {label} layout, {where} | {spread(res[label])} | "
                        f"{spread(res[label + '_cpu'])} | {gb / ms * 1e3:.1f} | {share} |")
        rows.append(f"| {fmt}/{block}: file time / repacked time, per round | {spread(res['ratio'])} | | | |")
    return rows


def rss_bytes():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def rss_child(args):
    """In a fresh process: RSS before the model, after loading it, after a prompt and 16 decode steps."""
    before = rss_bytes()
    lm = pyrt.LanguageModel(args.model, context_length=64, repack=args.rss_child == "on")
    loaded = rss_bytes()
    lm.forward(list(range(100, 132)))
    for t in range(16):
        lm.forward([200 + t])
    print(json.dumps({"loaded": loaded - before, "after_decode": rss_bytes() - before,
                      "repacked_bytes": lm._decoder.repacked_bytes}))


def model_part(args):
    on = pyrt.LanguageModel(args.model, context_length=256, repack=True)
    off = pyrt.LanguageModel(args.model, context_length=256, repack=False)
    prompt = np.random.default_rng(0).integers(100, on.config["vocab"], 64).tolist()
    for lm in (on, off):
        lm.reset()
    a, b = on.forward(prompt[:16]), off.forward(prompt[:16])
    for t in prompt[16:24]:
        a, b = on.forward([t]), off.forward([t])
    same = np.array_equal(a.view(np.uint32), b.view(np.uint32))

    def decode(lm):
        lm.reset()
        lm.forward(prompt[:16])
        t0, c0 = time.perf_counter(), time.process_time()
        for i in range(args.gen_tokens):
            lm.forward([prompt[16 + i % 48]])
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        return args.gen_tokens / wall, cpu / args.gen_tokens * 1e3

    res = {"on": [], "off": [], "on_cpu": [], "off_cpu": [], "ratio": []}
    decode(on), decode(off)  # warm-up
    for r in range(args.rounds):
        order = ("on", "off") if r % 2 == 0 else ("off", "on")
        got = {}
        for label in order:
            tps, cpu_ms = decode(on if label == "on" else off)
            got[label] = tps
            res[label].append(tps)
            res[label + "_cpu"].append(cpu_ms)
        res["ratio"].append(got["on"] / got["off"])
    rows = [f"| SmolLM2 decode, repack=True (tok/s) | {spread(res['on'])} | {spread(res['on_cpu'])} ms/token |",
            f"| SmolLM2 decode, repack=False (tok/s) | {spread(res['off'])} | {spread(res['off_cpu'])} ms/token |",
            f"| on / off, per round | {spread(res['ratio'])} | |",
            f"| logits after 8 decode steps bit-equal | {same} | |"]
    for setting in ("off", "on"):
        out = subprocess.run([sys.executable, __file__, "--model", str(args.model), "--rss-child", setting],
                             capture_output=True, text=True, check=True).stdout
        m = json.loads(out.strip().splitlines()[-1])
        rows.append(f"| RSS added, repack={setting == 'on'}: loaded / after decoding (MiB) | "
                    f"{m['loaded'] / 2**20:.1f} / {m['after_decode'] / 2**20:.1f} | repacked copy "
                    f"{m['repacked_bytes'] / 2**20:.1f} MiB |")
    return rows


def main(argv=None):
    args = parse_args(argv)
    if args.model is None:
        found = sorted((Path(os.environ.get("PYRT_MODELS", Path.home() / ".cache/pyrt/models")) / "smollm2").glob("*.gguf"))
        args.model = found[0] if found else None
    if args.rss_child:
        return rss_child(args)
    if args.threads:
        pyrt.set_num_threads(args.threads)
    info = pyrt.build_info()
    threads = pyrt.get_num_threads()
    print(f"# bench_repack {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: {machine_info.cpu_model()}, "
          f"isa {info['cpu_isa']}, {threads} threads, load average {os.getloadavg()[0]:.2f}")
    llc = machine_info.last_level_cache_bytes()
    bw = bandwidth.read_bandwidth(1 << 30, threads, 5)
    print(f"DRAM read bound {bw.gbps:.1f} GB/s ({bw.best_method}, 1 GiB, same run)\n")
    print("| case | wall ms per call: median (min-max) | CPU ms per call | GB/s | % of DRAM |")
    print("|---|---|---|---:|---:|")
    for row in gemv_part(args, args.shape, llc, bw.gbps) + gemv_part(args, args.cache_shape, 0, bw.gbps):
        print(row)
    if not args.skip_model:
        if args.model is None:
            print("\n(no SmolLM2 GGUF found: model part skipped)")
        else:
            print("\n| SmolLM2 (" + Path(args.model).name + ") | median (min-max) | CPU |")
            print("|---|---|---|")
            for row in model_part(args):
                print(row)
    print(f"\nload average at the end {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
