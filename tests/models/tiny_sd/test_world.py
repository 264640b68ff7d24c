"""The synthetic world: its size, split, prompts and deterministic renders."""

from __future__ import annotations

import numpy as np
import pytest

from hexfleet.errors import InvalidRequest
from hexfleet.models.tiny_sd.world import (
    BACKGROUNDS,
    COLORS,
    POSITIONS,
    SHAPES,
    Scene,
    all_scenes,
    parse_prompt,
    prompt_for,
    render,
    split,
)


def test_world_size_and_uniqueness() -> None:
    scenes = all_scenes()
    assert len(scenes) == len(set(scenes)) == 1040
    assert all(scene.color != scene.background for scene in scenes)


def test_split_is_deterministic_disjoint_and_covers_every_value() -> None:
    train, held_out = split()
    assert (train, held_out) == split()
    assert len(held_out) >= 200
    assert not set(train) & set(held_out)
    assert set(train) | set(held_out) == set(all_scenes())
    for field, values in (
        ("color", COLORS),
        ("shape", SHAPES),
        ("position", POSITIONS),
        ("background", BACKGROUNDS),
    ):
        assert {getattr(scene, field) for scene in train} == set(values)
    pairs = {(scene.color, scene.shape, scene.background) for scene in train}
    assert pairs == {(s.color, s.shape, s.background) for s in all_scenes()}


def test_prompt_round_trip() -> None:
    scene = Scene("red", "circle", "left", "blue")
    assert prompt_for(scene) == "a red circle on the left in a blue background"
    for scene in all_scenes():
        assert parse_prompt(prompt_for(scene)) == scene
    assert parse_prompt("  A Red circle, on the LEFT in a blue background. ") == Scene(
        "red", "circle", "left", "blue"
    )


@pytest.mark.parametrize(
    "prompt",
    [
        "a red hexagon on the left in a blue background",
        "a red circle on the left in a red background",
        "a red circle somewhere in a blue background",
        "a photo of an astronaut riding a horse",
        "",
    ],
)
def test_parse_prompt_rejects_prompts_outside_the_world(prompt: str) -> None:
    with pytest.raises(InvalidRequest):
        parse_prompt(prompt)


def test_render_shape_dtype_and_colours() -> None:
    scene = Scene("yellow", "square", "center", "black")
    for size in (32, 64):
        image = render(scene, size)
        assert image.shape == (size, size, 3) and image.dtype == np.uint8
        assert tuple(image[0, 0]) == (20, 20, 20)
        assert tuple(image[size // 2, size // 2]) == (240, 220, 50)


def test_render_is_deterministic_and_jitter_depends_on_the_rng() -> None:
    scene = Scene("blue", "triangle", "left", "white")
    assert np.array_equal(render(scene), render(scene))
    a = render(scene, rng=np.random.default_rng(3))
    b = render(scene, rng=np.random.default_rng(3))
    c = render(scene, rng=np.random.default_rng(4))
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_position_moves_the_shape() -> None:
    left = render(Scene("red", "circle", "left", "black"))
    right = render(Scene("red", "circle", "right", "black"))
    assert left[:, :32].sum() > left[:, 32:].sum()
    assert right[:, 32:].sum() > right[:, :32].sum()
