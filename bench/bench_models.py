#!/usr/bin/env python3
"""Model benchmarks. Encoder part: all-MiniLM-L6-v2 (or, with --model mpnet, all-mpnet-base-v2)
sentences/s at batch 1 and batch 32, the
peak RSS and the achieved GFLOP/s at batch 32 (arithmetic bound: the machine's FMA peak), per pyrt
weight format, side by side with sentence-transformers on PyTorch (FP32, CPU)
when it is installed, measured in the same run.

Every configuration runs in its own subprocess, so each peak RSS is that configuration's alone
(interpreter + libraries + model + activations). pyrt models are converted with
pyrt.convert.convert_checkpoint and memory-mapped by pyrt.load; before that converter exists the
weights are quantized in memory from the safetensors (reported as 'from_parts': RSS then includes
the float32 checkpoint that was read).

The table starts with the machine (bench/machine_info.py: CPU model, ISA flags, load average).

Usage: python bench/bench_models.py encoder [--model minilm|mpnet] [--formats f32,f16,q8,q4]
                                            [--activations exact,int8] [--threads N] [--rounds R] [--json]
MPNet against PyTorch FP32, exact activations, 2 threads:
       python bench/bench_models.py encoder --model mpnet --formats f32 --threads 2 --rounds 3
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# --model -> the sentence-transformers folder under the models cache (tools/fetch_models.py names).
MODEL_FOLDERS = {"minilm": "all-MiniLM-L6-v2", "mpnet": "all-mpnet-base-v2"}
BATCH_SIZES = (1, 32)

# Sentences of everyday length (8-30 tokens), like a retrieval workload.
_BASE = [
    "A man is eating food.", "The girl is carrying a baby.", "A man is riding a white horse on an enclosed ground.",
    "Someone in a gorilla costume is playing a set of drums.", "The stock market fell sharply after the announcement.",
    "Quantum computers use qubits instead of bits to represent information.", "How do I reset my password?",
    "Machine learning models can be compressed by quantizing their weights to fewer bits per value.",
    "The committee postponed its decision until more data on the long-term effects could be reviewed.",
    "Regular exercise improves both physical and mental health.", "Il pleut beaucoup à Paris en novembre.",
    "She read the whole novel in one sitting, and then started it again from the first page.",
]
SENTENCES = [f"{s} ({i})" for i in range(8) for s in _BASE]  # 96 sentences


def default_cache() -> Path:
    """The models folder tools/fetch_models.py fills ($PYRT_MODELS, else ~/.cache/pyrt/models)."""
    sys.path.insert(0, str(REPO))
    from pyrt.cli.models_dir import models_dir
    return models_dir()


def peak_rss_mb() -> float:
    """This process image's peak RSS. VmHWM, not getrusage: Linux keeps ru_maxrss across execve,
    so a worker would report the (larger) parent that forked it."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (1024.0 if sys.platform != "darwin" else 1024.0**2)


def timed(encode, sentences, batch_size: int, min_seconds: float) -> float:
    """Sentences per second over at least min_seconds (and at least one pass)."""
    encode(sentences[:batch_size], batch_size)  # warm-up: page faults, thread start, allocator
    done, start = 0, time.perf_counter()
    while True:
        encode(sentences, batch_size)
        done += len(sentences)
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            return done / elapsed


# ----------------------------------------------------------------------------- workers (subprocesses)

def worker_pyrt(args) -> dict:
    sys.path.insert(0, str(REPO))
    import pyrt

    if args.threads:
        pyrt.set_num_threads(args.threads)
    folder = Path(args.model_dir)
    source = "pyrt.load"
    start = time.perf_counter()
    if args.pyrt_file:
        encoder = pyrt.SentenceEncoder(args.pyrt_file, activations=args.activation)
    else:
        from safetensors.numpy import load_file

        source = "from_parts"
        config = json.loads((folder / "config.json").read_text())
        files = {n: (folder / n).read_bytes() for n in ("tokenizer.json", "modules.json", "sentence_bert_config.json",
                                                         "1_Pooling/config.json") if (folder / n).is_file()}
        weights = load_file(str(folder / "model.safetensors"))
        tensors = {k: pyrt.quantize(v, args.format if v.ndim == 2 else "f32") for k, v in weights.items()
                   if v.dtype.kind == "f"}
        del weights
        encoder = pyrt.SentenceEncoder.from_parts(tensors, config, files, activations=args.activation)
    load_s = time.perf_counter() - start
    result = {"engine": "pyrt", "format": args.format, "activations": args.activation, "source": source, "load_s": load_s,
              "cpu_isa": pyrt.get_cpu_isa(), "threads": pyrt.get_num_threads()}
    for b in BATCH_SIZES:
        sentences = SENTENCES[:16] if b == 1 else SENTENCES
        result[f"sent_per_s_b{b}"] = timed(lambda s, bs: encoder.encode(s, batch_size=bs), sentences, b, args.seconds)
    result["peak_rss_mb"] = peak_rss_mb()
    # Bytes a batch-1 forward reads: every matrix once (the embedding tables are gathered by row).
    result["weight_mb_per_forward"] = sum(t.nbytes for name, t in encoder.tensors.items()
                                          if t.ndim == 2 and "embeddings" not in name) / 1e6
    result["gflop_per_sentence"] = flops_per_sentence(encoder.config, [len(t) for t in encoder.tokenize(SENTENCES)]) / 1e9
    return result


