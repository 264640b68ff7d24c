"""Trains tiny-sd on 2 CPU cores: the upsampling decoder first, then the text encoder + UNet.

The committed weights' recipe: `OMP_WAIT_POLICY=PASSIVE python -m models.tiny_sd.train --steps
4500` (43 minutes on an idle 2-core machine, about 0.5 s per step). `--minutes N` stops on
wall-clock time instead (what `hexfleet models train` uses: 55); `--resume` continues from the
last checkpoint.
On a shared machine OMP_WAIT_POLICY=PASSIVE matters: spinning OpenMP threads made each step
3-10x slower whenever another process held one of the two cores.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from copy import deepcopy
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from torch.nn import functional as F

from hexfleet.errors import InvalidRequest
from hexfleet.models.schedulers import denoise, guide, make_scheduler
from hexfleet.models.schedulers.noise_schedule import alphas_cumprod
from hexfleet.models.tiny_sd.export import export_run
from hexfleet.models.tiny_sd.judge import accuracy
from hexfleet.models.tiny_sd.model import (
    NOISE_SCHEDULE,
    Decoder,
    TextEncoder,
    TinySDConfig,
    UNet,
    encode,
)
from hexfleet.models.tiny_sd.tokenizer import WordTokenizer
from hexfleet.models.tiny_sd.world import Scene, prompt_for, render, split


@dataclass
class TrainSettings:
    """Everything that decides a training run (stored in every checkpoint and log)."""

    run_dir: str = "runs/tiny_sd"
    minutes: float = 55.0
    ae_minutes: float = 3.0
    diffusion_steps: int = 0
    seed: int = 0
    threads: int = 2
    batch_size: int = 32
    ae_batch_size: int = 32
    lr: float = 1e-3
    ae_lr: float = 2e-3
    warmup_steps: int = 100
    min_lr_ratio: float = 0.05
    ema_decay: float = 0.999
    prompt_dropout: float = 0.1
    jitters_per_scene: int = 8
    checkpoint_minutes: float = 3.0
    eval_every: int = 750
    eval_scenes: int = 52
    guidance_scale: float = 1.5
    min_snr_gamma: float = 5.0


class Dataset:
    """Jittered renders of the training scenes, their token ids and (later) their latents."""

    def __init__(self, scenes: list[Scene], cfg: TinySDConfig, jitters: int, seed: int) -> None:
        rng = np.random.default_rng(seed)
        tokenizer = WordTokenizer.default()
        self.scenes = [scene for scene in scenes for _ in range(jitters)]
        images = np.stack([render(scene, cfg.image_size, rng) for scene in self.scenes])
        self.images = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1.0
        self.ids = torch.from_numpy(
            np.stack([tokenizer.encode(prompt_for(s)) for s in self.scenes])
        )
        self.empty_ids = torch.from_numpy(tokenizer.encode(""))
        self.latents: torch.Tensor | None = None


def _save(obj: dict, path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _log(path: Path, record: dict) -> None:
    with path.open("a") as f:
        f.write(json.dumps(record) + "\n")


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:.0f}/{task.total:.0f} {task.fields[status]}"),
        TimeElapsedColumn(),
    )


def _log_decoder(run: Path, step: int, loss: float | None, lr: float, start: float) -> None:
    record = {"phase": "decoder", "step": step, "loss": loss, "lr": lr}
    _log(run / "loss.jsonl", {**record, "elapsed": time.time() - start})


def train_decoder(settings: TrainSettings, cfg: TinySDConfig, data: Dataset, run: Path) -> Decoder:
    """Trains the 2x upsampling decoder for ae_minutes (or loads it when already done)."""
    path = run / "decoder.pt"
    decoder = Decoder(cfg)
    if path.exists():
        decoder.load_state_dict(torch.load(path)["decoder"])
        return decoder
    opt = torch.optim.AdamW(decoder.parameters(), lr=settings.ae_lr, weight_decay=0.0)
    gen = torch.Generator().manual_seed(settings.seed + 1)
    budget = settings.ae_minutes * 60
    start, step, loss_ema = time.time(), 0, None
    with _progress() as bar:
        task = bar.add_task("decoder", total=budget, status="")
        while (elapsed := time.time() - start) < budget:
            frac = elapsed / budget
            for group in opt.param_groups:
                group["lr"] = settings.ae_lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))
            idx = torch.randint(0, len(data.images), (settings.ae_batch_size,), generator=gen)
            x = data.images[idx]
            # Noise on the input keeps the decoder steady on imperfect generated latents.
            z = encode(x, cfg)
            z = z + 0.03 * torch.randn(z.shape, generator=gen)
            recon = decoder(z)
            loss = F.mse_loss(recon, x) + 0.5 * F.l1_loss(recon, x)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            loss_ema = loss.item() if loss_ema is None else 0.95 * loss_ema + 0.05 * loss.item()
            bar.update(task, completed=elapsed, status=f"step {step} loss {loss_ema:.4f}")
            if step % 25 == 0:
                _log_decoder(run, step, loss_ema, opt.param_groups[0]["lr"], start)
    if step % 25:  # the phase's last loss, also when the budget ran out between two records
        _log_decoder(run, step, loss_ema, opt.param_groups[0]["lr"], start)
    _save(
        {
            "decoder": decoder.state_dict(),
            "steps": step,
            "seconds": time.time() - start,
            "final_loss": loss_ema,
        },
        path,
    )
    print(f"decoder: {step} steps, loss {loss_ema:.4f}", flush=True)
    return decoder


@torch.no_grad()
def sample(
    text_encoder: TextEncoder,
    unet: UNet,
    decoder: Decoder,
    scenes: list[Scene],
    scaling_factor: float,
    cfg: TinySDConfig,
    steps: int = 20,
    guidance_scale: float = 1.5,
    seed: int = 0,
) -> np.ndarray:
    """Images (N, H, W, 3) uint8 for the scenes' prompts with DDIM (trailing, eta 0) + CFG."""
    tokenizer = WordTokenizer.default()
    ids = torch.from_numpy(np.stack([tokenizer.encode(prompt_for(s)) for s in scenes]))
    empty = torch.from_numpy(tokenizer.encode("")).expand(len(scenes), -1)
    cond, uncond = text_encoder(ids), text_encoder(empty)
    context = torch.cat([uncond, cond])
    gen = torch.Generator().manual_seed(seed)
    shape = (len(scenes), cfg.latent_channels, cfg.latent_size, cfg.latent_size)

    def predict(sample: np.ndarray, t: float) -> np.ndarray:
        x = torch.from_numpy(sample)
        v_uncond, v_cond = unet(
            torch.cat([x, x]), torch.full((2 * len(scenes),), t), context
        ).chunk(2)
        return guide(v_uncond, v_cond, guidance_scale).numpy()

    scheduler = make_scheduler("ddim", NOISE_SCHEDULE)
    scheduler.set_timesteps(steps)
    latents = torch.from_numpy(
        denoise(scheduler, predict, torch.randn(shape, generator=gen).numpy())
    )
    images = decoder(latents / scaling_factor).clamp(-1, 1)
    return ((images + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()


def _lr(settings: TrainSettings, step: int, frac: float) -> float:
    warm = min(1.0, (step + 1) / settings.warmup_steps)
    cosine = settings.min_lr_ratio + (1 - settings.min_lr_ratio) * 0.5 * (
        1 + math.cos(math.pi * min(frac, 1.0))
    )
    return settings.lr * warm * cosine


def train_diffusion(
    settings: TrainSettings,
    cfg: TinySDConfig,
    data: Dataset,
    decoder: Decoder,
    scaling_factor: float,
    run: Path,
    budget_seconds: float,
    resume: bool,
) -> dict:
    """Trains text encoder + UNet with v-prediction; returns the final state (EMA included)."""
    text_encoder, unet = TextEncoder(cfg), UNet(cfg)
    ema = {"text_encoder": deepcopy(text_encoder), "unet": deepcopy(unet)}
    params = list(text_encoder.parameters()) + list(unet.parameters())
    opt = torch.optim.AdamW(params, lr=settings.lr, weight_decay=0.01)
    gen = torch.Generator().manual_seed(settings.seed + 2)
    step, trained_seconds, loss_ema = 0, 0.0, None
    ckpt_path = run / "checkpoint.pt"
    if resume and ckpt_path.exists():
        state = torch.load(ckpt_path)
        text_encoder.load_state_dict(state["text_encoder"])
        unet.load_state_dict(state["unet"])
        ema["text_encoder"].load_state_dict(state["ema_text_encoder"])
        ema["unet"].load_state_dict(state["ema_unet"])
        opt.load_state_dict(state["optimizer"])
        gen.set_state(state["generator"])
        step, trained_seconds, loss_ema = state["step"], state["seconds"], state["loss"]
        budget_seconds = state["budget_seconds"]
        print(f"resumed at step {step} ({trained_seconds / 60:.1f} min)", flush=True)
    _, held_out = split()
    eval_scenes = held_out[:: max(1, len(held_out) // settings.eval_scenes)][: settings.eval_scenes]
    # The schedule is float64 numpy (shared with export and the pipeline); training runs in float32.
    acp = torch.from_numpy(alphas_cumprod(NOISE_SCHEDULE)).float()
    latents = data.latents * scaling_factor
    ema_params = [
        (e, p)
        for name in ("text_encoder", "unet")
        for e, p in zip(
            ema[name].parameters(),
            (text_encoder if name == "text_encoder" else unet).parameters(),
            strict=True,
        )
    ]
    session_start = time.time() - trained_seconds
    last_ckpt = time.time()

    def frac_done() -> float:
        if settings.diffusion_steps:
            return step / settings.diffusion_steps
        return (time.time() - session_start) / budget_seconds

    def checkpoint() -> None:
        _save(
            {
                "text_encoder": text_encoder.state_dict(),
                "unet": unet.state_dict(),
                "ema_text_encoder": ema["text_encoder"].state_dict(),
                "ema_unet": ema["unet"].state_dict(),
                "optimizer": opt.state_dict(),
                "generator": gen.get_state(),
                "step": step,
                "loss": loss_ema,
                "seconds": time.time() - session_start,
                "budget_seconds": budget_seconds,
                "scaling_factor": scaling_factor,
                "config": cfg.to_dict(),
                "settings": asdict(settings),
            },
            ckpt_path,
        )

    with _progress() as bar:
        task = bar.add_task("diffusion", total=1000, status="")
        while frac_done() < 1.0:
            lr = _lr(settings, step, frac_done())
            for group in opt.param_groups:
                group["lr"] = lr
            idx = torch.randint(0, len(latents), (settings.batch_size,), generator=gen)
            x0 = latents[idx]
            ids = data.ids[idx].clone()
            drop = torch.rand(settings.batch_size, generator=gen) < settings.prompt_dropout
            ids[drop] = data.empty_ids
            t = torch.randint(
                0, NOISE_SCHEDULE.num_train_timesteps, (settings.batch_size,), generator=gen
            )
            noise = torch.randn(x0.shape, generator=gen)
            a = acp[t][:, None, None, None]
            xt = a.sqrt() * x0 + (1 - a).sqrt() * noise
            target = a.sqrt() * noise - (1 - a).sqrt() * x0
            pred = unet(xt, t.float(), text_encoder(ids))
            # Min-SNR weighting (Hang et al. 2023) in its v-prediction form: min(SNR, g)/(SNR+1).
            snr = a / (1 - a)
            weight = snr.clamp(max=settings.min_snr_gamma) / (snr + 1)
            loss = (weight * (pred - target) ** 2).mean() / weight.mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            step += 1
            decay = min(settings.ema_decay, (1 + step) / (10 + step))
            with torch.no_grad():
                for e, p in ema_params:
                    e.lerp_(p, 1 - decay)
            loss_ema = loss.item() if loss_ema is None else 0.98 * loss_ema + 0.02 * loss.item()
            elapsed = time.time() - session_start
            bar.update(
                task,
                completed=1000 * min(frac_done(), 1.0),
                status=f"step {step} loss {loss_ema:.4f} lr {lr:.2e}",
            )
            if step % 25 == 0:
                _log(
                    run / "loss.jsonl",
                    {
                        "phase": "diffusion",
                        "step": step,
                        "loss": loss_ema,
                        "lr": lr,
                        "elapsed": elapsed,
                    },
                )
            if step % 200 == 0:
                print(
                    f"step {step} loss {loss_ema:.4f} lr {lr:.2e} {elapsed / 60:.1f} min",
                    flush=True,
                )
            if time.time() - last_ckpt > settings.checkpoint_minutes * 60:
                checkpoint()
                last_ckpt = time.time()
            if step % settings.eval_every == 0:
                t0 = time.time()
                images = sample(
                    ema["text_encoder"],
                    ema["unet"],
                    decoder,
                    eval_scenes,
                    scaling_factor,
                    cfg,
                    20,
                    settings.guidance_scale,
                )
                result = accuracy(images, eval_scenes)
                _log(
                    run / "eval.jsonl",
                    {"step": step, "elapsed": elapsed, "seconds": time.time() - t0, **result},
                )
                print(f"eval step {step}: {result}", flush=True)
                session_start += time.time() - t0
    checkpoint()
    return {
        "step": step,
        "loss": loss_ema,
        "seconds": time.time() - session_start,
        "text_encoder": ema["text_encoder"],
        "unet": ema["unet"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    defaults = TrainSettings()
    parser.add_argument("--run-dir", default=defaults.run_dir)
    parser.add_argument(
        "--minutes",
        type=float,
        default=defaults.minutes,
        help="total budget (autoencoder + diffusion), wall clock",
    )
    parser.add_argument(
        "--ae-minutes",
        type=float,
        default=defaults.ae_minutes,
        help="minutes spent first on the upsampling decoder",
    )
    parser.add_argument(
        "--steps",
        type=int,
        default=0,
        help="diffusion steps instead of a time budget (reproducible LR decay)",
    )
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--threads", type=int, default=defaults.threads)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--no-export", action="store_true")
    args = parser.parse_args(argv)
    if args.minutes <= args.ae_minutes:
        raise InvalidRequest("--minutes must exceed --ae-minutes")
    settings = TrainSettings(
        run_dir=args.run_dir,
        minutes=args.minutes,
        ae_minutes=args.ae_minutes,
        diffusion_steps=args.steps,
        seed=args.seed,
        threads=args.threads,
    )
    torch.set_num_threads(settings.threads)
    torch.manual_seed(settings.seed)
    run = Path(settings.run_dir)
    run.mkdir(parents=True, exist_ok=True)
    started = time.time()
    cfg = TinySDConfig(
        vocab_size=WordTokenizer.default().vocab_size, max_length=WordTokenizer.default().max_length
    )
    train_scenes, _ = split()
    data = Dataset(train_scenes, cfg, settings.jitters_per_scene, settings.seed)
    print(
        f"dataset: {len(data.scenes)} images of {len(train_scenes)} scenes "
        f"({time.time() - started:.0f} s)",
        flush=True,
    )
    decoder = train_decoder(settings, cfg, data, run)
    data.latents = encode(data.images, cfg)
    # Pixel-space latents in [-1, 1] are used as they are.
    scaling_factor = 1.0
    budget = settings.minutes * 60 - (time.time() - started)
    state = train_diffusion(settings, cfg, data, decoder, scaling_factor, run, budget, args.resume)
    summary = {
        "settings": asdict(settings),
        "config": cfg.to_dict(),
        "diffusion_steps": state["step"],
        "final_loss": state["loss"],
        "diffusion_seconds": state["seconds"],
        "scaling_factor": scaling_factor,
        "wall_seconds": time.time() - started,
        "process_cpu_seconds": time.process_time(),
    }
    (run / "summary.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary), flush=True)
    if not args.no_export:
        export_run(run)
    return 0


if __name__ == "__main__":
    sys.exit(main())
