"""The subjects of the matmul benchmark (pyrt formats, numpy FP32, ONNX Runtime), how each is built
as one matrix or as a ring of distinct matrices, how its output is verified, and how it is timed.

Used by bench/bench_ops.py (the command line); kept apart so tests can drive it on small sizes.

Cache-resident vs memory-resident: a "repeat" case calls one weight matrix over and over, so
whatever fits in the caches stays there. A "ring" case builds several copies of the weights at
distinct addresses whose total exceeds twice the last-level cache and uses the next one on every
call, so each call streams its weights from DRAM as a decoder layer does. The copies are the base
weights with their output rows rotated (a different shift per copy): distinct bytes, identical
cost, and the reference output is the base reference rotated the same way.
"""
from __future__ import annotations

import gc
import math
import statistics
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

import pyrt

import ort_peers  # bench/ sibling

RING_FACTOR = 2.0           # ring weights must total more than this many last-level caches
CACHE_FIT_FRACTION = 0.9    # a repeated matrix up to this fraction of L3 is judged cache-resident
CHECK_TOLERANCE = 1e-4      # relative L2 error for FP32-accumulating paths (observed ~1e-6)
INT8_ACT_TOLERANCE = 3e-2   # ORT accuracy_level 4 quantizes activations to int8 (observed ~5e-3)
SLOW_STEP_S = 0.1           # steps slower than this get only SLOW_MIN_SAMPLES timed calls
SLOW_MIN_SAMPLES = 3


@dataclass(frozen=True)
class Shape:
    n: int
    k: int

    @property
    def label(self) -> str:
        return f"{self.n}x{self.k}"


