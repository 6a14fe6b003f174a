"""Measured bounds for the matmul benchmark: read bandwidth from DRAM and from cache, and FP32 GEMM
throughput.

A matmul with few activation rows (M = 1..8) must read every weight byte once per call, so its best
possible time is weight bytes / read bandwidth. We measure that bandwidth on this machine instead of
quoting a datasheet: several simple read kernels (OpenBLAS SGEMV, SDOT on one half of the buffer per
thread), best of a few repeats each, and the bound is the fastest of them. A bound that is too
high only makes the "% of bound" columns more modest, never flattering.

numpy's thread count must already be set (OPENBLAS_NUM_THREADS before numpy is imported, or
threadpoolctl) when these run; bench/bench_ops.py does that.

Run directly (`python bench/bandwidth.py`) to print the measurements.
"""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

GEMV_COLS = 4096  # any row length works; 16 KiB rows keep SGEMV on its streaming path


def best_seconds(fn: Callable[[], object], repeats: int) -> float:
    """Fastest of ``repeats`` timed calls after one untimed warm-up call."""
    fn()
    best = float("inf")
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


@dataclass
class ReadBandwidth:
    """Read bandwidth in GB/s (1e9 bytes/s) over a buffer of ``buffer_bytes``, per method."""

    buffer_bytes: int
    threads: int
    by_method: dict[str, float] = field(default_factory=dict)

    @property
    def gbps(self) -> float:
        """The bound: the fastest method."""
        return max(self.by_method.values())

    @property
    def best_method(self) -> str:
        return max(self.by_method, key=self.by_method.__getitem__)


def read_bandwidth(buffer_bytes: int, threads: int, repeats: int) -> ReadBandwidth:
    """Measure how fast ``threads`` cores can read a float32 buffer of ``buffer_bytes``.

    Each call reads the whole buffer once; when the buffer fits in cache the repeats find it there,
    when it is far larger than the last-level cache every call streams it from DRAM.
    """
    count = max(GEMV_COLS, buffer_bytes // 4 // GEMV_COLS * GEMV_COLS)
    # np.full writes every page, so the timed reads never hit first-touch page faults.
    buffer = np.full(count, 1.0, dtype=np.float32)
    nbytes = buffer.nbytes
    result = ReadBandwidth(buffer_bytes=nbytes, threads=threads)

    matrix = buffer.reshape(-1, GEMV_COLS)
    vector = np.ones(GEMV_COLS, dtype=np.float32)
    result.by_method["openblas_sgemv"] = nbytes / best_seconds(lambda: matrix @ vector, repeats) / 1e9

    # SDOT of a chunk with itself reads each byte once (the second operand hits L1). numpy releases
    # the GIL inside dot, so the Python threads run on separate cores.
    chunks = np.array_split(buffer, threads)
    with ThreadPoolExecutor(max_workers=threads) as pool:
        def threaded_dot():
            return list(pool.map(lambda c: np.dot(c, c), chunks))
        result.by_method["sdot_per_thread"] = nbytes / best_seconds(threaded_dot, repeats) / 1e9
    return result


def sgemm_gflops(size: int = 2048, repeats: int = 3) -> float:
    """FP32 GEMM throughput of numpy/OpenBLAS on square matrices: the arithmetic bound for M=128."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size), dtype=np.float32)
    b = rng.standard_normal((size, size), dtype=np.float32)
    seconds = best_seconds(lambda: a @ b, repeats)
    return 2.0 * size**3 / seconds / 1e9


@dataclass
class Bounds:
    """Everything a matmul case is compared against."""

    dram: ReadBandwidth
    cache: ReadBandwidth
    sgemm_gflops: float

    def merged(self, other: Bounds) -> Bounds:
        """The best of two measurements (start and end of a run): load from other processes only
        ever lowers a measured bound, so the higher one is closer to the machine's."""
        def best(a: ReadBandwidth, b: ReadBandwidth) -> ReadBandwidth:
            methods = {m: max(a.by_method.get(m, 0.0), b.by_method.get(m, 0.0))
                       for m in {**a.by_method, **b.by_method}}
            return ReadBandwidth(a.buffer_bytes, a.threads, methods)
        return Bounds(best(self.dram, other.dram), best(self.cache, other.cache),
                      max(self.sgemm_gflops, other.sgemm_gflops))

    def to_dict(self) -> dict:
        def bw(b: ReadBandwidth) -> dict:
            return {"buffer_bytes": b.buffer_bytes, "threads": b.threads, "gbps": b.gbps,
                    "best_method": b.best_method, "by_method": dict(b.by_method)}
        return {"dram": bw(self.dram), "cache": bw(self.cache), "sgemm_gflops": self.sgemm_gflops}


def measure_bounds(threads: int, dram_bytes: int = 1 << 30, cache_bytes: int = 16 << 20,
                   quick: bool = False) -> Bounds:
    """DRAM bound over ``dram_bytes`` (far above L3), cache bound over ``cache_bytes`` (inside L3)."""
    dram = read_bandwidth(dram_bytes, threads, repeats=3 if quick else 8)
    cache = read_bandwidth(cache_bytes, threads, repeats=30 if quick else 200)
    gflops = sgemm_gflops(size=1024 if quick else 2048, repeats=3 if quick else 5)
    return Bounds(dram=dram, cache=cache, sgemm_gflops=gflops)


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    bounds = measure_bounds(args.threads, quick=args.quick)
    for name, b in (("DRAM", bounds.dram), ("cache", bounds.cache)):
        methods = ", ".join(f"{m} {v:.1f}" for m, v in b.by_method.items())
        print(f"{name:5s} read over {b.buffer_bytes / 2**20:.0f} MiB: {b.gbps:.1f} GB/s ({methods})")
    print(f"SGEMM: {bounds.sgemm_gflops:.1f} GFLOP/s")
