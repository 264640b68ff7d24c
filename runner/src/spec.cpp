// Reading spec.json with nlohmann::json: every field checked for presence and type, so a bad spec
// fails with one line naming the field instead of a crash half-way through a run.
#include "spec.hpp"

#include <nlohmann/json.hpp>
#include <regex>

#include "failure.hpp"

namespace hexfleet {

using nlohmann::json;

namespace {

const json& field(const json& object, const std::string& key, const std::string& where) {
  if (!object.is_object() || !object.contains(key)) throw InvalidSpec(where + key + ": field required");
  return object.at(key);
}

std::string text(const json& object, const std::string& key, const std::string& where) {
  const json& value = field(object, key, where);
  if (!value.is_string()) throw InvalidSpec(where + key + ": must be a string");
  return value.get<std::string>();
}

std::optional<std::string> optional_text(const json& object, const std::string& key, const std::string& where) {
  if (!object.contains(key) || object.at(key).is_null()) return std::nullopt;
  return text(object, key, where);
}

int64_t integer(const json& object, const std::string& key, const std::string& where, int64_t low, int64_t high) {
  const json& value = field(object, key, where);
  if (!value.is_number_integer()) throw InvalidSpec(where + key + ": must be an integer");
  const auto n = value.get<int64_t>();
  if (n < low || n > high) {
    throw InvalidSpec(where + key + ": must be between " + std::to_string(low) + " and " + std::to_string(high));
  }
  return n;
}

double number(const json& object, const std::string& key, const std::string& where) {
  const json& value = field(object, key, where);
  if (!value.is_number()) throw InvalidSpec(where + key + ": must be a number");
  return value.get<double>();
}

std::vector<std::string> names(const json& object, const std::string& key, const std::string& where) {
  const json& value = field(object, key, where);
  if (!value.is_array() || value.empty() || value.size() > 16) throw InvalidSpec(where + key + ": must list 1-16 names");
  std::vector<std::string> out;
  for (const auto& item : value) {
    if (!item.is_string()) throw InvalidSpec(where + key + ": must list strings");
    out.push_back(item.get<std::string>());
  }
  return out;
}

FileRef file_ref(const json& value, const std::string& where) {
  static const std::regex sha_re("^[0-9a-f]{64}$");
  FileRef ref;
  ref.name = text(value, "name", where);
  ref.sha256 = text(value, "sha256", where);
  ref.size = static_cast<uint64_t>(integer(value, "size", where, 0, INT64_MAX));
  if (!std::regex_match(ref.sha256, sha_re)) throw InvalidSpec(where + "sha256: not a lower-case sha256 hex digest");
  if (ref.name.empty() || ref.name.find('/') != std::string::npos || ref.name == "." || ref.name == "..") {
    throw InvalidSpec(where + "name: must be a plain file name");
  }
  return ref;
}

std::vector<TensorInfo> tensor_infos(const json& value, const std::string& where) {
  if (!value.is_array()) throw InvalidSpec(where + ": must be a list");
  std::vector<TensorInfo> out;
  for (const auto& item : value) {
    TensorInfo info;
    info.name = text(item, "name", where + ".");
    info.dtype = text(item, "dtype", where + ".");
    for (const auto& dim : field(item, "shape", where + ".")) {
      info.shape.push_back(dim.is_number_integer() ? dim.get<int64_t>() : -1);
    }
    out.push_back(info);
  }
  return out;
}

Component component(const json& value, const std::string& where) {
  Component c;
  c.file = file_ref(field(value, "file", where), where + "file.");
  if (value.contains("extra_files")) {
    for (const auto& extra : value.at("extra_files")) c.extra_files.push_back(file_ref(extra, where + "extra_files."));
  }
  c.format = value.contains("format") ? text(value, "format", where) : "onnx";
  if (c.format != "onnx" && c.format != "epcontext") throw InvalidSpec(where + "format: must be onnx or epcontext");
  c.inputs = tensor_infos(field(value, "inputs", where), where + "inputs");
  c.outputs = tensor_infos(field(value, "outputs", where), where + "outputs");
  return c;
}

std::string role(const json& object, const std::string& key, const std::string& where) {
  std::string name = text(object, key, where);
  if (name != "text_encoder" && name != "unet" && name != "vae_decoder") {
    throw InvalidSpec(where + key + ": must be text_encoder, unet or vae_decoder");
  }
  return name;
}

void read_generate(const json& p, Spec& spec) {
  const std::string where = "params.";
  GenerateParams& g = spec.generate;
  g.guidance = number(p, "guidance", where);
  g.latent_scale = number(p, "latent_scale", where);
  if (g.latent_scale <= 0) throw InvalidSpec("params.latent_scale: must be positive");
  g.scheduler = text(p, "scheduler", where);
  const json& images = field(p, "images", where);
  if (!images.is_array() || images.empty() || images.size() > 128) throw InvalidSpec("params.images: must list 1-128 images");
  for (const auto& item : images) {
    g.images.push_back({integer(item, "prompt_row", "params.images.", 1, 1 << 20),
                        integer(item, "seed", "params.images.", 0, INT64_MAX)});
  }
  const json& steps = field(p, "steps", where);
  if (!steps.is_array() || steps.empty() || steps.size() > 1000) throw InvalidSpec("params.steps: must list 1-1000 steps");
  for (const auto& item : steps) {
    const std::string at = "params.steps.";
    g.steps.push_back({number(item, "timestep", at), number(item, "input_scale", at), number(item, "sample", at),
                       number(item, "output", at), number(item, "prev_sample", at), number(item, "prev_output", at)});
  }
}

}  // namespace

Spec parse_spec(const std::string& body) {
  json root;
  try {
    root = json::parse(body);
  } catch (const json::parse_error& err) {
    throw InvalidSpec(std::string("not JSON: ") + err.what());
  }
  if (!root.is_object()) throw InvalidSpec("must be a JSON object");
  const json& version = field(root, "version", "");
  if (!version.is_number_integer() || version.get<int64_t>() != kContractVersion) {
    throw InvalidSpec("version: this runner reads contract version " + std::to_string(kContractVersion) +
                      ", the spec is version " + version.dump());
  }
  Spec spec;
  spec.run_id = text(root, "run_id", "");
  static const std::regex run_id_re("^[0-9a-f\\-]{36}$");
  if (!std::regex_match(spec.run_id, run_id_re)) throw InvalidSpec("run_id: must be a UUID");
  spec.model = root.contains("model") ? text(root, "model", "") : "";
  spec.runtime = text(root, "runtime", "");
  if (spec.runtime != "htp" && spec.runtime != "cpu") {
    throw InvalidSpec("runtime: unknown execution provider '" + spec.runtime + "'; choose htp or cpu");
  }
  spec.htp_arch = optional_text(root, "htp_arch", "");
  if (root.contains("allow_cpu_fallback")) {
    const json& fallback = root.at("allow_cpu_fallback");
    if (!fallback.is_boolean()) throw InvalidSpec("allow_cpu_fallback: must be true or false");
    spec.allow_cpu_fallback = fallback.get<bool>();
  }
  if (root.contains("qnn") && !root.at("qnn").is_null()) {
    QnnOptions qnn;
    qnn.ep_library = optional_text(root.at("qnn"), "ep_library", "qnn.");
    qnn.backend_path = optional_text(root.at("qnn"), "backend_path", "qnn.");
    spec.qnn = qnn;
  }
  spec.cache_dir = text(root, "cache_dir", "");
  const json& components = field(root, "components", "");
  if (!components.is_object() || components.empty()) throw InvalidSpec("components: must name at least one component");
  for (const auto& [name, value] : components.items()) {
    if (name != "text_encoder" && name != "unet" && name != "vae_decoder") {
      throw InvalidSpec("components." + name + ": unknown component");
    }
    spec.components[name] = component(value, "components." + name + ".");
  }
  const json& params = field(root, "params", "");
  spec.kind = text(params, "kind", "params.");
  if (spec.kind == "generate") {
    read_generate(params, spec);
    for (const char* needed : {"text_encoder", "unet", "vae_decoder"}) {
      if (!spec.components.count(needed)) throw InvalidSpec(std::string("components.") + needed + ": field required");
    }
  } else if (spec.kind == "benchmark") {
    spec.benchmark.component = role(params, "component", "params.");
    spec.benchmark.warmup = integer(params, "warmup", "params.", 0, 100);
    spec.benchmark.iterations = integer(params, "iterations", "params.", 1, 10000);
    spec.benchmark.seed = params.contains("seed") ? integer(params, "seed", "params.", 0, INT64_MAX) : 0;
    spec.benchmark.inputs = names(params, "inputs", "params.");
    if (!spec.components.count(spec.benchmark.component)) {
      throw InvalidSpec("components." + spec.benchmark.component + ": field required");
    }
  } else if (spec.kind == "infer") {
    spec.infer.component = role(params, "component", "params.");
    spec.infer.inputs = names(params, "inputs", "params.");
    if (!spec.components.count(spec.infer.component)) {
      throw InvalidSpec("components." + spec.infer.component + ": field required");
    }
  } else {
    throw InvalidSpec("params.kind: unknown kind '" + spec.kind + "'; choose generate, benchmark or infer");
  }
  return spec;
}

}  // namespace hexfleet
