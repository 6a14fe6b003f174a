# The lab programs in bench/experiments/: stand-alone timing experiments behind the analysis in
# docs/benchmarks.md (decode variants of the q4 GEMV, instruction throughput, FMA/VNNI peaks). They
# are not part of the library or the wheel. Opt-in; CI builds them (.ci/run) so that they keep
# compiling as the headers they include (csrc/cpu/decode_avx512.h, csrc/include/pyrt/formats.h) change:
#   cmake -S . -B build/experiments -DPYRT_BUILD_EXPERIMENTS=ON && cmake --build build/experiments --target pyrt_experiments
option(PYRT_BUILD_EXPERIMENTS "Build the lab programs in bench/experiments (x86-64 GCC or Clang)" OFF)

if(PYRT_BUILD_EXPERIMENTS)
  if(MSVC OR NOT CMAKE_SYSTEM_PROCESSOR MATCHES "^(x86_64|AMD64|amd64)$")
    message(FATAL_ERROR "PYRT_BUILD_EXPERIMENTS: the lab programs use AVX-512 and need an x86-64 GCC or Clang")
  endif()
  enable_language(C)
  find_package(OpenMP REQUIRED COMPONENTS C)
  set(dir ${CMAKE_SOURCE_DIR}/bench/experiments)

  # The flags each program's header comment gives: they only compile, they run on AVX-512 CPUs.
  add_executable(q4_decode_variants ${dir}/q4_decode_variants.cc)
  target_include_directories(q4_decode_variants PRIVATE csrc/include csrc)
  target_compile_options(q4_decode_variants PRIVATE
    -O3 -mavx512f -mavx512bw -mavx512vl -mavx512dq -mfma -mf16c -mavx512bf16)

  add_executable(zmm_op_throughput ${dir}/zmm_op_throughput.c)
  target_compile_options(zmm_op_throughput PRIVATE -O2 -mavx512f)

  add_executable(fma_peak ${dir}/fma_peak.c)
  target_compile_options(fma_peak PRIVATE -O3 -funroll-loops -mavx512f -mavx512vnni -mfma)
  target_link_libraries(fma_peak PRIVATE OpenMP::OpenMP_C)

  add_custom_target(pyrt_experiments DEPENDS q4_decode_variants zmm_op_throughput fma_peak)
endif()
