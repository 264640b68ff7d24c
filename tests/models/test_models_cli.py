"""`hexfleet models ...` as a user runs it: real console script, own data dir, JSON out."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HEXFLEET = str(Path(sys.executable).parent / "hexfleet")
PROMPT = "a red circle on the left in a blue background"


def _run(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HEXFLEET_DATA_DIR": str(data_dir)}
    return subprocess.run(
        [HEXFLEET, "models", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=False,
    )


def _json(data_dir: Path, *args: str) -> object:
    result = _run(data_dir, *args, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture
def cli_dir(tmp_path: Path, tiny_layout: Path) -> Path:
    data = tmp_path / "data"
    result = _run(data, "register", "tiny-sd", "--from", str(tiny_layout))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("registered tiny-sd/1/fp32")
    return data


def test_list_sample_evaluate(cli_dir: Path, tmp_path: Path) -> None:
    listed = _json(cli_dir, "list")
    assert [m["ref"] for m in listed] == ["tiny-sd/1/fp32"]  # type: ignore[index,union-attr]
    out = tmp_path / "img.png"
    sample = _json(cli_dir, "sample", "tiny-sd", PROMPT, "--steps", "3", "--out", str(out))
    assert out.is_file() and sample["image"] == str(out)  # type: ignore[index]
    assert len(sample["timings"]["unet_steps_s"]) == 3  # type: ignore[index]
    again = tmp_path / "again.png"
    _json(cli_dir, "sample", "tiny-sd", PROMPT, "--steps", "3", "--out", str(again))
    assert again.read_bytes() == out.read_bytes()
    report = _json(
        cli_dir, "evaluate", "tiny-sd", "--steps", "2", "--prompts", "3", "--scheduler", "dpm++2m"
    )
    assert report["prompts"] == 3 and report["scheduler"] == "dpm++2m"  # type: ignore[index]
    assert 0.0 <= report["prompt_accuracy"] <= 1.0  # type: ignore[index,operator]


def test_import_and_sample_an_sd_export(tmp_path: Path, optimum_layout: Path) -> None:
    data = tmp_path / "data"
    manifest = _json(data, "import", str(optimum_layout), "--name", "sd15-tiny")
    assert manifest["tokenizer"]["kind"] == "clip-bpe"  # type: ignore[index]
    out = tmp_path / "astronaut.png"
    _json(
        data,
        "sample",
        "sd15-tiny",
        "an astronaut riding a horse",
        "--steps",
        "2",
        "--out",
        str(out),
    )
    assert out.is_file()


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["sample", "nope", PROMPT], 3, "no model named 'nope'"),
        (["sample", "tiny-sd", PROMPT, "--scheduler", "pndm"], 2, "unknown scheduler 'pndm'"),
        (["sample", "tiny-sd", "a zebra"], 2, "not in the tiny-sd vocabulary: 'zebra'"),
        (["sample", "tiny-sd", PROMPT + " " + PROMPT], 2, "the tokenizer takes at most 14"),
        (["evaluate", "tiny-sd", "--precision", "int4"], 2, "precision must be one of"),
        (["evaluate", "tiny-sd", "--precision", "w8a8"], 3, "has no w8a8 variant"),
        (["sample", "tiny-sd", PROMPT, "--runtime", "htp"], 2, "quantize it first"),
        (["compile", "tiny-sd", "--htp-arch", "70"], 2, "unknown Hexagon arch '70'"),
        (["import", "/nonexistent"], 3, "is not a folder"),
    ],
)
def test_errors_are_one_line_with_an_exit_code(
    cli_dir: Path, args: list[str], code: int, message: str
) -> None:
    result = _run(cli_dir, *args)
    assert result.returncode == code, result.stderr
    assert result.stderr.startswith("error: ") and message in result.stderr
    assert result.stderr.count("\n") == 1


def test_a_corrupted_blob_is_exit_7(cli_dir: Path) -> None:
    manifest = json.loads(
        next((cli_dir / "models" / "manifests").glob("tiny-sd/1/fp32.json")).read_text()
    )
    blob = cli_dir / "models" / "blobs" / manifest["components"]["unet"]["file"]["sha256"]
    blob.chmod(0o644)
    blob.write_bytes(blob.read_bytes()[::-1])
    result = _run(cli_dir, "sample", "tiny-sd", PROMPT, "--steps", "1")
    assert result.returncode == 7
    assert "hashes to" in result.stderr and result.stderr.count("\n") == 1


@pytest.mark.slow
def test_quantize_compile_and_evaluate_on_htp(cli_dir: Path) -> None:
    quantized = _json(
        cli_dir,
        "quantize",
        "tiny-sd",
        "--precision",
        "w8a8",
        "--calibration-prompts",
        "2",
        "--calibration-steps",
        "2",
    )
    assert all(c["fully_on_htp"] for c in quantized["components"].values())  # type: ignore[index,union-attr]
    compiled = _json(cli_dir, "compile", "tiny-sd", "--precision", "w8a8", "--htp-arch", "75")
    assert compiled["soc"] == "SM8650" and compiled["qdq_over_context"] > 1  # type: ignore[index,operator]
    report = _json(
        cli_dir,
        "evaluate",
        "tiny-sd",
        "--precision",
        "w8a8",
        "--runtime",
        "htp",
        "--htp-arch",
        "75",
        "--prompts",
        "1",
        "--steps",
        "2",
    )
    assert report["model"] == "tiny-sd/1/w8a8-v75" and report["timings_simulated"] is True  # type: ignore[index]
    assert report["psnr_db_vs_fp32"]["mean"] > 10  # type: ignore[index]
    variants = [m["ref"] for m in _json(cli_dir, "list")]  # type: ignore[union-attr,index]
    assert variants == ["tiny-sd/1/fp32", "tiny-sd/1/w8a8", "tiny-sd/1/w8a8-v75"]


def test_train_without_torch_says_which_extra(tmp_path: Path) -> None:
    """An install without the `train` extra (the runtime image, agents): training must say how
    to get torch, in one line (torch is hidden from this process to act that out)."""
    code = (
        "import sys; sys.modules['torch'] = None; "
        "sys.argv = ['hexfleet', 'models', 'train', 'tiny-sd']; "
        "from hexfleet.cli.app import main; main()"
    )
    env = {**os.environ, "HEXFLEET_DATA_DIR": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert "install the train extra" in result.stderr and result.stderr.count("\n") == 1
    other = _run(tmp_path, "train", "sd15")
    assert other.returncode == 2 and "only tiny-sd is trained here" in other.stderr
