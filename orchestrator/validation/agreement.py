"""Agreement between phones: how well every two phones' outputs match (symmetric), and which
phones stand outside the one largest group that agrees (the outliers)."""

from __future__ import annotations

from typing import Any

from hexfleet.manifest import Thresholds
from hexfleet.orchestrator.validation.outputs import Outputs
from hexfleet.orchestrator.validation.scoring import (
    checks_for,
    image_scores,
    mean,
    shape_mismatch,
    tensor_scores,
)


def pair(a: Outputs, b: Outputs, mode: str, limits: Thresholds) -> dict[str, Any]:
    """How well two phones agree: mean PSNR and the worse of SSIM / cosine, symmetric."""
    if mode == "images":
        common = sorted(
            i for i in set(a.images) & set(b.images) if not shape_mismatch(a.images[i], b.images[i])
        )
        scores = [image_scores(a.images[i], b.images[i]) for i in common]
        cell = {
            "psnr_db": mean([s["psnr_db"] for s in scores]),
            "ssim": min((s["ssim"] for s in scores), default=None),
        }
    else:
        common = sorted(
            n
            for n in set(a.tensors) & set(b.tensors)
            if not shape_mismatch(a.tensors[n], b.tensors[n])
        )
        scores = [
            s
            for n in common
            for s in (
                tensor_scores(a.tensors[n], b.tensors[n]),
                tensor_scores(b.tensors[n], a.tensors[n]),
            )
        ]
        cell = {
            "psnr_db": mean([s["psnr_db"] for s in scores]),
            "cosine": min((s["cosine"] for s in scores), default=None),
            "rel_error": max((s["rel_error"] for s in scores), default=None),
        }
    cell["agree"] = bool(common) and not checks_for(mode)(cell, limits)
    return cell


def consensus_outliers(
    serials: list[str], agree: dict[str, dict[str, bool]]
) -> tuple[list[str], str]:
    """Phones outside the one largest group of phones that agree with each other.

    Groups are the connected parts of the "agrees with" graph. Outliers are named only when one
    group of at least two phones is strictly the largest: two phones that disagree, or two
    groups of equal size, leave it to the reference to say which is right.
    """
    groups: list[set[str]] = []
    seen: set[str] = set()
    for start in serials:
        if start in seen:
            continue
        group, todo = set(), [start]
        while todo:
            serial = todo.pop()
            if serial in group:
                continue
            group.add(serial)
            todo.extend(o for o in serials if o not in group and agree[serial].get(o))
        seen |= group
        groups.append(group)
    sizes = sorted((len(g) for g in groups), reverse=True)
    if len(serials) < 2:
        return [], "one phone: nothing to compare it with"
    if len(groups) == 1:
        return [], f"all {len(serials)} phones agree"
    if sizes[0] < 2 or sizes[0] == sizes[1]:
        return [], "no majority of agreeing phones: the reference decides"
    largest = max(groups, key=len)
    outliers = sorted(set(serials) - largest)
    return (
        outliers,
        f"{len(largest)} of {len(serials)} phones agree; outliers: {', '.join(outliers)}",
    )
