"""Exports a trained tiny-sd run to static-shape FP32 ONNX files and writes info.json.

Also checks the ONNX files against torch and measures their prompt accuracy with a small
onnxruntime DDIM sampler: `python -m hexfleet.models.tiny_sd.export runs/tiny_sd`. Training
(`hexfleet.models.tiny_sd.train`) calls `export_run` when it finishes; this module does not
import training.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from torch import nn

from hexfleet.errors import ModelError
from hexfleet.models.schedulers import denoise, guide, make_scheduler
from hexfleet.models.tiny_sd.judge import accuracy
from hexfleet.models.tiny_sd.model import (
    NOISE_SCHEDULE,
    Decoder,
    TextEncoder,
    TinySDConfig,
    UNet,
    parameter_count,
)
from hexfleet.models.tiny_sd.tokenizer import WordTokenizer
from hexfleet.models.tiny_sd.world import Scene, prompt_for, split

PACKAGE_DIR = Path(__file__).parent
WEIGHTS_DIR = PACKAGE_DIR / "weights"
OPSET = 17
UNET_BATCH = 2


class _UNetIO(nn.Module):
    def __init__(self, unet: UNet) -> None:
        super().__init__()
        self.unet = unet

    def forward(
        self, sample: torch.Tensor, timestep: torch.Tensor, encoder_hidden_states: torch.Tensor
    ) -> torch.Tensor:
        return self.unet(sample, timestep, encoder_hidden_states)


class _DecoderIO(nn.Module):
    def __init__(self, decoder: Decoder) -> None:
        super().__init__()
        self.decoder = decoder

    def forward(self, latent_sample: torch.Tensor) -> torch.Tensor:
        return self.decoder(latent_sample).clamp(-1.0, 1.0)


def load_run(run: Path) -> tuple[TinySDConfig, TextEncoder, UNet, Decoder, dict]:
    """The EMA text encoder and UNet, the decoder, and the checkpoint's metadata."""
    try:
        state = torch.load(run / "checkpoint.pt")
        ae_state = torch.load(run / "decoder.pt")
    except OSError as err:
        raise ModelError(f"no finished training run in {run}: {err}") from err
    raw = dict(state["config"])
    for key in ("unet_widths", "unet_attention", "decoder_widths"):
        raw[key] = tuple(raw[key])
    cfg = TinySDConfig(**raw)
    text_encoder, unet, decoder = TextEncoder(cfg), UNet(cfg), Decoder(cfg)
    text_encoder.load_state_dict(state["ema_text_encoder"])
    unet.load_state_dict(state["ema_unet"])
    decoder.load_state_dict(ae_state["decoder"])
    for module in (text_encoder, unet, decoder):
        module.eval()
    meta = {key: state[key] for key in ("step", "loss", "seconds", "scaling_factor", "settings")}
    meta["decoder"] = {key: ae_state[key] for key in ("steps", "seconds", "final_loss")}
    return cfg, text_encoder, unet, decoder, meta


def _export(module: nn.Module, args: tuple, path: Path, inputs: list[str], output: str) -> None:
    torch.onnx.export(
        module,
        args,
        str(path),
        input_names=inputs,
        output_names=[output],
        opset_version=OPSET,
        dynamo=False,
        do_constant_folding=True,
    )


def export_onnx(
    cfg: TinySDConfig, text_encoder: TextEncoder, unet: UNet, decoder: Decoder, out: Path
) -> dict[str, dict]:
    """Writes the three ONNX files and returns their I/O descriptions."""
    out.mkdir(parents=True, exist_ok=True)
    n, c, d = cfg.max_length, cfg.latent_channels, cfg.text_width
    h = cfg.latent_size
    ids = torch.zeros(1, n, dtype=torch.int64)
    sample = torch.zeros(UNET_BATCH, c, h, h)
    timestep = torch.zeros(1)
    context = torch.zeros(UNET_BATCH, n, d)
    latent = torch.zeros(1, c, h, h)
    with torch.no_grad():
        _export(text_encoder, (ids,), out / "text_encoder.onnx", ["input_ids"], "last_hidden_state")
        _export(
            _UNetIO(unet),
            (sample, timestep, context),
            out / "unet.onnx",
            ["sample", "timestep", "encoder_hidden_states"],
            "out_sample",
        )
        _export(
            _DecoderIO(decoder), (latent,), out / "vae_decoder.onnx", ["latent_sample"], "sample"
        )
    size = cfg.image_size
    return {
        "text_encoder": {
            "file": "weights/text_encoder.onnx",
            "parameters": parameter_count(text_encoder),
            "inputs": {"input_ids": {"dtype": "int64", "shape": [1, n]}},
            "outputs": {"last_hidden_state": {"dtype": "float32", "shape": [1, n, d]}},
        },
        "unet": {
            "file": "weights/unet.onnx",
            "parameters": parameter_count(unet),
            "inputs": {
                "sample": {"dtype": "float32", "shape": [UNET_BATCH, c, h, h]},
                "timestep": {"dtype": "float32", "shape": [1]},
                "encoder_hidden_states": {"dtype": "float32", "shape": [UNET_BATCH, n, d]},
            },
            "outputs": {"out_sample": {"dtype": "float32", "shape": [UNET_BATCH, c, h, h]}},
        },
        "vae_decoder": {
            "file": "weights/vae_decoder.onnx",
            "parameters": parameter_count(decoder),
            "inputs": {"latent_sample": {"dtype": "float32", "shape": [1, c, h, h]}},
            "outputs": {"sample": {"dtype": "float32", "shape": [1, 3, size, size]}},
        },
    }


