// The one way a model gets its weights: a table of checkpoint tensors by name, and lookups that
// check presence, shape, byte size and format against what the model's config implies. Every
// model reports the same fault with the same error:
//   a tensor is missing                          Format  (pyrt.FileFormatError)
//   its shape or byte size disagrees             Shape   (pyrt.ShapeError)
//   its format or block cannot be used there     Dtype   (pyrt.DtypeError)
// The messages name the tensor. The table does not own the bytes: its filler (the bindings) keeps
// them alive for as long as the model built from it exists. With repacking on (set_repack), the
// table also owns a copy of each 4-bit matrix in the M=1 kernels' layout (pyrt/repack.h), made
// once by matrix() where a kernel of the active ISA reads one, and kept with the file's bytes
// (prompt GEMMs, other ISAs and the rows/blocks the copy leaves out read those).
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "pyrt/formats.h"

namespace pyrt::models {

// A checkpoint tensor as its owner holds it: raw bytes in a pyrt format.
struct TensorRef {
  Format format = Format::f32;
  int block = 1;
  std::vector<int64_t> shape;
  const uint8_t* data = nullptr;
  int64_t nbytes = 0;
};

class WeightTable {
 public:
  // model: how error messages call the model ("BERT", "Llama").
  explicit WeightTable(std::string model = "model") : model_(std::move(model)) {}
  WeightTable(WeightTable&&) = default;
  WeightTable& operator=(WeightTable&&) = default;
  // Copies would hand out pointers into the original's dequantized vectors.
  WeightTable(const WeightTable&) = delete;
  WeightTable& operator=(const WeightTable&) = delete;

  void add(const std::string& name, const TensorRef& ref) { tensors_[name] = ref; }
  bool contains(const std::string& name) const { return tensors_.count(name) != 0; }
  void set_model(std::string model) { model_ = std::move(model); }
  // Whether matrix() adds repacked copies (off by default: the file's layout and memory only).
  void set_repack(bool on) { repack_ = on; }
  // Bytes of the repacked copies made so far.
  int64_t repacked_bytes() const;

  // A [rows, cols] matrix in any format, as the view matmul and row lookups use (cpu, validated
  // as check_matmul would), with its repacked copy when repacking is on and one applies.
  WeightView matrix(const std::string& name, int64_t rows, int64_t cols);
  // A [n] vector as FP32: stored f32 in place, any other format dequantized once into memory the
  // table owns (biases and norms are tiny; a converter may still store them as f16).
  const float* vector(const std::string& name, int64_t n);
  // A [n] vector that must be stored as f32 (Dtype otherwise): read in place.
  const float* f32_vector(const std::string& name, int64_t n) const;

 private:
  const TensorRef& find(const std::string& name) const;
  WeightView view(const TensorRef& ref, const std::string& name, int64_t rows, int64_t cols) const;
  // w's repacked copy, made on the first call for `name`; null where none applies.
  const uint8_t* repacked_copy(const std::string& name, const WeightView& w);

  std::string model_;
  std::map<std::string, TensorRef> tensors_;
  std::vector<std::unique_ptr<float[]>> dequantized_;
  bool repack_ = false;
  // By tensor name (a matrix viewed twice, e.g. a tied embedding and head, is repacked once); each
  // buffer over-allocated by 63 bytes for the 64-byte aligned copy inside it.
  std::map<std::string, std::vector<uint8_t>> repacked_;
};

}  // namespace pyrt::models
