#!/usr/bin/env python3
"""Where the encoder's time goes, by function group (matmul / GELU / attention / LayerNorm / ...).

  perf record -g -o enc.data python bench/profile_encoder.py workload --model minilm-f32.pyrt --seconds 15
  python bench/profile_encoder.py split enc.data [more.data ...]

`workload` encodes bench/bench_models.py's 96 sentences at batch 32 over and over; `split` groups
`perf report --no-children --sort dso,symbol` by the regular expressions in GROUPS and prints a
markdown table, one column per perf.data file. libgomp samples are threads spinning at a barrier
while the other thread finishes (serial sections and load imbalance), shown as their own group.
"""
from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# First match wins; tested against "dso symbol".
GROUPS = [
    ("matmul", r"micro_kernel|gemm|gemv|dequantize|matmul|pack_|store_c_tiles|transpose|fp16_to_fp32|"
               r"quantize_activation|activation_residual"),
    ("GELU", r"gelu|erff"),
    ("attention (incl. softmax)", r"attend_head|score_block|weighted_values|query_block|packed_self_attention|"
                                  r"softmax|expf"),
    ("LayerNorm", r"layer_norm"),
    ("residual add", r"add_inplace|axpy"),
    ("OpenMP barrier wait (libgomp)", r"libgomp"),
]
OTHER = "other (Python, tokenizer, embedding, pooling, memset, ...)"


def workload(args) -> None:
    sys.path.insert(0, str(REPO))
    sys.path.insert(0, str(REPO / "bench"))
    import pyrt
    from bench_models import SENTENCES

    if args.threads:
        pyrt.set_num_threads(args.threads)
    encoder = pyrt.SentenceEncoder(args.model)
    encoder.encode(SENTENCES, batch_size=32)
    start = time.perf_counter()
    while time.perf_counter() - start < args.seconds:
        encoder.encode(SENTENCES, batch_size=32)


def split(path: str) -> dict[str, float]:
    out = subprocess.run(["perf", "report", "-i", path, "--no-children", "--sort", "dso,symbol", "-g", "none",
                          "--stdio"], capture_output=True, text=True, check=True).stdout
    shares = {name: 0.0 for name, _ in GROUPS} | {OTHER: 0.0}
    for line in out.splitlines():
        m = re.match(r"\s*([\d.]+)%\s+(\S+)\s+\[.\]\s+(.*)", line)
        if not m:
            continue
        percent, text = float(m.group(1)), f"{m.group(2)} {m.group(3)}"
        group = next((name for name, pattern in GROUPS if re.search(pattern, text)), OTHER)
        shares[group] += percent
    return shares


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    w = sub.add_parser("workload")
    w.add_argument("--model", required=True, help="a .pyrt file of all-MiniLM-L6-v2 (or another BERT)")
    w.add_argument("--seconds", type=float, default=15.0)
    w.add_argument("--threads", type=int, default=0, help="pyrt threads (default: all cores)")
    s = sub.add_parser("split")
    s.add_argument("data", nargs="+", help="perf.data files, one table column each")
    args = parser.parse_args()
    if args.command == "workload":
        workload(args)
        return
    columns = [split(path) for path in args.data]
    print("| group | " + " | ".join(Path(p).name for p in args.data) + " |")
    print("|---|" + "---:|" * len(columns))
    for name in [g for g, _ in GROUPS] + [OTHER]:
        print(f"| {name} | " + " | ".join(f"{c[name]:.1f} %" for c in columns) + " |")


if __name__ == "__main__":
    main()
