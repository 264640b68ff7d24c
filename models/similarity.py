"""How alike two outputs of a model are: PSNR and SSIM for images; cosine, max abs error and
range-based PSNR for tensors. One place for the math that evaluation and validation share.
"""

from __future__ import annotations

import math

import numpy as np

IDENTICAL_PSNR_DB = 100.0
"""PSNR reported for identical outputs (and the cap for nearly identical ones): JSON has no inf."""


def psnr(image: np.ndarray, reference: np.ndarray) -> float:
    """Peak signal-to-noise ratio of two uint8 images in dB (100 when identical)."""
    _same_shape(image, reference)
    mse = float(np.mean((image.astype(np.float64) - reference.astype(np.float64)) ** 2))
    return IDENTICAL_PSNR_DB if mse == 0 else min(IDENTICAL_PSNR_DB, 10 * math.log10(255**2 / mse))


def ssim(image: np.ndarray, reference: np.ndarray) -> float:
    """Structural similarity of two uint8 H x W x 3 images (scikit-image, 7x7 uniform
    window), 1.0 when identical. Images smaller than the window are compared as one window."""
    from skimage.metrics import structural_similarity

    _same_shape(image, reference)
    if np.array_equal(image, reference):
        return 1.0
    side = min(image.shape[0], image.shape[1])
    window = min(7, side if side % 2 else side - 1)
    if window < 3:
        raise ValueError(f"images of {image.shape[:2]} pixels are too small for SSIM")
    return float(
        structural_similarity(
            image,
            reference,
            channel_axis=2 if image.ndim == 3 else None,
            data_range=255,
            win_size=window,
        )
    )


def cosine(output: np.ndarray, reference: np.ndarray) -> float:
    """Cosine similarity of two tensors taken as flat vectors (1.0 for two zero tensors)."""
    _same_shape(output, reference)
    a = output.astype(np.float64).ravel()
    b = reference.astype(np.float64).ravel()
    norms = float(np.linalg.norm(a) * np.linalg.norm(b))
    if norms == 0:
        return 1.0 if not a.any() and not b.any() else 0.0
    return float(np.dot(a, b) / norms)


def max_abs_error(output: np.ndarray, reference: np.ndarray) -> float:
    """The largest elementwise difference (one clipped outlier sets it: report, judge by PSNR)."""
    _same_shape(output, reference)
    return float(np.max(np.abs(output.astype(np.float64) - reference.astype(np.float64))))


def value_range(reference: np.ndarray) -> float:
    """max - min of a tensor, 1.0 for a constant one (so errors stay comparable)."""
    spread = float(np.max(reference) - np.min(reference)) if reference.size else 0.0
    return spread if spread > 0 else 1.0


def tensor_psnr(output: np.ndarray, reference: np.ndarray) -> float:
    """PSNR of a tensor against a reference, peak = the reference's value range, in dB (capped
    at 100): how FP32-vs-quantized error is usually quoted for activations."""
    _same_shape(output, reference)
    diff = output.astype(np.float64) - reference.astype(np.float64)
    mse = float(np.mean(diff**2))
    if mse == 0:
        return IDENTICAL_PSNR_DB
    return min(IDENTICAL_PSNR_DB, 20 * math.log10(value_range(reference) / math.sqrt(mse)))


def _same_shape(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape != b.shape:
        raise ValueError(f"cannot compare shapes {a.shape} and {b.shape}")
