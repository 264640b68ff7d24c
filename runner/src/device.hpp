// What the runner knows of the phone: where `/` is, whether it is virtual, its compute mode and
// the failpoints. Read once from the environment by main() (names as in hexfleet/runner_env.py).
#pragma once

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "spec.hpp"

namespace hexfleet {

struct Device {
  std::string root = "/";  // HEXFLEET_DEVICE_ROOT: a virtual phone's folder on the host
  bool virtual_phone = false;
  std::string compute_mode = "htp";  // HEXFLEET_VIRTUAL_COMPUTE: "cpu" forces the CPU EP on a virtual phone
  double faulty_npu = 0;             // HEXFLEET_VIRTUAL_FAULTY_NPU failpoint
  double slow_npu = 0;               // HEXFLEET_VIRTUAL_SLOW_NPU failpoint

  static Device from_environment();

  // The host path of an absolute device path; refuses relative paths and '..'.
  std::string path(const std::string& device_path) const;
  std::string effective_runtime(const std::string& requested) const;
};

// The readable thermal zones (/sys/class/thermal/thermal_zone*), sampled between timed runs.
class ThermalZones {
 public:
  explicit ThermalZones(const Device& device);
  // (temperature of the hottest zone in °C, its first trip point) now; nullopt without zones.
  std::optional<std::pair<double, std::optional<double>>> hottest() const;

 private:
  std::vector<std::string> folders_;
};

// Check each file of a component in the cache (size, then sha256) and return a path ONNX Runtime
// can open: the blob itself, or `<job>/.scratch/<sha256>/<name>` beside links to its extra files.
std::string component_path(const Device& device, const Spec& spec, const Component& component,
                           const std::string& job_dir);

double peak_rss_mb();

}  // namespace hexfleet
