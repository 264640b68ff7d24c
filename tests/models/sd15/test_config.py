"""SD 1.5's architecture as config.py builds it: shapes and parameter counts of the release.

Built on torch's meta device: the real-size networks, no weights allocated, in seconds.
"""

from __future__ import annotations

import pytest

from hexfleet.models.sd15.config import PARAMETERS, REAL, SHRUNK

pytest.importorskip("diffusers", reason="needs the export extra")
from hexfleet.models.sd15.export import build_modules, parameter_counts  # noqa: E402


def test_real_size_parameter_counts_match_sd15() -> None:
    modules = build_modules(REAL, device="meta")
    counts = parameter_counts(modules)
    assert counts == PARAMETERS
    # The round figures: text encoder 123 M, UNet 860 M, VAE decoder 49 M.
    assert [round(counts[r] / 1e6) for r in ("text_encoder", "unet", "vae_decoder")] == [
        123,
        860,
        49,
    ]


def test_real_size_shapes_match_sd15() -> None:
    modules = build_modules(REAL, device="meta")
    unet, vae, text = modules["unet"], modules["vae"], modules["text_encoder"]
    config = unet.config
    assert (config.in_channels, config.out_channels, config.sample_size) == (4, 4, 64)
    assert unet.config.cross_attention_dim == text.config.hidden_size == 768
    assert list(unet.config.block_out_channels) == [320, 640, 1280, 1280]
    assert unet.conv_in.weight.shape == (320, 4, 3, 3)
    assert text.text_model.embeddings.token_embedding.weight.shape == (49408, 768)
    assert text.text_model.embeddings.position_embedding.weight.shape == (77, 768)
    assert len(text.text_model.encoder.layers) == 12
    assert vae.config.latent_channels == 4 and vae.config.scaling_factor == 0.18215
    assert vae.post_quant_conv.weight.shape == (4, 4, 1, 1)
    assert vae.decoder.conv_out.weight.shape == (3, 128, 3, 3)
    assert REAL.image_size == 512 and REAL.latent_size == 64


def test_shrunk_twin_keeps_the_architecture_but_not_the_size() -> None:
    modules = build_modules(SHRUNK, device="meta")
    counts = parameter_counts(modules)
    assert all(counts[role] < PARAMETERS[role] / 50 for role in PARAMETERS)
    assert modules["text_encoder"].config.vocab_size == 49408  # the real vocabulary
    assert SHRUNK.image_size == SHRUNK.latent_size * 8  # the VAE still upsamples 8x
    assert SHRUNK.unet["cross_attention_dim"] == SHRUNK.text_encoder["hidden_size"]
    assert SHRUNK.force_external_data
