// A host tensor (dtype name as numpy spells it, shape, raw little-endian bytes) and .npy files.
// The .npy reader accepts exactly what numpy.save writes for C-ordered arrays of the dtypes below.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace hexfleet {

struct Tensor {
  std::string dtype;  // "float32", "float64", "float16", "int64", "int32", "uint8", "int8", "uint16", "bool"
  std::vector<int64_t> shape;
  std::vector<unsigned char> bytes;

  size_t count() const;
  float* f32() { return reinterpret_cast<float*>(bytes.data()); }
  const float* f32() const { return reinterpret_cast<const float*>(bytes.data()); }
};

size_t dtype_size(const std::string& dtype);  // 0 for an unknown dtype
size_t element_count(const std::vector<int64_t>& shape);
std::string shape_text(const std::vector<int64_t>& shape);

Tensor make_f32(const std::vector<int64_t>& shape);

// Read a .npy file; `label` names it in errors (InvalidRequest for a missing or malformed file).
Tensor read_npy(const std::string& path, const std::string& label);
void write_npy(const std::string& path, const Tensor& tensor);

}  // namespace hexfleet
