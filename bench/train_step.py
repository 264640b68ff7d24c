"""tiny-sd's training step with attention through torch's fused kernel vs as MatMul + Softmax.

Run: `OMP_WAIT_POLICY=PASSIVE .venv/bin/python bench/train_step.py [--steps 30] [--batch 32]`
(needs the `train` extra: torch). One training step as models/tiny_sd/train.py takes it (text
encoder + UNet forward, v-prediction loss, backward, gradient clipping, AdamW) on random
batches, the two attention forms alternating step by step in one process so both see the same
machine; prints the median seconds per step of each and their ratio, and what the committed
recipe (`--steps 4500`) costs at each rate.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import torch

from hexfleet.models.tiny_sd.model import Attention, TextEncoder, TinySDConfig, UNet
from hexfleet.models.tiny_sd.tokenizer import WordTokenizer

RECIPE_STEPS = 4500


class Trainer:
    def __init__(self, batch: int, seed: int) -> None:
        torch.manual_seed(seed)
        tokenizer = WordTokenizer.default()
        self.cfg = TinySDConfig(vocab_size=tokenizer.vocab_size, max_length=tokenizer.max_length)
        self.text_encoder, self.unet = TextEncoder(self.cfg), UNet(self.cfg)
        self.params = list(self.text_encoder.parameters()) + list(self.unet.parameters())
        self.opt = torch.optim.AdamW(self.params, lr=1e-4)
        self.batch = batch

    def step(self) -> float:
        size = self.cfg.latent_size
        xt = torch.randn(self.batch, self.cfg.latent_channels, size, size)
        target = torch.randn_like(xt)
        t = torch.randint(0, 1000, (self.batch,)).float()
        ids = torch.randint(0, self.cfg.vocab_size, (self.batch, self.cfg.max_length))
        start = time.perf_counter()
        pred = self.unet(xt, t, self.text_encoder(ids))
        loss = ((pred - target) ** 2).mean()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, 1.0)
        self.opt.step()
        return time.perf_counter() - start


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=30, help="timed steps per form")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps per form first")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    trainer = Trainer(args.batch, seed=0)
    forms = {"fused (scaled_dot_product_attention)": True, "MatMul + Softmax (as exported)": False}
    times: dict[str, list[float]] = {name: [] for name in forms}
    for i in range(args.warmup + args.steps):
        for name, fused in forms.items():
            Attention.fused = fused
            elapsed = trainer.step()
            if i >= args.warmup:
                times[name].append(elapsed)
    Attention.fused = True
    print(f"tiny-sd training step, batch {args.batch}, {args.threads} threads, "
          f"{args.steps} steps of each form alternating (OMP_WAIT_POLICY="
          f"{os.environ.get('OMP_WAIT_POLICY', 'unset')}, load {os.getloadavg()[0]:.1f})")
    medians = {name: statistics.median(values) for name, values in times.items()}
    for name, median in medians.items():
        print(f"   {name:<40} {median:6.3f} s/step   {RECIPE_STEPS} steps: "
              f"{median * RECIPE_STEPS / 60:5.1f} min")
    fused, explicit = medians.values()
    print(f"   fused is {explicit / fused:.2f}x faster per step")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
