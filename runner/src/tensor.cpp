// .npy format version 1.0/2.0/3.0: magic, header length, a Python dict literal header, raw data.
#include "tensor.hpp"

#include <cstring>
#include <fstream>
#include <map>
#include <regex>
#include <sstream>

#include "failure.hpp"

namespace hexfleet {

namespace {

// numpy's descr strings for the dtypes the runner handles (little-endian; one-byte types use '|').
const std::map<std::string, std::string>& descr_to_dtype() {
  static const std::map<std::string, std::string> table = {
      {"<f4", "float32"}, {"<f8", "float64"}, {"<f2", "float16"}, {"<i8", "int64"}, {"<i4", "int32"},
      {"|u1", "uint8"},   {"|i1", "int8"},    {"<u2", "uint16"},  {"|b1", "bool"},
  };
  return table;
}

std::string dtype_to_descr(const std::string& dtype) {
  for (const auto& [descr, name] : descr_to_dtype()) {
    if (name == dtype) return descr;
  }
  throw model_error("cannot write a tensor of type " + dtype);
}

}  // namespace

size_t dtype_size(const std::string& dtype) {
  if (dtype == "float32" || dtype == "int32") return 4;
  if (dtype == "float64" || dtype == "int64") return 8;
  if (dtype == "float16" || dtype == "uint16") return 2;
  if (dtype == "uint8" || dtype == "int8" || dtype == "bool") return 1;
  return 0;
}

size_t element_count(const std::vector<int64_t>& shape) {
  size_t n = 1;
  for (int64_t d : shape) n *= static_cast<size_t>(d);
  return n;
}

std::string shape_text(const std::vector<int64_t>& shape) {
  std::ostringstream out;
  out << "[";
  for (size_t i = 0; i < shape.size(); ++i) out << (i ? ", " : "") << shape[i];
  out << "]";
  return out.str();
}

size_t Tensor::count() const { return element_count(shape); }

Tensor make_f32(const std::vector<int64_t>& shape) {
  Tensor t;
  t.dtype = "float32";
  t.shape = shape;
  t.bytes.assign(element_count(shape) * 4, 0);
  return t;
}

Tensor read_npy(const std::string& path, const std::string& label) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw invalid_request(label + " is missing (expected " + path.substr(path.rfind('/') + 1) + ")");
  std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const auto bad = [&](const std::string& why) { return invalid_request(label + " is not a valid .npy file: " + why); };
  if (data.size() < 10 || data.compare(0, 6, "\x93NUMPY") != 0) throw bad("no .npy magic");
  const auto major = static_cast<unsigned char>(data[6]);
  size_t header_len = 0;
  size_t offset = 0;
  if (major == 1) {
    header_len = static_cast<unsigned char>(data[8]) | (static_cast<size_t>(static_cast<unsigned char>(data[9])) << 8);
    offset = 10;
  } else if (major == 2 || major == 3) {
    if (data.size() < 12) throw bad("truncated header");
    for (int i = 0; i < 4; ++i) header_len |= static_cast<size_t>(static_cast<unsigned char>(data[8 + i])) << (8 * i);
    offset = 12;
  } else {
    throw bad("unsupported format version " + std::to_string(major));
  }
  if (data.size() < offset + header_len) throw bad("truncated header");
  const std::string header = data.substr(offset, header_len);
  std::smatch m;
  static const std::regex descr_re("'descr':\\s*'([<>|=][a-z][0-9]+)'");
  static const std::regex order_re("'fortran_order':\\s*(True|False)");
  static const std::regex shape_re("'shape':\\s*\\(([0-9,\\s]*)\\)");
  if (!std::regex_search(header, m, descr_re)) throw bad("no dtype in the header");
  const auto found = descr_to_dtype().find(m[1].str());
  if (found == descr_to_dtype().end()) throw bad("unsupported dtype " + m[1].str());
  Tensor t;
  t.dtype = found->second;
  if (!std::regex_search(header, m, order_re) || m[1].str() != "False") throw bad("not C-ordered");
  if (!std::regex_search(header, m, shape_re)) throw bad("no shape in the header");
  std::stringstream dims(m[1].str());
  std::string part;
  while (std::getline(dims, part, ',')) {
    if (part.find_first_not_of(" \t") == std::string::npos) continue;
    t.shape.push_back(std::stoll(part));
  }
  const size_t expected = t.count() * dtype_size(t.dtype);
  const size_t body = data.size() - offset - header_len;
  if (body != expected) {
    throw bad("holds " + std::to_string(body) + " data bytes, " + t.dtype + " " + shape_text(t.shape) + " needs " +
              std::to_string(expected));
  }
  t.bytes.assign(data.begin() + static_cast<std::ptrdiff_t>(offset + header_len), data.end());
  return t;
}

void write_npy(const std::string& path, const Tensor& tensor) {
  std::ostringstream dict;
  dict << "{'descr': '" << dtype_to_descr(tensor.dtype) << "', 'fortran_order': False, 'shape': (";
  if (tensor.shape.size() == 1) {
    dict << tensor.shape[0] << ",";
  } else {
    for (size_t i = 0; i < tensor.shape.size(); ++i) dict << (i ? ", " : "") << tensor.shape[i];
  }
  dict << "), }";
  std::string header = dict.str();
  // numpy pads the header with spaces so the data starts on a 64-byte boundary, ending in '\n'.
  const size_t unpadded = 10 + header.size() + 1;
  header.append((64 - unpadded % 64) % 64, ' ');
  header.push_back('\n');
  std::ofstream out(path, std::ios::binary);
  out.write("\x93NUMPY\x01\x00", 8);
  const unsigned char len[2] = {static_cast<unsigned char>(header.size() & 0xff),
                                static_cast<unsigned char>(header.size() >> 8)};
  out.write(reinterpret_cast<const char*>(len), 2);
  out.write(header.data(), static_cast<std::streamsize>(header.size()));
  out.write(reinterpret_cast<const char*>(tensor.bytes.data()), static_cast<std::streamsize>(tensor.bytes.size()));
  if (!out) throw Failure("OSError", "cannot write " + path);
}

}  // namespace hexfleet
