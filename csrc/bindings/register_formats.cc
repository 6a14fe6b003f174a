// quantize / dequantize over raw byte buffers; pyrt/tensor.py wraps them in pyrt.Tensor.
#include <pybind11/stl.h>

#include <algorithm>
#include <string>

#include "bindings/bindings.h"
#include "pyrt/formats.h"
#include "pyrt/runtime.h"

namespace pyrt::bindings {
namespace {

// x: float32, C-contiguous; quantized along its last dimension. Returns the raw bytes (1-D uint8).
// importance: None or float32 [K], one weight per column (every row uses it); method: "search"
// (the default quantizers) or "rtn" (round to nearest, importance not accepted).
py::array_t<uint8_t> quantize(const py::array& x, const std::string& format, int block, const py::object& importance,
                              const std::string& method) {
  require_array(x, "array", 'f', 4);
  const Format f = format_from_name(format);
  const int B = effective_block(f, block);
  const int64_t K = x.ndim() == 0 ? 1 : x.shape(x.ndim() - 1);
  const int64_t rows = K == 0 ? 0 : x.size() / K;
  const int64_t rb = row_bytes(f, B, K);
  PYRT_CHECK(method == "search" || method == "rtn", Dtype, "quantization method must be 'search' or 'rtn', got '",
             method, "'");
  const float* imp = nullptr;
  py::array imp_array;
  if (!importance.is_none()) {
    PYRT_CHECK(method == "search", Dtype, "importance weights the scale search; method 'rtn' takes none");
    imp_array = importance.cast<py::array>();
    require_array(imp_array, "importance", 'f', 4);
    PYRT_CHECK(imp_array.ndim() == 1 && imp_array.shape(0) == K, Shape, "importance must have shape [", K,
               "] (one value per column), got ", imp_array.ndim(), " dimensions of ", imp_array.size(), " values");
    imp = static_cast<const float*>(imp_array.data());
  }
  py::array_t<uint8_t> out(rows * rb);
  const float* src = static_cast<const float*>(x.data());
  uint8_t* dst = out.mutable_data();
  const auto fn = method == "rtn" ? rtn_quantize_row(f) : format_traits(f).quantize_row;
  // Rows are independent: split them over the threads (the search costs ~50 block evaluations per
  // block). The error reported is the first failing row's, as a serial loop would report.
  int64_t bad_row = rows;
  ErrorKind bad_kind = ErrorKind::Internal;
  std::string bad_message;
  {
    py::gil_scoped_release release;
    const int threads = rows * K >= (int64_t(1) << 16) ? std::max(1, num_threads()) : 1;
#ifdef PYRT_WITH_OPENMP
#pragma omp parallel for num_threads(threads) schedule(dynamic, 8) if (threads > 1)
#endif
    for (int64_t r = 0; r < rows; ++r) {
      try {
        fn(src + r * K, dst + r * rb, K, B, imp);
      } catch (const Error& e) {
#ifdef PYRT_WITH_OPENMP
#pragma omp critical(pyrt_quantize_error)
#endif
        if (r < bad_row) bad_row = r, bad_kind = e.kind(), bad_message = e.what();
      }
    }
    (void)threads;
  }
  if (bad_row < rows) throw Error(bad_kind, "row " + std::to_string(bad_row) + ": " + bad_message);
  return out;
}

py::array_t<float> dequantize(const py::array& data, const std::string& format, int block,
                              int64_t rows, int64_t K) {
  require_array(data, "data", 'u', 1);
  const Format f = format_from_name(format);
  const int B = effective_block(f, block);
  PYRT_CHECK(rows >= 0 && K >= 0, Shape, "negative shape");
  const int64_t rb = row_bytes(f, B, K);
  PYRT_CHECK(data.nbytes() == rows * rb, Shape, "buffer has ", data.nbytes(), " bytes, ", format,
             " [", rows, ", ", K, "] needs ", rows * rb);
  py::array_t<float> out(rows * K);
  if (rows * K == 0) return out;
  const auto* src = static_cast<const uint8_t*>(data.data());
  float* dst = out.mutable_data();
  const auto fn = format_traits(f).dequantize_row;
  {
    py::gil_scoped_release release;
    for (int64_t r = 0; r < rows; ++r) fn(src + r * rb, dst + r * K, K, B);
  }
  return out;
}

}  // namespace

void register_formats(py::module_& m) {
  m.def("quantize", &quantize, py::arg("x"), py::arg("format"), py::arg("block"), py::arg("importance") = py::none(),
        py::arg("method") = "search");
  m.def("dequantize", &dequantize, py::arg("data"), py::arg("format"), py::arg("block"),
        py::arg("rows"), py::arg("cols"));
  m.def("row_bytes", [](const std::string& format, int block, int64_t K) {
    return row_bytes(format_from_name(format), block, K);
  });
  // The byte layout of one block (formats.h, derived from the block structs); pyrt/formats.py's
  // block_layout mirrors it (tests/formats/test_layout.py).
  m.def("block_layout", [](const std::string& format, int block) {
    const BlockLayout l = block_layout(format_from_name(format), block);
    py::dict d;
    d["block"] = l.block;
    d["bytes"] = l.bytes;
    d["scale_offset"] = l.scale_offset;
    d["min_offset"] = l.min_offset;
    d["quants_offset"] = l.quants_offset;
    d["quants_bytes"] = l.quants_bytes;
    return d;
  });
  m.def("format_table", []() {
    py::list out;
    for (int i = 0; i < kNumFormats; ++i) {
      const FormatTraits& t = format_traits(static_cast<Format>(i));
      py::dict d;
      d["name"] = t.name;
      d["id"] = i;
      d["blocked"] = t.blocked;
      d["header_bytes"] = t.header_bytes;
      d["bits_per_element"] = t.bits_per_element;
      out.append(d);
    }
    return out;
  });
}

}  // namespace pyrt::bindings
