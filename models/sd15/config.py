"""SD 1.5's published configuration, written out (no download), and its shrunk twin.

The values are those of the `config.json` files of the runwayml/stable-diffusion-v1-5 release
(unet/, vae/, text_encoder/, scheduler/, tokenizer/). The shrunk twin keeps every block type and
the real 49408-token vocabulary but has tiny channel counts, so CI runs the same code path in
seconds. Nothing here needs torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

CLIP_VOCAB_SIZE = 49408
MAX_LENGTH = 77

UNET: dict[str, Any] = {
    "act_fn": "silu",
    "attention_head_dim": 8,
    "block_out_channels": [320, 640, 1280, 1280],
    "center_input_sample": False,
    "cross_attention_dim": 768,
    "down_block_types": [
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "DownBlock2D",
    ],
    "downsample_padding": 1,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "in_channels": 4,
    "layers_per_block": 2,
    "mid_block_scale_factor": 1,
    "norm_eps": 1e-05,
    "norm_num_groups": 32,
    "out_channels": 4,
    "sample_size": 64,
    "up_block_types": [
        "UpBlock2D",
        "CrossAttnUpBlock2D",
        "CrossAttnUpBlock2D",
        "CrossAttnUpBlock2D",
    ],
}

VAE: dict[str, Any] = {
    "act_fn": "silu",
    "block_out_channels": [128, 256, 512, 512],
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "in_channels": 3,
    "latent_channels": 4,
    "layers_per_block": 2,
    "norm_num_groups": 32,
    "out_channels": 3,
    "sample_size": 512,
    "scaling_factor": 0.18215,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
}

TEXT_ENCODER: dict[str, Any] = {
    "attention_dropout": 0.0,
    "bos_token_id": 0,
    "dropout": 0.0,
    "eos_token_id": 2,
    "hidden_act": "quick_gelu",
    "hidden_size": 768,
    "initializer_factor": 1.0,
    "initializer_range": 0.02,
    "intermediate_size": 3072,
    "layer_norm_eps": 1e-05,
    "max_position_embeddings": MAX_LENGTH,
    "num_attention_heads": 12,
    "num_hidden_layers": 12,
    "pad_token_id": 1,
    "projection_dim": 768,
    "vocab_size": CLIP_VOCAB_SIZE,
}

SCHEDULER: dict[str, Any] = {
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "clip_sample": False,
    "num_train_timesteps": 1000,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
}

# Parameter counts of the published checkpoints (text encoder 123 M, UNet 860 M, VAE decoder
# 49 M: decoder + post_quant_conv), which the architecture built from the values above matches.
PARAMETERS = {"text_encoder": 123_060_480, "unet": 859_520_964, "vae_decoder": 49_490_199}


@dataclass(frozen=True)
class Sd15Config:
    """Everything needed to build one SD 1.5-architecture pipeline with random weights."""

    name: str
    unet: dict[str, Any]
    vae: dict[str, Any]
    text_encoder: dict[str, Any]
    scheduler: dict[str, Any] = field(default_factory=lambda: dict(SCHEDULER))
    # optimum writes a UNet under 2 GB into one file; the twin is forced to external data so
    # CI covers the path every real-size UNet takes.
    force_external_data: bool = False

    @property
    def latent_size(self) -> int:
        return int(self.unet["sample_size"])

    @property
    def image_size(self) -> int:
        return self.latent_size * 2 ** (len(self.vae["block_out_channels"]) - 1)


REAL = Sd15Config("sd15", UNET, VAE, TEXT_ENCODER)

SHRUNK = Sd15Config(
    "sd15-shrunk",
    unet={
        **UNET,
        "attention_head_dim": 2,
        "block_out_channels": [32, 64],
        "cross_attention_dim": 32,
        "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
        "layers_per_block": 1,
        "norm_num_groups": 8,
        "sample_size": 8,
        "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"],
    },
    vae={
        **VAE,
        "block_out_channels": [8, 16, 16, 16],
        "layers_per_block": 1,
        "norm_num_groups": 8,
        "sample_size": 64,
    },
    text_encoder={
        **TEXT_ENCODER,
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_attention_heads": 4,
        "num_hidden_layers": 2,
        "projection_dim": 32,
    },
    force_external_data=True,
)
