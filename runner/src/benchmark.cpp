// The benchmark kind: one component on the host's inputs, a first run, warm-up, N timed runs,
// statistics, node placement, peak memory and a temperature trace read between runs.
#include <algorithm>
#include <cmath>

#include "engine.hpp"
#include "failure.hpp"
#include "kinds.hpp"

namespace hexfleet {

namespace {

using Clock = std::chrono::steady_clock;

// numpy.percentile's default ("linear"): interpolate between the two nearest ranks.
double percentile(std::vector<double> values, double q) {
  std::sort(values.begin(), values.end());
  const double rank = q / 100.0 * static_cast<double>(values.size() - 1);
  const auto low = static_cast<size_t>(std::floor(rank));
  const size_t high = std::min(low + 1, values.size() - 1);
  return values[low] + (values[high] - values[low]) * (rank - static_cast<double>(low));
}

std::vector<Tensor> read_inputs(const Job& job, const std::vector<std::string>& names,
                                std::vector<std::pair<std::string, const Tensor*>>& feeds) {
  std::vector<Tensor> tensors;
  tensors.reserve(names.size());
  for (size_t i = 0; i < names.size(); ++i) {
    tensors.push_back(read_npy(job.dir + "/input-" + std::to_string(i) + ".npy", "input '" + names[i] + "'"));
  }
  for (size_t i = 0; i < names.size(); ++i) feeds.emplace_back(names[i], &tensors[i]);
  return tensors;
}

}  // namespace

nlohmann::json run_benchmark(const Job& job) {
  const BenchmarkParams& params = job.spec.benchmark;
  const int64_t total = 1 + params.warmup + params.iterations;
  const Component& component = job.spec.components.at(params.component);
  auto started = Clock::now();
  Engine engine(job.spec, job.device, job.runtime);
  auto graph = engine.open(component_path(job.device, job.spec, component, job.dir), component, params.component);
  const double load_ms = seconds_since(started) * 1000;
  report_progress("load", 1, total);
  std::vector<std::pair<std::string, const Tensor*>> feeds;
  const auto tensors = read_inputs(job, params.inputs, feeds);
  for (const auto& info : graph->inputs()) {
    bool fed = false;
    for (const auto& feed : feeds) fed = fed || feed.first == info.name;
    if (!fed) throw invalid_request(params.component + " input '" + info.name + "' has no input file");
  }
  auto mark = Clock::now();
  graph->run(feeds);
  const double first_ms = seconds_since(mark) * 1000;
  for (int64_t n = 0; n < std::max<int64_t>(params.warmup - 1, 0); ++n) {
    graph->run(feeds);
    report_progress("warmup", 2 + n, total);
  }
  const ThermalZones zones(job.device);
  std::vector<double> samples;
  nlohmann::json temps = nlohmann::json::array();
  for (int64_t n = 0; n < params.iterations; ++n) {
    mark = Clock::now();
    graph->run(feeds);
    samples.push_back(seconds_since(mark) * 1000);
    // Read after the clock stopped: sysfs reads never count as inference time.
    const auto hottest = zones.hottest();
    if (hottest || !temps.empty()) temps.push_back(hottest ? hottest->first : temps.back().get<double>());
    report_progress("iteration", 1 + params.warmup + n + 1, total);
  }
  double mean = 0;
  for (double s : samples) mean += s;
  mean /= static_cast<double>(samples.size());
  double var = 0;
  for (double s : samples) var += (s - mean) * (s - mean);
  const Placement placement = graph->placement();
  const size_t placed = placement.npu_nodes + placement.cpu_nodes;
  nlohmann::json metrics = {
      {"component", params.component},
      {"peak_rss_mb", peak_rss_mb()},
      {"npu_nodes", placement.npu_nodes},
      {"cpu_nodes", placement.cpu_nodes},
      {"npu_share", placed ? static_cast<double>(placement.npu_nodes) / static_cast<double>(placed) : 0.0},
  };
  const auto hottest = zones.hottest();
  if (hottest && temps.size() == samples.size()) {
    metrics["temp_trace_c"] = temps;
    metrics["throttle_temp_c"] = hottest->second ? nlohmann::json(*hottest->second) : nlohmann::json(nullptr);
  }
  return {
      {"timings",
       {{"load_ms", load_ms},
        {"first_ms", first_ms},
        {"iterations_ms", samples},
        {"mean_ms", mean},
        {"std_ms", std::sqrt(var / static_cast<double>(samples.size()))},
        {"min_ms", *std::min_element(samples.begin(), samples.end())},
        {"p50_ms", percentile(samples, 50)},
        {"p90_ms", percentile(samples, 90)},
        {"p99_ms", percentile(samples, 99)}}},
      {"metrics", metrics},
      {"outputs", nlohmann::json::array()},
  };
}

nlohmann::json run_infer(const Job& job) {
  const InferParams& params = job.spec.infer;
  const Component& component = job.spec.components.at(params.component);
  const auto started = Clock::now();
  Engine engine(job.spec, job.device, job.runtime);
  auto graph = engine.open(component_path(job.device, job.spec, component, job.dir), component, params.component);
  const double load_s = seconds_since(started);
  std::vector<std::pair<std::string, const Tensor*>> feeds;
  const auto tensors = read_inputs(job, params.inputs, feeds);
  report_progress("infer", 0, 1);
  const auto mark = Clock::now();
  const auto results = graph->run(feeds);
  const double infer_s = seconds_since(mark);
  report_progress("infer", 1, 1);
  nlohmann::json outputs = nlohmann::json::array();
  for (size_t i = 0; i < results.size(); ++i) {
    const std::string name = "output-" + std::to_string(i) + ".npy";
    write_npy(job.dir + "/" + name, results[i]);
    outputs.push_back({{"name", name}, {"kind", "tensor"}, {"index", i}, {"prompt", graph->outputs()[i].name}, {"seed", nullptr}});
  }
  return {
      {"timings", {{"load_s", load_s}, {"infer_s", infer_s}}},
      {"metrics", {{"component", params.component}}},
      {"outputs", outputs},
  };
}

}  // namespace hexfleet
