// The phone's filesystem as the runner sees it: absolute device paths, cached files checked by
// size and sha256 before use, thermal zones, and the process's own peak memory.
#include "device.hpp"

#include <dirent.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <picosha2.h>

#include "failure.hpp"

namespace hexfleet {

namespace {

std::string env_or(const char* name, const std::string& fallback) {
  const char* value = std::getenv(name);
  return value == nullptr ? fallback : std::string(value);
}

double env_number(const char* name) {
  const std::string value = env_or(name, "");
  if (value.empty()) return 0;
  char* end = nullptr;
  const double parsed = std::strtod(value.c_str(), &end);
  if (end == value.c_str() || *end != '\0' || !std::isfinite(parsed)) {
    throw invalid_request(std::string(name) + "=" + value + " is not a number");
  }
  return parsed;
}

bool is_file(const std::string& path, uint64_t* size) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) return false;
  *size = static_cast<uint64_t>(st.st_size);
  return true;
}

std::string sha256_of(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw not_found("cannot read " + path);
  picosha2::hash256_one_by_one hasher;
  std::vector<char> chunk(1 << 20);
  while (in) {
    in.read(chunk.data(), static_cast<std::streamsize>(chunk.size()));
    hasher.process(chunk.begin(), chunk.begin() + in.gcount());
  }
  hasher.finish();
  return picosha2::get_hash_hex_string(hasher);
}

// A sysfs temperature in °C (millidegrees on Android; some drivers report degrees); implausible
// readings (disabled sensors report 0 or -273) count as unreadable.
std::optional<double> read_celsius(const std::string& path) {
  std::string text;
  for (int attempt = 0; attempt < 2 && text.empty(); ++attempt) {  // a zone being rewritten can read empty once
    std::ifstream in(path);
    if (!in) return std::nullopt;
    std::getline(in, text);
    text.erase(std::remove_if(text.begin(), text.end(), ::isspace), text.end());
  }
  char* end = nullptr;
  const double value = std::strtod(text.c_str(), &end);
  if (text.empty() || *end != '\0') return std::nullopt;
  const double celsius = std::fabs(value) >= 1000 ? value / 1000 : value;
  if (celsius < -30.0 || celsius > 150.0) return std::nullopt;
  return celsius;
}

}  // namespace

Device Device::from_environment() {
  Device device;
  const std::string compute = env_or("HEXFLEET_RUNNER_COMPUTE", "");
  if (!compute.empty() && compute != "htp" && compute != "cpu") {
    throw invalid_request("HEXFLEET_RUNNER_COMPUTE=" + compute + ": expected htp or cpu");
  }
  device.compute_override = compute;
  device.faulty_npu = env_number("HEXFLEET_RUNNER_FAULTY_NPU");
  device.slow_npu = std::max(0.0, env_number("HEXFLEET_RUNNER_SLOW_NPU"));
#if defined(__x86_64__)
  // No phone with an x86_64 CPU has a Hexagon NPU: an x86_64 build can only load the QNN HTP
  // simulator, so its timings are never a device's.
  device.simulated = true;
#else
  device.simulated = !compute.empty();
#endif
  return device;
}

std::string Device::path(const std::string& device_path) const {
  if (device_path.empty() || device_path[0] != '/') {
    throw invalid_request("device path '" + device_path + "' must be absolute");
  }
  size_t start = 0;
  while (start <= device_path.size()) {
    const size_t end = std::min(device_path.find('/', start), device_path.size());
    if (device_path.compare(start, end - start, "..") == 0 && end - start == 2) {
      throw invalid_request("device path '" + device_path + "' must not contain '..'");
    }
    start = end + 1;
  }
  return device_path;
}

std::string Device::effective_runtime(const std::string& requested) const {
  return compute_override.empty() ? requested : compute_override;
}

ThermalZones::ThermalZones(const Device& device) {
  const std::string base = device.path("/sys/class/thermal");
  DIR* dir = ::opendir(base.c_str());
  if (dir == nullptr) return;
  std::vector<std::string> names;
  while (const dirent* entry = ::readdir(dir)) {
    const std::string name = entry->d_name;
    if (name.rfind("thermal_zone", 0) == 0) names.push_back(name);
  }
  ::closedir(dir);
  std::sort(names.begin(), names.end(), [](const std::string& a, const std::string& b) {
    return a.size() != b.size() ? a.size() < b.size() : a < b;
  });
  for (const auto& name : names) {
    const std::string folder = base + "/" + name;
    if (read_celsius(folder + "/temp")) folders_.push_back(folder);
  }
}

std::optional<std::pair<double, std::optional<double>>> ThermalZones::hottest() const {
  std::optional<std::pair<double, std::optional<double>>> best;
  for (const auto& folder : folders_) {
    const auto temp = read_celsius(folder + "/temp");
    if (temp && (!best || *temp > best->first)) best = std::make_pair(*temp, read_celsius(folder + "/trip_point_0_temp"));
  }
  return best;
}

static std::string verified_blob(const Device& device, const Spec& spec, const FileRef& ref) {
  const std::string path = device.path(spec.cache_dir) + "/" + ref.sha256;
  const std::string short_sha = ref.sha256.substr(0, 12);
  uint64_t size = 0;
  if (!is_file(path, &size)) throw not_found(ref.name + " (" + short_sha + ") is not in the phone's cache");
  if (size != ref.size) {
    throw artifact_mismatch(ref.name + ": cached file " + short_sha + " has " + std::to_string(size) +
                            " bytes, the spec says " + std::to_string(ref.size));
  }
  const std::string actual = sha256_of(path);
  if (actual != ref.sha256) {
    throw artifact_mismatch(ref.name + ": cached file " + short_sha + " hashes to " + actual.substr(0, 12) +
                            "; the file is corrupt or was replaced");
  }
  return path;
}

std::string component_path(const Device& device, const Spec& spec, const Component& component,
                           const std::string& job_dir) {
  const std::string main = verified_blob(device, spec, component.file);
  if (component.extra_files.empty()) return main;
  // ONNX Runtime finds external data and context binaries beside the model, by their own names.
  const std::string scratch = job_dir + "/.scratch";
  const std::string folder = scratch + "/" + component.file.sha256;
  ::mkdir(scratch.c_str(), 0755);
  ::mkdir(folder.c_str(), 0755);
  std::vector<std::pair<std::string, const FileRef*>> links = {{main, &component.file}};
  for (const auto& extra : component.extra_files) links.emplace_back(verified_blob(device, spec, extra), &extra);
  for (const auto& [blob, ref] : links) {
    const std::string target = folder + "/" + ref->name;
    if (::symlink(blob.c_str(), target.c_str()) != 0 && errno != EEXIST) {
      throw Failure("OSError", "cannot link " + ref->name + " into the job folder: " + std::strerror(errno));
    }
  }
  return folder + "/" + component.file.name;
}

double peak_rss_mb() {
  rusage usage{};
  ::getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_maxrss) / 1024.0;
}

}  // namespace hexfleet
