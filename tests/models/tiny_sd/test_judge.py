"""The judge reads the generator's own renders back, and refuses what it cannot read."""

from __future__ import annotations

import numpy as np
import pytest

from hexfleet.errors import InvalidRequest
from hexfleet.models.tiny_sd.judge import UNKNOWN, judge, matches, prompt_accuracy
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


def test_prompt_accuracy() -> None:
    scenes = all_scenes()[:4]
    images = [render(scene) for scene in scenes]
    assert prompt_accuracy(images, scenes) == 1.0
    assert prompt_accuracy(images, scenes[1:] + scenes[:1]) == 0.0
    with pytest.raises(InvalidRequest):
        prompt_accuracy(images, scenes[:2])


def test_judge_rejects_non_images() -> None:
    with pytest.raises(InvalidRequest):
        judge(np.zeros((64, 64), dtype=np.uint8))
    with pytest.raises(InvalidRequest):
        judge(np.zeros((64, 64, 3), dtype=np.float32))
