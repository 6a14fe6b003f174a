// Shared by the register_* files: array checks that turn into typed pyrt errors.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <string>

#include "pyrt/errors.h"

namespace py = pybind11;

namespace pyrt::bindings {

void register_errors(py::module_& m);
void register_cuda(py::module_& m);
void register_formats(py::module_& m);
void register_file(py::module_& m);
void register_models(py::module_& m);
void register_llama(py::module_& m);
void register_ops(py::module_& m);
void register_runtime(py::module_& m);
void register_vector_math(py::module_& m);
void register_calibration(py::module_& m);

inline bool is_c_contiguous(const py::array& a) {
  return (a.flags() & py::array::c_style) != 0;
}

inline void require_array(const py::array& a, const char* name, char kind, int itemsize) {
  PYRT_CHECK(a.dtype().kind() == kind && a.itemsize() == itemsize, Dtype, name, " has dtype ",
             std::string(py::str(a.dtype())), ", which is not accepted here");
  PYRT_CHECK(is_c_contiguous(a), Dtype, name, " must be C-contiguous (use np.ascontiguousarray)");
}

}  // namespace pyrt::bindings
