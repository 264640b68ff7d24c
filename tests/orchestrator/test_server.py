"""`hexfleet serve` on the embedded defaults: API up, a heartbeat ingested, the CLI shows it."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from waiting import free_port, wait_until

from hexfleet.broker import INGEST_HEARTBEAT_TASK, INGEST_QUEUE, make_celery
from hexfleet.messages import DeviceFacts, DeviceHealth, Heartbeat
from hexfleet.settings import Settings

HEXFLEET = str(Path(sys.executable).parent / "hexfleet")


@pytest.fixture
def served(data_dir: Path) -> Iterator[tuple[dict[str, str], Settings]]:
    env = {
        **os.environ,
        "HEXFLEET_DATA_DIR": str(data_dir),
        "HEXFLEET_API_URL": f"http://127.0.0.1:{free_port()}",
    }
    for key in ("HEXFLEET_DATABASE_URL", "HEXFLEET_BROKER_URL", "HEXFLEET_API_TOKEN"):
        env.pop(key, None)
    process = subprocess.Popen(
        [HEXFLEET, "serve"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    settings = Settings(data_dir=data_dir, api_url=env["HEXFLEET_API_URL"])

    def healthy() -> bool:
        if process.poll() is not None:
            pytest.fail(f"serve exited: {process.stdout.read() if process.stdout else ''}")
        try:
            return httpx.get(f"{settings.api_url}/api/v1/health", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_until(healthy, 30, "the API")
        yield env, settings
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            pytest.fail("serve did not stop on SIGINT")


def test_serve_ingests_heartbeats_that_the_cli_then_shows(
    served: tuple[dict[str, str], Settings],
) -> None:
    env, settings = served
    assert settings.token_file.stat().st_mode & 0o777 == 0o600
    beat = Heartbeat(
        host="bench-host",
        facts=DeviceFacts(
            serial="vp-8650", soc="SM8650", htp_arch=75, model="Galaxy S24", is_virtual=True
        ),
        health=DeviceHealth(battery_level=77, max_temp_c=38.5),
        state="idle",
        sent_at=dt.datetime.now(dt.UTC),
    )
    make_celery(settings).send_task(
        INGEST_HEARTBEAT_TASK, args=[beat.model_dump_json()], queue=INGEST_QUEUE
    )

    def listed() -> list[dict[str, object]]:
        result = subprocess.run(
            [HEXFLEET, "devices", "--json"],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        return json.loads(result.stdout)

    wait_until(lambda: len(listed()) == 1, 30, "the heartbeat in the device list")
    (device,) = listed()
    assert (device["serial"], device["htp_arch"], device["battery_level"]) == ("vp-8650", 75, 77)
    table = subprocess.run(
        [HEXFLEET, "devices"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    assert "vp-8650" in table and "SM8650" in table


def test_the_api_refuses_callers_without_the_token(
    served: tuple[dict[str, str], Settings],
) -> None:
    _, settings = served
    assert httpx.get(f"{settings.api_url}/api/v1/devices").status_code == 401
