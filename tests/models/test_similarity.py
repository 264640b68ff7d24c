"""Similarity measures: known values, symmetry where promised, identical inputs, bad shapes."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hexfleet.manifest import VALIDATION_DEFAULTS, Thresholds
from hexfleet.models import similarity


def test_image_psnr_and_ssim_on_known_images() -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    assert similarity.psnr(image, image) == similarity.IDENTICAL_PSNR_DB
    assert similarity.ssim(image, image) == 1.0
    shifted = (image.astype(int) + 4).clip(0, 255).astype(np.uint8)
    mse = np.mean((shifted.astype(float) - image) ** 2)
    assert similarity.psnr(shifted, image) == pytest.approx(10 * math.log10(255**2 / mse))
    noisy = (image + rng.normal(0, 40, image.shape)).clip(0, 255).astype(np.uint8)
    assert 0 < similarity.ssim(noisy, image) < similarity.ssim(shifted, image) < 1
    assert similarity.ssim(noisy, image) == pytest.approx(similarity.ssim(image, noisy))
    with pytest.raises(ValueError, match="too small"):
        similarity.ssim(image[:2, :2], noisy[:2, :2])


def test_tensor_measures() -> None:
    reference = np.linspace(-1, 1, 200, dtype=np.float32).reshape(2, 100)
    assert similarity.cosine(reference, reference) == pytest.approx(1.0)
    assert similarity.cosine(-reference, reference) == pytest.approx(-1.0)
    assert similarity.cosine(np.zeros(3), np.zeros(3)) == 1.0
    off = reference + np.float32(0.02)
    assert similarity.max_abs_error(off, reference) == pytest.approx(0.02, rel=1e-4)
    # Range 2, RMS error 0.02: 20 log10(2 / 0.02) = 40 dB.
    assert similarity.tensor_psnr(off, reference) == pytest.approx(40.0, abs=0.01)
    assert similarity.tensor_psnr(reference, reference) == similarity.IDENTICAL_PSNR_DB
    assert similarity.value_range(np.ones(4)) == 1.0
    with pytest.raises(ValueError, match="shapes"):
        similarity.cosine(reference, reference.T)


def test_manifest_thresholds_fill_only_what_is_unset() -> None:
    own = Thresholds(min_prompt_accuracy=0.9, min_psnr_db=30.0)
    filled = own.filled_from(VALIDATION_DEFAULTS["w8a16"])
    assert filled.min_psnr_db == 30.0 and filled.min_prompt_accuracy == 0.9
    assert filled.min_ssim == VALIDATION_DEFAULTS["w8a16"].min_ssim
    assert Thresholds.model_validate_json('{"min_psnr_db": 25.0}').min_cosine is None