def check_rows(m: int) -> list[int]:
    """Output rows compared with the float64 reference: first, middle, last (covers tails)."""
    return sorted({0, m // 2, m - 1})


def ring_copies(weight_bytes: int, llc_bytes: int) -> int:
    """Distinct weight copies so that together they exceed RING_FACTOR x the last-level cache."""
    return max(2, int(RING_FACTOR * llc_bytes // max(1, weight_bytes)) + 1)


def ring_shifts(n: int, copies: int) -> list[int]:
    step = max(1, n // copies)
    return [(i * step) % n for i in range(copies)]


def relative_error(y: np.ndarray, ref: np.ndarray) -> float:
    """||y - ref|| / ||ref|| in float64; inf for NaN (an unwritten or broken output)."""
    y = np.asarray(y, dtype=np.float64)
    if not np.all(np.isfinite(y)):
        return math.inf
    return float(np.linalg.norm(y - ref) / max(np.linalg.norm(ref), 1e-300))


def reference_rows(x: np.ndarray, weights_f32: np.ndarray, chunk: int = 2048) -> np.ndarray:
    """float64 x @ W^T, converting W to float64 a chunk of rows at a time to bound memory."""
    x64 = x.astype(np.float64)
    out = np.empty((x.shape[0], weights_f32.shape[0]), dtype=np.float64)
    for r0 in range(0, weights_f32.shape[0], chunk):
        out[:, r0:r0 + chunk] = x64 @ weights_f32[r0:r0 + chunk].astype(np.float64).T
    return out


class WeightSet:
    """Random weights of one shape, their pyrt encodings and the float64 reference outputs.

    Everything is derived from one float32 matrix, so every subject multiplies the same numbers
    (up to its storage format) and pyrt q4/q8 and ORT 4/8-bit hold bit-identical weights.
    """

    def __init__(self, shape: Shape, ms: list[int], block: int, rng: np.random.Generator):
        self.shape = shape
        self.block = block
        self.base = rng.standard_normal((shape.n, shape.k), dtype=np.float32)
        self.x = {m: rng.standard_normal((m, shape.k), dtype=np.float32) for m in ms}
        self._tensors: dict[str, pyrt.Tensor] = {}
        self._refs: dict[str, dict[int, np.ndarray]] = {}
        self.derived: dict[str, object] = {}  # peers' encodings of these weights (ORT packing)

    def tensor(self, fmt: str) -> pyrt.Tensor:
        if fmt not in self._tensors:
            self._tensors[fmt] = pyrt.quantize(self.base, fmt, self.block)
        return self._tensors[fmt]

    def reference(self, fmt: str, m: int) -> np.ndarray:
        """float64 outputs of the check rows of x[m] with the weights as ``fmt`` stores them."""
        if fmt not in self._refs:
            dequantized = self.base if fmt == "f32" else self.tensor(fmt).dequantize()
            self._refs[fmt] = {mm: reference_rows(x[check_rows(mm)], dequantized)
                               for mm, x in self.x.items()}
        return self._refs[fmt][m]


class Instance:
    """Weights of one subject ready to run: ``copies`` matrices; ``step(x)`` is the timed call and
    performs ``matmuls_per_step`` products; ``steps_per_cycle`` steps touch every copy once;
    ``outputs(x)`` returns (row shift, y) for every copy."""

    def __init__(self, shifts: list[int], step: Callable, outputs: Callable, matmuls_per_step: int,
                 steps_per_cycle: int, weight_bytes: int):
        self.shifts = shifts
        self.step = step
        self.outputs = outputs
        self.matmuls_per_step = matmuls_per_step
        self.steps_per_cycle = steps_per_cycle
        self.weight_bytes = weight_bytes

    @property
    def copies(self) -> int:
        return len(self.shifts)


def _cycling(fns: list[Callable], shifts: list[int], weight_bytes: int) -> Instance:
    """An instance whose step calls the next of ``fns`` (one matrix per call)."""
    state = {"next": 0}
    count = len(fns)

    def step(x):
        i = state["next"]
        state["next"] = (i + 1) % count
        return fns[i](x)

    def outputs(x):
        return [(s, fn(x)) for s, fn in zip(shifts, fns)]

    return Instance(shifts, step, outputs, 1, count, weight_bytes)


@dataclass
class Subject:
    """One column of the benchmark: how to build its weights and how exact its output must be."""

    label: str            # "pyrt q4", "numpy f32", "ORT 4-bit acc4"
    peer: str             # "pyrt", "numpy", "onnxruntime"
    ref_format: str       # whose dequantized weights are the reference
    tolerance: float
    build: Callable[[WeightSet, list[int]], Instance]  # (weights, row shifts of the copies)
    weight_bytes: Callable[[WeightSet], int]           # bytes of one matrix in its storage
    isa: str | None = None
    weight_format: str = ""
    notes: list[str] = field(default_factory=list)


def pyrt_subject(fmt: str, isa: str | None, label_isa: bool, activations: str = "exact",
                 repacked: bool = False) -> Subject:
    """pyrt.matmul on ``fmt`` weights; ``activations="int8"`` is the opt-in int8-activation mode
    (docs/int8.md), labelled "i8" and checked with ORT acc4's int8 tolerance. ``repacked``: the
    tensors carry the load-time repacked copy (``Tensor.repacked()``, what LanguageModel decodes
    from), labelled "rp"; the bytes read are the file layout's, rearranged."""
    def build(ws: WeightSet, shifts: list[int]) -> Instance:
        base = ws.tensor(fmt)
        tensors = []
        for s in shifts:
            if s == 0:
                tensors.append(base)
                continue
            rows = np.roll(base.numpy().reshape(ws.shape.n, -1), s, axis=0)
            tensors.append(pyrt.Tensor(rows.reshape(-1), fmt, base.shape, base.block))
        if repacked:
            tensors = [t.repacked() for t in tensors]
        fns = [lambda x, t=t: pyrt.matmul(x, t, activations=activations) for t in tensors]
        return _cycling(fns, shifts, base.nbytes)

    prefix = f"pyrt[{isa}]" if label_isa else "pyrt"
    int8 = activations == "int8"
    return Subject(f"{prefix} {fmt}{' i8' if int8 else ''}{' rp' if repacked else ''}", "pyrt", fmt,
                   INT8_ACT_TOLERANCE if int8 else CHECK_TOLERANCE, build,
                   lambda ws: ws.tensor(fmt).nbytes, isa=isa, weight_format=fmt)


def numpy_subject() -> Subject:
    def build(ws: WeightSet, shifts: list[int]) -> Instance:
        mats = [ws.base if s == 0 else np.roll(ws.base, s, axis=0) for s in shifts]
        fns = [lambda x, w=w: x @ w.T for w in mats]
        return _cycling(fns, shifts, ws.base.nbytes)

    return Subject("numpy f32", "numpy", "f32", CHECK_TOLERANCE, build, lambda ws: ws.base.nbytes,
                   weight_format="f32")


def _ort_instance(model, shifts: list[int], weight_bytes: int, threads: int) -> Instance:
    """All copies as nodes of one session: one Run streams through every matrix (the way a real
    decoder graph runs), so a step performs len(shifts) matmuls."""
    runner = ort_peers.OrtRunner(model, threads)

    def outputs(x):
        return list(zip(shifts, runner.run(x)))

    return Instance(shifts, runner.run, outputs, len(shifts), 1, weight_bytes)


def ort_nbits_subject(bits: int, accuracy_level: int, threads: int) -> Subject:
    fmt = {4: "q4", 8: "q8"}[bits]
    pack = {4: ort_peers.pack_q4_for_matmul_nbits, 8: ort_peers.pack_q8_for_matmul_nbits}[bits]

    def packed(ws: WeightSet) -> ort_peers.NBitsWeights:
        key = f"matmul_nbits_{bits}"  # shared by the acc0 and acc4 subjects
        if key not in ws.derived:
            t = ws.tensor(fmt)
            b, scales = pack(t.numpy(), ws.shape.n, ws.shape.k, t.block)
            weights = ort_peers.NBitsWeights(b, scales, bits, t.block)
            verify_nbits_packing(weights, t)
            ws.derived[key] = weights
        return ws.derived[key]

    def build(ws: WeightSet, shifts: list[int]) -> Instance:
        weights = packed(ws)
        model = ort_peers.matmul_nbits_model([weights.rolled(s) if s else weights for s in shifts],
                                             accuracy_level)
        return _ort_instance(model, shifts, weights.nbytes, threads)

    tolerance = INT8_ACT_TOLERANCE if accuracy_level == 4 else CHECK_TOLERANCE
    return Subject(f"ORT {bits}-bit acc{accuracy_level}", "onnxruntime", fmt, tolerance, build,
                   lambda ws: packed(ws).nbytes, weight_format=f"MatMulNBits bits={bits}")


def verify_nbits_packing(weights: ort_peers.NBitsWeights, tensor: pyrt.Tensor, chunk: int = 1024) -> None:
    """The repacked bytes, decoded as MatMulNBits specifies, must equal pyrt's weights exactly."""
    n = tensor.shape[0]
    rows_bytes = tensor.numpy().reshape(n, -1)
    for r0 in range(0, n, chunk):
        r1 = min(n, r0 + chunk)
        mine = ort_peers.dequantize_matmul_nbits(weights.b[r0:r1], weights.scales[r0:r1], weights.bits)
        part = pyrt.Tensor(np.ascontiguousarray(rows_bytes[r0:r1]).reshape(-1), tensor.dtype,
                           (r1 - r0, tensor.shape[1]), tensor.block)
        if not np.array_equal(mine, part.dequantize().astype(np.float64)):
            raise AssertionError(f"MatMulNBits repacking of pyrt {tensor.dtype} differs in rows {r0}..{r1}")


def ort_f32_subject(threads: int) -> Subject:
    def build(ws: WeightSet, shifts: list[int]) -> Instance:
        model = ort_peers.matmul_f32_model([ws.base if s == 0 else np.roll(ws.base, s, axis=0) for s in shifts])
        return _ort_instance(model, shifts, ws.base.nbytes, threads)

    return Subject("ORT f32", "onnxruntime", "f32", CHECK_TOLERANCE, build, lambda ws: ws.base.nbytes,
                   weight_format="MatMul f32")


def verify(instance: Instance, subject: Subject, ws: WeightSet, m: int) -> float:
    """Worst relative error over every copy; outputs compared on check_rows(m) only."""
    ref = ws.reference(subject.ref_format, m)
    rows = check_rows(m)
    worst = 0.0
    for shift, y in instance.outputs(ws.x[m]):
        y = np.asarray(y)
        if y.shape != (m, ws.shape.n):
            return math.inf
        worst = max(worst, relative_error(y[rows], np.roll(ref, shift, axis=1)))
    return worst


@dataclass
class Timing:
    seconds_per_matmul: list[float]
    warmup_steps: int

    @property
    def median(self) -> float:
        return statistics.median(self.seconds_per_matmul)

    def quantile(self, q: float) -> float:
        s = sorted(self.seconds_per_matmul)
        return s[min(len(s) - 1, int(q * (len(s) - 1) + 0.5))]


def time_instance(instance: Instance, x: np.ndarray, budget_s: float, min_samples: int,
                  max_samples: int = 400, warmup_s: float = 0.05) -> Timing:
    """Warm up (every copy at least once, and ``warmup_s``), then time single steps until
    ``budget_s`` is spent, at least ``min_samples`` of them (SLOW_MIN_SAMPLES for steps slower
    than SLOW_STEP_S)."""
    step = instance.step
    gc_was_enabled = gc.isenabled()
    gc.disable()  # a collection inside a timed call is noise, not the kernel
    try:
        warmup_s = min(warmup_s, budget_s)
        start = time.perf_counter()
        warm = 0
        while warm < max(2, instance.steps_per_cycle) or (time.perf_counter() - start < warmup_s and warm < 100):
            step(x)
            warm += 1
        per_step = (time.perf_counter() - start) / warm
        if per_step > SLOW_STEP_S:  # seconds per call: a median of 3 already says enough
            min_samples = min(min_samples, SLOW_MIN_SAMPLES)
        samples = int(min(max_samples, max(min_samples, budget_s / max(per_step, 1e-9))))
        times = []
        for _ in range(samples):
            t0 = time.perf_counter()
            step(x)
            times.append((time.perf_counter() - t0) / instance.matmuls_per_step)
    finally:
        if gc_was_enabled:
            gc.enable()
    return Timing(times, warm)


def bound_kind(residency: str, weight_bytes: int, llc_bytes: int) -> str:
    """Which measured bandwidth limits a case: 'cache' only when a repeated matrix fits in L3."""
    if residency == "repeat" and weight_bytes <= CACHE_FIT_FRACTION * llc_bytes:
        return "cache"
    return "dram"


def run_case(subject: Subject, instance: Instance, ws: WeightSet, m: int, residency: str,
             budget_s: float, min_samples: int) -> dict:
    """Verify, then time one (subject, shape, M, residency); returns the result record."""
    record = {
        "shape": ws.shape.label, "n": ws.shape.n, "k": ws.shape.k, "m": m, "residency": residency,
        "subject": subject.label, "peer": subject.peer, "isa": subject.isa,
        "weight_format": subject.weight_format, "weight_bytes": instance.weight_bytes,
        "copies": instance.copies, "tolerance": subject.tolerance,
    }
    error = verify(instance, subject, ws, m)
    record["check_error"] = error
    if not error <= subject.tolerance:
        record["status"] = "wrong result"
        return record
    timing = time_instance(instance, ws.x[m], budget_s, min_samples)
    seconds = timing.median
    record.update(
        status="ok", samples=len(timing.seconds_per_matmul), warmup_steps=timing.warmup_steps,
        ms=seconds * 1e3, ms_min=min(timing.seconds_per_matmul) * 1e3,
        ms_p25=timing.quantile(0.25) * 1e3, ms_p75=timing.quantile(0.75) * 1e3,
        weight_gbps=instance.weight_bytes / seconds / 1e9,
        gflops=2.0 * m * ws.shape.n * ws.shape.k / seconds / 1e9,
    )
    return record
