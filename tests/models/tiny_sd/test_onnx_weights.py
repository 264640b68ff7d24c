"""The committed tiny-sd ONNX files load in onnxruntime with static shapes and SD's I/O names.

Also that info.json describes them and that they follow a prompt (without torch).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from hexfleet.models.tiny_sd.judge import judge
from hexfleet.models.tiny_sd.tokenizer import WordTokenizer
from hexfleet.models.tiny_sd.world import parse_prompt

PACKAGE = Path(__file__).parents[3] / "models" / "tiny_sd"
INFO = json.loads((PACKAGE / "info.json").read_text())
COMPONENTS = ("text_encoder", "unet", "vae_decoder")
DTYPES = {"int64": "tensor(int64)", "float32": "tensor(float)"}


def _session(name: str) -> ort.InferenceSession:
    return ort.InferenceSession(
        str(PACKAGE / "weights" / f"{name}.onnx"), providers=["CPUExecutionProvider"]
    )


@pytest.mark.parametrize("name", COMPONENTS)
def test_static_io_matches_info(name: str) -> None:
    spec = INFO["components"][name]
    session = _session(name)
    for actual, (io_name, expected) in zip(
        session.get_inputs(), spec["inputs"].items(), strict=True
    ):
        assert (actual.name, actual.type, actual.shape) == (
            io_name,
            DTYPES[expected["dtype"]],
            expected["shape"],
        )
    for actual, (io_name, expected) in zip(
        session.get_outputs(), spec["outputs"].items(), strict=True
    ):
        assert (actual.name, actual.type, actual.shape) == (
            io_name,
            DTYPES[expected["dtype"]],
            expected["shape"],
        )
    model = onnx.load(str(PACKAGE / "weights" / f"{name}.onnx"))
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 17


def test_sd_names_and_shapes() -> None:
    c, h, n = INFO["latent_channels"], INFO["latent_size"], INFO["tokenizer"]["max_length"]
    te = {i.name: i.shape for i in _session("text_encoder").get_inputs()}
    unet = {i.name: i.shape for i in _session("unet").get_inputs()}
    vae = _session("vae_decoder")
    assert te == {"input_ids": [1, n]}
    assert set(unet) == {"sample", "timestep", "encoder_hidden_states"}
    assert unet["sample"] == [2, c, h, h]
    assert _session("unet").get_outputs()[0].name == "out_sample"
    assert vae.get_inputs()[0].name == "latent_sample"
    assert vae.get_outputs()[0].shape == [1, 3, INFO["image_size"], INFO["image_size"]]


def test_info_describes_the_model() -> None:
    total = sum(INFO["components"][name]["parameters"] for name in COMPONENTS)
    assert 1_000_000 <= total <= 5_000_000
    assert INFO["prediction_type"] in ("epsilon", "v_prediction")
    assert INFO["beta_schedule"] == "squaredcos_cap_v2"
    assert INFO["num_train_timesteps"] == 1000
    assert INFO["default_steps"] == 20
    assert INFO["latent_scaling_factor"] > 0
    assert WordTokenizer.default().max_length == INFO["tokenizer"]["max_length"]


def _alphas_cumprod(steps: int = 1000) -> np.ndarray:
    def alpha_bar(t: float) -> float:
        return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2

    betas = [
        min(1 - alpha_bar((i + 1) / steps) / alpha_bar(i / steps), 0.999) for i in range(steps)
    ]
    return np.cumprod(1.0 - np.array(betas))


def _generate(prompt: str, steps: int, seed: int) -> np.ndarray:
    tokenizer = WordTokenizer.default()
    te, unet, vae = _session("text_encoder"), _session("unet"), _session("vae_decoder")

    def embed(text: str) -> np.ndarray:
        return te.run(None, {"input_ids": tokenizer.encode(text)[None]})[0]

    context = np.concatenate([embed(""), embed(prompt)])
    acp = _alphas_cumprod()
    c, h = INFO["latent_channels"], INFO["latent_size"]
    x = np.random.default_rng(seed).standard_normal((1, c, h, h))
    timesteps = np.round(np.arange(1000, 0, -1000 / steps)).astype(np.int64) - 1
    scale = INFO["default_guidance_scale"]
    for i, t in enumerate(timesteps):
        a, a_prev = acp[t], (acp[timesteps[i + 1]] if i + 1 < steps else 1.0)
        v_u, v_c = unet.run(
            None,
            {
                "sample": np.concatenate([x, x]).astype(np.float32),
                "timestep": np.array([t], dtype=np.float32),
                "encoder_hidden_states": context,
            },
        )[0].astype(np.float64)
        v = v_u + scale * (v_c - v_u)
        x0, eps = np.sqrt(a) * x - np.sqrt(1 - a) * v, np.sqrt(1 - a) * x + np.sqrt(a) * v
        x = np.sqrt(a_prev) * x0 + np.sqrt(1 - a_prev) * eps
    latent = (x / INFO["latent_scaling_factor"]).astype(np.float32)
    image = vae.run(None, {"latent_sample": latent})[0][0]
    assert image.min() >= -1.0 and image.max() <= 1.0
    return np.clip(np.rint((image.transpose(1, 2, 0) + 1) * 127.5), 0, 255).astype(np.uint8)


def test_generated_images_follow_their_prompts() -> None:
    prompts = [
        "a red circle on the left in a blue background",
        "a yellow square at the top in a black background",
        "a cyan triangle in the center in a white background",
        "a pink cross at the bottom in a gray background",
        "a green square on the right in a yellow background",
    ]
    matched = sum(
        judge(_generate(prompt, 20, seed)) == parse_prompt(prompt)
        for seed, prompt in enumerate(prompts)
    )
    assert matched >= 4
    assert np.array_equal(_generate(prompts[0], 8, 7), _generate(prompts[0], 8, 7))
