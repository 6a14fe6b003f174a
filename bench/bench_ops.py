#!/usr/bin/env python3
"""The matmul benchmark: pyrt's weight formats against numpy FP32 and ONNX Runtime, in one run.

For each weight shape [N, K] and activation rows M it reports ms per call, weight GB/s (weight bytes
/ time) and GFLOP/s of pyrt f32/f16/bf16/q8/q4/q4a, numpy ``x @ w.T`` (FP32), ORT MatMul (FP32) and
ORT MatMulNBits (4- and 8-bit, accuracy_level 0 = FP32 activations, 4 = int8 activations), each
with its weights cache-resident ("repeat") and, for small M, streamed from DRAM ("ring"). It
measures the DRAM and cache read bandwidth and the SGEMM rate of the machine in the same run and
reports every case against them, with speedups over the peers. Outputs are checked against float64
numpy before anything is timed. See docs/benchmarks.md.

    python bench/bench_ops.py                      # the full run (about 3-5 minutes on 2 cores)
    python bench/bench_ops.py --quick              # smoke run: one shape, M=1 and 8
    python bench/bench_ops.py --isa avx2,avx512    # compare pyrt's kernel sets in one run
    python bench/bench_ops.py --output run.md --json run.json

onnxruntime and onnx are optional (`pip install onnxruntime onnx`); without them the ORT columns are
skipped with a note. threadpoolctl is used to pin numpy's BLAS threads when installed.
"""
from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
DEFAULT_SHAPES = "4096x4096,11008x4096"
DEFAULT_FORMATS = ("f32", "f16", "bf16", "q8", "q4", "q4a")
ALL_FORMATS = DEFAULT_FORMATS + ("q4n", "q5")  # on request: --formats ...,q4n,q5
BUSY_LOAD = 0.5  # 1-minute load average above which other work disturbs a 2-thread benchmark


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="smoke run (~30 s): shape 4096x4096, M=1,8, short timings, small DRAM buffer")
    p.add_argument("--shapes", help=f"weight shapes NxK, comma-separated (default {DEFAULT_SHAPES})")
    p.add_argument("--m", help="activation rows, comma-separated (default 1,8,128; quick 1,8)")
    p.add_argument("--ring-m", help="M values also run memory-resident (default 1,8; quick 1)")
    p.add_argument("--formats", default=",".join(DEFAULT_FORMATS),
                   help=f"pyrt formats to run (of {','.join(ALL_FORMATS)})")
    p.add_argument("--block", type=int, default=32, choices=(32, 64, 128))
    p.add_argument("--isa", help="pyrt kernel set(s) to force: avx512, avx2, scalar, a comma list, "
                                 "or 'all' (default: pyrt's automatic choice)")
    p.add_argument("--int8", default="q8,q4,q4a",
                   help="q-formats also run with pyrt's opt-in int8 activations (subjects 'pyrt q4 i8', "
                        "docs/int8.md), next to the ORT acc4 peers; '' for none")
    p.add_argument("--repacked", default="",
                   help="formats also run from the load-time repacked copy (subjects 'pyrt q4 rp': "
                        "Tensor.repacked(), what LanguageModel decodes from; q4,q4a,q4n at blocks 32/64, q4,q4a at 128 "
                        "on AVX-512, elsewhere the same as the file layout), e.g. q4,q4a")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--no-ort", action="store_true", help="skip ONNX Runtime even if installed")
    p.add_argument("--budget", type=float, help="seconds of timed samples per case (default 0.4; quick 0.05)")
    p.add_argument("--min-samples", type=int, help="fewest timed calls per case (default 5; quick 3)")
    p.add_argument("--dram-mib", type=int, help="buffer for the DRAM bandwidth (default 1024; quick 256)")
    p.add_argument("--cache-mib", type=int, default=16, help="buffer for the cache bandwidth")
    p.add_argument("--llc-kib", type=int,
                   help="last-level cache size that sizes the rings (default: read from sysfs; tests shrink it)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output", help="also write the markdown report to this file")
    p.add_argument("--json", nargs="?", const="-", metavar="FILE",
                   help="write the full results as JSON to FILE (no FILE or '-': stdout, after the table)")
    args = p.parse_args(argv)
    quick = args.quick
    args.shapes = args.shapes or ("4096x4096" if quick else DEFAULT_SHAPES)
    args.m = args.m or ("1,8" if quick else "1,8,128")
    args.ring_m = args.ring_m if args.ring_m is not None else ("1" if quick else "1,8")
    args.budget = args.budget if args.budget is not None else (0.05 if quick else 0.4)
    args.min_samples = args.min_samples or (3 if quick else 5)
    args.dram_mib = args.dram_mib or (256 if quick else 1024)
    if args.threads < 1:
        p.error("--threads must be >= 1")
    try:
        args.shape_list = [_parse_shape(s) for s in args.shapes.split(",") if s]
        args.m_list = _int_list(args.m)
        args.ring_m_list = [m for m in _int_list(args.ring_m) if m in args.m_list]
    except ValueError as exc:
        p.error(str(exc))
    bad_k = [f"{n}x{k}" for n, k in args.shape_list if k % args.block]
    if bad_k:
        p.error(f"K must be a multiple of the block size {args.block}: {', '.join(bad_k)}")
    args.format_list = [f for f in args.formats.split(",") if f]
    unknown = set(args.format_list) - set(ALL_FORMATS)
    if unknown:
        p.error(f"unknown formats {sorted(unknown)}; choose from {','.join(ALL_FORMATS)}")
    return args


