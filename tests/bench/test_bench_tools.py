"""Smoke tests of the benchmark tools (bench/bench_ops.py and its helpers) on small sizes: the ORT
MatMulNBits packing, the ring sizing, verification that catches wrong outputs, the bounds, the
report, and one tiny end-to-end run. ORT parts skip when the optional bench extra is missing."""
from __future__ import annotations

import json
import math
import sys

import numpy as np
import pytest

import pyrt

from helpers import REPO_ROOT, run_python

BENCH = REPO_ROOT / "bench"
sys.path.insert(0, str(BENCH))

import bandwidth
import bench_cases as bc
import bench_ops
import bench_report
import machine_info
import ort_peers

needs_ort = pytest.mark.skipif(not ort_peers.AVAILABLE, reason="onnxruntime/onnx not installed")

PACKERS = {4: ("q4", ort_peers.pack_q4_for_matmul_nbits), 8: ("q8", ort_peers.pack_q8_for_matmul_nbits)}


def _reference(x: np.ndarray, weights: np.ndarray) -> np.ndarray:
    return x.astype(np.float64) @ np.asarray(weights, dtype=np.float64).T


# ---- ORT MatMulNBits packing -----------------------------------------------------------------

@pytest.mark.parametrize("bits", [4, 8])
def test_nbits_packing_decodes_to_pyrt_weights_exactly(rng, bits):
    fmt, pack = PACKERS[bits]
    n, k, block = 64, 64, 32
    t = pyrt.quantize(rng.standard_normal((n, k)).astype(np.float32), fmt, block)
    b, scales = pack(t.numpy(), n, k, block)
    assert b.shape == (n, k // block, block * bits // 8) and b.dtype == np.uint8
    assert scales.shape == (n, k // block) and scales.dtype == np.float32
    decoded = ort_peers.dequantize_matmul_nbits(b, scales, bits)
    np.testing.assert_array_equal(decoded, t.dequantize().astype(np.float64))
    bc.verify_nbits_packing(ort_peers.NBitsWeights(b, scales, bits, block), t)


def test_q4_packing_orders_nibbles_low_first(rng):
    """Element 2j in the low nibble of byte j, 2j+1 in the high one (not pyrt's half-block split)."""
    t = pyrt.quantize(rng.standard_normal((1, 32)).astype(np.float32), "q4", 32)
    b, scales = ort_peers.pack_q4_for_matmul_nbits(t.numpy(), 1, 32, 32)
    codes = np.rint(t.dequantize()[0] / scales[0, 0]).astype(int) + 8
    assert b[0, 0, 3] == codes[6] | (codes[7] << 4)
    assert b[0, 0, 15] == codes[30] | (codes[31] << 4)


def test_packing_rejects_wrong_byte_count(rng):
    t = pyrt.quantize(rng.standard_normal((4, 64)).astype(np.float32), "q4", 32)
    with pytest.raises(ValueError):
        ort_peers.pack_q4_for_matmul_nbits(t.numpy(), 5, 64, 32)


@needs_ort
@pytest.mark.parametrize("bits", [4, 8])
def test_ort_matmul_nbits_matches_numpy_on_64x64(rng, bits):
    fmt, pack = PACKERS[bits]
    n, k, block = 64, 64, 32
    t = pyrt.quantize(rng.standard_normal((n, k)).astype(np.float32), fmt, block)
    b, scales = pack(t.numpy(), n, k, block)
    x = rng.standard_normal((3, k)).astype(np.float32)
    ref = _reference(x, t.dequantize())
    weights = ort_peers.NBitsWeights(b, scales, bits, block)
    exact = ort_peers.OrtRunner(ort_peers.matmul_nbits_model([weights], 0), threads=2).run(x)[0]
    assert bc.relative_error(exact, ref) < 1e-5
    int8_acts = ort_peers.OrtRunner(ort_peers.matmul_nbits_model([weights], 4), threads=2).run(x)[0]
    assert bc.relative_error(int8_acts, ref) < bc.INT8_ACT_TOLERANCE


@needs_ort
def test_ort_check_catches_pyrt_nibble_order(rng):
    """Feeding pyrt's own q4 layout to MatMulNBits must fail the check: the check can fail."""
    n, k, block = 64, 64, 32
    t = pyrt.quantize(rng.standard_normal((n, k)).astype(np.float32), "q4", block)
    blocks = t.numpy().reshape(n, k // block, 2 + block // 2)
    _, scales = ort_peers.pack_q4_for_matmul_nbits(t.numpy(), n, k, block)
    wrong = ort_peers.NBitsWeights(np.ascontiguousarray(blocks[:, :, 2:]), scales, 4, block)
    x = rng.standard_normal((2, k)).astype(np.float32)
    y = ort_peers.OrtRunner(ort_peers.matmul_nbits_model([wrong], 0), threads=2).run(x)[0]
    assert bc.relative_error(y, _reference(x, t.dequantize())) > 0.1


@needs_ort
def test_ort_ring_model_has_one_output_per_copy(rng):
    w = rng.standard_normal((32, 64)).astype(np.float32)
    x = rng.standard_normal((2, 64)).astype(np.float32)
    runner = ort_peers.OrtRunner(ort_peers.matmul_f32_model([w, np.roll(w, 5, axis=0)]), threads=2)
    y0, y1 = runner.run(x)
    ref = _reference(x, w)
    assert bc.relative_error(y0, ref) < 1e-5
    assert bc.relative_error(y1, np.roll(ref, 5, axis=1)) < 1e-5


# ---- rings, verification, timing -------------------------------------------------------------

@pytest.mark.parametrize("weight_bytes", [1000, 9_437_184, 67_108_864, 180_355_072])
def test_ring_exceeds_twice_the_cache(weight_bytes):
    llc = 32 << 20
    copies = bc.ring_copies(weight_bytes, llc)
    assert copies >= 2
    assert copies * weight_bytes > bc.RING_FACTOR * llc
    assert (copies - 1) * weight_bytes <= bc.RING_FACTOR * llc or copies == 2
    shifts = bc.ring_shifts(max(4096, copies), copies)
    assert len(set(shifts)) == copies and shifts[0] == 0


def test_bound_kind_uses_cache_only_for_fitting_repeated_weights():
    llc = 32 << 20
    assert bc.bound_kind("repeat", 9 << 20, llc) == "cache"
    assert bc.bound_kind("repeat", 64 << 20, llc) == "dram"
    assert bc.bound_kind("ring", 9 << 20, llc) == "dram"


def test_relative_error_flags_nan():
    assert math.isinf(bc.relative_error(np.array([np.nan, 1.0]), np.array([1.0, 1.0])))


@pytest.mark.parametrize("fmt", ["f16", "q4", "q4a"])
def test_pyrt_ring_case_verifies_and_times(rng, fmt):
    ws = bc.WeightSet(bc.Shape(48, 64), [1, 5], 32, rng)
    subject = bc.pyrt_subject(fmt, None, label_isa=False)
    instance = subject.build(ws, bc.ring_shifts(48, 3))
    assert instance.copies == 3 and instance.weight_bytes == ws.tensor(fmt).nbytes
    for m in (1, 5):
        record = bc.run_case(subject, instance, ws, m, "ring", budget_s=0.002, min_samples=3)
        assert record["status"] == "ok", record
        assert record["check_error"] < 1e-5
        assert record["samples"] >= 3 and record["ms"] > 0
        assert record["gflops"] == pytest.approx(2 * m * 48 * 64 / (record["ms"] / 1e3) / 1e9)


def test_wrong_output_is_reported_not_timed(rng):
    ws = bc.WeightSet(bc.Shape(32, 64), [4], 32, rng)
    good = bc.numpy_subject()

    def build_transposed_rows(ws_, shifts):
        # A plausible bug: rows of W off by one. Same cost, wrong numbers.
        wrong = np.roll(ws_.base, 1, axis=0)
        return bc._cycling([lambda x: x @ wrong.T for _ in shifts], shifts, ws_.base.nbytes)

    bad = bc.Subject("numpy off-by-one", "numpy", "f32", bc.CHECK_TOLERANCE, build_transposed_rows,
                     good.weight_bytes)
    record = bc.run_case(bad, bad.build(ws, [0]), ws, 4, "repeat", budget_s=0.002, min_samples=3)
    assert record["status"] == "wrong result"
    assert record["check_error"] > 0.1
    assert "ms" not in record


def test_time_instance_warms_every_copy_and_takes_median():
    calls = []
    instance = bc.Instance([0, 1, 2, 3], lambda x: calls.append(x), lambda x: [], 1, 4, 100)
    timing = bc.time_instance(instance, 7, budget_s=0.0, min_samples=5)
    assert timing.warmup_steps >= 4
    assert len(timing.seconds_per_matmul) == 5
    assert len(calls) == timing.warmup_steps + 5
    assert min(timing.seconds_per_matmul) <= timing.median <= max(timing.seconds_per_matmul)


# ---- machine description and bounds ----------------------------------------------------------

@pytest.mark.parametrize("text,expected", [("32K", 32 << 10), ("1024K", 1 << 20), ("32M", 32 << 20),
                                           ("64 KiB", 64 << 10), ("4096", 4096)])
def test_parse_size(text, expected):
    assert machine_info.parse_size(text) == expected


def test_cpu_list_count():
    assert machine_info._count_cpu_list("0-3,8") == 5
    assert machine_info._count_cpu_list("0") == 1


def test_describe_has_the_header_fields():
    info = machine_info.describe()
    assert info["cores_usable"] >= 1
    assert machine_info.last_level_cache_bytes() > 0
    lines = "\n".join(machine_info.markdown_lines(info))
    assert "CPU:" in lines and "Caches:" in lines and "Load average" in lines


def test_read_bandwidth_small_buffer():
    result = bandwidth.read_bandwidth(1 << 20, threads=2, repeats=3)
    assert set(result.by_method) == {"openblas_sgemv", "sdot_per_thread"}
    assert all(0 < v < 1e5 for v in result.by_method.values())
    assert result.gbps == max(result.by_method.values())


def test_bounds_merge_keeps_the_best():
    a = bandwidth.Bounds(bandwidth.ReadBandwidth(1, 2, {"m": 10.0}), bandwidth.ReadBandwidth(1, 2, {"m": 90.0}), 100.0)
    b = bandwidth.Bounds(bandwidth.ReadBandwidth(1, 2, {"m": 12.0}), bandwidth.ReadBandwidth(1, 2, {"m": 80.0}), 50.0)
    merged = a.merged(b)
    assert (merged.dram.gbps, merged.cache.gbps, merged.sgemm_gflops) == (12.0, 90.0, 100.0)


# ---- report and command line -----------------------------------------------------------------

def test_ratio_is_peer_time_over_pyrt_time():
    def rec(subject, ms):
        return {"shape": "8x8", "n": 8, "k": 8, "m": 1, "residency": "repeat", "subject": subject,
                "status": "ok", "ms": ms}
    results = [rec("pyrt q4", 2.0), rec("ORT 4-bit acc0", 3.0), rec("numpy f32", 8.0)]
    lines, records = bench_report.ratio_table(results, ["pyrt"])
    by_title = {r["ratio"]: r["speedup"] for r in records}
    assert by_title["q4 vs ORT 4-bit acc0"] == pytest.approx(1.5)
    assert by_title["q4 vs numpy f32"] == pytest.approx(4.0)
    assert "q8 vs ORT 8-bit acc0" not in by_title  # no q8 results: no column of n/a
    assert "1.50x" in "\n".join(lines)


def test_bad_arguments_exit_with_usage_error():
    with pytest.raises(SystemExit):
        bench_ops.parse_args(["--shapes", "4096by4096"])
    with pytest.raises(SystemExit):
        bench_ops.parse_args(["--formats", "q3"])


def test_unknown_isa_is_an_error(capsys):
    assert bench_ops.main(["--isa", "sse9", "--shapes", "32x64"]) == 2
    assert "sse9" in capsys.readouterr().err


def test_tiny_end_to_end_run(tmp_path, capsys):
    out_md, out_json = tmp_path / "run.md", tmp_path / "run.json"
    previous_threads = pyrt.get_num_threads()
    try:
        code = bench_ops.main([
            "--shapes", "96x128", "--m", "1,3", "--ring-m", "1", "--budget", "0.002",
            "--min-samples", "3", "--dram-mib", "4", "--cache-mib", "1", "--llc-kib", "64",
            "--formats", ",".join(bench_ops.ALL_FORMATS), "--repacked", "q4",
            "--quick", "--output", str(out_md), "--json", str(out_json)])
    finally:
        pyrt.set_num_threads(previous_threads)
    assert code == 0
    run = json.loads(out_json.read_text())
    results = run["results"]
    assert all(r["status"] == "ok" for r in results)
    subjects = {r["subject"] for r in results}
    assert {f"pyrt {f}" for f in bench_ops.ALL_FORMATS} | {"numpy f32", "pyrt q4 rp"} <= subjects
    if ort_peers.AVAILABLE:
        assert {"ORT f32", "ORT 4-bit acc0", "ORT 4-bit acc4", "ORT 8-bit acc0", "ORT 8-bit acc4"} <= subjects
        q4 = [r for r in run["ratios"] if r["ratio"] == "q4 vs ORT 4-bit acc0"]
        assert q4 and all(r["speedup"] > 0 for r in q4)
    rings = [r for r in results if r["residency"] == "ring"]
    assert rings and all(r["copies"] * r["weight_bytes"] > 2 * (64 << 10) for r in rings)
    markdown = out_md.read_text()
    assert "**Machine**" in markdown and "#### N=96, K=128" in markdown
    assert markdown in capsys.readouterr().out


def test_runs_without_onnxruntime(tmp_path):
    """The bench extra is optional: with onnxruntime unimportable the run still completes and says
    that the ORT columns were skipped."""
    out_json = tmp_path / "run.json"
    script = (
        "import runpy, sys; sys.modules['onnxruntime'] = None; "
        f"sys.argv = ['bench_ops.py', '--shapes', '32x64', '--m', '2', '--ring-m', '', '--formats', 'q4', "
        f"'--budget', '0.001', '--min-samples', '2', '--dram-mib', '2', '--cache-mib', '1', '--quick', "
        f"'--json', {str(out_json)!r}]; "
        f"runpy.run_path({str(BENCH / 'bench_ops.py')!r}, run_name='__main__')"
    )
    proc = run_python("-c", script, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "ONNX Runtime columns skipped" in proc.stdout
    run = json.loads(out_json.read_text())
    assert {r["subject"] for r in run["results"]} == {"numpy f32", "pyrt q4", "pyrt q4 i8"}
    assert all(r["status"] == "ok" for r in run["results"])


def test_k_must_be_a_multiple_of_the_block():
    with pytest.raises(SystemExit):
        bench_ops.parse_args(["--shapes", "64x100"])


# ---- bench/bench_models.py: interleaved rounds -------------------------------------------------

def test_encoder_rounds_combine_to_medians_and_per_round_ratios():
    import bench_models

    def row(engine, fmt, b32, rss=100.0, act="exact"):
        r = {"engine": engine, "format": fmt, "load_s": 0.1, "sent_per_s_b1": b32 / 2, "sent_per_s_b32": b32,
             "peak_rss_mb": rss, "threads": 2, "source": "x"}
        if engine == "pyrt":
            r["activations"] = act
        return r

    rounds = [[row("pyrt", "f16", 300.0), row("torch", "f32", 200.0)],
              [row("pyrt", "f16", 330.0, rss=120.0), row("torch", "f32", 300.0)],
              [row("pyrt", "f16", 390.0), row("torch", "f32", 260.0)]]
    combined = {(r["engine"], r["format"]): r for r in bench_models.combine_rounds(rounds)}
    pyrt_row, torch_row = combined[("pyrt", "f16")], combined[("torch", "f32")]
    assert pyrt_row["sent_per_s_b32"] == 330.0 and torch_row["sent_per_s_b32"] == 260.0
    assert pyrt_row["sent_per_s_b1"] == 165.0 and pyrt_row["rounds"] == 3
    assert pyrt_row["peak_rss_mb"] == 120.0
    assert pyrt_row["per_round_b32"] == [1.5, 1.1, 1.5]
    assert "per_round_b32" not in torch_row


def test_encoder_batch1_bandwidth_columns(capsys):
    """Batch 1: weight MB per forward x sentences/s = GB/s, against the run's DRAM bound."""
    import bench_models

    rows = [{"engine": "pyrt", "format": "q8", "activations": "exact", "load_s": 0.1, "sent_per_s_b1": 400.0,
             "sent_per_s_b32": 700.0, "peak_rss_mb": 80.0, "threads": 2, "source": "x", "cpu_isa": "avx512",
             "weight_mb_per_forward": 22.5, "dram_gbps": 30.0, "gflop_per_sentence": 0.2},
            {"engine": "torch", "format": "f32", "load_s": 0.3, "sent_per_s_b1": 100.0, "sent_per_s_b32": 300.0,
             "peak_rss_mb": 500.0, "threads": 2, "source": "st", "dram_gbps": 30.0}]
    bench_models.print_results(rows, "all-MiniLM-L6-v2")
    out = capsys.readouterr().out.splitlines()
    pyrt_line = next(line for line in out if line.startswith("pyrt"))
    assert "22.5" in pyrt_line and " 9.0 " in pyrt_line and "30%" in pyrt_line  # 22.5 MB * 400/s = 9 GB/s
    torch_line = next(line for line in out if line.startswith("torch"))
    assert torch_line.split()[-1] != "30%"


# ---- bench/bench_busy_machine.py ---------------------------------------------------------------

def test_busy_machine_configurations_parse():
    import bench_busy_machine as bb

    assert bb.parse_config("2 threads=") == ("2 threads", {})
    assert bb.parse_config("spin0=PYRT_WAIT_SPIN_US=0,GOMP_SPINCOUNT=10") == (
        "spin0", {"PYRT_WAIT_SPIN_US": "0", "GOMP_SPINCOUNT": "10"})
    assert bb.summary([3.0, 1.0, 2.0]) == "2.0 (1.0-3.0)"
    assert bb.summary([]) == "timed out"
    assert bb.mean([1.0, 2.0, 2.0, 1.0]) == "1.50" and bb.mean([]) == "-"
    assert "PYRT_ADAPTIVE_THREADS=0" in " ".join(bb.DEFAULT_CONFIGS)  # the unadapted count is measured too
