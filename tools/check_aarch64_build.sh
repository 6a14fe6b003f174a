#!/usr/bin/env bash
# Cross-compiles and links the portable core (everything but the *_avx2 / *_avx512 / CUDA files)
# for aarch64, to keep the promise that pyrt builds on ARM (Jetson, Graviton) without x86
# intrinsics leaking into shared files. Needs Debian's g++-aarch64-linux-gnu; it does not run the
# result (no aarch64 machine here).
set -euo pipefail
cd "$(dirname "$0")/.."
CXX=${CXX_AARCH64:-aarch64-linux-gnu-g++}
command -v "$CXX" >/dev/null || { echo "check_aarch64_build: $CXX not found (apt-get install g++-aarch64-linux-gnu)"; exit 2; }
PY=${PYTHON:-python3}
PYINC=$($PY -c "import sysconfig; print(sysconfig.get_paths()['include'])")
PBINC=$($PY -c "import pybind11; print(pybind11.get_include())")
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
# The same portable list as CMakeLists.txt's PYRT_CORE_SOURCES, plus what cmake/cuda.cmake adds to a
# CPU-only build (the device-weights host code and the CUDA twins).
sources=$(ls csrc/core/*.cc csrc/ops/*.cc csrc/models/*.cc csrc/bindings/*.cc csrc/cpu/cpu_isa.cc \
  csrc/cpu/scratch.cc csrc/cpu/vector_math.cc csrc/cpu/attention_head.cc csrc/cpu/*_scalar.cc \
  csrc/cpu/*_cpu.cc csrc/cuda/device_weights.cc csrc/cuda/cuda_disabled.cc)
for f in $sources; do
  "$CXX" -std=c++17 -O2 -fPIC -fvisibility=hidden -fopenmp -Wall -Icsrc/include -Icsrc -I"$PYINC" -I"$PBINC" \
    -DPYRT_VERSION='"check"' -DPYRT_WITH_OPENMP=1 -c "$f" -o "$out/$(basename "$f").o"
done
"$CXX" -shared -fopenmp -o "$out/_core.so" "$out"/*.o
# A Python extension may leave Python's and the runtime libraries' symbols undefined, nothing else.
missing=$(aarch64-linux-gnu-nm -D --undefined-only "$out/_core.so" | awk '{print $2}' \
  | grep -vE '^(_?Py|GOMP_|omp_|__cxa_|_Unwind_|__gmon_start__|_ITM_|__gxx_personality)|@' || true)
if [ -n "$missing" ]; then echo "unresolved symbols in the aarch64 build:"; echo "$missing"; exit 1; fi
echo "check_aarch64_build: $(echo "$sources" | wc -w) portable sources compile and link for aarch64"
