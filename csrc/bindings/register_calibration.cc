// The op-level activation statistics (pyrt/activation_stats.h) for pyrt/calibration.py.
#include <pybind11/stl.h>

#include <set>
#include <vector>

#include "bindings/bindings.h"
#include "pyrt/activation_stats.h"

namespace pyrt::bindings {

void register_calibration(py::module_& m) {
  m.def(
      "activation_stats_start",
      [](const std::vector<uintptr_t>& second_moment_of) {
        std::set<const void*> addresses;
        for (uintptr_t a : second_moment_of) addresses.insert(reinterpret_cast<const void*>(a));
        start_activation_stats(addresses);
      },
      py::arg("second_moment_of") = std::vector<uintptr_t>(),
      "Clears the statistics and makes every matmul record sum(x^2) per input column of its weight, "
      "and sum(x x^T) for the weights at the given data addresses.");
  // {weight data address: (float64 [K] sums of x^2, rows, float64 [K, K] sums of x x^T or None)};
  // turns collection off.
  m.def("activation_stats_stop", []() {
    const std::map<const void*, ColumnStats> stats = stop_activation_stats();
    py::dict out;
    for (const auto& [address, s] : stats) {
      py::array_t<double> sums(int64_t(s.sum_sq.size()));
      std::copy(s.sum_sq.begin(), s.sum_sq.end(), sums.mutable_data());
      py::object second = py::none();
      if (!s.second_moment.empty()) {
        const int64_t k = int64_t(s.sum_sq.size());
        py::array_t<double> sq({k, k});
        std::copy(s.second_moment.begin(), s.second_moment.end(), sq.mutable_data());
        second = sq;
      }
      out[py::int_(reinterpret_cast<uintptr_t>(address))] = py::make_tuple(sums, s.rows, second);
    }
    return out;
  });
}

}  // namespace pyrt::bindings
