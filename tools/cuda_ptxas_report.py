#!/usr/bin/env python3
"""Turn an nvcc `-Xptxas -v` build log into the markdown table of docs/cuda.md: registers, spills,
stack and shared memory per kernel and architecture.

    cmake -S . -B build/cuda-ptxas -G Ninja -DPYRT_CUDA=ON -DPYRT_CUDA_PTXAS_VERBOSE=ON \\
          "-DCMAKE_CUDA_ARCHITECTURES=80-real;87-real;90-real" ...
    cmake --build build/cuda-ptxas --target pyrt_cuda -- -v > ptxas.log 2>&1
    python tools/cuda_ptxas_report.py ptxas.log
"""
from __future__ import annotations

import re
import shutil
import subprocess
import sys

ENTRY = re.compile(r"Compiling entry function '(\S+)' for '(sm_\d+)'")
SPILL = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
USED = re.compile(r"Used (\d+) registers.*?(?:(\d+) bytes smem)?(?:,|$)")


def demangle(names: list[str]) -> dict[str, str]:
    if not shutil.which("c++filt"):
        return {n: n for n in names}
    out = subprocess.run(["c++filt"], input="\n".join(names), capture_output=True, text=True,
                         check=True).stdout.splitlines()
    kinds = ["f16", "q8", "q4", "q4a"]  # pyrt::gpu::WeightKind values, in order
    readable = {}
    for mangled, full in zip(names, out):
        # pyrt::gpu::(anonymous namespace)::gemv_kernel<(pyrt::gpu::WeightKind)2, 16>(...) -> gemv_kernel<q4, 16>
        m = re.search(r"(\w+_kernel)<(.*?)>\(", full)
        if not m:
            readable[mangled] = full
            continue
        args = re.sub(r"\(pyrt::gpu::WeightKind\)(\d)", lambda k: kinds[int(k.group(1))], m.group(2))
        readable[mangled] = f"{m.group(1)}<{args}>"
    return readable


def main(path: str) -> int:
    rows: dict[tuple[str, str], dict] = {}
    current = None
    with open(path, errors="replace") as f:
        lines = f.readlines()
    for line in lines:
        if m := ENTRY.search(line):
            current = (m.group(1), m.group(2))
            rows[current] = {"stack": 0, "spill_st": 0, "spill_ld": 0, "regs": None, "smem": 0}
        elif current and (m := SPILL.search(line)):
            rows[current].update(stack=int(m.group(1)), spill_st=int(m.group(2)), spill_ld=int(m.group(3)))
        elif current and "Used" in line and "registers" in line:
            rows[current]["regs"] = int(re.search(r"Used (\d+) registers", line).group(1))
            smem = re.search(r"(\d+) bytes smem", line)
            rows[current]["smem"] = int(smem.group(1)) if smem else 0
            current = None
    names = demangle(sorted({k[0] for k in rows}))
    archs = sorted({k[1] for k in rows})
    print("| kernel | " + " | ".join(f"{a} regs / spill st+ld / stack" for a in archs) + " | smem |")
    print("|---|" + "---|" * len(archs) + "---|")
    def natural(n: str):  # gemv_kernel<q4, 2> before gemv_kernel<q4, 16>
        return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", names[n])]

    for name in sorted(names, key=natural):
        cells = []
        smem = 0
        for a in archs:
            r = rows.get((name, a))
            if r is None:
                cells.append("-")
                continue
            smem = r["smem"]
            cells.append(f"{r['regs']} / {r['spill_st']}+{r['spill_ld']} B / {r['stack']} B")
        print(f"| `{names[name]}` | " + " | ".join(cells) + f" | {smem} B |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "/dev/stdin"))
