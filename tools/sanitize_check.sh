#!/usr/bin/env bash
# AddressSanitizer + UndefinedBehaviorSanitizer check: builds pyrt._core with
# -fsanitize=address,undefined in its own build folder (build/asan), stages it beside a copy of the
# Python package (the dev build in pyrt/ is left alone), and runs a subset of the suite (ops,
# formats, the hostile-input and fuzz regressions) under it. Any sanitizer report fails the run.
# Usage: tools/sanitize_check.sh [pytest args...]   (default: the subset below)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build/asan}
PY=${PYTHON:-python3}
SAN="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined"
LAUNCHER=()
if command -v ccache >/dev/null 2>&1; then LAUNCHER=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache); fi
start=$(date +%s)
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo "${LAUNCHER[@]}" \
  -DCMAKE_CXX_FLAGS="$SAN" -DCMAKE_MODULE_LINKER_FLAGS="$SAN" -DCMAKE_SHARED_LINKER_FLAGS="$SAN" \
  -DPython_EXECUTABLE="$($PY -c 'import sys; print(sys.executable)')" \
  -Dpybind11_DIR="$($PY -c 'import pybind11; print(pybind11.get_cmake_dir())')" -DPYRT_CUDA=OFF >/dev/null
cmake --build "$BUILD_DIR" -j"$(nproc)"
echo "sanitize_check: build took $(( $(date +%s) - start )) s"

# A staged package: the sources of pyrt/ with the sanitized extension instead of the dev one.
STAGE="$BUILD_DIR/stage"
rm -rf "$STAGE" && mkdir -p "$STAGE"
cp -r pyrt "$STAGE/pyrt"
rm -f "$STAGE"/pyrt/_core*.so
cp "$BUILD_DIR"/_core*.so "$STAGE/pyrt/"

# The interpreter is not instrumented: the runtime must be loaded first. Leaks are CPython's own
# (interned objects at exit), not pyrt's, so leak detection is off; everything else halts.
ASAN_LIB=$(${CXX:-c++} -print-file-name=libasan.so)
UBSAN_LIB=$(${CXX:-c++} -print-file-name=libubsan.so)
LOG="$BUILD_DIR/sanitizer_report.txt"
: > "$LOG"
TESTS=("$@")
if [ ${#TESTS[@]} -eq 0 ]; then
  TESTS=("$PWD/tests/ops" "$PWD/tests/formats" "$PWD/tests/runtime/test_hostile_inputs.py" "$PWD/tests/fuzz")
fi
start=$(date +%s)
set +e
(cd "$STAGE" && LD_PRELOAD="$ASAN_LIB $UBSAN_LIB" \
  ASAN_OPTIONS="detect_leaks=0:halt_on_error=1:abort_on_error=0:log_path=$PWD/../sanitizer:allocator_may_return_null=1" \
  UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:log_path=$PWD/../sanitizer" \
  PYTHONPATH="$PWD" "$PY" -m pytest -q -p no:cacheprovider -x "${TESTS[@]}")
status=$?
set -e
cat "$BUILD_DIR"/sanitizer.* >> "$LOG" 2>/dev/null || true
rm -f "$BUILD_DIR"/sanitizer.[0-9]*
echo "sanitize_check: tests took $(( $(date +%s) - start )) s"
if [ -s "$LOG" ]; then
  echo "sanitize_check: sanitizer reports (see $LOG):"; head -50 "$LOG"; exit 1
fi
exit $status
