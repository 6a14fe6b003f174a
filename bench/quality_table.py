"""The measured table of docs/quantization.md: per real model, each uniform format and mixed plans
at a few budgets, converted from the source, loaded and run (pyrt.advisor), plus conversion times.

    PYRT_MODELS=/path/to/models python bench/quality_table.py [--only minilm|smollm2] [--json out.json]

Quality is against the source weights on pyrt's own evaluation texts (never the calibration ones);
speed and load time are of this machine at this moment (see the machine block printed first)."""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine_info import describe, markdown_lines  # noqa: E402

from pyrt.advisor import Advisor, format_table  # noqa: E402
from pyrt.cli.models_dir import models_dir  # noqa: E402
from pyrt.convert import convert_checkpoint  # noqa: E402

MODELS = {
    "minilm": ("all-MiniLM-L6-v2", (5.0, 5.5, 6.0), "q4a"),
    "smollm2": ("smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", (4.75, 5.0, 6.0), "q4"),
}


def conversion_seconds(src: Path, dtype: str, budget: float, out: Path) -> dict[str, dict[str, float]]:
    """Wall and CPU seconds of `pyrt convert` plain (with the accuracy report) and with --target-bpw
    (CPU seconds bound the wall time an idle machine would take when this one is busy)."""
    times = {}
    for label, options in ((f"--dtype {dtype}", {"dtype": dtype, "accuracy": True}),
                           (f"--target-bpw {budget:g}", {"target_bpw": budget})):
        start, cpu = time.perf_counter(), time.process_time()
        convert_checkpoint(src, out, **options)
        times[label] = {"wall": time.perf_counter() - start, "cpu": time.process_time() - cpu}
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=list(MODELS))
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args()
    print("\n".join(markdown_lines(describe())))
    results = {}
    for key, (rel, budgets, dtype) in MODELS.items():
        if args.only and key != args.only:
            continue
        src = models_dir() / rel
        start = time.perf_counter()
        advisor = Advisor(src, progress=lambda m: print(m, file=sys.stderr, flush=True))
        trials = advisor.run(None, budgets)
        seconds = time.perf_counter() - start
        print(f"\n### {rel} ({advisor.model.kind}; advise ran {seconds:.0f} s)\n")
        print(format_table(trials, advisor.model.kind))
        times = conversion_seconds(src, dtype, budgets[-1], Path(f"/tmp/pyrt-bench-{key}.pyrt"))
        print("conversion: " + ", ".join(f"{k} {v['wall']:.1f} s wall ({v['cpu']:.1f} s CPU)" for k, v in times.items()))
        results[key] = {"trials": [vars(t) for t in trials], "conversion_seconds": times}
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
