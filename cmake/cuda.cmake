# PYRT_CUDA=AUTO compiles csrc/cuda/ only where nvcc is found; ON requires it; OFF never builds it.
# The CPU build needs no CUDA toolkit.
#
# csrc/cuda/*.cc is host C++ compiled into _core with the C++ flags: device_weights.cc (the upload
# and download of the plane layout through DeviceBuffer, in every build) and cuda_disabled.cc (the
# CPU-only twins that raise DeviceError, only when the backend is off). The plane layout itself is
# core code (csrc/core/weight_planes.cc), tested without a GPU.
#
# The language check runs at include() time, in the top-level scope: enable_language(CUDA) inside a
# function leaves CMake's internal CUDA rule variables function-local and the generator fails.
# The CUDA sources go into their own object library so the C++ warning flags of _core (which nvcc
# does not accept) never reach nvcc, and nvcc's flags never reach the C++ files.
#
# Architectures: sm_75 (Turing), 80/86 (Ampere), 87 (Jetson Orin), 89 (Ada), 90 (Hopper) as SASS,
# plus compute_90 PTX that newer GPUs JIT-compile. CUDA 13 still ships sm_75 (its oldest); see
# docs/cuda.md. Override with -DCMAKE_CUDA_ARCHITECTURES=80-real while iterating (one arch builds
# about 3x faster here: 24 s against 79 s). PYRT_CUDA_PTXAS_VERBOSE=ON prints ptxas
# register/spill counts per kernel.
file(GLOB PYRT_CUDA_SOURCES CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/csrc/cuda/*.cu)
option(PYRT_CUDA_PTXAS_VERBOSE "Pass -Xptxas -v to nvcc (register/spill report per kernel)" OFF)
set(PYRT_CUDA_ENABLED OFF)
if(PYRT_CUDA STREQUAL "OFF" OR NOT PYRT_CUDA_SOURCES)
  message(STATUS "pyrt: CUDA backend disabled (PYRT_CUDA=${PYRT_CUDA})")
else()
  include(CheckLanguage)
  check_language(CUDA)
  if(CMAKE_CUDA_COMPILER)
    if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
      set(CMAKE_CUDA_ARCHITECTURES "75-real;80-real;86-real;87-real;89-real;90-real;90-virtual")
    endif()
    enable_language(CUDA)
    find_package(CUDAToolkit REQUIRED)
    set(PYRT_CUDA_ENABLED ON)
  elseif(PYRT_CUDA STREQUAL "ON")
    message(FATAL_ERROR "pyrt: PYRT_CUDA=ON but no CUDA compiler (nvcc) was found")
  else()
    message(STATUS "pyrt: nvcc not found, building CPU-only")
  endif()
endif()

function(pyrt_configure_cuda target)
  target_sources(${target} PRIVATE ${CMAKE_SOURCE_DIR}/csrc/cuda/device_weights.cc)
  if(NOT PYRT_CUDA_ENABLED)
    target_sources(${target} PRIVATE ${CMAKE_SOURCE_DIR}/csrc/cuda/cuda_disabled.cc)
    return()
  endif()
  add_library(pyrt_cuda OBJECT ${PYRT_CUDA_SOURCES})
  target_include_directories(pyrt_cuda PRIVATE ${CMAKE_SOURCE_DIR}/csrc/include ${CMAKE_SOURCE_DIR}/csrc)
  target_compile_definitions(pyrt_cuda PRIVATE PYRT_WITH_CUDA=1)
  target_link_libraries(pyrt_cuda PRIVATE CUDA::cudart_static)
  set_target_properties(pyrt_cuda PROPERTIES CUDA_STANDARD 17 CUDA_STANDARD_REQUIRED ON
                        CUDA_SEPARABLE_COMPILATION OFF POSITION_INDEPENDENT_CODE ON)
  # Host side hidden like the rest of _core; device code at -O3 is nvcc's default.
  target_compile_options(pyrt_cuda PRIVATE -Xcompiler=-fvisibility=hidden -Xcompiler=-Wall)
  if(PYRT_CUDA_PTXAS_VERBOSE)
    target_compile_options(pyrt_cuda PRIVATE -Xptxas=-v)
  endif()
  target_link_libraries(${target} PRIVATE pyrt_cuda CUDA::cudart_static)
  target_compile_definitions(${target} PRIVATE PYRT_WITH_CUDA=1)
  message(STATUS "pyrt: CUDA backend enabled for ${CMAKE_CUDA_ARCHITECTURES}")
endfunction()
