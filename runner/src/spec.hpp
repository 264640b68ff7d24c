// spec.json, contract version 2 (runner/CONTRACT.md), parsed and checked into plain structs.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace hexfleet {

constexpr int kContractVersion = 2;

struct FileRef {
  std::string name;
  std::string sha256;
  uint64_t size = 0;
};

struct TensorInfo {
  std::string name;
  std::vector<int64_t> shape;  // -1 for a free (named) dimension
  std::string dtype;
};

struct Component {
  FileRef file;
  std::vector<FileRef> extra_files;
  std::string format;  // "onnx" or "epcontext"
  std::vector<TensorInfo> inputs;
  std::vector<TensorInfo> outputs;
};

// One denoising step: the UNet sees t and the sample times input_scale; the next sample is
// sample*x + output*e + prev_sample*x_prev + prev_output*e_prev, in float64, in that order.
struct SamplerStep {
  double timestep = 0;
  double input_scale = 1;
  double sample = 0;
  double output = 0;
  double prev_sample = 0;
  double prev_output = 0;
};

struct ImagePlan {
  int64_t prompt_row = 1;  // row of tokens.npy holding this image's prompt (row 0: negative prompt)
  int64_t seed = 0;
};

struct GenerateParams {
  std::vector<ImagePlan> images;
  double guidance = 0;
  double latent_scale = 1;
  std::string scheduler;
  std::vector<SamplerStep> steps;
};

struct BenchmarkParams {
  std::string component;
  int64_t warmup = 0;
  int64_t iterations = 1;
  int64_t seed = 0;
  std::vector<std::string> inputs;
};

struct InferParams {
  std::string component;
  std::vector<std::string> inputs;
};

struct QnnOptions {
  std::optional<std::string> ep_library;    // device path of the plugin EP library; unset: built in
  std::optional<std::string> backend_path;  // device path of libQnnHtp.so; unset: found by name
};

struct Spec {
  std::string run_id;
  std::string model;
  std::string kind;     // generate | benchmark | infer
  std::string runtime;  // htp | cpu
  std::optional<std::string> htp_arch;
  bool allow_cpu_fallback = false;
  std::optional<QnnOptions> qnn;
  std::string cache_dir;
  std::map<std::string, Component> components;
  GenerateParams generate;
  BenchmarkParams benchmark;
  InferParams infer;
};

// Parse spec.json's text; throws InvalidSpec naming the offending field.
Spec parse_spec(const std::string& text);

}  // namespace hexfleet
