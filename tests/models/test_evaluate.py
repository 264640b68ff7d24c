"""Evaluation: PSNR, held-out prompts, and the JSON report on a random-weight model."""

from __future__ import annotations

import numpy as np
import pytest

from hexfleet.errors import InvalidRequest
from hexfleet.manifest import Manifest
from hexfleet.models.evaluate import evaluate, held_out_prompts, psnr
from hexfleet.models.store import ModelStore
from hexfleet.models.tiny_sd.world import parse_prompt, split


def test_psnr() -> None:
    a = np.zeros((4, 4, 3), np.uint8)
    assert psnr(a, a) == 100.0
    b = a.copy()
    b[0, 0, 0] = 255  # MSE = 255² / 48
    assert psnr(b, a) == pytest.approx(10 * np.log10(48))


def test_held_out_prompts_are_distinct_and_held_out(tiny_manifest: Manifest) -> None:
    prompts, scenes = held_out_prompts(tiny_manifest, 200)
    assert len(set(prompts)) == 200 and scenes is not None
    train = set(split()[0])
    assert all(parse_prompt(p) not in train for p in prompts)
    assert [parse_prompt(p) for p in prompts] == scenes
    with pytest.raises(InvalidRequest, match="holds out"):
        held_out_prompts(tiny_manifest, 10_000)


def test_evaluate_reports_accuracy_and_thresholds(
    tiny_manifest: Manifest, store: ModelStore
) -> None:
    seen: list[int] = []
    result = evaluate(
        store, tiny_manifest, steps=2, prompts=4, threads=1, on_image=lambda n, _: seen.append(n)
    )
    report = result.to_dict()
    assert seen == [1, 2, 3, 4]
    assert report["prompts"] == 4 and report["steps"] == 2 and report["scheduler"] == "ddim"
    assert report["prompt_accuracy"] is not None and report["psnr_db_vs_fp32"] is None
    assert set(report["per_attribute"]) == {"color", "shape", "position", "background"}  # type: ignore[arg-type]
    # A random-weight model draws nothing the judge can read: below tiny-sd's 90 % threshold.
    assert report["thresholds_passed"] is False
    assert report["threshold_failures"] == [f"prompt accuracy {result.prompt_accuracy:.3f} < 0.900"]
