// Session creation, tensors in and out of ORT, node placement, and the failpoints.
#include "engine.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <random>
#include <thread>
#include <unordered_map>

#include "failure.hpp"

namespace hexfleet {

namespace {

const char* kQnnEp = "QNNExecutionProvider";
const char* kCpuEp = "CPUExecutionProvider";
const std::vector<std::string> kHtpArchs = {"68", "69", "73", "75", "79", "81"};

std::string dtype_name(ONNXTensorElementDataType type) {
  switch (type) {
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT: return "float32";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16: return "float16";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_DOUBLE: return "float64";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64: return "int64";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32: return "int32";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8: return "uint8";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT8: return "int8";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT16: return "uint16";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_BOOL: return "bool";
    default: return "onnx type " + std::to_string(static_cast<int>(type));
  }
}

ONNXTensorElementDataType onnx_type(const std::string& dtype) {
  if (dtype == "float32") return ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT;
  if (dtype == "float16") return ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16;
  if (dtype == "float64") return ONNX_TENSOR_ELEMENT_DATA_TYPE_DOUBLE;
  if (dtype == "int64") return ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64;
  if (dtype == "int32") return ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32;
  if (dtype == "uint8") return ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8;
  if (dtype == "int8") return ONNX_TENSOR_ELEMENT_DATA_TYPE_INT8;
  if (dtype == "uint16") return ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT16;
  if (dtype == "bool") return ONNX_TENSOR_ELEMENT_DATA_TYPE_BOOL;
  throw model_error("unsupported tensor type " + dtype);
}

TensorInfo info_of(const std::string& name, const Ort::TypeInfo& type) {
  const auto tensor = type.GetTensorTypeAndShapeInfo();
  TensorInfo info;
  info.name = name;
  info.dtype = dtype_name(tensor.GetElementType());
  for (int64_t dim : tensor.GetShape()) info.shape.push_back(dim > 0 ? dim : -1);
  return info;
}

std::string describe(const TensorInfo& info) {
  std::string dims;
  for (size_t i = 0; i < info.shape.size(); ++i) {
    dims += (i ? ", " : "") + (info.shape[i] < 0 ? std::string("?") : std::to_string(info.shape[i]));
  }
  return info.dtype + " [" + dims + "]";
}

// Qualcomm's HTP library prints a banner on stdout when it starts; stdout carries the progress
// lines, so native writes to fd 1 go to /dev/null while an HTP session is created.
class QuietStdout {
 public:
  QuietStdout() {
    std::fflush(stdout);
    saved_ = ::dup(1);
    const int null = ::open("/dev/null", O_WRONLY);
    if (null >= 0) {
      ::dup2(null, 1);
      ::close(null);
    }
  }
  ~QuietStdout() {
    std::fflush(stdout);
    if (saved_ >= 0) {
      ::dup2(saved_, 1);
      ::close(saved_);
    }
  }
  QuietStdout(const QuietStdout&) = delete;
  QuietStdout& operator=(const QuietStdout&) = delete;

