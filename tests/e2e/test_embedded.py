"""`hexfleet up` / `down`: the embedded farm from the CLI alone, with no server installed."""

from __future__ import annotations

import json
import os
import socket
import subprocess
from pathlib import Path

from farm_support import HEXFLEET
from synthetic_sd import write_tiny_layout
from waiting import free_port, free_port_pair, wait_until

from hexfleet.cli.farm import FarmState, state_file
from hexfleet.models.registration import register_tiny_sd
from hexfleet.models.store import ModelStore
from hexfleet.settings import Settings


def _cli(env: dict[str, str], *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [HEXFLEET, *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "Z" not in Path(f"/proc/{pid}/stat").read_text()


def test_up_generate_down(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = {
        **os.environ,
        "HEXFLEET_DATA_DIR": str(data),
        "HEXFLEET_API_URL": f"http://127.0.0.1:{free_port()}",
        "HEXFLEET_ADB_PORT": str(free_port()),
    }
    for key in ("HEXFLEET_DATABASE_URL", "HEXFLEET_BROKER_URL", "HEXFLEET_API_TOKEN"):
        env.pop(key, None)
    settings = Settings(data_dir=data)
    register_tiny_sd(ModelStore.from_settings(settings), write_tiny_layout(tmp_path / "tiny"))
    base = free_port_pair()  # two phones: base and base + 1
    up = _cli(env, "up", "--phones", "sm8550,sm8750", "--compute", "cpu", "--base-port", str(base))
    try:
        assert up.returncode == 0, up.stderr + up.stdout
        assert "farm up: 2 phones" in up.stdout
        state = FarmState.model_validate_json(state_file(settings).read_text())
        again = _cli(env, "up")
        assert again.returncode == 2 and "already runs" in again.stderr
        devices = json.loads(_cli(env, "devices", "--json").stdout)
        assert sorted(d["soc"] for d in devices) == ["SM8550", "SM8750"]
        generated = _cli(
            env,
            "generate",
            "a blue square at the center in a red background",
            "--precision",
            "fp32",
            "--runtime",
            "cpu",
            "--steps",
            "2",
            "--devices",
            "htp_arch>=79",
            "--json",
        )
        assert generated.returncode == 0, generated.stderr
        (run,) = json.loads(generated.stdout)["runs"]
        assert run["state"] == "succeeded" and len(run["images"]) == 1
    finally:
        down = _cli(env, "down")
    assert down.returncode == 0, down.stderr
    assert not state_file(settings).exists()
    for pid in (state.serve_pid, state.agent_pid):
        wait_until(lambda pid=pid: not _alive(pid), 30, f"process {pid} to stop")
    for port in (base, int(env["HEXFLEET_ADB_PORT"])):
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", port)) != 0, f"port {port} still answers"
    assert _cli(env, "down").stdout.strip() == "nothing was running"
