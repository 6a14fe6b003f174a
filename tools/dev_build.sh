#!/usr/bin/env bash
# Fast in-tree build for development: compiles pyrt._core into build/dev and copies it into pyrt/,
# so `python -m pytest` works from the checkout without `pip install`. Release installs use pip.
# Extra CMake options go in CMAKE_ARGS (e.g. CMAKE_ARGS=-DCMAKE_CUDA_ARCHITECTURES=87-real).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build/dev}
PY=${PYTHON:-python3}
LAUNCHER=()
if command -v ccache >/dev/null 2>&1; then LAUNCHER=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache); fi
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release "${LAUNCHER[@]}" \
  -DPython_EXECUTABLE="$($PY -c 'import sys; print(sys.executable)')" \
  -Dpybind11_DIR="$($PY -c 'import pybind11; print(pybind11.get_cmake_dir())')" \
  -DPYRT_CUDA="${PYRT_CUDA:-OFF}" ${CMAKE_ARGS:-} >/dev/null
cmake --build "$BUILD_DIR" -j"$(nproc)"
cp "$BUILD_DIR"/_core*.so pyrt/