def check_against_torch(
    cfg: TinySDConfig, text_encoder: TextEncoder, unet: UNet, decoder: Decoder, out: Path
) -> dict[str, float]:
    """Max abs difference between each ONNX file (CPU EP) and its torch module."""
    rng = np.random.default_rng(0)
    ids = WordTokenizer.default().encode("a red circle on the left in a blue background")[None]
    sample = rng.standard_normal(
        (UNET_BATCH, cfg.latent_channels, cfg.latent_size, cfg.latent_size)
    ).astype(np.float32)
    timestep = np.array([500.0], dtype=np.float32)
    context = rng.standard_normal((UNET_BATCH, cfg.max_length, cfg.text_width)).astype(np.float32)
    latent = sample[:1] * 0.5
    cases = {
        "text_encoder": ({"input_ids": ids}, lambda: text_encoder(torch.from_numpy(ids))),
        "unet": (
            {"sample": sample, "timestep": timestep, "encoder_hidden_states": context},
            lambda: unet(
                torch.from_numpy(sample), torch.from_numpy(timestep), torch.from_numpy(context)
            ),
        ),
        "vae_decoder": (
            {"latent_sample": latent},
            lambda: decoder(torch.from_numpy(latent)).clamp(-1, 1),
        ),
    }
    diffs = {}
    for name, (feeds, reference) in cases.items():
        session = ort.InferenceSession(
            str(out / f"{name}.onnx"), providers=["CPUExecutionProvider"]
        )
        with torch.no_grad():
            expected = reference().numpy()
        diffs[name] = float(np.abs(session.run(None, feeds)[0] - expected).max())
    return diffs


class OnnxSampler:
    """A minimal onnxruntime DDIM (trailing spacing, eta 0) + CFG sampler over the ONNX files.

    Its latents stay float64 between steps (the UNet sees float32), unlike the pipeline's float32.
    """

    def __init__(self, weights: Path, scaling_factor: float, threads: int = 2) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads

        def session(name: str) -> ort.InferenceSession:
            return ort.InferenceSession(
                str(weights / f"{name}.onnx"), options, providers=["CPUExecutionProvider"]
            )

        self.text_encoder = session("text_encoder")
        self.unet = session("unet")
        self.decoder = session("vae_decoder")
        self.scaling_factor = scaling_factor
        self.tokenizer = WordTokenizer.default()
        self.scheduler = make_scheduler("ddim", NOISE_SCHEDULE)
        shape = self.unet.get_inputs()[0].shape
        self.latent_shape = (1, *shape[1:])

    def __call__(self, prompt: str, steps: int, guidance_scale: float, seed: int) -> np.ndarray:
        def embed(text: str) -> np.ndarray:
            return self.text_encoder.run(None, {"input_ids": self.tokenizer.encode(text)[None]})[0]

        context = np.concatenate([embed(""), embed(prompt)])

        def predict(x: np.ndarray, t: float) -> np.ndarray:
            v_uncond, v_cond = self.unet.run(
                None,
                {
                    "sample": np.concatenate([x, x]).astype(np.float32),
                    "timestep": np.array([t], dtype=np.float32),
                    "encoder_hidden_states": context,
                },
            )[0].astype(np.float64)
            return guide(v_uncond, v_cond, guidance_scale)

        self.scheduler.set_timesteps(steps)
        noise = np.random.default_rng(seed).standard_normal(self.latent_shape)
        x = denoise(self.scheduler, predict, noise)
        latent = (x / self.scaling_factor).astype(np.float32)
        image = self.decoder.run(None, {"latent_sample": latent})[0][0]
        return np.clip(np.rint((image.transpose(1, 2, 0) + 1) * 127.5), 0, 255).astype(np.uint8)


def onnx_accuracy(
    sampler: OnnxSampler, scenes: list[Scene], steps: int, guidance_scale: float, seed: int = 0
) -> dict[str, float]:
    """Prompt accuracy (and per attribute) of the ONNX model on scenes, seed + i per prompt."""
    images = [
        sampler(prompt_for(scene), steps, guidance_scale, seed + i)
        for i, scene in enumerate(scenes)
    ]
    return accuracy(images, scenes)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _run_records(run: Path) -> dict:
    """The run's wall/CPU seconds (last process) and its in-training evaluations."""
    records: dict = {}
    summary_path = run / "summary.json"
    if summary_path.exists():
        summary = json.loads(summary_path.read_text())
        for key in ("wall_seconds", "process_cpu_seconds"):
            if key in summary:
                records[f"last_process_{key}"] = round(summary[key], 1)
    eval_path = run / "eval.jsonl"
    if eval_path.exists():
        records["evaluation_during_training_torch_ema"] = [
            json.loads(line) for line in eval_path.read_text().splitlines() if line.strip()
        ]
    return records


