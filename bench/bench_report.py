"""Markdown and JSON output of bench/bench_ops.py: the machine and software block, the measured
bounds, one table per weight shape, and the ratios against peers measured in the same run.

Input is the run dict built by bench_ops (``header``, ``bounds``, ``results``); nothing here
measures anything, so the layout can change without touching the benchmark.
"""
from __future__ import annotations

import json
import math

import machine_info

RESIDENCY_TEXT = {"repeat": "repeat", "ring": "ring (DRAM)"}
COMPUTE_BOUND_M = 64  # from here on a matmul reuses each weight enough to be limited by arithmetic


def _fmt(value: float | None, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.{digits}g}"


def _ratio(num: float | None, den: float | None) -> str:
    if not num or not den:
        return "n/a"
    return f"{num / den:.2f}x"


def _bound_gbps(record: dict, bounds: dict) -> tuple[str, float]:
    kind = record["bound"]
    return kind, bounds[kind]["gbps"]


def _lookup(results: list[dict]) -> dict:
    return {(r["shape"], r["m"], r["residency"], r["subject"]): r for r in results}


def _ok(record: dict | None) -> dict | None:
    return record if record and record.get("status") == "ok" else None


def machine_block(header: dict, bounds: dict) -> list[str]:
    info = header["machine"]
    lines = ["**Machine**", ""] + machine_info.markdown_lines(info) + ["", "**Software**", ""]
    p = header["pyrt"]
    lines.append(
        f"- pyrt {p.get('version')} (core {p.get('core_version')}, {p.get('compiler')}, "
        f"OpenMP {'on' if p.get('openmp') else 'off'}) from `{p.get('path')}`; "
        f"kernels in use: **{', '.join(header['pyrt_isas'])}**; available: "
        f"{', '.join(p.get('cpu_isas_available') or [])}; CPU features seen: "
        f"{' '.join(p.get('cpu_features') or [])}; threads: {header['threads']}")
    n = header["numpy"]
    lines.append(f"- numpy {n['version']}, BLAS {n['blas']}, threads: {n['threads']}")
    o = header["onnxruntime"]
    if o.get("version"):
        lines.append(f"- onnxruntime {o['version']} (CPUExecutionProvider, intra-op threads "
                     f"{header['threads']}, inter-op 1, sequential)")
    else:
        lines.append(f"- onnxruntime: **skipped**, {o.get('reason')}")
    dram, cache = bounds["dram"], bounds["cache"]
    lines += [
        "", ("**Bounds measured in this run** (at its start and end, best of several passes each; "
        "the bound is the fastest method)"), "",
        (f"- DRAM read: **{dram['gbps']:.1f} GB/s** over {dram['buffer_bytes'] / 2**20:.0f} MiB "
        f"({_methods(dram)}, {dram['threads']} threads{_start_end(bounds, 'dram')})"),
        (f"- Cache read: **{cache['gbps']:.1f} GB/s** over {cache['buffer_bytes'] / 2**20:.0f} MiB "
        f"({_methods(cache)}, {cache['threads']} threads{_start_end(bounds, 'cache')})"),
        f"- FP32 SGEMM (numpy/OpenBLAS): **{bounds['sgemm_gflops']:.0f} GFLOP/s**",
    ]
    return lines


def _start_end(bounds: dict, level: str) -> str:
    if "start" not in bounds:
        return ""
    return f"; start {bounds['start'][level]['gbps']:.1f}, end {bounds['end'][level]['gbps']:.1f}"


def _methods(bw: dict) -> str:
    return ", ".join(f"{m} {v:.1f}" for m, v in bw["by_method"].items())


def method_block(header: dict) -> list[str]:
    s = header["settings"]
    return [
        "", "**Method**", "",
        (f"- Median of timed single calls after warm-up; about {s['budget_s']} s of samples per case, "
        f"at least {s['min_samples']} samples. Activations FP32, block {s['block']}, random normal data."),
        ("- *repeat*: one weight matrix, repeated calls (cache-resident when it fits in L3). "
        f"*ring (DRAM)*: distinct copies of the weights totalling > {s['ring_factor']:g}x L3, each "
        "call uses the next, so weights stream from DRAM. ORT runs a ring as one session whose graph "
        "has one node per copy (one Run per pass, time divided by the copies)."),
        ("- weight GB/s = bytes of the weights as that implementation stores them (ORT: B + float32 "
        "scales as given to the op) / median time. % of bound: against the cache bound for a "
        f"*repeat* matrix up to {s['cache_fit_fraction']:g}x L3, else the DRAM bound."),
        "- spread = interquartile range of the timings / median (noise from other processes shows here).",
        "- x numpy = numpy time / this time for the same shape, M and residency (> 1: faster than numpy).",
        ("- Every output was checked against float64 numpy on the same (dequantized) weights before "
        "timing: relative L2 error <= 1e-4 (ORT accuracy_level 4, int8 activations: <= 3e-2)."),
        f"- Command: `{header['command']}`; total runtime {header.get('runtime_s', 0):.0f} s.",
    ]


