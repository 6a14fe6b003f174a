"""Loading a GGUF in place (issue 17): wall time and peak RSS of each way to open the fetched models,
each in a fresh subprocess (so the peak is that load's own), median of --rounds.

  smollm2 gguf in place   pyrt.LanguageModel("SmolLM2...Q4_1.gguf")   (GGUF types kept, zero copy)
  smollm2 gguf requant    the pre-issue-17 path: read_gguf + quantize_weights(q4a/32, q8 embedding)
  smollm2 .pyrt           pyrt.LanguageModel on the .pyrt `pyrt convert` writes from the same GGUF
  gemma3 / qwen2.5 gguf   pyrt.gguf_weights.load_gguf_tensors (their decoder families are another
                          slice's); also the bytes mapped in place and the converted tensors' errors

Run: PYRT_MODELS=... python bench/bench_gguf_load.py [--rounds 3]
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine_info import cpu_model  # noqa: E402

LOADERS = {
    "lm": "import pyrt; m = pyrt.LanguageModel(PATH, context_length=256)",
    "requant": ("import pyrt; from pyrt.convert.readers.gguf_file import read_gguf, quantize_weights\n"
                "a, md = read_gguf(PATH); m = pyrt.LanguageModel.from_parts(quantize_weights(a, 'q4a', 32, 'q8'), md, md,"
                " context_length=256)"),
    "tensors": "from pyrt.gguf_weights import load_gguf_tensors; t, kv, rep = load_gguf_tensors(PATH, measure=False)",
}
CHILD = """
import json, resource, sys, time
PATH = sys.argv[1]
t0 = time.perf_counter()
{body}
seconds = time.perf_counter() - t0
print(json.dumps({{"seconds": seconds, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""


def measure(kind: str, path: Path, rounds: int) -> dict:
    runs = []
    for _ in range(rounds):
        out = subprocess.run([sys.executable, "-c", CHILD.format(body=LOADERS[kind]), str(path)],
                             capture_output=True, text=True, check=True)
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    return {"seconds": statistics.median(r["seconds"] for r in runs),
            "peak_mb": statistics.median(r["peak_mb"] for r in runs)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    from pyrt.cli.models_dir import models_dir
    from pyrt.convert.pipeline import convert_checkpoint
    from pyrt.gguf_weights import load_gguf_tensors

    root = models_dir()
    smol = root / "smollm2" / "SmolLM2-135M-Instruct.Q4_1.gguf"
    print(f"machine: {cpu_model()}; busy shared machine (other jobs running), figures are noisy")
    rows = []
    if smol.is_file():
        with tempfile.TemporaryDirectory() as tmp:
            converted = Path(tmp) / "smollm2.pyrt"
            convert_checkpoint(smol, converted, quiet=True, accuracy=False)
            rows.append(("smollm2 gguf in place", measure("lm", smol, args.rounds)))
            rows.append(("smollm2 gguf requantized (before)", measure("requant", smol, args.rounds)))
            rows.append(("smollm2 .pyrt", measure("lm", converted, args.rounds)))
    for label, rel in (("gemma3-270m gguf tensors", "gemma3-270m/gemma-3-270m-q4_k_m.gguf"),
                       ("qwen2.5-coder-0.5b gguf tensors", "qwen2.5-coder-0.5b/qwen2.5-coder-0.5b-instruct.gguf"),
                       ("smollm2 gguf tensors", "smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")):
        path = root / rel
        if not path.is_file():
            continue
        row = measure("tensors", path, args.rounds)
        _, _, report = load_gguf_tensors(path, measure=False)
        report.measure()
        errors = {}
        for t in report.tensors:
            if t.how != "mapped":
                errors.setdefault(f"{t.gguf_type}->{t.dtype}/{t.block}", []).append(t.rel_rms)
        row.update(mb=report.nbytes / 1e6, gguf_mb=report.gguf_bytes / 1e6, mapped_mb=report.mapped_bytes / 1e6,
                   errors={k: (min(v), statistics.median(v), max(v)) for k, v in errors.items()})
        rows.append((label, row))
    for label, row in rows:
        extra = ""
        if "mb" in row:
            extra = (f"  {row['mb']:.1f} MB ({row['mb'] / row['gguf_mb']:.3f}x the GGUF's tensors), "
                     f"{row['mapped_mb']:.1f} MB mapped")
            for k, (lo, med, hi) in row["errors"].items():
                extra += f"\n      {k}: relative RMS error min {lo:.2e} median {med:.2e} max {hi:.2e}"
        print(f"{label:36s} {row['seconds']:6.2f} s  peak RSS {row['peak_mb']:6.0f} MB{extra}")


if __name__ == "__main__":
    main()
