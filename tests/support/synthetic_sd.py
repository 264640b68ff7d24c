"""Random-weight ONNX models with Stable Diffusion's three-part shape, built with onnx.helper.

For tests and demos that need real ONNX Runtime sessions before (or without) trained weights:
the same ops as the real exports (Gather, LayerNorm, attention as MatMul+Softmax, GroupNorm as
InstanceNormalization, SiLU, Erf-GELU, Conv, Resize) in tiny sizes, in two folder layouts:
hexfleet's tiny-sd (`weights/*.onnx` + `info.json` + `vocab.json`) and optimum's SD export.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from hexfleet.models.clip_tokenizer import END, START, byte_to_unicode
from hexfleet.models.tiny_sd.tokenizer import DEFAULT_VOCAB

OPSET = 17
TINY_VOCAB = DEFAULT_VOCAB
SD_WORDS = "a photo of an astronaut riding horse on mars red cat painting".split()


@dataclass(frozen=True)
class SyntheticSpec:
    """Sizes of a synthetic model; `batch` None means a dynamic batch (optimum's export)."""

    latent_channels: int = 4
    latent_size: int = 8
    image_size: int = 16
    hidden: int = 32
    seq_len: int = 8
    vocab_size: int = 32
    width: int = 32
    heads: int = 2
    batch: int | None = 2
    input_ids_type: int = TensorProto.INT64
    timestep_type: int = TensorProto.FLOAT
    timestep_len: int | None = 2


class _Graph:
    """A small graph builder: named initializers and nodes with generated output names."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.count = 0

    def _name(self, hint: str) -> str:
        self.count += 1
        return f"{hint}_{self.count}"

    def const(self, array: np.ndarray, hint: str = "const") -> str:
        name = self._name(hint)
        self.inits.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def weight(self, shape: tuple[int, ...], fan_in: int, hint: str) -> str:
        scale = 1.0 / math.sqrt(fan_in)
        return self.const(self.rng.normal(0, scale, shape).astype(np.float32), hint)

    def op(self, op_type: str, inputs: list[str], hint: str = "", **attrs: object) -> str:
        out = self._name(hint or op_type.lower())
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=out + "_node", **attrs))
        return out

    def linear(self, x: str, din: int, dout: int, bias: bool = True) -> str:
        y = self.op("MatMul", [x, self.weight((din, dout), din, "linear_w")])
        if bias:
            y = self.op("Add", [y, self.const(np.zeros(dout, np.float32), "linear_b")])
        return y

    def layer_norm(self, x: str, width: int) -> str:
        gamma = self.const((1 + 0.1 * self.rng.standard_normal(width)).astype(np.float32), "ln_g")
        beta = self.const((0.1 * self.rng.standard_normal(width)).astype(np.float32), "ln_b")
        return self.op("LayerNormalization", [x, gamma, beta], axis=-1, epsilon=1e-5)

    def group_norm(self, x: str, channels: int, groups: int) -> str:
        """torch's GroupNorm export: Reshape → InstanceNormalization → Reshape → affine."""
        grouped = self.op("Reshape", [x, self.const(np.array([0, groups, -1], np.int64))])
        ones, zeros = np.ones(groups, np.float32), np.zeros(groups, np.float32)
        normed = self.op(
            "InstanceNormalization", [grouped, self.const(ones), self.const(zeros)], epsilon=1e-5
        )
        back = self.op("Reshape", [normed, self.op("Shape", [x])])
        gamma = (1 + 0.1 * self.rng.standard_normal((channels, 1, 1))).astype(np.float32)
        beta = (0.1 * self.rng.standard_normal((channels, 1, 1))).astype(np.float32)
        return self.op("Add", [self.op("Mul", [back, self.const(gamma)]), self.const(beta)])

    def silu(self, x: str) -> str:
        return self.op("Mul", [x, self.op("Sigmoid", [x])])

    def gelu(self, x: str) -> str:
        scaled = self.op("Div", [x, self.const(np.array(math.sqrt(2), np.float32))])
        erf = self.op("Add", [self.op("Erf", [scaled]), self.const(np.array(1, np.float32))])
        return self.op("Mul", [self.op("Mul", [x, erf]), self.const(np.array(0.5, np.float32))])

    def conv(self, x: str, cin: int, cout: int, kernel: int = 3, stride: int = 1) -> str:
        w = self.weight((cout, cin, kernel, kernel), cin * kernel * kernel, "conv_w")
        b = self.const(np.zeros(cout, np.float32), "conv_b")
        pad = kernel // 2
        return self.op("Conv", [x, w, b], pads=[pad] * 4, strides=[stride, stride])

    def upsample(self, x: str) -> str:
        scales = self.const(np.array([1, 1, 2, 2], np.float32))
        return self.op("Resize", [x, "", scales], mode="nearest")

    def res_block(self, x: str, cin: int, cout: int, temb: str | None, temb_dim: int) -> str:
        h = self.conv(self.silu(self.group_norm(x, cin, 8)), cin, cout)
        if temb is not None:
            t = self.linear(self.silu(temb), temb_dim, cout)
            h = self.op("Add", [h, self.op("Unsqueeze", [t, self.const(np.array([2, 3]))])])
        h = self.conv(self.silu(self.group_norm(h, cout, 8)), cout, cout)
        skip = x if cin == cout else self.conv(x, cin, cout, kernel=1)
        return self.op("Add", [skip, h])

    def attention(
        self, x: str, ctx: str, n: int, m: int, width: int, ctx_width: int, heads: int
    ) -> str:
        head = width // heads
        q = self.linear(x, width, width, bias=False)
        k = self.linear(ctx, ctx_width, width, bias=False)
        v = self.linear(ctx, ctx_width, width, bias=False)

        def split(t: str, length: int, perm: list[int]) -> str:
            shaped = self.op("Reshape", [t, self.const(np.array([0, length, heads, head]))])
            return self.op("Transpose", [shaped], perm=perm)

        scores = self.op("MatMul", [split(q, n, [0, 2, 1, 3]), split(k, m, [0, 2, 3, 1])])
        scores = self.op("Mul", [scores, self.const(np.array(1 / math.sqrt(head), np.float32))])
        weights = self.op("Softmax", [scores], axis=-1)
        y = self.op("MatMul", [weights, split(v, m, [0, 2, 1, 3])])
        y = self.op("Transpose", [y], perm=[0, 2, 1, 3])
        y = self.op("Reshape", [y, self.const(np.array([0, n, width]))])
        return self.linear(y, width, width)

    def transformer(self, x: str, ctx: str, width: int, size: int, spec: SyntheticSpec) -> str:
        n = size * size
        h = self.conv(self.group_norm(x, width, 8), width, width, kernel=1)
        h = self.op(
            "Transpose",
            [self.op("Reshape", [h, self.const(np.array([0, width, n]))])],
            perm=[0, 2, 1],
        )
        normed = self.layer_norm(h, width)
        h = self.op("Add", [h, self.attention(normed, normed, n, n, width, width, spec.heads)])
        cross = self.attention(
            self.layer_norm(h, width), ctx, n, spec.seq_len, width, spec.hidden, spec.heads
        )
        h = self.op("Add", [h, cross])
        ff = self.linear(
            self.gelu(self.linear(self.layer_norm(h, width), width, 2 * width)), 2 * width, width
        )
        h = self.op("Add", [h, ff])
        h = self.op("Transpose", [h], perm=[0, 2, 1])
        h = self.op("Reshape", [h, self.const(np.array([0, width, size, size]))])
        return self.op("Add", [x, self.conv(h, width, width, kernel=1)])

    def model(
        self,
        inputs: list[onnx.ValueInfoProto],
        outputs: list[tuple[str, onnx.ValueInfoProto]],
        name: str,
    ) -> onnx.ModelProto:
        nodes = list(self.nodes)
        for produced, info in outputs:
            nodes.append(helper.make_node("Identity", [produced], [info.name]))
        graph = helper.make_graph(nodes, name, inputs, [info for _, info in outputs], self.inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
        model.ir_version = 8
        onnx.checker.check_model(model)
        return model


def _batch(spec: SyntheticSpec, static: int) -> int | str:
    return "batch" if spec.batch is None else static


def text_encoder(spec: SyntheticSpec, seed: int = 0) -> onnx.ModelProto:
    """input_ids [B, L] → last_hidden_state [B, L, D] (+ pooler_output [B, D] if dynamic)."""
    g = _Graph(np.random.default_rng(seed))
    batch = _batch(spec, 1)
    ids = helper.make_tensor_value_info("input_ids", spec.input_ids_type, [batch, spec.seq_len])
    table = g.const(g.rng.normal(0, 1, (spec.vocab_size, spec.hidden)).astype(np.float32), "tok")
    x = g.op("Gather", [table, "input_ids"])
    position = g.rng.normal(0, 0.5, (1, spec.seq_len, spec.hidden)).astype(np.float32)
    x = g.op("Add", [x, g.const(position, "pos")])
    normed = g.layer_norm(x, spec.hidden)
    x = g.op(
        "Add",
        [
            x,
            g.attention(
                normed, normed, spec.seq_len, spec.seq_len, spec.hidden, spec.hidden, spec.heads
            ),
        ],
    )
    mlp = g.linear(
        g.gelu(g.linear(g.layer_norm(x, spec.hidden), spec.hidden, 2 * spec.hidden)),
        2 * spec.hidden,
        spec.hidden,
    )
    x = g.layer_norm(g.op("Add", [x, mlp]), spec.hidden)
    hidden = helper.make_tensor_value_info(
        "last_hidden_state", TensorProto.FLOAT, [batch, spec.seq_len, spec.hidden]
    )
    outputs = [(x, hidden)]
    if spec.batch is None:
        pooled = g.op("ReduceMean", [x], axes=[1], keepdims=0)
        info = helper.make_tensor_value_info(
            "pooler_output", TensorProto.FLOAT, [batch, spec.hidden]
        )
        outputs.append((pooled, info))
    return g.model([ids], outputs, "text_encoder")


def unet(spec: SyntheticSpec, seed: int = 1) -> onnx.ModelProto:
    """(sample, timestep, encoder_hidden_states) → out_sample: one down/up level, attention."""
    g = _Graph(np.random.default_rng(seed))
    c, s, w = spec.latent_channels, spec.latent_size, spec.width
    batch = _batch(spec, spec.batch or 2)
    t_len: int | str = "steps" if spec.timestep_len is None else spec.timestep_len
    inputs = [
        helper.make_tensor_value_info("sample", TensorProto.FLOAT, [batch, c, s, s]),
        helper.make_tensor_value_info("timestep", spec.timestep_type, [t_len]),
        helper.make_tensor_value_info(
            "encoder_hidden_states", TensorProto.FLOAT, [batch, spec.seq_len, spec.hidden]
        ),
    ]
    t = g.op("Cast", ["timestep"], to=TensorProto.FLOAT)
    half = w // 2
    freqs = np.exp(-math.log(10000.0) * np.arange(half) / half).astype(np.float32)
    angles = g.op("Mul", [g.op("Unsqueeze", [t, g.const(np.array([1]))]), g.const(freqs[None])])
    emb = g.op("Concat", [g.op("Cos", [angles]), g.op("Sin", [angles])], axis=1)
    temb_dim = 2 * w
    temb = g.linear(g.silu(g.linear(emb, w, temb_dim)), temb_dim, temb_dim)
    h = g.conv("sample", c, w)
    h = g.res_block(h, w, w, temb, temb_dim)
    skip = g.transformer(h, "encoder_hidden_states", w, s, spec)
    low = g.res_block(g.conv(skip, w, 2 * w, stride=2), 2 * w, 2 * w, temb, temb_dim)
    low = g.transformer(low, "encoder_hidden_states", 2 * w, s // 2, spec)
    up = g.conv(g.upsample(low), 2 * w, w)
    h = g.res_block(g.op("Concat", [up, skip], axis=1), 2 * w, w, temb, temb_dim)
    out = g.conv(g.silu(g.group_norm(h, w, 8)), w, c)
    info = helper.make_tensor_value_info("out_sample", TensorProto.FLOAT, [batch, c, s, s])
    return g.model(inputs, [(out, info)], "unet")


def vae_decoder(spec: SyntheticSpec, seed: int = 2) -> onnx.ModelProto:
    """latent_sample [B, C, h, w] → sample [B, 3, H, W] through nearest-neighbour upsampling."""
    g = _Graph(np.random.default_rng(seed))
    batch = _batch(spec, 1)
    c, s, w = spec.latent_channels, spec.latent_size, spec.width
    latent = helper.make_tensor_value_info("latent_sample", TensorProto.FLOAT, [batch, c, s, s])
    h = g.res_block(g.conv("latent_sample", c, w), w, w, None, 0)
    size = s
    while size < spec.image_size:
        h = g.conv(g.upsample(h), w, w)
        size *= 2
    out = g.conv(g.silu(g.group_norm(h, w, 8)), w, 3)
    image = spec.image_size
    info = helper.make_tensor_value_info("sample", TensorProto.FLOAT, [batch, 3, image, image])
    return g.model([latent], [(out, info)], "vae_decoder")


def tiny_vocab() -> dict[str, Any]:
    """tiny-sd's shipped word vocabulary (models/tiny_sd/vocab.json): same words, same length."""
    return json.loads(TINY_VOCAB.read_text())


def write_tiny_layout(folder: Path, spec: SyntheticSpec | None = None, seed: int = 0) -> Path:
    """A folder shaped like models/tiny_sd: weights/*.onnx, info.json, vocab.json."""
    vocab = tiny_vocab()
    spec = spec or SyntheticSpec(
        vocab_size=max(vocab["tokens"].values()) + 1,
        seq_len=int(vocab["max_length"]),
        timestep_len=1,
    )
    weights = folder / "weights"
    weights.mkdir(parents=True, exist_ok=True)
    onnx.save(text_encoder(spec, seed), str(weights / "text_encoder.onnx"))
    onnx.save(unet(spec, seed + 1), str(weights / "unet.onnx"))
    onnx.save(vae_decoder(spec, seed + 2), str(weights / "vae_decoder.onnx"))
    (folder / "vocab.json").write_text(json.dumps(vocab, indent=1))
    info = {
        "name": "tiny-sd",
        "version": "1",
        "image_size": spec.image_size,
        "latent_channels": spec.latent_channels,
        "latent_size": spec.latent_size,
        "latent_scaling_factor": 1.0,
        "prediction_type": "v_prediction",
        "beta_schedule": "squaredcos_cap_v2",
        "num_train_timesteps": 1000,
        "timestep_spacing": "trailing",
        "set_alpha_to_one": True,
        "default_scheduler": "ddim",
        "default_steps": 20,
        "default_guidance": 1.5,
        "tokenizer": {"type": "word", "file": "vocab.json", "max_length": spec.seq_len},
        "components": {
            name: {
                "file": f"weights/{name}.onnx",
                "sha256": hashlib.sha256((weights / f"{name}.onnx").read_bytes()).hexdigest(),
            }
            for name in ("text_encoder", "unet", "vae_decoder")
        },
    }
    (folder / "info.json").write_text(json.dumps(info, indent=1))
    return folder


def clip_vocab_and_merges(words: list[str]) -> tuple[dict[str, int], list[str]]:
    """A byte-level CLIP vocabulary (every byte, alone and word-final) plus merges for `words`.

    Each word is merged left to right, so it becomes a single token; everything else falls
    back to bytes, as with the real 49408-token vocabulary.
    """
    symbols = list(byte_to_unicode().values())
    tokens = symbols + [s + "</w>" for s in symbols]
    merges: list[str] = []
    for word in dict.fromkeys(words):
        parts = [*word[:-1], word[-1] + "</w>"]
        current = parts[0]
        for part in parts[1:]:
            merge = f"{current} {part}"
            current += part
            if merge not in merges:
                merges.append(merge)
                tokens.append(current)
    tokens += [START, END]
    return {t: i for i, t in enumerate(dict.fromkeys(tokens))}, merges


def sd_spec() -> SyntheticSpec:
    """SD 1.5's export, shrunk: dynamic batch, int32 ids, int64 timestep, 77 tokens, 8x8x4."""
    vocab, _ = clip_vocab_and_merges(SD_WORDS)
    return SyntheticSpec(
        image_size=64,
        seq_len=77,
        vocab_size=len(vocab),
        batch=None,
        input_ids_type=TensorProto.INT32,
        timestep_type=TensorProto.INT64,
        timestep_len=None,
    )


def write_optimum_layout(folder: Path, spec: SyntheticSpec | None = None, seed: int = 0) -> Path:
    """A folder shaped like `optimum-cli export onnx` output for Stable Diffusion 1.5."""
    spec = spec or sd_spec()
    for name, build in (
        ("text_encoder", text_encoder),
        ("unet", unet),
        ("vae_decoder", vae_decoder),
    ):
        (folder / name).mkdir(parents=True, exist_ok=True)
        onnx.save(build(spec, seed), str(folder / name / "model.onnx"))
        seed += 1
    vocab, merges = clip_vocab_and_merges(SD_WORDS)
    (folder / "tokenizer").mkdir(exist_ok=True)
    (folder / "tokenizer" / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (folder / "tokenizer" / "merges.txt").write_text(
        "#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8"
    )
    (folder / "scheduler").mkdir(exist_ok=True)
    scheduler = {
        "_class_name": "PNDMScheduler",
        "beta_start": 0.00085,
        "beta_end": 0.012,
        "beta_schedule": "scaled_linear",
        "num_train_timesteps": 1000,
        "steps_offset": 1,
        "set_alpha_to_one": False,
        "skip_prk_steps": True,
        "prediction_type": "epsilon",
    }
    (folder / "scheduler" / "scheduler_config.json").write_text(json.dumps(scheduler, indent=1))
    configs = {
        "unet": {
            "sample_size": spec.latent_size,
            "in_channels": spec.latent_channels,
            "cross_attention_dim": spec.hidden,
        },
        "vae_decoder": {"scaling_factor": 0.18215, "latent_channels": spec.latent_channels},
        "text_encoder": {"max_position_embeddings": spec.seq_len, "hidden_size": spec.hidden},
    }
    for name, config in configs.items():
        (folder / name / "config.json").write_text(json.dumps(config, indent=1))
    (folder / "model_index.json").write_text(
        json.dumps({"_class_name": "ORTStableDiffusionPipeline"}, indent=1)
    )
    return folder