 private:
  int saved_ = -1;
};

std::string first_line(const std::string& text) { return text.substr(0, text.find('\n')); }

// Noise of `magnitude` times each float output's spread: what a faulty NPU does. The stream
// differs from the Python runner's numpy generator; only its size is part of the contract.
void perturb(Tensor& tensor, double magnitude, uint64_t seed) {
  if (tensor.dtype != "float32") return;
  float* data = tensor.f32();
  const size_t n = tensor.count();
  if (n == 0) return;
  double mean = 0;
  for (size_t i = 0; i < n; ++i) mean += data[i];
  mean /= static_cast<double>(n);
  double var = 0;
  for (size_t i = 0; i < n; ++i) var += (data[i] - mean) * (data[i] - mean);
  double spread = std::sqrt(var / static_cast<double>(n));
  if (spread == 0) spread = 1;
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal(0.0, 1.0);
  for (size_t i = 0; i < n; ++i) data[i] = static_cast<float>(data[i] + normal(rng) * magnitude * spread);
}

}  // namespace

Graph::Graph(Ort::Session session, std::string label, const Device& device, uint64_t fault_seed)
    : session_(std::move(session)), label_(std::move(label)), device_(device), fault_seed_(fault_seed) {
  const auto input_names = session_.GetInputNames();
  for (size_t i = 0; i < input_names.size(); ++i) inputs_.push_back(info_of(input_names[i], session_.GetInputTypeInfo(i)));
  const auto output_names = session_.GetOutputNames();
  for (size_t i = 0; i < output_names.size(); ++i) {
    outputs_.push_back(info_of(output_names[i], session_.GetOutputTypeInfo(i)));
  }
}

bool Graph::has_input(const std::string& name) const {
  for (const auto& info : inputs_) {
    if (info.name == name) return true;
  }
  return false;
}

const TensorInfo& Graph::input(const std::string& name) const {
  for (const auto& info : inputs_) {
    if (info.name == name) return info;
  }
  std::string have;
  for (const auto& info : inputs_) have += (have.empty() ? "" : ", ") + info.name;
  throw model_error(label_ + " has no input '" + name + "' (it has " + have + ")");
}

size_t Graph::output_index(const std::string& name) const {
  for (size_t i = 0; i < outputs_.size(); ++i) {
    if (outputs_[i].name == name) return i;
  }
  return 0;
}

void Graph::check_against(const Component& component) const {
  const auto check = [&](const char* what, const std::vector<TensorInfo>& graph, const std::vector<TensorInfo>& spec) {
    if (graph.size() != spec.size()) {
      throw model_error(label_ + " has " + std::to_string(graph.size()) + " " + what + ", the spec lists " +
                        std::to_string(spec.size()));
    }
    for (const auto& expected : spec) {
      const TensorInfo* actual = nullptr;
      for (const auto& info : graph) {
        if (info.name == expected.name) actual = &info;
      }
      if (actual == nullptr) throw model_error(label_ + " has no " + std::string(what, std::strlen(what) - 1) + " '" + expected.name + "' that the spec lists");
      if (actual->dtype != expected.dtype || actual->shape != expected.shape) {
        throw model_error(label_ + ": " + expected.name + " is " + describe(*actual) + " in the graph but " +
                          describe(expected) + " in the spec");
      }
    }
  };
  check("inputs", inputs_, component.inputs);
  check("outputs", outputs_, component.outputs);
}

std::vector<Tensor> Graph::run(const std::vector<std::pair<std::string, const Tensor*>>& feeds) {
  const auto memory = Ort::MemoryInfo::CreateCpu(OrtArenaAllocator, OrtMemTypeDefault);
  std::vector<Ort::Value> values;
  std::vector<const char*> names;
  for (const auto& [name, tensor] : feeds) {
    const TensorInfo& info = input(name);
    if (info.dtype != tensor->dtype) {
      throw invalid_request(label_ + " input '" + name + "' takes " + info.dtype + ", got " + tensor->dtype);
    }
    bool fits = info.shape.size() == tensor->shape.size();
    for (size_t i = 0; fits && i < info.shape.size(); ++i) fits = info.shape[i] < 0 || info.shape[i] == tensor->shape[i];
    if (!fits) {
      throw invalid_request(label_ + " input '" + name + "' takes " + describe(info) + ", got " + tensor->dtype + " " +
                            shape_text(tensor->shape));
    }
    values.push_back(Ort::Value::CreateTensor(memory, const_cast<unsigned char*>(tensor->bytes.data()),
                                              tensor->bytes.size(), tensor->shape.data(), tensor->shape.size(),
                                              onnx_type(tensor->dtype)));
    names.push_back(name.c_str());
  }
  std::vector<const char*> output_names;
  for (const auto& info : outputs_) output_names.push_back(info.name.c_str());
  const auto started = std::chrono::steady_clock::now();
  std::vector<Ort::Value> results;
  try {
    results = session_.Run(Ort::RunOptions{nullptr}, names.data(), values.data(), values.size(), output_names.data(),
                           output_names.size());
  } catch (const Ort::Exception& err) {
    throw model_error("running " + label_ + " failed: " + first_line(err.what()));
  }
  std::vector<Tensor> out;
  for (auto& value : results) {
    const auto shape_info = value.GetTensorTypeAndShapeInfo();
    Tensor t;
    t.dtype = dtype_name(shape_info.GetElementType());
    t.shape = shape_info.GetShape();
    const size_t bytes = t.count() * dtype_size(t.dtype);
    const auto* raw = static_cast<const unsigned char*>(value.GetTensorRawData());
    t.bytes.assign(raw, raw + bytes);
    out.push_back(std::move(t));
  }
  if (device_.faulty_npu > 0) {
    ++fault_seed_;
    for (auto& t : out) perturb(t, device_.faulty_npu, fault_seed_);
  }
  if (device_.slow_npu > 0) {
    const auto took = std::chrono::steady_clock::now() - started;
    std::this_thread::sleep_for(std::chrono::duration<double>(took) * device_.slow_npu);
  }
  return out;
}

Placement Graph::placement() const {
  Placement placement;
  for (const auto& subgraph : session_.GetEpGraphAssignmentInfo()) {
    const std::string ep = subgraph.GetEpName();
    const size_t nodes = subgraph.GetNodes().size();
    if (ep == kQnnEp) placement.npu_nodes += nodes;
    if (ep == kCpuEp) placement.cpu_nodes += nodes;
  }
  return placement;
}

Engine::Engine(const Spec& spec, const Device& device, std::string runtime)
    : spec_(spec), device_(device), runtime_(std::move(runtime)), env_(ORT_LOGGING_LEVEL_FATAL, "hexfleet-runner") {
  if (runtime_ == "htp") {
    std::string arch = spec.htp_arch.value_or("73");
    if (arch.rfind('v', 0) == 0) arch = arch.substr(1);
    bool known = false;
    for (const auto& a : kHtpArchs) known = known || a == arch;
    if (!known) throw invalid_request("unknown Hexagon arch '" + *spec.htp_arch + "'; choose one of 68, 69, 73, 75, 79, 81");
    htp_arch_ = arch;
  }
}

std::string Engine::ort_version() { return Ort::GetVersionString(); }

void Engine::add_qnn(Ort::SessionOptions& options) {
  std::optional<std::string> library;
  std::string backend = "libQnnHtp.so";  // built-in form: found by the loader (LD_LIBRARY_PATH)
  if (spec_.qnn) {
    if (spec_.qnn->ep_library) library = device_.path(*spec_.qnn->ep_library);
    if (spec_.qnn->backend_path) backend = device_.path(*spec_.qnn->backend_path);
  }
  const std::unordered_map<std::string, std::string> provider = {
      {"backend_path", backend},
      {"htp_arch", htp_arch_},
      // Input Q and output DQ on the HTP too, so a QDQ graph runs with CPU fallback disabled.
      {"offload_graph_io_quantization", "0"},
      {"htp_performance_mode", "burst"},
  };
  options.AddConfigEntry("session.disable_cpu_ep_fallback", spec_.allow_cpu_fallback ? "0" : "1");
  if (!library) {
    try {
      options.AppendExecutionProvider("QNN", provider);
    } catch (const Ort::Exception& err) {
      throw model_error("this onnxruntime has no built-in QNN execution provider: " + first_line(err.what()));
    }
    return;
  }
  if (!plugin_registered_) {
    if (::access(library->c_str(), R_OK) != 0) throw not_found("QNN EP library " + *library + " does not exist");
    try {
      env_.RegisterExecutionProviderLibrary(kQnnEp, *library);
    } catch (const Ort::Exception& err) {
      throw model_error("cannot load the QNN EP library " + *library + ": " + first_line(err.what()));
    }
    plugin_registered_ = true;
  }
  std::vector<Ort::ConstEpDevice> devices;
  for (const auto& device : env_.GetEpDevices()) {
    if (std::string(device.EpName()) == kQnnEp) devices.push_back(device);
  }
  if (devices.empty()) throw model_error("the QNN execution provider offers no device here");
  options.AppendExecutionProvider_V2(env_, {devices.front()}, provider);
}

std::unique_ptr<Graph> Engine::open(const std::string& path, const Component& component, const std::string& role) {
  Ort::SessionOptions options;
  options.SetIntraOpNumThreads(1);
  options.SetInterOpNumThreads(1);
  options.AddConfigEntry("session.record_ep_graph_assignment_info", "1");
  if (runtime_ == "htp") add_qnn(options);
  const std::string label = role + " (" + component.file.name + ")";
  std::unique_ptr<Graph> graph;
  try {
    if (runtime_ == "htp") {
      QuietStdout quiet;
      graph = std::make_unique<Graph>(Ort::Session(env_, path.c_str(), options), label, device_, 1000 * opened_);
    } else {
      graph = std::make_unique<Graph>(Ort::Session(env_, path.c_str(), options), label, device_, 1000 * opened_);
    }
  } catch (const Ort::Exception& err) {
    const std::string why = first_line(err.what());
    std::string lower = why;
    for (auto& c : lower) c = static_cast<char>(std::tolower(c));
    if (runtime_ == "htp" && !spec_.allow_cpu_fallback && lower.find("fallback") != std::string::npos) {
      throw model_error(label + " does not run entirely on the HTP backend (CPU fallback is disabled): " + why);
    }
    throw model_error("cannot load " + label + " on " + runtime_ + ": " + why);
  }
  ++opened_;
  graph->check_against(component);
  return graph;
}

}  // namespace hexfleet
