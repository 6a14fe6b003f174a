#!/usr/bin/env python3
"""Benchmark pyrt's CUDA matmul (f16, q8, q4, q4a weights; FP16 activations) against cupy.matmul
FP16 (cuBLAS) in the same run, and against the memory bound set by the measured device-to-device
copy bandwidth. Needs a GPU, a CUDA build of pyrt (PYRT_CUDA=ON) and cupy.

    python bench/bench_cuda.py                      # all M, all shapes, all formats
    python bench/bench_cuda.py --m 1 16 --formats q4 --shapes 4096x4096

Shapes are N x K (weight [N, K], x [M, K], y [M, N]). Columns: time per call (median, CUDA events),
weight GB/s (weight bytes / time), TFLOP/s (2*M*N*K / time), the memory bound (bytes moved / D2D
bandwidth) and the ratio to cupy.matmul on FP16 weights of the same shape.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the in-tree pyrt, like `python -m`
import pyrt
from pyrt import cuda

DEFAULT_M = [1, 4, 16, 64, 256, 4096]
DEFAULT_SHAPES = ["4096x4096", "4096x11008", "11008x4096"]
DEFAULT_FORMATS = ["f16", "q8", "q4", "q4a"]


def time_us(cupy, fn, repeat: int, warmup: int = 3) -> float:
    """Median microseconds per call, timed with CUDA events on the current stream."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        start, stop = cupy.cuda.Event(), cupy.cuda.Event()
        start.record()
        fn()
        stop.record()
        stop.synchronize()
        times.append(cupy.cuda.get_elapsed_time(start, stop) * 1e3)
    return float(np.median(times))


def copy_bandwidth_gbs(cupy, nbytes: int = 1 << 30, repeat: int = 10) -> float:
    """Device-to-device copy bandwidth (read + write bytes per second): the memory roof."""
    src = cupy.ones(nbytes, dtype=cupy.uint8)
    dst = cupy.empty_like(src)
    us = time_us(cupy, lambda: dst.__setitem__(Ellipsis, src), repeat)
    return 2 * nbytes / us / 1e3


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--m", type=int, nargs="+", default=DEFAULT_M)
    ap.add_argument("--shapes", nargs="+", default=DEFAULT_SHAPES, help="N x K, e.g. 4096x11008")
    ap.add_argument("--formats", nargs="+", default=DEFAULT_FORMATS, choices=DEFAULT_FORMATS)
    ap.add_argument("--block", type=int, default=32, choices=[32, 64, 128])
    ap.add_argument("--repeat", type=int, default=50)
    args = ap.parse_args()

    try:
        import cupy
    except ImportError:
        print("bench_cuda needs cupy (pip install cupy-cuda12x or cupy-cuda13x)", file=sys.stderr)
        return 2
    if not cuda.is_available():
        print(f"no CUDA device for pyrt: {cuda.unavailable_reason()}", file=sys.stderr)
        return 2

    props = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)
    bandwidth = copy_bandwidth_gbs(cupy)
    print(f"device: {props['name'].decode()} (sm_{props['major']}{props['minor']}), pyrt {pyrt.__version__}, "
          f"cupy {cupy.__version__}")
    print(f"measured D2D copy bandwidth: {bandwidth:.0f} GB/s (read + write); block {args.block}")
    print(f"{'shape NxK':>11} {'M':>5} {'fmt':>4} {'us':>9} {'wGB/s':>7} {'TFLOP/s':>8} "
          f"{'bound us':>9} {'%bound':>6} {'cupy us':>9} {'vs cupy':>7}")

    rng = np.random.default_rng(0)
    for shape in args.shapes:
        n, k = (int(v) for v in shape.lower().split("x"))
        w32 = rng.standard_normal((n, k), dtype=np.float32)
        w16_dev = cupy.asarray(w32.astype(np.float16))
        weights = {f: pyrt.quantize(w32, f, args.block).to("cuda") for f in args.formats}
        for m in args.m:
            x = cupy.asarray(rng.standard_normal((m, k)).astype(np.float16))
            out = cupy.empty((m, n), dtype=cupy.float32)
            cupy_us = time_us(cupy, lambda x=x, w16=w16_dev: cupy.matmul(x, w16.T), args.repeat)
            for fmt, w in weights.items():
                us = time_us(cupy, lambda x=x, w=w, out=out: pyrt.matmul(x, w, out=out), args.repeat)
                moved = w.nbytes + x.nbytes + out.nbytes
                bound_us = moved / bandwidth / 1e3
                print(f"{shape:>11} {m:>5} {fmt:>4} {us:9.1f} {w.nbytes / us / 1e3:7.0f} "
                      f"{2 * m * n * k / us / 1e6:8.2f} {bound_us:9.1f} {100 * bound_us / us:5.0f}% "
                      f"{cupy_us:9.1f} {cupy_us / us:6.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
