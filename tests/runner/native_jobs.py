"""Helpers shared by the native runner's tests."""

from __future__ import annotations

import numpy as np


def held_out_prompts(count: int) -> list[str]:
    """tiny-sd prompts it was not trained on, spread over its world."""
    from hexfleet.models.tiny_sd.world import prompt_for, split

    _, held_out = split()
    return [prompt_for(scene) for scene in held_out[:: max(1, len(held_out) // count)][:count]]


def psnr_db(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR of two uint8 images in dB (inf when identical)."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)
