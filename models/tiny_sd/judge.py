"""A deterministic judge that reads which scene an image of the tiny-sd world shows.

No learned weights: border colour, the largest foreground blob, its colour, place and outline.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache

import numpy as np

from hexfleet.errors import InvalidRequest
from hexfleet.models.tiny_sd.world import (
    BACKGROUNDS,
    COLORS,
    PALETTE,
    POSITION_CENTERS,
    SHAPES,
    Scene,
    shape_mask,
)

UNKNOWN = "unknown"
ATTRIBUTES = ("color", "shape", "position", "background")
"""The four things a scene is made of, in the order accuracy reports them."""
# A pixel is foreground when its RGB distance to the background exceeds this (the closest two
# palette colours are ~90 apart).
FOREGROUND_DISTANCE = 40.0
# The largest foreground blob must cover this share of the image to count as a shape.
MIN_AREA = 0.015
# The blob's outline, scaled to its bounding box, must overlap its best template this much.
MIN_SHAPE_IOU = 0.7
_GRID = 16


def _nearest(rgb: np.ndarray, names: Sequence[str]) -> str:
    table = np.asarray([PALETTE[name] for name in names], dtype=np.float64)
    return names[int(np.argmin(((table - rgb) ** 2).sum(axis=1)))]


def _largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 4-connected component of a boolean mask (empty mask if there is none)."""
    height, width = mask.shape
    labels = np.zeros(mask.shape, dtype=np.int32)
    best_label, best_size, label = 0, 0, 0
    for start in zip(*np.nonzero(mask), strict=True):
        if labels[start]:
            continue
        label += 1
        labels[start] = label
        stack, size = [start], 0
        while stack:
            y, x = stack.pop()
            size += 1
            for ny, nx in ((y - 1, x), (y + 1, x), (y, x - 1), (y, x + 1)):
                if 0 <= ny < height and 0 <= nx < width and mask[ny, nx] and not labels[ny, nx]:
                    labels[ny, nx] = label
                    stack.append((ny, nx))
        if size > best_size:
            best_label, best_size = label, size
    return labels == best_label if best_size else np.zeros_like(mask)


def _to_grid(mask: np.ndarray) -> np.ndarray:
    """A boolean mask cropped to its bounding box and resampled to _GRID x _GRID."""
    ys, xs = np.nonzero(mask)
    crop = mask[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    rows = ((np.arange(_GRID) + 0.5) * crop.shape[0] / _GRID).astype(int)
    cols = ((np.arange(_GRID) + 0.5) * crop.shape[1] / _GRID).astype(int)
    return crop[np.ix_(rows, cols)]


@cache
def _templates() -> dict[str, np.ndarray]:
    coords = (np.arange(256) + 0.5) / 256 * 2.4 - 1.2
    return {
        shape: _to_grid(shape_mask(shape, coords[None, :], coords[:, None])) for shape in SHAPES
    }


def _shape(blob: np.ndarray) -> str:
    grid = _to_grid(blob)
    scores = {
        shape: (grid & template).sum() / (grid | template).sum()
        for shape, template in _templates().items()
    }
    best = max(scores, key=scores.__getitem__)
    return best if scores[best] >= MIN_SHAPE_IOU else UNKNOWN


def judge(image: np.ndarray) -> Scene:
    """The scene a uint8 (H, W, 3) image shows; attributes it cannot read are "unknown"."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise InvalidRequest(f"judge needs a uint8 HxWx3 image, got {image.dtype} {image.shape}")
    pixels = image.astype(np.float64)
    border = np.concatenate([pixels[0], pixels[-1], pixels[1:-1, 0], pixels[1:-1, -1]])
    bg_rgb = np.median(border, axis=0)
    background = _nearest(bg_rgb, BACKGROUNDS)
    far = np.sqrt(((pixels - bg_rgb) ** 2).sum(axis=2)) > FOREGROUND_DISTANCE
    blob = _largest_component(far)
    height, width = blob.shape
    if blob.sum() < MIN_AREA * height * width:
        return Scene(UNKNOWN, UNKNOWN, UNKNOWN, background)
    fg_rgb = np.median(pixels[blob], axis=0)
    color = _nearest(fg_rgb, COLORS)
    # Edge pixels are blends: count those closer to the shape's colour than to the background.
    nearer_fg = ((pixels - fg_rgb) ** 2).sum(axis=2) < ((pixels - bg_rgb) ** 2).sum(axis=2)
    blob = _largest_component(nearer_fg & far) if (nearer_fg & blob).any() else blob
    ys, xs = np.nonzero(blob)
    cx = (xs.min() + xs.max() + 1) / 2 / width
    cy = (ys.min() + ys.max() + 1) / 2 / height
    position = min(
        POSITION_CENTERS,
        key=lambda p: (POSITION_CENTERS[p][0] - cx) ** 2 + (POSITION_CENTERS[p][1] - cy) ** 2,
    )
    return Scene(color, _shape(blob), position, background)


def matches(image: np.ndarray, scene: Scene) -> bool:
    """Whether the judge reads exactly this scene (all four attributes) from the image."""
    return judge(image) == scene


def accuracy(images: Sequence[np.ndarray], scenes: Sequence[Scene]) -> dict[str, float]:
    """How often the judge reads back the scene each image was generated for.

    "prompt_accuracy" counts images right on all four attributes; one key per attribute
    (ATTRIBUTES) counts that attribute alone. Every image is judged once.
    """
    if len(images) != len(scenes) or not scenes:
        raise InvalidRequest(
            f"accuracy needs as many images as scenes (>0): {len(images)} vs {len(scenes)}"
        )
    judged = [judge(image) for image in images]
    pairs = list(zip(judged, scenes, strict=True))
    result = {"prompt_accuracy": sum(j == s for j, s in pairs) / len(pairs)}
    for name in ATTRIBUTES:
        result[name] = sum(getattr(j, name) == getattr(s, name) for j, s in pairs) / len(pairs)
    return result