def flops_per_sentence(config: dict, lengths: list[int]) -> float:
    """Mean FLOPs of one sentence: the six matmuls per layer plus attention (2 L^2 H per product)."""
    H, I, layers = config["hidden_size"], config["intermediate_size"], config["num_hidden_layers"]
    total = sum(layers * (2 * L * (4 * H * H + 2 * H * I) + 4 * L * L * H) for L in lengths)
    return total / len(lengths)


def worker_torch(args) -> dict:
    import torch
    from sentence_transformers import SentenceTransformer

    if args.threads:
        torch.set_num_threads(args.threads)
    start = time.perf_counter()
    model = SentenceTransformer(str(args.model_dir), device="cpu")
    load_s = time.perf_counter() - start
    result = {"engine": f"sentence-transformers (torch {torch.__version__})", "format": "f32", "source": "folder",
              "load_s": load_s, "threads": torch.get_num_threads()}
    with torch.inference_mode():
        for b in BATCH_SIZES:
            sentences = SENTENCES[:16] if b == 1 else SENTENCES
            result[f"sent_per_s_b{b}"] = timed(lambda s, bs: model.encode(s, batch_size=bs), sentences, b, args.seconds)
    result["peak_rss_mb"] = peak_rss_mb()
    return result


# ----------------------------------------------------------------------------- driver

