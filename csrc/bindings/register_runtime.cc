#include "bindings/bindings.h"
#include <pybind11/stl.h>

#include "pyrt/adaptive_threads.h"
#include "pyrt/runtime.h"
#include "pyrt/thread_team.h"

namespace pyrt::bindings {

void register_runtime(py::module_& m) {
  m.def("num_threads", &num_threads);
  m.def("set_num_threads", &set_num_threads, py::arg("n"));
  m.def("last_team_threads", &last_team_threads);
  m.def("adaptive_threads", &adaptive_threads_enabled);
  m.def("set_adaptive_threads", &set_adaptive_threads_enabled, py::arg("enabled"));
  m.def("_set_fake_load", &set_fake_load, py::arg("others"), py::arg("online"));
  m.def("wait_spin_us", &wait_spin_microseconds);
  m.def("set_wait_spin_us", &set_wait_spin_microseconds, py::arg("microseconds"));
  m.def("cpu_isa", &cpu_isa);
  m.def("set_cpu_isa", &set_cpu_isa, py::arg("name"));
  m.def("cpu_isas_supported", &cpu_isas_supported);
  m.def("cpu_features", &cpu_features);
  m.attr("version") = PYRT_VERSION;
#ifdef PYRT_WITH_CUDA
  m.attr("cuda") = true;
#else
  m.attr("cuda") = false;
#endif
#ifdef PYRT_WITH_OPENMP
  m.attr("openmp") = true;
#else
  m.attr("openmp") = false;
#endif
#if defined(__clang__)
  m.attr("compiler") = "clang " __clang_version__;
#elif defined(__GNUC__)
  m.attr("compiler") = "gcc " __VERSION__;
#elif defined(_MSC_VER)
  m.attr("compiler") = "msvc " + std::to_string(_MSC_VER);
#else
  m.attr("compiler") = "unknown";
#endif
}

}  // namespace pyrt::bindings
