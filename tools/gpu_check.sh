#!/usr/bin/env bash
# The prepared GPU check: on a machine with an NVIDIA GPU, build pyrt with CUDA, run every GPU test,
# compute-sanitizer on a subset, and the CUDA benchmarks, writing everything under $OUT (default
# gpu_results/). Meant to fit in ~8 minutes on an H100/H200 so that a short device loan suffices:
#
#     OUT=/tmp/gpu tools/gpu_check.sh            # or, through the device tool: tools/gpu_check.sh
#
# Each step appends its status to $OUT/summary.txt and keeps going, so one failure does not hide
# the results of the others. Exit status: 0 when every step passed, 1 otherwise.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu_results}
mkdir -p "$OUT"
SUMMARY="$OUT/summary.txt"
: >"$SUMMARY"
FAILED=0
export PATH=/usr/local/cuda/bin:$PATH

step() {  # step NAME SECONDS COMMAND...: run with a time limit, log to $OUT/NAME.log
  local name=$1 limit=$2
  shift 2
  local t0=$SECONDS
  timeout "$limit" "$@" >"$OUT/$name.log" 2>&1
  local rc=$?
  echo "$name: rc=$rc, $((SECONDS - t0)) s" | tee -a "$SUMMARY"
  [ $rc -eq 0 ] || FAILED=1
  return $rc
}

{ nvidia-smi --query-gpu=name,memory.total,clocks.max.memory,driver_version --format=csv; nvcc --version | tail -2;
  lscpu | grep -E 'Model name|^CPU\(s\)'; git log -1 --oneline; } >"$OUT/machine.txt" 2>&1

# The architecture of this GPU only: a full multi-arch build would spend the loan compiling.
ARCH=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d .)
ARCH=${ARCH:-90}
step pip_deps 120 python -m pip install --quiet cmake ninja pybind11 numpy pytest hypothesis "cupy-cuda12x>=13" || true
step build 300 env PYRT_CUDA=ON BUILD_DIR=build/gpu_check \
  CMAKE_ARGS="-DCMAKE_CUDA_ARCHITECTURES=${ARCH}-real" tools/dev_build.sh || { echo "build failed" >>"$SUMMARY"; exit 1; }
python -c "import pyrt, json; print(json.dumps(pyrt.build_info(), indent=1))" >"$OUT/build_info.json" 2>&1

# Every GPU test (marked gpu), then the whole ops suite so the CPU paths of the same build are seen.
step gpu_tests 240 python -m pytest -q -rs -p no:cacheprovider tests/ops/test_cuda.py tests/ops/test_matmul.py \
  -k "cuda or gpu" --junitxml="$OUT/gpu_tests.xml"
step gpu_marked 240 python -m pytest -q -rs -p no:cacheprovider -m gpu tests/ --junitxml="$OUT/gpu_marked.xml"
# On a GPU machine a GPU test that skips is a failure of the setup (no cupy, CPU-only build).
if grep -h "SKIPPED" "$OUT/gpu_tests.log" "$OUT/gpu_marked.log" | grep -qiE "cuda|gpu|cupy"; then
  echo "gpu tests skipped on a GPU machine: see the logs" | tee -a "$SUMMARY"; FAILED=1
fi
step ops_tests 180 python -m pytest -q -p no:cacheprovider tests/ops --junitxml="$OUT/ops_tests.xml"

# compute-sanitizer (memcheck, then racecheck on shared memory) on a small subset: slow by design.
if command -v compute-sanitizer >/dev/null 2>&1; then
  step memcheck 180 compute-sanitizer --tool memcheck --error-exitcode 9 \
    python -m pytest -q -p no:cacheprovider -x tests/ops/test_cuda.py
  step racecheck 120 compute-sanitizer --tool racecheck --error-exitcode 9 \
    python -m pytest -q -p no:cacheprovider -x tests/ops/test_cuda.py -k "gemm or wmma or large"
else
  echo "compute-sanitizer: not found" | tee -a "$SUMMARY"
fi

# Benchmarks: GEMV M=1..16 and GEMM against cuBLAS FP16 (cupy), % of the measured D2D bandwidth.
step bench_gemv 150 python bench/bench_cuda.py --m 1 4 16 --shapes 4096x4096 4096x11008 11008x4096
cp "$OUT/bench_gemv.log" "$OUT/bench_gemv.md" 2>/dev/null
step bench_gemm 120 python bench/bench_cuda.py --m 256 4096 --formats f16 q8 q4 --shapes 4096x4096
cp "$OUT/bench_gemm.log" "$OUT/bench_gemm.md" 2>/dev/null

echo "all steps passed: $([ $FAILED -eq 0 ] && echo yes || echo no)" | tee -a "$SUMMARY"
exit $FAILED
