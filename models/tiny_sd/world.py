"""The synthetic world tiny-sd is trained on: scenes, their prompts and their rendered images.

One coloured shape at one of five places on a plain background; everything is deterministic.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

import numpy as np

from hexfleet.errors import InvalidRequest

PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "orange": (240, 130, 20),
    "yellow": (240, 220, 50),
    "green": (50, 170, 70),
    "cyan": (50, 200, 210),
    "blue": (40, 80, 220),
    "purple": (140, 60, 190),
    "pink": (245, 140, 200),
    "white": (245, 245, 245),
    "black": (20, 20, 20),
    "gray": (128, 128, 128),
}
COLORS: tuple[str, ...] = ("red", "orange", "yellow", "green", "cyan", "blue", "purple", "pink")
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "cross")
POSITIONS: tuple[str, ...] = ("left", "right", "top", "bottom", "center")
BACKGROUNDS: tuple[str, ...] = ("black", "white", "gray", "red", "green", "blue", "yellow")

POSITION_PHRASES: dict[str, str] = {
    "left": "on the left",
    "right": "on the right",
    "top": "at the top",
    "bottom": "at the bottom",
    "center": "in the center",
}
# Centre of the shape as a fraction of the image width and height (x, y).
POSITION_CENTERS: dict[str, tuple[float, float]] = {
    "left": (0.25, 0.5),
    "right": (0.75, 0.5),
    "top": (0.5, 0.25),
    "bottom": (0.5, 0.75),
    "center": (0.5, 0.5),
}
# Nominal shape radius as a fraction of the image size.
SHAPE_RADIUS = 0.16
# With an rng, the centre moves by up to this fraction of the image and the radius scales by
# up to this factor either way.
POSITION_JITTER = 0.04
SIZE_JITTER = 0.1
_SUPERSAMPLE = 4

_PROMPT_RE = re.compile(
    r"^a (?P<color>\w+) (?P<shape>\w+) (?P<position>on the left|on the right|at the top|"
    r"at the bottom|in the center) in a (?P<background>\w+) background$"
)


@dataclass(frozen=True, order=True)
class Scene:
    """One image of the world. The judge may return values outside the vocabularies
    (``"unknown"``) when an image shows no readable attribute."""

    color: str
    shape: str
    position: str
    background: str


def all_scenes() -> list[Scene]:
    """Every scene of the world in a fixed order (the shape's colour is never the background's)."""
    return [
        Scene(color, shape, position, background)
        for color, shape, position, background in itertools.product(
            COLORS, SHAPES, POSITIONS, BACKGROUNDS
        )
        if color != background
    ]


def is_valid(scene: Scene) -> bool:
    return (
        scene.color in COLORS
        and scene.shape in SHAPES
        and scene.position in POSITIONS
        and scene.background in BACKGROUNDS
        and scene.color != scene.background
    )


def prompt_for(scene: Scene) -> str:
    """The one prompt template: "a red circle on the left in a blue background"."""
    return (
        f"a {scene.color} {scene.shape} {POSITION_PHRASES[scene.position]}"
        f" in a {scene.background} background"
    )


def normalize_prompt(text: str) -> str:
    """Lower-case, punctuation to spaces, whitespace collapsed (the tokenizer does the same)."""
    return " ".join(re.sub(r"[^a-z0-9]+", " ", text.lower()).split())


def parse_prompt(text: str) -> Scene:
    """The scene a prompt describes; InvalidRequest when the prompt is outside the world."""
    match = _PROMPT_RE.match(normalize_prompt(text))
    if match is None:
        raise InvalidRequest(
            f"prompt {text!r} does not follow 'a <color> <shape> <position> in a <color> "
            "background'"
        )
    phrase_to_position = {phrase: pos for pos, phrase in POSITION_PHRASES.items()}
    scene = Scene(
        color=match["color"],
        shape=match["shape"],
        position=phrase_to_position[match["position"]],
        background=match["background"],
    )
    if not is_valid(scene):
        raise InvalidRequest(
            f"prompt {text!r} is outside the world: colours {', '.join(COLORS)}; shapes "
            f"{', '.join(SHAPES)}; backgrounds {', '.join(BACKGROUNDS)}; shape colour must "
            "differ from the background"
        )
    return scene


def shape_mask(shape: str, dx: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """Boolean mask of a shape given offsets from its centre in units of its radius."""
    if shape == "circle":
        return dx * dx + dy * dy <= 1.0
    if shape == "square":
        return np.maximum(np.abs(dx), np.abs(dy)) <= 0.88
    if shape == "triangle":
        return (dy >= -1.05) & (dy <= 0.85) & (np.abs(dx) <= 1.05 * (dy + 1.05) / 1.9)
    if shape == "cross":
        return ((np.abs(dx) <= 1.0) & (np.abs(dy) <= 0.34)) | (
            (np.abs(dy) <= 1.0) & (np.abs(dx) <= 0.34)
        )
    raise InvalidRequest(f"unknown shape {shape!r}; known: {', '.join(SHAPES)}")


def render(scene: Scene, size: int = 64, rng: np.random.Generator | None = None) -> np.ndarray:
    """The scene as a uint8 (size, size, 3) image, anti-aliased by 4x supersampling.

    Without ``rng`` the shape sits exactly at its nominal place and size; with it, the centre
    and radius get a small random jitter (deterministic given the rng's state).
    """
    cx, cy = POSITION_CENTERS[scene.position]
    radius = SHAPE_RADIUS
    if rng is not None:
        jx, jy, js = rng.uniform(-1.0, 1.0, size=3)
        cx += POSITION_JITTER * jx
        cy += POSITION_JITTER * jy
        radius *= 1.0 + SIZE_JITTER * js
    fine = size * _SUPERSAMPLE
    coords = (np.arange(fine, dtype=np.float64) + 0.5) / fine
    dx = (coords[None, :] - cx) / radius
    dy = (coords[:, None] - cy) / radius
    mask = shape_mask(scene.shape, dx, dy).astype(np.float64)
    coverage = mask.reshape(size, _SUPERSAMPLE, size, _SUPERSAMPLE).mean(axis=(1, 3))
    fg = np.asarray(PALETTE[scene.color], dtype=np.float64)
    bg = np.asarray(PALETTE[scene.background], dtype=np.float64)
    image = bg + coverage[..., None] * (fg - bg)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def split() -> tuple[list[Scene], list[Scene]]:
    """(train scenes, held-out scenes): one position in five is held out per combination.

    A scene is held out when (colour + 2*shape + 3*background + position) indices ≡ 0 mod 5,
    so every colour/shape/background combination keeps four of its five positions in
    training, and every pair of attribute values is seen in training.
    """
    train: list[Scene] = []
    held_out: list[Scene] = []
    for scene in all_scenes():
        key = (
            COLORS.index(scene.color)
            + 2 * SHAPES.index(scene.shape)
            + 3 * BACKGROUNDS.index(scene.background)
            + POSITIONS.index(scene.position)
        )
        (held_out if key % 5 == 0 else train).append(scene)
    return train, held_out
