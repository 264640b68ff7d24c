// The generate kind: token ids and initial latents from the job folder, the text encoder, the
// guided UNet loop driven by the spec's per-step linear coefficients, the VAE, PNG files.
#include <cmath>
#include <cstdio>
#include <memory>

#include "device.hpp"
#include "engine.hpp"
#include "failure.hpp"
#include "kinds.hpp"
#include "tensor.hpp"

#define STB_IMAGE_WRITE_IMPLEMENTATION
#include <stb/stb_image_write.h>

namespace hexfleet {

namespace {

using Clock = std::chrono::steady_clock;

Tensor row_of(const Tensor& tensor, int64_t row) {
  Tensor out;
  out.dtype = tensor.dtype;
  out.shape = tensor.shape;
  out.shape[0] = 1;
  const size_t bytes = tensor.bytes.size() / static_cast<size_t>(tensor.shape[0]);
  out.bytes.assign(tensor.bytes.begin() + static_cast<std::ptrdiff_t>(bytes * static_cast<size_t>(row)),
                   tensor.bytes.begin() + static_cast<std::ptrdiff_t>(bytes * static_cast<size_t>(row + 1)));
  return out;
}

Tensor concat2(const Tensor& a, const Tensor& b) {
  Tensor out;
  out.dtype = a.dtype;
  out.shape = a.shape;
  out.shape[0] = a.shape[0] + b.shape[0];
  out.bytes = a.bytes;
  out.bytes.insert(out.bytes.end(), b.bytes.begin(), b.bytes.end());
  return out;
}

// The timestep as the UNet declares it: a scalar, [1] or [batch], in its dtype (a float t cast
// the way numpy's astype casts it: truncation for integers).
Tensor timestep_feed(const TensorInfo& info, double t, int64_t batch) {
  Tensor out;
  out.dtype = info.dtype;
  if (!info.shape.empty()) out.shape = {info.shape[0] > 0 ? info.shape[0] : batch};
  const size_t n = out.count();
  out.bytes.resize(n * dtype_size(out.dtype));
  for (size_t i = 0; i < n; ++i) {
    if (out.dtype == "float32") {
      reinterpret_cast<float*>(out.bytes.data())[i] = static_cast<float>(t);
    } else if (out.dtype == "float64") {
      reinterpret_cast<double*>(out.bytes.data())[i] = t;
    } else if (out.dtype == "int64") {
      reinterpret_cast<int64_t*>(out.bytes.data())[i] = static_cast<int64_t>(t);
    } else if (out.dtype == "int32") {
      reinterpret_cast<int32_t*>(out.bytes.data())[i] = static_cast<int32_t>(t);
    } else {
      throw model_error("the UNet's timestep is " + info.dtype + "; this runner feeds float32, float64, int64 or int32");
    }
  }
  return out;
}

struct Stages {
  std::unique_ptr<Graph> text_encoder, unet, vae_decoder;
};

void check_float_input(const Graph& graph, const char* name, const char* role) {
  if (graph.input(name).dtype != "float32") throw model_error(std::string(role) + " input '" + name + "' must be float32");
}

}  // namespace

nlohmann::json run_generate(const Job& job) {
  const GenerateParams& params = job.spec.generate;
  const auto started = Clock::now();
  report_progress("load", 0, 1);
  Engine engine(job.spec, job.device, job.runtime);
  Stages g;
  const auto open = [&](const char* role) {
    const Component& component = job.spec.components.at(role);
    return engine.open(component_path(job.device, job.spec, component, job.dir), component, role);
  };
  g.text_encoder = open("text_encoder");
  g.unet = open("unet");
  g.vae_decoder = open("vae_decoder");
  const double load_s = seconds_since(started);
  report_progress("load", 1, 1);

  const Tensor tokens = read_npy(job.dir + "/tokens.npy", "the token ids");
  const Tensor latents = read_npy(job.dir + "/latents.npy", "the initial latents");
  const TensorInfo& ids = g.text_encoder->input("input_ids");
  if (tokens.shape.size() != 2 || tokens.dtype != ids.dtype || (ids.shape.size() == 2 && ids.shape[1] > 0 && ids.shape[1] != tokens.shape[1])) {
    throw invalid_request("tokens.npy is " + tokens.dtype + " " + shape_text(tokens.shape) + "; the text encoder takes " +
                          ids.dtype + " rows of its input_ids length");
  }
  const size_t n_images = params.images.size();
  const TensorInfo& sample = g.unet->input("sample");
  check_float_input(*g.unet, "sample", "the UNet");
  check_float_input(*g.unet, "encoder_hidden_states", "the UNet");
  check_float_input(*g.vae_decoder, "latent_sample", "the VAE decoder");
  const TensorInfo& timestep = g.unet->input("timestep");
  bool latents_fit = latents.dtype == "float32" && latents.shape.size() == 4 && sample.shape.size() == 4 &&
                     latents.shape[0] == static_cast<int64_t>(n_images);
  for (size_t d = 1; latents_fit && d < 4; ++d) latents_fit = sample.shape[d] < 0 || sample.shape[d] == latents.shape[d];
  if (!latents_fit) {
    throw invalid_request("latents.npy is " + latents.dtype + " " + shape_text(latents.shape) + "; expected float32 [" +
                          std::to_string(n_images) + ", C, H, W] fitting the UNet's sample");
  }
  const int64_t batch = sample.shape[0] > 0 ? sample.shape[0] : 2;
  if (batch != 1 && batch != 2) throw model_error("the UNet's batch must be 1, 2 or free, not " + std::to_string(batch));
  const size_t te_out = g.text_encoder->output_index("last_hidden_state");
  const size_t unet_out = g.unet->output_index("out_sample");
  const size_t vae_out = g.vae_decoder->output_index("sample");
  const float guidance = static_cast<float>(params.guidance);
  const float latent_scale = static_cast<float>(params.latent_scale);
  const int64_t steps = static_cast<int64_t>(params.steps.size());
  const int64_t total_steps = steps * static_cast<int64_t>(n_images);

  nlohmann::json outputs = nlohmann::json::array();
  nlohmann::json per_image = nlohmann::json::array();
  nlohmann::json all_steps = nlohmann::json::array();
  nlohmann::json te_times = nlohmann::json::array();
  nlohmann::json vae_times = nlohmann::json::array();
  double step_sum = 0;
  for (size_t index = 0; index < n_images; ++index) {
    const ImagePlan& plan = params.images[index];
    if (plan.prompt_row >= tokens.shape[0]) {
      throw invalid_request("image " + std::to_string(index) + " names prompt row " + std::to_string(plan.prompt_row) +
                            "; tokens.npy has " + std::to_string(tokens.shape[0]) + " rows");
    }
    const auto image_started = Clock::now();
    auto mark = Clock::now();
    const Tensor cond_ids = row_of(tokens, plan.prompt_row);
    const Tensor uncond_ids = row_of(tokens, 0);
    const Tensor cond = g.text_encoder->run({{"input_ids", &cond_ids}})[te_out];
    const Tensor uncond = g.text_encoder->run({{"input_ids", &uncond_ids}})[te_out];
    const Tensor context = concat2(uncond, cond);  // guidance batch order: unconditional, conditional
    const double te_s = seconds_since(mark);

    Tensor x = row_of(latents, static_cast<int64_t>(index));
    const size_t n = x.count();
    Tensor x_prev = make_f32(x.shape);
    Tensor e_prev = make_f32(x.shape);
    Tensor model_in = make_f32(x.shape);
    Tensor e = make_f32(x.shape);
    nlohmann::json step_times = nlohmann::json::array();
    for (int64_t k = 0; k < steps; ++k) {
      const SamplerStep& step = params.steps[static_cast<size_t>(k)];
      mark = Clock::now();
      for (size_t i = 0; i < n; ++i) model_in.f32()[i] = static_cast<float>(static_cast<double>(x.f32()[i]) * step.input_scale);
      const Tensor t = timestep_feed(timestep, step.timestep, batch);
      const float* uncond_out = nullptr;
      const float* cond_out = nullptr;
      std::vector<Tensor> a, b;
      if (batch == 2) {
        const Tensor doubled = concat2(model_in, model_in);
        a = g.unet->run({{"sample", &doubled}, {"timestep", &t}, {"encoder_hidden_states", &context}});
        uncond_out = a[unet_out].f32();
        cond_out = a[unet_out].f32() + n;
      } else {
        a = g.unet->run({{"sample", &model_in}, {"timestep", &t}, {"encoder_hidden_states", &uncond}});
        b = g.unet->run({{"sample", &model_in}, {"timestep", &t}, {"encoder_hidden_states", &cond}});
        uncond_out = a[unet_out].f32();
        cond_out = b[unet_out].f32();
      }
      if (a[unet_out].dtype != "float32" || a[unet_out].count() != n * static_cast<size_t>(batch)) {
        throw model_error("the UNet returned " + a[unet_out].dtype + " " + shape_text(a[unet_out].shape) +
                          " for a sample of " + shape_text(x.shape));
      }
      for (size_t i = 0; i < n; ++i) e.f32()[i] = uncond_out[i] + guidance * (cond_out[i] - uncond_out[i]);
      // The sampler's update, in float64 and in this order (CONTRACT.md): the host replays the
      // same arithmetic, so both get the same float32 sample.
      for (size_t i = 0; i < n; ++i) {
        const double next = step.sample * static_cast<double>(x.f32()[i]) + step.output * static_cast<double>(e.f32()[i]) +
                            step.prev_sample * static_cast<double>(x_prev.f32()[i]) +
                            step.prev_output * static_cast<double>(e_prev.f32()[i]);
        x_prev.f32()[i] = x.f32()[i];
        x.f32()[i] = static_cast<float>(next);
      }
      std::swap(e, e_prev);
      const double step_s = seconds_since(mark);
      step_times.push_back(step_s);
      all_steps.push_back(step_s);
      step_sum += step_s;
      report_progress("unet", static_cast<int64_t>(index) * steps + k + 1, total_steps);
    }

    mark = Clock::now();
    Tensor scaled = make_f32(x.shape);
    for (size_t i = 0; i < n; ++i) scaled.f32()[i] = x.f32()[i] / latent_scale;
    const Tensor decoded = g.vae_decoder->run({{"latent_sample", &scaled}})[vae_out];
    if (decoded.dtype != "float32" || decoded.shape.size() != 4 || decoded.shape[1] != 3) {
      throw model_error("the VAE decoder returned " + decoded.dtype + " " + shape_text(decoded.shape) + ", not [1, 3, H, W]");
    }
    const int64_t height = decoded.shape[2];
    const int64_t width = decoded.shape[3];
    std::vector<unsigned char> pixels(static_cast<size_t>(height * width * 3));
    const size_t plane = static_cast<size_t>(height * width);
    for (size_t c = 0; c < 3; ++c) {
      for (size_t p = 0; p < plane; ++p) {
        float v = decoded.f32()[c * plane + p];
        v = v < -1.0f ? -1.0f : (v > 1.0f ? 1.0f : v);
        // numpy's round is half to even, as nearbyint is in the default rounding mode.
        pixels[p * 3 + c] = static_cast<unsigned char>(std::nearbyint((v + 1.0f) * 127.5f));
      }
    }
    const std::string name = "image-" + std::to_string(index) + ".png";
    if (stbi_write_png((job.dir + "/" + name).c_str(), static_cast<int>(width), static_cast<int>(height), 3,
                       pixels.data(), static_cast<int>(width * 3)) == 0) {
      throw Failure("OSError", "cannot write " + name);
    }
    const double vae_s = seconds_since(mark);
    double unet_total = 0;
    for (const auto& s : step_times) unet_total += s.get<double>();
    te_times.push_back(te_s);
    vae_times.push_back(vae_s);
    per_image.push_back({{"text_encoder_s", te_s},
                         {"unet_steps_s", step_times},
                         {"unet_total_s", unet_total},
                         {"vae_decoder_s", vae_s},
                         {"total_s", seconds_since(image_started)}});
    outputs.push_back({{"name", name}, {"kind", "image"}, {"index", index}, {"prompt", nullptr}, {"seed", plan.seed}});
  }
  return {
      {"timings",
       {{"load_s", load_s},
        {"text_encoder_s", te_times},
        {"unet_steps_s", all_steps},
        {"unet_step_mean_s", step_sum / static_cast<double>(all_steps.size())},
        {"vae_decoder_s", vae_times},
        {"images", per_image},
        {"total_s", seconds_since(started)}}},
      {"metrics",
       {{"steps", steps},
        {"guidance", params.guidance},
        {"scheduler", params.scheduler},
        {"peak_rss_mb", peak_rss_mb()}}},
      {"outputs", outputs},
  };
}

}  // namespace hexfleet
