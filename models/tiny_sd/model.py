"""Torch modules of tiny-sd: text encoder, conditional UNet, autoencoder (SD's three parts).

Needs torch (the `train` extra); only training and export import this module.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn import functional as F

from hexfleet.models.schedulers import SchedulerConfig

NOISE_SCHEDULE = SchedulerConfig(
    num_train_timesteps=1000,
    beta_schedule="squaredcos_cap_v2",
    prediction_type="v_prediction",
    timestep_spacing="trailing",
    set_alpha_to_one=True,
)
"""How tiny-sd is trained (cosine betas, v-prediction) and sampled (trailing DDIM steps ending on
a clean image); training, export and info.json all read it from here."""


@dataclass(frozen=True)
class TinySDConfig:
    """Every size that fixes the shapes of the three components.

    The "latent" is the image itself at half resolution (32x32 RGB in [-1, 1]): diffusion runs
    in that small pixel space and the decoder is a learned 2x upsampler to the 64x64 image.
    """

    vocab_size: int = 30
    max_length: int = 16
    text_width: int = 64
    text_layers: int = 2
    text_heads: int = 4
    image_size: int = 64
    latent_channels: int = 3
    latent_size: int = 32
    unet_widths: tuple[int, ...] = (32, 64, 96)
    unet_attention: tuple[bool, ...] = (False, True, True)
    unet_heads: int = 4
    decoder_widths: tuple[int, int] = (48, 24)

    def to_dict(self) -> dict:
        return asdict(self)


def _groups(channels: int) -> int:
    return 8 if channels % 8 == 0 else 1


class Attention(nn.Module):
    """Multi-head attention, exported as MatMul + Softmax (what the QNN HTP backend runs).

    In torch it runs through the fused `scaled_dot_product_attention` unless `fused` is False
    (bench/train_step.py times both)."""

    fused = True

    def __init__(self, width: int, context_width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(width, width, bias=False)
        self.k = nn.Linear(context_width, width, bias=False)
        self.v = nn.Linear(context_width, width, bias=False)
        self.out = nn.Linear(width, width)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        batch, n, width = x.shape
        m = context.shape[1]
        head = width // self.heads
        q = self.q(x).reshape(batch, n, self.heads, head).transpose(1, 2)
        v = self.v(context).reshape(batch, m, self.heads, head).transpose(1, 2)
        if self.fused and not torch.onnx.is_in_onnx_export():
            # The same function through torch's fused kernel: 1.3x faster training steps.
            k = self.k(context).reshape(batch, m, self.heads, head).transpose(1, 2)
            y = F.scaled_dot_product_attention(q, k, v)
        else:
            k = self.k(context).reshape(batch, m, self.heads, head).permute(0, 2, 3, 1)
            weights = torch.softmax(torch.matmul(q, k) * (1.0 / math.sqrt(head)), dim=-1)
            y = torch.matmul(weights, v)
        return self.out(y.transpose(1, 2).reshape(batch, n, width))


class FeedForward(nn.Module):
    def __init__(self, width: int, mult: int = 2) -> None:
        super().__init__()
        self.fc1 = nn.Linear(width, width * mult)
        self.fc2 = nn.Linear(width * mult, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class TextLayer(nn.Module):
    """Pre-norm transformer layer of the text encoder."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(width)
        self.attn = Attention(width, width, heads)
        self.norm2 = nn.LayerNorm(width)
        self.ff = FeedForward(width, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm1(x)
        x = x + self.attn(h, h)
        return x + self.ff(self.norm2(x))


class TextEncoder(nn.Module):
    """input_ids (B, L) int64 → last_hidden_state (B, L, D)."""

    def __init__(self, cfg: TinySDConfig) -> None:
        super().__init__()
        self.token = nn.Embedding(cfg.vocab_size, cfg.text_width)
        self.position = nn.Parameter(torch.randn(1, cfg.max_length, cfg.text_width) * 0.02)
        self.layers = nn.ModuleList(
            TextLayer(cfg.text_width, cfg.text_heads) for _ in range(cfg.text_layers)
        )
        self.norm = nn.LayerNorm(cfg.text_width)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        x = self.token(input_ids) + self.position
        for layer in self.layers:
            x = layer(x)
        return self.norm(x)


class ResBlock(nn.Module):
    """GroupNorm-SiLU-Conv twice, with an optional time embedding added in between."""

    def __init__(self, cin: int, cout: int, temb: int = 0) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(_groups(cin), cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.temb = nn.Linear(temb, cout) if temb else None
        self.norm2 = nn.GroupNorm(_groups(cout), cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor, temb: torch.Tensor | None = None) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        if self.temb is not None and temb is not None:
            h = h + self.temb(F.silu(temb))[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return self.skip(x) + h


class SpatialTransformer(nn.Module):
    """Self-attention, cross-attention to the text, feed-forward, on a feature map's pixels."""

    def __init__(self, width: int, context_width: int, heads: int) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(_groups(width), width)
        self.proj_in = nn.Conv2d(width, width, 1)
        self.norm1 = nn.LayerNorm(width)
        self.self_attn = Attention(width, width, heads)
        self.norm2 = nn.LayerNorm(width)
        self.cross_attn = Attention(width, context_width, heads)
        self.norm3 = nn.LayerNorm(width)
        self.ff = FeedForward(width, 2)
        self.proj_out = nn.Conv2d(width, width, 1)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        batch, width, height, wid = x.shape
        h = self.proj_in(self.norm(x)).reshape(batch, width, height * wid).transpose(1, 2)
        n = self.norm1(h)
        h = h + self.self_attn(n, n)
        h = h + self.cross_attn(self.norm2(h), context)
        h = h + self.ff(self.norm3(h))
        h = h.transpose(1, 2).reshape(batch, width, height, wid)
        return x + self.proj_out(h)


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of float timesteps in [0, 1000): (B,) → (B, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) / half)
    angles = t.float()[:, None] * freqs[None, :]
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=1)


class UNet(nn.Module):
    """(sample, timestep, encoder_hidden_states) → v prediction, with x/y coordinate channels.

    Levels at latent, /2 and /4 resolution; one ResBlock + SpatialTransformer per level on the
    way down and up; a ResBlock in the middle. ``timestep`` is (B,) or (1,) (broadcast).
    """

    def __init__(self, cfg: TinySDConfig) -> None:
        super().__init__()
        widths = cfg.unet_widths
        self.time_dim = widths[0] * 2
        temb = widths[0] * 4
        self.time_mlp = nn.Sequential(
            nn.Linear(self.time_dim, temb), nn.SiLU(), nn.Linear(temb, temb)
        )
        size = cfg.latent_size
        coords = (torch.arange(size, dtype=torch.float32) + 0.5) / size * 2 - 1
        grid = torch.stack([coords[None, :].expand(size, size), coords[:, None].expand(size, size)])
        self.register_buffer("coords", grid[None], persistent=False)
        self.conv_in = nn.Conv2d(cfg.latent_channels + 2, widths[0], 3, padding=1)
        ctx = cfg.text_width
        self.down_res = nn.ModuleList()
        self.down_attn = nn.ModuleList()
        self.downsample = nn.ModuleList()
        cin = widths[0]
        for i, w in enumerate(widths):
            self.down_res.append(ResBlock(cin, w, temb))
            self.down_attn.append(
                SpatialTransformer(w, ctx, cfg.unet_heads) if cfg.unet_attention[i] else None
            )
            if i < len(widths) - 1:
                self.downsample.append(nn.Conv2d(w, w, 3, stride=2, padding=1))
            cin = w
        self.mid = ResBlock(cin, cin, temb)
        self.up_res = nn.ModuleList()
        self.up_attn = nn.ModuleList()
        self.upsample = nn.ModuleList()
        for i, w in reversed(list(enumerate(widths))):
            self.up_res.append(ResBlock(cin + w, w, temb))
            self.up_attn.append(
                SpatialTransformer(w, ctx, cfg.unet_heads) if cfg.unet_attention[i] else None
            )
            if i > 0:
                self.upsample.append(nn.Conv2d(w, widths[i - 1], 3, padding=1))
            cin = w if i == 0 else widths[i - 1]
        self.norm_out = nn.GroupNorm(_groups(widths[0]), widths[0])
        self.conv_out = nn.Conv2d(widths[0], cfg.latent_channels, 3, padding=1)

    def forward(
        self, sample: torch.Tensor, timestep: torch.Tensor, encoder_hidden_states: torch.Tensor
    ) -> torch.Tensor:
        temb = self.time_mlp(timestep_embedding(timestep, self.time_dim))
        coords = self.coords.expand(sample.shape[0], -1, -1, -1)
        h = self.conv_in(torch.cat([sample, coords], dim=1))
        skips = []
        for i, (res, attn) in enumerate(zip(self.down_res, self.down_attn, strict=True)):
            h = res(h, temb)
            if attn is not None:
                h = attn(h, encoder_hidden_states)
            skips.append(h)
            if i < len(self.downsample):
                h = self.downsample[i](h)
        h = self.mid(h, temb)
        for i, (res, attn) in enumerate(zip(self.up_res, self.up_attn, strict=True)):
            h = res(torch.cat([h, skips.pop()], dim=1), temb)
            if attn is not None:
                h = attn(h, encoder_hidden_states)
            if i < len(self.upsample):
                h = self.upsample[i](F.interpolate(h, scale_factor=2.0, mode="nearest"))
        return self.conv_out(F.silu(self.norm_out(h)))


def encode(image: torch.Tensor, cfg: TinySDConfig) -> torch.Tensor:
    """The latent of an image: its area-average downsample (B, 3, 64, 64) → (B, 3, 32, 32)."""
    return F.avg_pool2d(image, cfg.image_size // cfg.latent_size)


class Decoder(nn.Module):
    """latent (B, 3, 32, 32) → image (B, 3, 64, 64): nearest 2x upsample plus a learned
    correction that sharpens edges (Resize + Conv + GroupNorm + SiLU only)."""

    def __init__(self, cfg: TinySDConfig) -> None:
        super().__init__()
        w0, w1 = cfg.decoder_widths
        self.factor = float(cfg.image_size // cfg.latent_size)
        self.conv_in = nn.Conv2d(cfg.latent_channels, w0, 3, padding=1)
        self.res1 = ResBlock(w0, w0)
        self.res2 = ResBlock(w0, w0)
        self.up = nn.Conv2d(w0, w1, 3, padding=1)
        self.res3 = ResBlock(w1 + cfg.latent_channels, w1)
        self.norm = nn.GroupNorm(_groups(w1), w1)
        self.conv_out = nn.Conv2d(w1, 3, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        base = F.interpolate(latent, scale_factor=self.factor, mode="nearest")
        h = self.res2(self.res1(self.conv_in(latent)))
        h = self.up(F.interpolate(h, scale_factor=self.factor, mode="nearest"))
        h = self.res3(torch.cat([h, base], dim=1))
        return base + self.conv_out(F.silu(self.norm(h)))


def parameter_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
