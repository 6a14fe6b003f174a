#!/usr/bin/env python3
"""GPTQ against the calibrated search on every real model pyrt runs: `convert_checkpoint` with
``quant_method="search"`` and ``"gptq"`` (the default), each with the accuracy report (pyrt's
evaluation texts against the source weights), and the conversion's wall and CPU seconds.

Encoders at q4a/32 (embedding tables q8, the converter's rule), decoders at q4/32 (from their GGUF).
With --no-text: also no calibration at all (searched scales alone) and `--calibration synthetic`
(GPTQ on inputs the model makes: a decoder's own sampled text, an encoder's random token
sequences), the two ways to convert without text.

Usage: python bench/bench_gptq_models.py [--models DIR] [--only NAME ...] [--no-text]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pyrt.convert import convert_checkpoint  # noqa: E402

MODELS = {  # name: (path under the models folder, a glob for the file or None for the folder, dtype)
    "minilm": ("all-MiniLM-L6-v2", None, "q4a"),
    "mpnet": ("all-mpnet-base-v2", None, "q4a"),
    "smollm2": ("smollm2", "*.gguf", "q4"),
    "gemma3": ("gemma3-270m", "*.gguf", "q4"),
    "qwen2.5": ("qwen2.5-coder-0.5b", "*.gguf", "q4"),
}


def _quality(metrics: dict) -> str:
    if metrics["kind"] == "encoder":
        return f"cos {metrics['cos_mean']:.5f} / {metrics['cos_min']:.5f}"
    return f"ppl {metrics['ppl_increase_pct']:+.1f} %, KL {metrics['kl']:.4f}, top-1 {metrics['top1']:.3f}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default=os.environ.get("PYRT_MODELS", str(Path.home() / ".cache/pyrt/models")))
    ap.add_argument("--only", nargs="*", choices=list(MODELS), help="these models only")
    ap.add_argument("--no-text", action="store_true", help="also convert with no calibration and synthetic calibration")
    args = ap.parse_args()
    print(f"{time.strftime('%Y-%m-%d %H:%M')} UTC, load average {os.getloadavg()[0]:.1f}")
    print("| model, format | method | quality (report) | conversion |\n|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="pyrt-gptq-") as tmp:
        for name in args.only or list(MODELS):
            folder, pattern, dtype = MODELS[name]
            src = Path(args.models) / folder
            if pattern is not None:
                found = sorted(src.glob(pattern))
                if not found:
                    print(f"| {name} | absent ({src}) | | |")
                    continue
                src = found[0]
            if not src.exists():
                print(f"| {name} | absent ({src}) | | |")
                continue
            runs = [("search", "default"), ("gptq", "default")]
            if args.no_text:
                runs += [("search", None), ("gptq", "synthetic")]
            for method, calibration in runs:
                start, cpu = time.perf_counter(), time.process_time()
                report = convert_checkpoint(src, Path(tmp) / "m.pyrt", dtype=dtype, block=32, quant_method=method,
                                            calibration=calibration, accuracy=True)
                wall, cpu = time.perf_counter() - start, time.process_time() - cpu
                gptq = report["calibration"].get("gptq", "")
                label = {"default": "", None: ", no calibration", "synthetic": ", synthetic calibration"}[calibration]
                print(f"| {src.name}, {dtype}/32 | {method}{label}{f' ({gptq})' if gptq else ''} | "
                      f"{_quality(report['accuracy']['metrics'])} | {wall:.1f} s wall, {cpu:.1f} s CPU "
                      f"(load average {os.getloadavg()[0]:.1f}) |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
