"""Training tiny-sd (torch, installed by the test setup with the `train` extra): a short seeded
run logs its losses, checkpoints, resumes where it stopped and exports ONNX that matches torch.

The full recipe (4500 steps, ~45 minutes) is not run here: its figures are in the README.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch

from hexfleet.models.pipeline import Pipeline
from hexfleet.models.registration import register_tiny_sd
from hexfleet.models.store import ModelStore
from hexfleet.models.tiny_sd.export import export_run
from hexfleet.models.tiny_sd.judge import accuracy
from hexfleet.models.tiny_sd.model import Attention, Decoder, TextEncoder, TinySDConfig, UNet
from hexfleet.models.tiny_sd.tokenizer import WordTokenizer
from hexfleet.models.tiny_sd.train import sample
from hexfleet.models.tiny_sd.world import split

ROOT = Path(__file__).parents[3]


def _train(run: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "hexfleet.models.tiny_sd.train", "--run-dir", str(run), *args]
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    return done


def _logged(run: Path, phase: str) -> list[dict]:
    records = [json.loads(line) for line in (run / "loss.jsonl").read_text().splitlines()]
    return [r for r in records if r["phase"] == phase]


def test_fused_attention_used_in_training_equals_the_exported_matmul_softmax(
    tmp_path: Path,
) -> None:
    """Training runs attention through torch's fused kernel; the ONNX export writes it as
    MatMul + Softmax (what the HTP runs). Both must compute the same function."""
    torch.manual_seed(0)
    attention = Attention(64, 32, 4).eval()
    x, context = torch.randn(2, 256, 64), torch.randn(2, 16, 32)
    with torch.no_grad():
        fused = attention(x, context).numpy()
    path = tmp_path / "attention.onnx"
    torch.onnx.export(
        attention, (x, context), str(path), input_names=["x", "context"], dynamo=False
    )
    ops = {node.op_type for node in onnx.load(str(path)).graph.node}
    assert {"MatMul", "Softmax"} <= ops
    assert not any("Attention" in op for op in ops)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    exported = session.run(None, {"x": x.numpy(), "context": context.numpy()})[0]
    np.testing.assert_allclose(exported, fused, atol=1e-5)


def test_a_short_run_logs_checkpoints_resumes_and_exports(tmp_path: Path) -> None:
    run = tmp_path / "run"
    first = _train(run, "--steps", "30", "--ae-minutes", "0.3", "--minutes", "1", "--no-export")
    summary = json.loads((run / "summary.json").read_text())
    assert summary["diffusion_steps"] == 30
    assert summary["settings"]["seed"] == 0
    assert "decoder:" in first.stdout
    assert _logged(run, "decoder"), "the decoder phase logged no loss"
    assert [r["step"] for r in _logged(run, "diffusion")] == [25]
    assert (run / "checkpoint.pt").is_file()

    # --resume continues from the checkpoint (step 30), not from scratch.
    second = _train(
        run, "--steps", "55", "--ae-minutes", "0.3", "--minutes", "1", "--no-export", "--resume"
    )
    assert "resumed at step 30" in second.stdout
    diffusion = _logged(run, "diffusion")
    assert [r["step"] for r in diffusion] == [25, 50]
    assert diffusion[1]["loss"] < diffusion[0]["loss"], "the resumed run did not go on learning"
    assert json.loads((run / "summary.json").read_text())["diffusion_steps"] == 55

    # Export: ONNX files that match torch, info.json beside them, registrable in the store.
    package = tmp_path / "package"
    training = export_run(run, package / "weights", evaluate=False)
    assert training["diffusion"]["steps"] == 55
    assert max(training["onnx_vs_torch_max_abs_diff"].values()) < 1e-3
    for name in ("text_encoder", "unet", "vae_decoder"):
        assert (package / "weights" / f"{name}.onnx").is_file()
    info = json.loads((package / "info.json").read_text())
    assert set(info["components"]) == {"text_encoder", "unet", "vae_decoder"}
    shutil.copy(ROOT / "models" / "tiny_sd" / "vocab.json", package / "vocab.json")
    store = ModelStore(tmp_path / "store")
    manifest = register_tiny_sd(store, package, version="smoke")
    generated = Pipeline.from_manifest(manifest, store, threads=1).generate(
        "a red circle on the left", seed=0, steps=2
    )
    assert generated.image.shape == (64, 64, 3) and generated.image.dtype == np.uint8


def test_the_training_time_evaluation_samples_and_scores() -> None:
    """train.sample (torch UNet, shared DDIM loop) gives seeded uint8 images accuracy scores."""
    torch.manual_seed(0)
    tokenizer = WordTokenizer.default()
    cfg = TinySDConfig(vocab_size=tokenizer.vocab_size, max_length=tokenizer.max_length)
    parts = [TextEncoder(cfg).eval(), UNet(cfg).eval(), Decoder(cfg).eval()]
    scenes = split()[1][:3]
    images = sample(*parts, scenes, 1.0, cfg, steps=4)
    assert images.shape == (3, 64, 64, 3) and images.dtype == np.uint8
    assert np.array_equal(images, sample(*parts, scenes, 1.0, cfg, steps=4))
    assert not np.array_equal(images, sample(*parts, scenes, 1.0, cfg, steps=4, seed=1))
    assert set(accuracy(list(images), scenes)) == {
        "prompt_accuracy",
        "color",
        "shape",
        "position",
        "background",
    }