def run_worker(kind: str, extra: list[str], args) -> dict | None:
    cmd = [sys.executable, __file__, f"_worker_{kind}", "--model-dir", str(args.model_dir),
           "--seconds", str(args.seconds), "--threads", str(args.threads or 0), *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        print(f"[{kind} {' '.join(extra)}] failed:\n{proc.stderr.strip()[-2000:]}", file=sys.stderr)
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


def torch_available() -> bool:
    probe = "import torch, sentence_transformers"
    return subprocess.run([sys.executable, "-c", probe], capture_output=True).returncode == 0


def bench_encoder(args) -> list[dict]:
    """One result per configuration; with --rounds R every configuration runs R times, interleaved
    (all pyrt configurations, then PyTorch, R times over), so a slow phase of a shared machine hits
    every engine alike. Rates are then the median over rounds, and each pyrt row keeps the ratio to
    PyTorch of every round (per_round_b32)."""
    args.model_dir = args.model_dir or default_cache() / MODEL_FOLDERS[args.model]
    if not (Path(args.model_dir) / "model.safetensors").is_file():
        sys.exit(f"{args.model_dir} has no model.safetensors: run python tools/fetch_models.py --only {args.model}")
    sys.path.insert(0, str(REPO))
    try:
        from pyrt.convert import convert_checkpoint
    except ImportError:
        convert_checkpoint = None
    with_torch = torch_available()
    if not with_torch:
        print("sentence-transformers/torch not installed: no PyTorch column", file=sys.stderr)
    rounds: list[list[dict]] = []
    sys.path.insert(0, str(REPO / "bench"))
    import bandwidth  # noqa: PLC0415

    # The DRAM read bound of this run (bench/bandwidth.py), for the batch-1 GB/s column.
    args.dram_gbps = bandwidth.read_bandwidth(1 << 30, args.threads or os.cpu_count() or 1, repeats=3).gbps
    with tempfile.TemporaryDirectory(prefix="pyrt-bench-") as tmp:
        configs = []
        for fmt in args.formats.split(","):
            extra = ["--format", fmt]
            if convert_checkpoint is not None:
                path = Path(tmp) / f"{args.model}-{fmt}.pyrt"
                convert_checkpoint(args.model_dir, path, dtype=fmt, block=args.block)
                extra += ["--pyrt-file", str(path), "--file-mb", f"{path.stat().st_size / 1e6:.2f}"]
            configs += [("pyrt", extra + ["--activation", a]) for a in args.activations.split(",")]
        if with_torch:
            configs.append(("torch", []))
        for round_index in range(args.rounds):
            measured = []
            for kind, extra in configs:
                r = run_worker(kind, extra, args)
                if r:
                    measured.append(r)
                    print(f"  round {round_index + 1}/{args.rounds}: {r['engine']} {r['format']}"
                          f"{' ' + r['activations'] if 'activations' in r else ''}", file=sys.stderr)
            rounds.append(measured)
    results = combine_rounds(rounds)
    for r in results:
        r["dram_gbps"] = args.dram_gbps
    return results


def config_key(r: dict) -> tuple:
    return r["engine"], r["format"], r.get("activations")


def combine_rounds(rounds: list[list[dict]]) -> list[dict]:
    """Median rates (and the largest RSS) per configuration over the rounds; for pyrt rows the
    per-round batch-32 ratios to that round's PyTorch run."""
    import statistics

    by_key: dict[tuple, list[dict]] = {}
    for measured in rounds:
        torch_row = next((r for r in measured if r["engine"] != "pyrt"), None)
        for r in measured:
            if torch_row and r is not torch_row:
                r["ratio_b32"] = r["sent_per_s_b32"] / torch_row["sent_per_s_b32"]
            by_key.setdefault(config_key(r), []).append(r)
    combined = []
    for runs in by_key.values():
        row = dict(runs[0])
        row["rounds"] = len(runs)
        for field in ("load_s", "sent_per_s_b1", "sent_per_s_b32"):
            row[field] = statistics.median(r[field] for r in runs)
        row["peak_rss_mb"] = max(r["peak_rss_mb"] for r in runs)
        if "ratio_b32" in row:
            row["per_round_b32"] = [round(r["ratio_b32"], 3) for r in runs if "ratio_b32" in r]
            del row["ratio_b32"]
        combined.append(row)
    return combined


def print_results(results: list[dict], model_name: str) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from machine_info import describe, markdown_lines  # noqa: PLC0415

    print("\n".join(markdown_lines(describe())))
    torch_row = next((r for r in results if r["engine"] != "pyrt"), None)
    # The torch run does the same arithmetic on the same sentences: reuse pyrt's FLOP count.
    flop_reference = next((r["gflop_per_sentence"] for r in results if "gflop_per_sentence" in r), None)
    rounds = max((r.get("rounds", 1) for r in results), default=1)
    print(f"{model_name}, {len(SENTENCES)} sentences (batch 32) / 16 sentences (batch 1)"
          + (f"; medians over {rounds} interleaved rounds" if rounds > 1 else ""))
    print(f"{'engine':<38} {'format':<9} {'source':<11} {'load s':>7} {'b1 sent/s':>10} {'b32 sent/s':>11} "
          f"{'peak RSS MB':>12} {'b32 GFLOP/s':>12} {'b1 MB/fwd':>10} {'b1 GB/s':>8} {'of DRAM':>8}"
          + ("  vs torch b1/b32" if torch_row else ""))
    for r in results:
        ratio = ""
        if torch_row and r is not torch_row:
            ratio = f"  {r['sent_per_s_b1'] / torch_row['sent_per_s_b1']:.2f}x / " \
                    f"{r['sent_per_s_b32'] / torch_row['sent_per_s_b32']:.2f}x"
            if len(r.get("per_round_b32", [])) > 1:
                ratio += f" (rounds {min(r['per_round_b32']):.2f}-{max(r['per_round_b32']):.2f}x)"
        engine = r["engine"] + (f" [{r['cpu_isa']}]" if "cpu_isa" in r else "") + f" {r['threads']}t"
        gflop = r.get("gflop_per_sentence", flop_reference)
        gflops = f"{gflop * r['sent_per_s_b32']:.1f}" if gflop else "-"
        fmt = r["format"] + {"int8": "/i8", "int16": "/i16"}.get(r.get("activations"), "")
        # Batch 1: weight bytes per forward x sentences/s, against the DRAM bound of the same run
        # (MiniLM's matrices fit in the L3 cache, so batch 1 can exceed it).
        mb = r.get("weight_mb_per_forward")
        gbps = mb * r["sent_per_s_b1"] / 1e3 if mb else None
        bw = (f"{mb:>10.1f} {gbps:>8.1f} {gbps / r['dram_gbps']:>8.0%}" if gbps and r.get("dram_gbps")
              else f"{'-':>10} {'-':>8} {'-':>8}")
        print(f"{engine:<38} {fmt:<9} {r['source']:<11} {r['load_s']:>7.2f} {r['sent_per_s_b1']:>10.1f} "
              f"{r['sent_per_s_b32']:>11.1f} {r['peak_rss_mb']:>12.0f} {gflops:>12} {bw}{ratio}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", choices=["encoder", "_worker_pyrt", "_worker_torch"])
    parser.add_argument("--model", choices=sorted(MODEL_FOLDERS), default="minilm")
    parser.add_argument("--formats", default="f32,f16,q8,q4")
    parser.add_argument("--block", type=int, default=32)
    parser.add_argument("--activations", default="exact",
                        help="pyrt activation modes, comma-separated: exact, int8, int16 (docs/int8.md); "
                             "/i8 and /i16 in the table")
    parser.add_argument("--threads", type=int, default=0, help="threads per engine (default: all cores)")
    parser.add_argument("--seconds", type=float, default=3.0, help="minimum timed seconds per measurement")
    parser.add_argument("--rounds", type=int, default=1,
                        help="run every configuration this many times, interleaved; report medians")
    parser.add_argument("--model-dir", type=Path, default=None)
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--format", default="f32", help=argparse.SUPPRESS)
    parser.add_argument("--activation", default="exact", help=argparse.SUPPRESS)
    parser.add_argument("--pyrt-file", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--file-mb", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.part == "_worker_pyrt":
        r = worker_pyrt(args)
        if args.file_mb:
            r["file_mb"] = float(args.file_mb)
        print(json.dumps(r))
        return 0
    if args.part == "_worker_torch":
        print(json.dumps(worker_torch(args)))
        return 0
    results = bench_encoder(args)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print_results(results, Path(args.model_dir).name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
