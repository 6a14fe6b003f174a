// The op-level activation statistics (pyrt/activation_stats.h) for pyrt/calibration.py.
#include "bindings/bindings.h"
#include "pyrt/activation_stats.h"

namespace pyrt::bindings {

void register_calibration(py::module_& m) {
  m.def("activation_stats_start", []() { start_activation_stats(); },
        "Clears the statistics and makes every matmul record sum(x^2) per input column of its weight.");
  // {weight data address: (float64 [K] sums of x^2, rows)}; turns collection off.
  m.def("activation_stats_stop", []() {
    const std::map<const void*, ColumnStats> stats = stop_activation_stats();
    py::dict out;
    for (const auto& [address, s] : stats) {
      py::array_t<double> sums(int64_t(s.sum_sq.size()));
      std::copy(s.sum_sq.begin(), s.sum_sq.end(), sums.mutable_data());
      out[py::int_(reinterpret_cast<uintptr_t>(address))] = py::make_tuple(sums, s.rows);
    }
    return out;
  });
}

}  // namespace pyrt::bindings
