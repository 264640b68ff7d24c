"""A whole farm on one machine: a real adb server, virtual phones, `hexfleet serve` and `hexfleet
agent` as processes, the tiny model registered — the embedded defaults, or with overrides real
Redis and PostgreSQL. Used by tests/e2e and tests/browser (tests/support is on pytest's path).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import adbutils
import httpx
from runner_bundle import build_runner, register_bundle
from synthetic_sd import write_tiny_layout
from waiting import free_port, wait_until

from hexfleet.models.registration import register_tiny_sd
from hexfleet.models.store import ModelStore
from hexfleet.settings import Settings
from hexfleet.states import FINAL_JOB_STATES
from hexfleet.virtual_phone.fleet import ThreadedFleet
from hexfleet.virtual_phone.health import ThermalSettings
from hexfleet.virtual_phone.phone import PhoneConfig, VirtualPhone
from hexfleet.virtual_phone.profiles import get_profile

HEXFLEET = str(Path(sys.executable).parent / "hexfleet")
ADB = adbutils.adb_path()


@dataclass
class Farm:
    settings: Settings
    env: dict[str, str]
    adb: adbutils.AdbClient
    adb_port: int
    fleet: ThreadedFleet
    root: Path
    phones: list[VirtualPhone] = field(default_factory=list)
    processes: list[subprocess.Popen[str]] = field(default_factory=list)
    adb_of_host: dict[str, tuple[adbutils.AdbClient, int]] = field(default_factory=dict)
    host_of_phone: dict[str, str] = field(default_factory=dict)

    def add_host(self, name: str, socs: list[str]) -> list[VirtualPhone]:
        """A second host: its own adb server, phones and agent (own cache dir, same API/broker)."""
        port = free_port()
        subprocess.run(
            [ADB, "-P", str(port), "start-server"], check=True, capture_output=True, timeout=30
        )
        self.adb_of_host[name] = (adbutils.AdbClient("127.0.0.1", port), port)
        phones = [self.add_phone(soc, host=name) for soc in socs]
        env = {
            **self.env,
            "HEXFLEET_ADB_PORT": str(port),
            "HEXFLEET_AGENT_NAME": name,
            "HEXFLEET_DATA_DIR": str(self.root / f"{name}-data"),
        }
        self.start("agent", "--poll", "0.5", env=env)
        return phones

    def api(self, path: str) -> Any:
        token = self.settings.client_token()
        response = httpx.get(
            f"{self.settings.api_url}{path}",
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )
        response.raise_for_status()
        return response.json()

    def post(self, path: str, body: dict[str, Any]) -> Any:
        token = self.settings.client_token()
        response = httpx.post(
            f"{self.settings.api_url}{path}",
            json=body,
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )
        assert response.status_code < 300, response.text
        return response.json()

    def cli(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [HEXFLEET, *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def add_phone(self, soc: str, host: str = "host-a", **overrides: Any) -> VirtualPhone:
        index = len(self.phones) + 1
        config = PhoneConfig(
            profile=get_profile(soc),
            root=self.root / f"phone{index}",
            index=index,
            port=free_port(),
            compute="cpu",
            thermal=ThermalSettings(heat_time_s=2, cool_time_s=1, poll_s=0.2),
            reboot_s=0.5,
        )
        for key, value in overrides.items():
            setattr(config, key, value)
        phone = self.fleet.start_phone(config)
        self.phones.append(phone)
        self.host_of_phone[phone.serial] = host
        self.connect(phone)
        return phone

    def connect(self, phone: VirtualPhone) -> None:
        adb, _ = self.adb_of_host.get(
            self.host_of_phone.get(phone.serial, "host-a"), (self.adb, self.adb_port)
        )
        assert "connected" in adb.connect(phone.serial, timeout=10)

    def online_in_api(self) -> set[str]:
        return {d["serial"] for d in self.api("/api/v1/devices") if d["state"] != "offline"}

    def wait_for_job(self, job_id: str, timeout: float = 120) -> dict[str, Any]:
        def done() -> dict[str, Any] | None:
            job = self.api(f"/api/v1/jobs/{job_id}")
            return job if job["state"] in FINAL_JOB_STATES else None

        return wait_until(done, timeout, f"job {job_id}")

    def start(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        log = (self.root / f"{args[0]}-{len(self.processes)}.log").open("w")
        process = subprocess.Popen(
            [HEXFLEET, *args], env=env or self.env, stdout=log, stderr=subprocess.STDOUT, text=True
        )
        self.processes.append(process)
        return process

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.send_signal(signal.SIGINT)
        for process in self.processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()

    def logs(self) -> str:
        return "\n".join(p.read_text()[-3000:] for p in sorted(self.root.glob("*.log")))


def build_farm(root: Path, overrides: dict[str, str], socs: list[str]) -> Iterator[Farm]:
    adb_port = free_port()
    subprocess.run(
        [ADB, "-P", str(adb_port), "start-server"], check=True, capture_output=True, timeout=30
    )
    data_dir = root / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEXFLEET_")}
    env.update(
        {
            "HEXFLEET_DATA_DIR": str(data_dir),
            "HEXFLEET_API_URL": f"http://127.0.0.1:{free_port()}",
            "HEXFLEET_ADB_PORT": str(adb_port),
            "HEXFLEET_AGENT_NAME": "host-a",
            "HEXFLEET_AGENT_THERMAL_WAIT_S": "5",
            **overrides,
        }
    )
    settings = Settings(
        data_dir=data_dir,
        api_url=env["HEXFLEET_API_URL"],
        adb_port=adb_port,
        database_url=overrides.get("HEXFLEET_DATABASE_URL"),
        broker_url=overrides.get("HEXFLEET_BROKER_URL"),
        api_token=overrides.get("HEXFLEET_API_TOKEN"),
    )
    store = ModelStore.from_settings(settings)
    register_tiny_sd(store, write_tiny_layout(root / "tiny-sd"))
    # The host runner's files in the farm's content store, where the agents' host caches fetch
    # them by sha256; registered below through the API, as `hexfleet runners register` does.
    bundle = register_bundle(store, build_runner())
    with ThreadedFleet() as fleet:
        farm = Farm(settings, env, adbutils.AdbClient("127.0.0.1", adb_port), adb_port, fleet, root)
        farm.adb_of_host["host-a"] = (farm.adb, adb_port)
        try:
            for soc in socs:
                farm.add_phone(soc)
            farm.start("serve")
            wait_until(lambda: _healthy(settings), 60, "the API")
            farm.post("/api/v1/runners", bundle.model_dump(mode="json"))
            farm.start("agent", "--poll", "0.5")
            wait_until(
                lambda: farm.online_in_api() >= {p.serial for p in farm.phones},
                90,
                "every phone's heartbeat",
            )
            yield farm
        except BaseException:
            print(farm.logs())
            raise
        finally:
            farm.stop()
            for _, port in farm.adb_of_host.values():
                subprocess.run(
                    [ADB, "-P", str(port), "kill-server"],
                    capture_output=True,
                    timeout=30,
                    check=False,
                )


def _healthy(settings: Settings) -> bool:
    try:
        return httpx.get(f"{settings.api_url}/api/v1/health", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def job_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "kind": "generate",
        "model": "tiny-sd",
        "precision": "fp32",
        "selector": "all",
        "params": {
            "prompts": ["a red circle on the left in a blue background"],
            "steps": 3,
            "runtime": "cpu",
        },
    }
    body.update(overrides)
    return body