def _parse_shape(text: str) -> tuple[int, int]:
    n, sep, k = text.lower().partition("x")
    if not sep or not n.isdigit() or not k.isdigit() or int(n) < 1 or int(k) < 1:
        raise ValueError(f"shape {text!r} is not NxK (e.g. 11008x4096)")
    return int(n), int(k)


def _int_list(text: str) -> list[int]:
    values = [int(v) for v in text.split(",") if v.strip()]
    if any(v < 1 for v in values):
        raise ValueError(f"values must be >= 1: {text!r}")
    return values


def pin_numpy_threads(threads: int):
    """Set OpenBLAS's thread count before numpy loads it; threadpoolctl enforces and reports it."""
    for var in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(threads)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return None
    return threadpool_limits(limits=threads, user_api="blas")


def blas_description(threads: int) -> tuple[str, str]:
    """(BLAS name and version, threads in use) as threadpoolctl reports them, else from the env."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "unknown (threadpoolctl not installed)", f"{threads} (OPENBLAS_NUM_THREADS)"
    blas = [i for i in threadpool_info() if i.get("user_api") == "blas"]
    if not blas:
        return "unknown", "unknown"
    b = blas[0]
    return (f"{b.get('internal_api')} {b.get('version')} ({b.get('architecture', '?')})",
            str(b.get("num_threads")))


def import_pyrt():
    """The pyrt of this checkout when it has a built core (tools/dev_build.sh), else the installed
    one; the report prints which."""
    import importlib.machinery

    built = any(any((ROOT / "pyrt").glob(f"_core*{suffix}")) for suffix in importlib.machinery.EXTENSION_SUFFIXES)
    if built and str(ROOT) not in sys.path:  # a compiled core, not just the _core.pyi stub
        sys.path.insert(0, str(ROOT))
    import pyrt
    return pyrt


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    limits = pin_numpy_threads(args.threads)  # noqa: F841 - keeps the limit for the whole run
    started = time.perf_counter()

    import numpy as np
    try:
        pyrt = import_pyrt()
        pyrt.set_num_threads(args.threads)
    except (ImportError, RuntimeError) as exc:  # no pyrt, or pyrt without its native core
        print(f"error: pyrt with its native core is needed ({exc}); build it with tools/dev_build.sh",
              file=sys.stderr)
        return 2
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    import bandwidth
    import bench_cases as bc
    import bench_report
    import machine_info
    import ort_peers

    default_isa = pyrt.get_cpu_isa()
    try:
        isas = select_isas(pyrt, args.isa)
    except pyrt.PyrtError as exc:
        print(f"error: --isa {args.isa}: {exc} (available: {', '.join(pyrt.available_cpu_isas())})",
              file=sys.stderr)
        return 2

    machine = machine_info.describe()  # load average and date at the start of the run
    use_ort = ort_peers.AVAILABLE and not args.no_ort
    ort_skip_reason = None if use_ort else (
        "ONNX Runtime columns skipped: "
        + ("--no-ort given." if args.no_ort else ort_peers.UNAVAILABLE_REASON + "."))
    notes = [n for n in (busy_note(machine), ort_skip_reason) if n]
    llc = (args.llc_kib << 10) if args.llc_kib else machine_info.last_level_cache_bytes()

    def measure(when: str):
        log(f"measuring bounds at the {when} (DRAM buffer {args.dram_mib} MiB, cache {args.cache_mib} MiB)...")
        b = bandwidth.measure_bounds(args.threads, args.dram_mib << 20, args.cache_mib << 20, args.quick)
        log(f"  DRAM {b.dram.gbps:.1f} GB/s, cache {b.cache.gbps:.1f} GB/s, SGEMM {b.sgemm_gflops:.0f} GFLOP/s")
        return b

    bounds_start = measure("start")
    subjects = build_subjects(bc, isas, args, use_ort)
    rng = np.random.default_rng(args.seed)
    results = []
    for n, k in args.shape_list:
        ws = bc.WeightSet(bc.Shape(n, k), args.m_list, args.block, rng)
        for subject in subjects:
            pyrt.set_cpu_isa(subject.isa or default_isa)
            for residency, ms in (("repeat", args.m_list), ("ring", args.ring_m_list)):
                if ms:
                    results += run_subject(bc, subject, ws, residency, ms, llc, args)
        del ws
    pyrt.set_cpu_isa(default_isa)
    bounds_end = measure("end")
    bounds = bounds_start.merged(bounds_end)

    pyrt_info = pyrt.build_info()
    pyrt_info["path"] = str(Path(pyrt.__file__).resolve().parent)
    blas, blas_threads = blas_description(args.threads)
    machine["load_average_end"] = machine_info.load_average()
    header = {
        "machine": machine,
        "pyrt": pyrt_info,
        "pyrt_isas": isas,
        "pyrt_prefixes": [f"pyrt[{i}]" if len(isas) > 1 else "pyrt" for i in isas],
        "numpy": {"version": np.__version__, "blas": blas, "threads": blas_threads},
        "onnxruntime": {"version": ort_peers.VERSION if use_ort else None, "reason": ort_skip_reason},
        "threads": args.threads,
        "settings": {"block": args.block, "budget_s": args.budget, "min_samples": args.min_samples,
                     "ring_factor": bc.RING_FACTOR, "cache_fit_fraction": bc.CACHE_FIT_FRACTION,
                     "llc_bytes": llc, "quick": args.quick},
        "command": "python bench/bench_ops.py " + " ".join(shlex.quote(a) for a in argv),
        "notes": notes,
        "runtime_s": time.perf_counter() - started,
    }
    run = {"header": header, "results": results,
           "bounds": {**bounds.to_dict(), "start": bounds_start.to_dict(), "end": bounds_end.to_dict()}}
    write_outputs(bench_report, run, args)
    return 0 if all(r.get("status") == "ok" for r in results) else 1


def select_isas(pyrt, spec: str | None) -> list[str]:
    """pyrt kernel sets to run: the default, 'all', or a comma list (each must be available)."""
    default = pyrt.get_cpu_isa()
    if not spec:
        return [default]
    isas = pyrt.available_cpu_isas() if spec == "all" else list(dict.fromkeys(i for i in spec.split(",") if i))
    try:
        for isa in isas:
            pyrt.set_cpu_isa(isa)  # raises UnsupportedError for an unknown or unavailable set
    finally:
        pyrt.set_cpu_isa(default)
    return isas


def busy_note(machine: dict) -> str | None:
    load = machine["load_average"]
    if not load or load[0] <= BUSY_LOAD:
        return None
    return (f"The machine was busy when this run started (1-minute load average {load[0]:.2f}): "
            "threads of other processes preempt the benchmark's, which shows as multi-ms outliers "
            "and a large spread. Rerun on an idle machine before quoting numbers.")


def build_subjects(bc, isas: list[str], args, use_ort: bool) -> list:
    """The columns, in the order they run: the FP32 peers, pyrt's formats, ORT's quantized ops."""
    subjects = [bc.numpy_subject()]
    if use_ort:
        subjects.append(bc.ort_f32_subject(args.threads))
    for isa in isas:
        subjects += [bc.pyrt_subject(f, isa, len(isas) > 1) for f in args.format_list]
        subjects += [bc.pyrt_subject(f, isa, len(isas) > 1, activations="int8")
                     for f in args.format_list if f in args.int8.split(",")]
        subjects += [bc.pyrt_subject(f, isa, len(isas) > 1, repacked=True)
                     for f in args.format_list if f in args.repacked.split(",")]
    if use_ort:
        subjects += [bc.ort_nbits_subject(bits, acc, args.threads) for bits in (4, 8) for acc in (0, 4)]
    return subjects


def write_outputs(bench_report, run: dict, args) -> None:
    markdown, ratios = bench_report.render_markdown(run)
    print(markdown)
    if args.output:
        Path(args.output).write_text(markdown)
    if args.json:
        text = bench_report.render_json(run, ratios)
        if args.json == "-":
            print(text)
        else:
            Path(args.json).write_text(text + "\n")


def run_subject(bc, subject, ws, residency: str, ms: list[int], llc: int, args) -> list[dict]:
    """Build one subject's weights for one residency, then verify and time every M."""
    if residency == "repeat":
        shifts = [0]
    else:
        copies = bc.ring_copies(subject.weight_bytes(ws), llc)
        shifts = bc.ring_shifts(ws.shape.n, copies)
    instance = subject.build(ws, shifts)
    records = []
    for m in ms:
        time.sleep(0.02)  # let the previous peer's spinning worker threads go idle
        record = bc.run_case(subject, instance, ws, m, residency, args.budget, args.min_samples)
        record["bound"] = bc.bound_kind(residency, instance.weight_bytes, llc)
        records.append(record)
        if record["status"] == "ok":
            log(f"  {ws.shape.label} M={m:<4d} {residency:6s} {subject.label:22s} "
                f"{record['ms']:9.3f} ms  {record['weight_gbps']:7.1f} GB/s  x{instance.copies}")
        else:
            log(f"  {ws.shape.label} M={m:<4d} {residency:6s} {subject.label:22s} "
                f"WRONG RESULT (relative error {record['check_error']:.3g})")
    del instance
    return records


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
