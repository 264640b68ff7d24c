"""Scoring one phone against the reference: per-output scores (PSNR, SSIM; cosine and error for
tensors), the manifest's thresholds as checks, the phone's summary and, for images, whether each
drawing shows what its prompt asked (tiny-sd's judge)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from hexfleet.errors import InvalidRequest
from hexfleet.manifest import Manifest, Thresholds
from hexfleet.models import similarity
from hexfleet.orchestrator.validation.outputs import Outputs


@dataclass
class OutputScore:
    """One output of one phone against the reference's same output."""

    output: str
    passed: bool
    reason: str
    scores: dict[str, Any]


def mean(values: Sequence[float]) -> float | None:
    return float(np.mean(values)) if values else None


def image_scores(image: np.ndarray, reference: np.ndarray) -> dict[str, Any]:
    return {
        "psnr_db": similarity.psnr(image, reference),
        "ssim": similarity.ssim(image, reference),
    }


def tensor_scores(tensor: np.ndarray, reference: np.ndarray) -> dict[str, Any]:
    error = similarity.max_abs_error(tensor, reference)
    return {
        "psnr_db": similarity.tensor_psnr(tensor, reference),
        "cosine": similarity.cosine(tensor, reference),
        "max_abs_error": error,
        "rel_error": error / similarity.value_range(reference),
    }


def image_checks(scores: dict[str, Any], limits: Thresholds) -> list[str]:
    out = []
    if limits.min_psnr_db is not None and scores["psnr_db"] < limits.min_psnr_db:
        out.append(f"PSNR {scores['psnr_db']:.1f} dB < {limits.min_psnr_db:g} dB")
    if limits.min_ssim is not None and scores["ssim"] < limits.min_ssim:
        out.append(f"SSIM {scores['ssim']:.3f} < {limits.min_ssim:g}")
    return out


def tensor_checks(scores: dict[str, Any], limits: Thresholds) -> list[str]:
    out = []
    if limits.min_tensor_psnr_db is not None and scores["psnr_db"] < limits.min_tensor_psnr_db:
        out.append(f"PSNR {scores['psnr_db']:.1f} dB < {limits.min_tensor_psnr_db:g} dB")
    if limits.min_cosine is not None and scores["cosine"] < limits.min_cosine:
        out.append(f"cosine {scores['cosine']:.6f} < {limits.min_cosine:g}")
    if limits.max_rel_error is not None and scores["rel_error"] > limits.max_rel_error:
        out.append(f"max error {scores['rel_error']:.4f} of range > {limits.max_rel_error:g}")
    return out


def summary_of(outputs: list[OutputScore], mode: str) -> dict[str, Any]:
    """Mean PSNR (as `models evaluate` judges), the worst SSIM/cosine, the largest error."""
    psnrs = [o.scores["psnr_db"] for o in outputs]
    summary: dict[str, Any] = {"psnr_db": mean(psnrs), "min_psnr_db": min(psnrs, default=None)}
    if mode == "images":
        ssims = [o.scores["ssim"] for o in outputs]
        summary.update(ssim=mean(ssims), min_ssim=min(ssims, default=None))
    else:
        summary.update(
            cosine=min((o.scores["cosine"] for o in outputs), default=None),
            max_abs_error=max((o.scores["max_abs_error"] for o in outputs), default=None),
            rel_error=max((o.scores["rel_error"] for o in outputs), default=None),
        )
    return summary


def shape_mismatch(output: np.ndarray, reference: np.ndarray) -> str:
    """Why an output cannot be scored against its reference ('' when it can)."""
    if output.shape == reference.shape:
        return ""
    return f"shape {tuple(output.shape)} differs from the reference's {tuple(reference.shape)}"


