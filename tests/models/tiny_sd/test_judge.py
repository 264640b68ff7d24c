"""The judge reads the generator's own renders back, and refuses what it cannot read."""

from __future__ import annotations

import numpy as np
import pytest

from hexfleet.errors import InvalidRequest
from hexfleet.models.tiny_sd.judge import ATTRIBUTES, UNKNOWN, accuracy, judge, matches
from hexfleet.models.tiny_sd.world import Scene, all_scenes, render


@pytest.mark.parametrize("size", [64, 32])
def test_judge_agrees_with_jittered_renders_of_every_scene(size: int) -> None:
    rng = np.random.default_rng(size)
    scenes = all_scenes()
    agree = sum(judge(render(scene, size, rng)) == scene for scene in scenes)
    assert agree / len(scenes) >= 0.99


def test_judge_on_exact_renders() -> None:
    for scene in all_scenes()[::7]:
        assert matches(render(scene), scene)


def test_blank_image_has_no_shape() -> None:
    image = np.full((64, 64, 3), 128, dtype=np.uint8)
    assert judge(image) == Scene(UNKNOWN, UNKNOWN, UNKNOWN, "gray")


def test_a_blob_is_not_read_as_a_shape() -> None:
    image = render(Scene("red", "square", "center", "white"))
    image[24:40, 8:56] = (220, 40, 40)  # a wide bar grows the square into a rectangle-ish blob
    image[30:34, 0:64] = (220, 40, 40)
    assert judge(image).shape != "square"


def test_wrong_attributes_do_not_match() -> None:
    image = render(Scene("red", "circle", "left", "blue"))
    assert not matches(image, Scene("red", "circle", "right", "blue"))
    assert not matches(image, Scene("pink", "circle", "left", "blue"))
    assert not matches(image, Scene("red", "square", "left", "blue"))
    assert not matches(image, Scene("red", "circle", "left", "black"))


def test_accuracy_counts_whole_prompts_and_each_attribute() -> None:
    scenes = all_scenes()[:4]
    images = [render(scene) for scene in scenes]
    assert accuracy(images, scenes) == {"prompt_accuracy": 1.0, **dict.fromkeys(ATTRIBUTES, 1.0)}
    assert accuracy(images, scenes[1:] + scenes[:1])["prompt_accuracy"] == 0.0
    # One image whose scene differs only in position: wrong as a prompt, right on the rest.
    scene = Scene("red", "circle", "left", "blue")
    moved = Scene("red", "circle", "right", "blue")
    result = accuracy([render(scene), render(scene)], [scene, moved])
    assert result == {
        "prompt_accuracy": 0.5,
        "color": 1.0,
        "shape": 1.0,
        "position": 0.5,
        "background": 1.0,
    }
    with pytest.raises(InvalidRequest, match="as many images as scenes"):
        accuracy(images, scenes[:2])
    with pytest.raises(InvalidRequest):
        accuracy([], [])


def test_judge_rejects_non_images() -> None:
    with pytest.raises(InvalidRequest):
        judge(np.zeros((64, 64), dtype=np.uint8))
    with pytest.raises(InvalidRequest):
        judge(np.zeros((64, 64, 3), dtype=np.float32))
