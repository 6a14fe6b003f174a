#include "models/weights.h"

#include "pyrt/errors.h"
#include "pyrt/matmul.h"
#include "pyrt/repack.h"

namespace pyrt::models {
namespace {

std::string shape_text(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

void check_shape(const TensorRef& ref, const std::string& name, const std::vector<int64_t>& expected) {
  PYRT_CHECK(ref.shape == expected, Shape, "tensor '", name, "' has shape ", shape_text(ref.shape),
             ", the config implies ", shape_text(expected));
}

}  // namespace

const TensorRef& WeightTable::find(const std::string& name) const {
  const auto it = tensors_.find(name);
  PYRT_CHECK(it != tensors_.end(), Format, model_, " checkpoint has no tensor '", name, "'");
  return it->second;
}

WeightView WeightTable::view(const TensorRef& ref, const std::string& name, int64_t rows, int64_t cols) const {
  WeightView w;
  w.format = ref.format;
  w.rows = rows;
  w.cols = cols;
  try {
    w.block = effective_block(ref.format, ref.block);
    w.row_stride = row_bytes(w.format, w.block, cols);
  } catch (const Error& e) {
    throw Error(e.kind(), detail::concat("tensor '", name, "': ", e.what()));
  }
  PYRT_CHECK(ref.nbytes == rows * w.row_stride && ref.data != nullptr, Shape, "tensor '", name, "' has ", ref.nbytes,
             " bytes, ", format_traits(w.format).name, " ", shape_text(ref.shape), " needs ", rows * w.row_stride);
  w.data = ref.data;
  return w;
}

WeightView WeightTable::matrix(const std::string& name, int64_t rows, int64_t cols) {
  const TensorRef& ref = find(name);
  check_shape(ref, name, {rows, cols});
  WeightView w = view(ref, name, rows, cols);
  // Models run matmul_rows, which trusts its arguments: every weight passes the checks once here.
  float dummy = 0.0f;
  MatmulParams p;
  p.x = &dummy;
  p.M = 1;
  p.w = w;
  p.y = &dummy;
  check_matmul(p);
  if (repack_) w.repacked = repacked_copy(name, w);
  return w;
}

const uint8_t* WeightTable::repacked_copy(const std::string& name, const WeightView& w) {
  const int64_t bytes = pyrt::repacked_bytes(w);
  if (bytes == 0) return nullptr;
  std::vector<uint8_t>& buf = repacked_[name];
  const bool fresh = buf.empty();
  if (fresh) buf.resize(size_t(bytes + 63));
  uint8_t* aligned = buf.data() + ((64 - reinterpret_cast<uintptr_t>(buf.data()) % 64) % 64);
  if (fresh) repack_weights(w, aligned);
  return aligned;
}

int64_t WeightTable::repacked_bytes() const {
  int64_t total = 0;
  for (const auto& item : repacked_) total += int64_t(item.second.size()) - 63;
  return total;
}

const float* WeightTable::vector(const std::string& name, int64_t n) {
  const TensorRef& ref = find(name);
  check_shape(ref, name, {n});
  const WeightView w = view(ref, name, 1, n);
  if (w.format == Format::f32) return reinterpret_cast<const float*>(w.data);
  dequantized_.emplace_back(new float[size_t(n)]);
  format_traits(w.format).dequantize_row(w.data, dequantized_.back().get(), n, w.block);
  return dequantized_.back().get();
}

const float* WeightTable::f32_vector(const std::string& name, int64_t n) const {
  const TensorRef& ref = find(name);
  PYRT_CHECK(ref.format == Format::f32, Dtype, "tensor '", name, "' must be f32, got ", format_traits(ref.format).name);
  check_shape(ref, name, {n});
  return reinterpret_cast<const float*>(view(ref, name, 1, n).data);
}

}  // namespace pyrt::models
