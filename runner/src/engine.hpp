// ONNX Runtime through its C++ API (over the C API): sessions on the CPU EP or the QNN HTP EP, the
// latter either as a plugin library (RegisterExecutionProviderLibrary + GetEpDevices +
// SessionOptionsAppendExecutionProvider_V2) or built into ORT (Android's QNN package: "QNN").
#pragma once

#include <memory>
#include <onnxruntime_cxx_api.h>
#include <string>
#include <utility>
#include <vector>

#include "device.hpp"
#include "spec.hpp"
#include "tensor.hpp"

namespace hexfleet {

struct Placement {
  size_t npu_nodes = 0;
  size_t cpu_nodes = 0;
};

// One open graph. run() applies the phone's failpoints (faulty_npu perturbs outputs, slow_npu
// stretches the call), so every kind sees them without knowing they exist.
class Graph {
 public:
  Graph(Ort::Session session, std::string label, const Device& device, uint64_t fault_seed);

  std::vector<Tensor> run(const std::vector<std::pair<std::string, const Tensor*>>& feeds);
  const TensorInfo& input(const std::string& name) const;
  bool has_input(const std::string& name) const;
  const std::vector<TensorInfo>& inputs() const { return inputs_; }
  const std::vector<TensorInfo>& outputs() const { return outputs_; }
  // The output called `name`, or the first one (the Python pipeline's rule).
  size_t output_index(const std::string& name) const;
  Placement placement() const;
  void check_against(const Component& component) const;

 private:
  Ort::Session session_;
  std::string label_;
  const Device& device_;
  uint64_t fault_seed_;
  std::vector<TensorInfo> inputs_;
  std::vector<TensorInfo> outputs_;
};

class Engine {
 public:
  Engine(const Spec& spec, const Device& device, std::string runtime);
  // Open the component at `path` and check its inputs and outputs against the spec's.
  std::unique_ptr<Graph> open(const std::string& path, const Component& component, const std::string& role);
  const std::string& runtime() const { return runtime_; }
  std::string htp_arch() const { return htp_arch_; }
  static std::string ort_version();

 private:
  void add_qnn(Ort::SessionOptions& options);

  const Spec& spec_;
  const Device& device_;
  std::string runtime_;
  std::string htp_arch_;
  Ort::Env env_;
  bool plugin_registered_ = false;
  size_t opened_ = 0;
};

}  // namespace hexfleet
