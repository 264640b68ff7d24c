// The three job kinds. Each reads the job folder, prints progress, writes its outputs there and
// returns result.json's body (without the fields main() adds).
#pragma once

#include <chrono>
#include <nlohmann/json.hpp>
#include <string>

#include "device.hpp"
#include "spec.hpp"

namespace hexfleet {

struct Job {
  const Spec& spec;
  const Device& device;
  std::string dir;      // the spec's folder: every file the runner reads or writes is in it
  std::string runtime;  // what actually runs: the spec's runtime, or HEXFLEET_RUNNER_COMPUTE when set
};

nlohmann::json run_generate(const Job& job);
nlohmann::json run_benchmark(const Job& job);
nlohmann::json run_infer(const Job& job);

// `@progress {"stage":S,"step":n,"total":N}` on stdout, flushed at once.
void report_progress(const char* stage, int64_t step, int64_t total);
double seconds_since(const std::chrono::steady_clock::time_point& mark);

}  // namespace hexfleet
