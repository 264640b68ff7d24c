// What the runner knows of the phone from its environment: a compute override, whether timings
// are simulated, and the failpoints. Read once by main() (names as in hexfleet/runner_env.py).
#pragma once

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "spec.hpp"

namespace hexfleet {

struct Device {
  // HEXFLEET_RUNNER_COMPUTE: "cpu" (or "htp") runs every graph on that EP whatever the spec asks,
  // for an emulated phone without an NPU simulator (arm64 under qemu); empty: as the spec asks.
  std::string compute_override;
  bool simulated = false;  // the NPU is a host simulator or the phone emulated: not device timings
  double faulty_npu = 0;   // HEXFLEET_RUNNER_FAULTY_NPU failpoint
  double slow_npu = 0;     // HEXFLEET_RUNNER_SLOW_NPU failpoint

  static Device from_environment();

  // An absolute device path, checked: refuses relative paths and '..'.
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
