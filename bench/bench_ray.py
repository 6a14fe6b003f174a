"""MiniLM q8 embedding throughput: in process (2 threads, and 1 for reference) against Ray Data
with 1 actor x 2 threads and 2 actors x 1 thread, on a local Ray of 2 CPUs; per-actor memory and
the model file's share of it (smaps). Runs are interleaved round by round and medians reported,
because this machine may be shared. Issue 19's target: 2 actors x 1 thread >= 0.85x in-process
2 threads.

    python bench/bench_ray.py [--sentences 2000] [--rounds 3] [--model minilm-q8.pyrt]

Ray starts its worker processes at nice 15 (see `ps -o ni`); this script lowers its own priority to
the same level, so that on a shared machine the in-process runs compete for the CPUs on equal
terms (on an idle machine niceness changes nothing).

Ray throughput is given twice: end to end (actor start and model load included) and steady
(rows after the first block / time from the first block to the last, i.e. once actors are up).
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine_info import describe, markdown_lines  # noqa: E402

import pyrt  # noqa: E402
from pyrt.cli.models_dir import models_dir  # noqa: E402
from pyrt.ray_memory import actors_memory  # noqa: E402

WORDS = ("river", "model", "quiet", "engine", "paper", "north", "silver", "garden", "signal", "window", "winter",
         "number", "market", "orange", "planet", "letter", "bridge", "forest")


def corpus(n: int) -> list[str]:
    return [" ".join(WORDS[(i * 7 + j * 3) % len(WORDS)] for j in range(6 + i % 17)) + f" {i}." for i in range(n)]


def in_process(model: str, texts: list[str], threads: int) -> float:
    pyrt.set_num_threads(threads)
    encoder = pyrt.SentenceEncoder(model)
    encoder.encode(texts[:32])  # warm: first-touch of the weights
    start = time.perf_counter()
    encoder.encode(texts)
    return len(texts) / (time.perf_counter() - start)


def through_ray(ray, model: str, texts: list[str], actors: int, threads: int, rows_per_block: int) -> tuple[float, float]:
    import pyarrow as pa
    from pyrt.ray import embed_dataset

    table = pa.table({"text": texts})
    ds = ray.data.from_arrow([table.slice(i, rows_per_block) for i in range(0, len(texts), rows_per_block)])
    mapped = embed_dataset(ds, model, actors=actors, threads_per_actor=threads, rows_per_batch=rows_per_block)
    start = time.perf_counter()
    first_rows, first_time, rows = 0, None, 0
    for batch in mapped.iter_batches(batch_size=None, batch_format="pyarrow"):
        rows += batch.num_rows
        if first_time is None:
            first_rows, first_time = batch.num_rows, time.perf_counter()
    end = time.perf_counter()
    assert rows == len(texts)
    steady = (rows - first_rows) / (end - first_time) if end > first_time else float("nan")
    return rows / (end - start), steady


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sentences", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rows-per-block", type=int, default=128)
    parser.add_argument("--model", default=None, help="a MiniLM .pyrt (default: convert the fetched one to q8)")
    args = parser.parse_args()
    import ray

    os.nice(15 - os.nice(0))  # Ray's workers' niceness, for a fair comparison on a busy machine

    with tempfile.TemporaryDirectory() as tmp:
        model = args.model
        if model is None:
            from pyrt.convert import convert_checkpoint
            model = os.path.join(tmp, "minilm-q8.pyrt")
            convert_checkpoint(models_dir() / "all-MiniLM-L6-v2", model, dtype="q8")
        texts = corpus(args.sentences)
        parent = str(Path(pyrt.__file__).resolve().parents[1])
        ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False,
                 runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join(filter(None, (parent, os.environ.get("PYTHONPATH"))))}})
        ray.data.DataContext.get_current().enable_progress_bars = False
        results: dict[str, list[float]] = {}
        loads = []
        for r in range(args.rounds):
            loads.append(os.getloadavg()[0])
            results.setdefault("in-process 2 threads", []).append(in_process(model, texts, 2))
            e2e, steady = through_ray(ray, model, texts, 2, 1, args.rows_per_block)
            results.setdefault("Ray 2 actors x 1 thread (end to end)", []).append(e2e)
            results.setdefault("Ray 2 actors x 1 thread (steady)", []).append(steady)
            e2e, steady = through_ray(ray, model, texts, 1, 2, args.rows_per_block)
            results.setdefault("Ray 1 actor x 2 threads (end to end)", []).append(e2e)
            results.setdefault("Ray 1 actor x 2 threads (steady)", []).append(steady)
            results.setdefault("in-process 1 thread", []).append(in_process(model, texts, 1))
            print(f"round {r + 1}/{args.rounds} done (load {loads[-1]:.1f})", file=sys.stderr, flush=True)
        memory = [m for _, m in actors_memory(model, texts[:256], actors=2)]
        ray.shutdown()
        size = os.path.getsize(model)

    print("\n".join(markdown_lines(describe())))
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    print("\n```\n" + "\n".join(ln for ln in lscpu.splitlines() if ln.split(":")[0] in (
        "Model name", "CPU(s)", "Thread(s) per core", "L3 cache")) + "\n```")
    print(f"\nMiniLM q8 ({size / 1e6:.1f} MB file), {args.sentences} sentences, {args.rounds} interleaved rounds, "
          f"1-min load average at each round's start: {', '.join(f'{x:.1f}' for x in loads)}\n")
    base = statistics.median(results["in-process 2 threads"])
    print("| setup | sentences/s (median) | all rounds | vs in-process 2 threads |\n|---|---|---|---|")
    for name, values in results.items():
        med = statistics.median(values)
        print(f"| {name} | {med:.0f} | {', '.join(f'{v:.0f}' for v in values)} | {med / base:.2f}x |")
    print("\n| actor | RSS MB | PSS MB | USS MB | model file RSS MB | model file PSS MB | model pages shared |\n"
          "|---|---|---|---|---|---|---|")
    for i, m in enumerate(memory):
        share = m["model_shared"] / m["model_rss"] if m["model_rss"] else float("nan")
        print(f"| {i} | {m['rss'] / 1e6:.0f} | {m['pss'] / 1e6:.0f} | {m['uss'] / 1e6:.0f} | {m['model_rss'] / 1e6:.1f} "
              f"| {m['model_pss'] / 1e6:.1f} | {share:.0%} |")
    dim_bytes = 384 * 4
    print(f"\nOutput: {dim_bytes} bytes per sentence (384 float32) plus its text and row id.")


if __name__ == "__main__":
    main()
