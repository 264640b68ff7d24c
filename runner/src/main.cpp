// `hexfleet-runner SPEC_PATH`: run one job (contract version 2, runner/CONTRACT.md), write
// result.json beside the spec and exit 0; or print one line `hexfleet-runner: <reason>` on stderr
// and exit 1. The environment is read here and nowhere else.
#include <cstdio>
#include <fstream>
#include <iostream>
#include <new>
#include <sstream>

#include "engine.hpp"
#include "failure.hpp"
#include "kinds.hpp"

namespace hexfleet {

void report_progress(const char* stage, int64_t step, int64_t total) {
  std::printf("@progress {\"stage\":\"%s\",\"step\":%lld,\"total\":%lld}\n", stage, static_cast<long long>(step),
              static_cast<long long>(total));
  std::fflush(stdout);
}

double seconds_since(const std::chrono::steady_clock::time_point& mark) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - mark).count();
}

namespace {

int fail(const std::string& reason) {
  std::string line;
  std::istringstream words(reason);
  for (std::string word; words >> word;) line += (line.empty() ? "" : " ") + word;  // one line, always
  std::fprintf(stderr, "hexfleet-runner: %s\n", line.c_str());
  return 1;
}

std::string folder_of(const std::string& path) {
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

int run(const std::string& spec_path) {
  std::ifstream in(spec_path, std::ios::binary);
  if (!in) return fail("cannot read the spec: " + spec_path + " does not exist or is unreadable");
  const std::string body((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const Spec spec = parse_spec(body);
  const Device device = Device::from_environment();
  const Job job{spec, device, folder_of(spec_path), device.effective_runtime(spec.runtime)};
  nlohmann::json result;
  if (spec.kind == "generate") {
    result = run_generate(job);
  } else if (spec.kind == "benchmark") {
    result = run_benchmark(job);
  } else {
    result = run_infer(job);
  }
  result["version"] = kContractVersion;
  result["run_id"] = spec.run_id;
  result["kind"] = spec.kind;
  result["runtime"] = job.runtime;
  result["htp_arch"] = job.runtime == "htp" ? nlohmann::json(spec.htp_arch.value_or("73")) : nlohmann::json(nullptr);
  result["simulated"] = device.simulated;
  result["runner"] = std::string("hexfleet-runner native ") + HEXFLEET_RUNNER_VERSION + ", onnxruntime " + Engine::ort_version();
  const std::string tmp = job.dir + "/result.json.tmp";
  {
    std::ofstream out(tmp, std::ios::binary);
    out << result.dump(1);
    if (!out) return fail("OSError: cannot write " + tmp);
  }
  if (std::rename(tmp.c_str(), (job.dir + "/result.json").c_str()) != 0) return fail("OSError: cannot write result.json");
  return 0;
}

}  // namespace

}  // namespace hexfleet

int main(int argc, char** argv) {
  if (argc != 2) return hexfleet::fail("usage: hexfleet-runner SPEC_PATH");
  try {
    return hexfleet::run(argv[1]);
  } catch (const hexfleet::Failure& err) {
    return hexfleet::fail(err.what());
  } catch (const hexfleet::InvalidSpec& err) {
    return hexfleet::fail(err.what());
  } catch (const Ort::Exception& err) {
    return hexfleet::fail(std::string("ModelError: ") + err.what());
  } catch (const nlohmann::json::exception& err) {
    return hexfleet::fail(std::string("invalid spec: ") + err.what());
  } catch (const std::bad_alloc&) {
    return hexfleet::fail("out of memory");
  } catch (const std::exception& err) {
    return hexfleet::fail(std::string("internal error: ") + err.what());
  }
}