def compare(
    phone: Outputs, reference: Outputs, mode: str, limits: Thresholds
) -> tuple[list[OutputScore], dict[str, Any], list[str]]:
    """Per-output scores, the phone's summary, and the summary's failed checks."""
    outputs = []
    if mode == "images":
        for index in sorted(reference.images):
            if index not in phone.images:
                outputs.append(OutputScore(f"image-{index}", False, "missing", {}))
                continue
            mismatch = shape_mismatch(phone.images[index], reference.images[index])
            if mismatch:
                outputs.append(OutputScore(f"image-{index}", False, mismatch, {}))
                continue
            scores = image_scores(phone.images[index], reference.images[index])
            failures = image_checks(scores, limits)
            outputs.append(OutputScore(f"image-{index}", not failures, "; ".join(failures), scores))
    else:
        for name in sorted(reference.tensors):
            if name not in phone.tensors:
                outputs.append(OutputScore(name, False, "missing", {}))
                continue
            mismatch = shape_mismatch(phone.tensors[name], reference.tensors[name])
            if mismatch:
                outputs.append(OutputScore(name, False, mismatch, {}))
                continue
            scores = tensor_scores(phone.tensors[name], reference.tensors[name])
            failures = tensor_checks(scores, limits)
            outputs.append(OutputScore(name, not failures, "; ".join(failures), scores))
    present = [o for o in outputs if o.scores]
    summary = summary_of(present, mode)
    missing = [o.output for o in outputs if not o.scores and o.reason == "missing"]
    failures = [f"missing outputs {', '.join(missing)}"] if missing else []
    failures += [
        f"{o.output}: {o.reason}" for o in outputs if not o.scores and o.reason != "missing"
    ]
    if present:
        failures += [_aggregate_label(f, mode) for f in checks_for(mode)(summary, limits)]
    return outputs, summary, failures


def _aggregate_label(failure: str, mode: str) -> str:
    """Say which aggregate failed: PSNR and SSIM are means, cosine and error the worst."""
    if failure.startswith("PSNR") or mode == "images":
        return f"mean {failure}"
    return f"worst {failure}"


def judge_prompts(images: dict[int, np.ndarray], scenes: list[Any]) -> list[bool | None]:
    from hexfleet.models.tiny_sd.judge import judge

    return [
        None if scene is None or i not in images else judge(images[i]) == scene
        for i, scene in enumerate(scenes)
    ]


def prompt_scenes(manifest: Manifest, prompts: list[str]) -> list[Any]:
    """The world scene each prompt asks for (None for a prompt outside the judged world)."""
    if manifest.prompt_world != "tiny-sd":
        return [None] * len(prompts)
    from hexfleet.models.tiny_sd.world import parse_prompt

    scenes = []
    for prompt in prompts:
        try:
            scenes.append(parse_prompt(prompt))
        except InvalidRequest:
            scenes.append(None)
    return scenes


def accuracy_check(
    correct: list[bool | None], reference_correct: int, limit: float | None
) -> tuple[dict[str, Any], list[str]]:
    """Prompt accuracy fails a phone when it is below the manifest's minimum *and* the phone drew
    fewer prompts right than the reference did: the model's own misses are not the phone's."""
    judged = [c for c in correct if c is not None]
    if not judged:
        return {}, []
    hits = sum(judged)
    scores = {
        "prompt_accuracy": hits / len(judged),
        "prompts_correct": hits,
        "prompts_judged": len(judged),
        "reference_prompts_correct": reference_correct,
    }
    if limit is not None and hits / len(judged) < limit and hits < reference_correct:
        return scores, [
            f"prompt accuracy {hits}/{len(judged)} < {limit:g} "
            f"(the reference drew {reference_correct}/{len(judged)})"
        ]
    return scores, []


def checks_for(mode: str) -> Callable[[dict[str, Any], Thresholds], list[str]]:
    """The threshold checks of one kind of output."""
    return image_checks if mode == "images" else tensor_checks


def passed_reason(summary: dict[str, Any], mode: str) -> str:
    parts = [f"mean PSNR {summary['psnr_db']:.1f} dB"]
    if mode == "images":
        parts.append(f"SSIM {summary['ssim']:.3f}")
        if "prompt_accuracy" in summary:
            parts.append(f"prompts {summary['prompts_correct']}/{summary['prompts_judged']}")
    else:
        parts.append(f"cosine {summary['cosine']:.6f}")
    return "passed: " + ", ".join(parts)