def export_run(
    run: Path,
    out: Path = WEIGHTS_DIR,
    guidance_scales: tuple[float, ...] = (1.5,),
    evaluate: bool = True,
) -> dict:
    """Exports, checks and (optionally) evaluates a run into `out`; writes training.json there
    and info.json beside it (models/tiny_sd/info.json for the default `out`)."""
    cfg, text_encoder, unet, decoder, meta = load_run(run)
    components = export_onnx(cfg, text_encoder, unet, decoder, out)
    diffs = check_against_torch(cfg, text_encoder, unet, decoder, out)
    for name, diff in diffs.items():
        if diff > 1e-3:
            raise ModelError(f"{name}.onnx differs from torch by {diff}")
        components[name]["sha256"] = _sha256(out / f"{name}.onnx")
    tokenizer = WordTokenizer.default()
    _, held_out = split()
    evaluation: dict[str, dict] = {}
    if evaluate:
        sampler = OnnxSampler(out, meta["scaling_factor"])
        for scale in guidance_scales:
            for steps in (20, 8):
                t0 = time.time()
                result = onnx_accuracy(sampler, held_out, steps, scale)
                result["seconds"] = round(time.time() - t0, 1)
                evaluation[f"ddim{steps}_guidance{scale}"] = result
                print(f"held-out, DDIM {steps} steps, guidance {scale}: {result}", flush=True)
    best_scale = max(
        guidance_scales,
        key=lambda s: evaluation.get(f"ddim20_guidance{s}", {}).get("prompt_accuracy", 0.0),
    )
    info = {
        "name": "tiny-sd",
        "version": "1",
        "description": "hexfleet's own Stable-Diffusion-shaped text-to-image model, trained on "
        "the synthetic world of models/tiny_sd/world.py",
        "image_size": cfg.image_size,
        "latent_channels": cfg.latent_channels,
        "latent_size": cfg.latent_size,
        "latent_scaling_factor": meta["scaling_factor"],
        "vae_decoder_input": "latents / latent_scaling_factor",
        "vae_decoder_output_range": [-1.0, 1.0],
        "prediction_type": NOISE_SCHEDULE.prediction_type,
        "beta_schedule": NOISE_SCHEDULE.beta_schedule,
        "num_train_timesteps": NOISE_SCHEDULE.num_train_timesteps,
        "timestep_spacing": NOISE_SCHEDULE.timestep_spacing,
        "set_alpha_to_one": NOISE_SCHEDULE.set_alpha_to_one,
        "clip_sample": False,
        "timestep_input": "float32 [1], the same timestep for both halves of the batch",
        "unet_batch": UNET_BATCH,
        "guidance_batch_order": ["unconditional (empty prompt)", "conditional"],
        "default_scheduler": "ddim",
        "default_steps": 20,
        "default_guidance_scale": best_scale,
        "default_guidance": best_scale,
        "tokenizer": {
            "type": "word",
            "file": "vocab.json",
            "max_length": tokenizer.max_length,
            "vocab_size": tokenizer.vocab_size,
            "normalisation": "lower case; characters outside [a-z0-9] separate words",
        },
        "onnx_opset": OPSET,
        "components": components,
        "parameters_total": sum(c["parameters"] for c in components.values()),
    }
    # The package layout registration reads: DIR/info.json beside DIR/weights/*.onnx.
    (out.parent / "info.json").write_text(json.dumps(info, indent=2) + "\n")
    training = {
        "world": {"held_out_scenes": len(held_out), "train_scenes": len(split()[0])},
        "settings": meta["settings"],
        "decoder": meta["decoder"],
        "diffusion": {
            "steps": meta["step"],
            "seconds": round(meta["seconds"], 1),
            "final_loss": meta["loss"],
        },
        "onnx_vs_torch_max_abs_diff": diffs,
        "evaluation_held_out_onnx_cpu_fp32": evaluation,
        "evaluation_sampler": "DDIM trailing spacing, eta 0, one seed per prompt (0..N-1)",
    }
    training.update(_run_records(run))
    (out / "training.json").write_text(json.dumps(training, indent=2) + "\n")
    return training


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("run", type=Path, nargs="?", default=Path("runs/tiny_sd"))
    parser.add_argument("--out", type=Path, default=WEIGHTS_DIR)
    parser.add_argument("--guidance", type=float, nargs="+", default=[1.5])
    parser.add_argument("--no-evaluate", action="store_true")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    export_run(args.run, args.out, tuple(args.guidance), not args.no_evaluate)
    return 0


if __name__ == "__main__":
    sys.exit(main())