def shape_table(shape: str, results: list[dict], bounds: dict, header: dict) -> list[str]:
    order = {name: i for i, name in enumerate(dict.fromkeys(r["subject"] for r in results))}
    # Grouped by M and residency so that all implementations of one case sit together.
    rows = sorted((r for r in results if r["shape"] == shape),
                  key=lambda r: (r["m"], r["residency"] != "repeat", order[r["subject"]]))
    n, k = rows[0]["n"], rows[0]["k"]
    dram = bounds["dram"]["gbps"]
    info = header["machine"]
    lines = [
        "", f"#### N={n}, K={k}", "",
        (f"Machine: {info['cpu_model']}, {info['cores_usable']} cores, "
        f"{machine_info.cache_summary(info['caches'])}; pyrt kernels {', '.join(header['pyrt_isas'])}; "
        f"{header['threads']} threads; DRAM {dram:.1f} GB/s, cache {bounds['cache']['gbps']:.1f} GB/s."),
        "",
        "| M | weights | implementation | weight MiB | ms | spread | weight GB/s | % of bound | GFLOP/s | x numpy |",
        "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    table = _lookup(results)
    for r in rows:
        mib = r["weight_bytes"] / 2**20
        residency = RESIDENCY_TEXT[r["residency"]]
        if r.get("status") != "ok":
            lines.append(f"| {r['m']} | {residency} | {r['subject']} | {mib:.1f} | "
                         f"**{r.get('status')}** (error {r.get('check_error', float('nan')):.2g}) | | | | | |")
            continue
        kind, bound = _bound_gbps(r, bounds)
        numpy_rec = _ok(table.get((r["shape"], r["m"], r["residency"], "numpy f32")))
        vs_numpy = _ratio(numpy_rec["ms"], r["ms"]) if numpy_rec else "n/a"
        lines.append(
            f"| {r['m']} | {residency} | {r['subject']} | {mib:.1f} | {_fmt(r['ms'])} | "
            f"{100 * (r['ms_p75'] - r['ms_p25']) / r['ms']:.0f}% | "
            f"{_fmt(r['weight_gbps'])} | {100 * r['weight_gbps'] / bound:.0f}% {kind} | "
            f"{_fmt(r['gflops'])} | {vs_numpy} |")
    return lines


def ratio_columns(pyrt_prefixes: list[str]) -> list[tuple[str, str, str]]:
    """(column title, pyrt subject, peer subject); speedup = peer time / pyrt time."""
    cols = []
    for p in pyrt_prefixes:
        tag = f"{p} " if len(pyrt_prefixes) > 1 else ""
        cols += [
            (f"{tag}q4 vs ORT 4-bit acc0", f"{p} q4", "ORT 4-bit acc0"),
            (f"{tag}q4 vs ORT 4-bit acc4", f"{p} q4", "ORT 4-bit acc4"),
            (f"{tag}q4 rp vs ORT 4-bit acc0", f"{p} q4 rp", "ORT 4-bit acc0"),
            (f"{tag}q8 vs ORT 8-bit acc0", f"{p} q8", "ORT 8-bit acc0"),
            (f"{tag}q8 vs ORT 8-bit acc4", f"{p} q8", "ORT 8-bit acc4"),
            (f"{tag}f32 vs numpy f32", f"{p} f32", "numpy f32"),
            (f"{tag}f16 vs numpy f32", f"{p} f16", "numpy f32"),
            (f"{tag}q4 vs numpy f32", f"{p} q4", "numpy f32"),
        ]
    return cols


def ratio_table(results: list[dict], pyrt_prefixes: list[str]) -> tuple[list[str], list[dict]]:
    table = _lookup(results)
    present = {r["subject"] for r in results if _ok(r)}
    cols = [c for c in ratio_columns(pyrt_prefixes) if c[1] in present and c[2] in present]
    keys = sorted({(r["n"], r["k"], r["m"], r["residency"]) for r in results},
                  key=lambda t: (t[0], t[1], t[3] != "repeat", t[2]))
    if not cols:
        return [], []
    lines = [
        "", "#### Speedup of pyrt over peers in the same run (peer ms / pyrt ms; > 1: pyrt faster)", "",
        "| N x K | M | weights | " + " | ".join(c[0] for c in cols) + " |",
        "|---|---:|---|" + "---:|" * len(cols),
    ]
    records = []
    for n, k, m, residency in keys:
        shape = f"{n}x{k}"
        cells = []
        for title, mine, peer in cols:
            a = _ok(table.get((shape, m, residency, mine)))
            b = _ok(table.get((shape, m, residency, peer)))
            value = b["ms"] / a["ms"] if a and b else None
            cells.append(f"{value:.2f}x" if value else "n/a")
            records.append({"shape": shape, "m": m, "residency": residency, "ratio": title,
                            "pyrt": mine, "peer": peer, "speedup": value})
        lines.append(f"| {shape} | {m} | {RESIDENCY_TEXT[residency]} | " + " | ".join(cells) + " |")
    return lines, records


def throughput_table(results: list[dict], bounds: dict, m: int) -> list[str]:
    """GFLOP/s at the largest M (compute-bound), against numpy and the measured SGEMM rate."""
    rows = [r for r in results if r["m"] == m and r["residency"] == "repeat" and _ok(r)]
    if not rows:
        return []
    table = _lookup(results)
    lines = [
        "", f"#### Throughput at M={m} (compute-bound; FP32 SGEMM rate {bounds['sgemm_gflops']:.0f} GFLOP/s)",
        "", "Int8-activation paths (ORT acc4) use integer dot products and can exceed the FP32 SGEMM rate.", "",
        "| N x K | implementation | GFLOP/s | x numpy | % of SGEMM |", "|---|---|---:|---:|---:|",
    ]
    for r in rows:
        numpy_rec = _ok(table.get((r["shape"], m, "repeat", "numpy f32")))
        lines.append(f"| {r['shape']} | {r['subject']} | {_fmt(r['gflops'])} | "
                     f"{_ratio(r['gflops'], numpy_rec['gflops']) if numpy_rec else 'n/a'} | "
                     f"{100 * r['gflops'] / bounds['sgemm_gflops']:.0f}% |")
    return lines


def verification_line(results: list[dict]) -> list[str]:
    checked = [r for r in results if "check_error" in r]
    wrong = [r for r in checked if r.get("status") != "ok"]
    worst: dict[str, float] = {}
    for r in checked:
        key = r["peer"] + (" acc4" if r["subject"].endswith("acc4") else "")
        worst[key] = max(worst.get(key, 0.0), r["check_error"])
    text = ", ".join(f"{k} {v:.1e}" for k, v in sorted(worst.items()))
    if wrong:
        names = sorted({f"{r['subject']} {r['shape']} M={r['m']}" for r in wrong})
        return ["", (f"**VERIFICATION FAILED** for {len(wrong)} case(s), not timed: {'; '.join(names)}. "
                    f"Worst relative errors: {text}.")]
    return ["", (f"All {len(checked)} cases matched the float64 reference before timing "
                f"(worst relative L2 error: {text}).")]


def render_markdown(run: dict) -> tuple[str, list[dict]]:
    """The whole report; also returns the ratio records for the JSON output."""
    header, bounds, results = run["header"], run["bounds"], run["results"]
    lines = [f"### Matmul benchmark run, {header['machine']['date_utc']}", ""]
    lines += machine_block(header, bounds)
    lines += method_block(header)
    for note in header.get("notes", []):
        lines += ["", f"> {note}"]
    lines += verification_line(results)
    for shape in dict.fromkeys(r["shape"] for r in results):
        lines += shape_table(shape, results, bounds, header)
    ratio_lines, ratio_records = ratio_table(results, header["pyrt_prefixes"])
    lines += ratio_lines
    if results and max(r["m"] for r in results) >= COMPUTE_BOUND_M:
        lines += throughput_table(results, bounds, max(r["m"] for r in results))
    return "\n".join(lines) + "\n", ratio_records


def render_json(run: dict, ratios: list[dict]) -> str:
    return json.dumps({**run, "ratios": ratios}, indent=1, default=str)
