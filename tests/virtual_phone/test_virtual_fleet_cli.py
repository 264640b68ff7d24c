"""`hexfleet virtual-devices up/list/fault/down`: detached phone processes found via state files."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from farm_support import HEXFLEET
from virtual_phone_support import AdbServer
from waiting import free_port_pair


@pytest.fixture
def cli(tmp_path: Path, adb_server: AdbServer):
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "HEXFLEET_DATA_DIR": str(tmp_path / "data"),
        "HEXFLEET_ADB_PORT": str(adb_server.port),
    }

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(  # noqa: S603 - fixed argv, no shell
            [HEXFLEET, "virtual-devices", *args],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
            check=False,
        )

    yield run
    run("down")


def test_up_connect_list_fault_down(cli, adb_server: AdbServer, tmp_path: Path) -> None:
    port = free_port_pair()
    up = cli(
        "up",
        "--count",
        "2",
        "--profile",
        "sm8550,sm8750",
        "--base-port",
        str(port),
        "--compute",
        "cpu",
        "--connect",
    )
    assert up.returncode == 0, up.stderr
    serials = [f"127.0.0.1:{port}", f"127.0.0.1:{port + 1}"]
    assert all(serial in up.stdout for serial in serials)
    socs = [adb_server.client.device(s).getprop("ro.soc.model") for s in serials]
    assert socs == ["SM8550", "SM8750"]
    records = json.loads(cli("list", "--json").stdout)
    assert [r["serial"] for r in records] == serials and all(r["connected"] for r in records)
    assert (tmp_path / "data/virtual/roots" / records[0]["serialno"] / "data/local/tmp").is_dir()
    fault = cli("fault", serials[0], "bandwidth", "35")
    assert fault.returncode == 0 and "bandwidth applied" in fault.stdout
    assert cli("fault", serials[0], "explode").returncode == 2
    down = cli("down")
    assert down.returncode == 0 and "stopped 2" in down.stdout
    assert json.loads(cli("list", "--json").stdout) == []
    assert all(adb_server.state(serial) is None for serial in serials)


def test_non_loopback_bind_is_refused_with_the_reason(cli) -> None:
    result = cli("up", "--host", "0.0.0.0")
    assert result.returncode == 2
    assert "--unsafe-bind" in result.stderr and "run commands" in result.stderr


def test_emulator_ports_are_refused(cli) -> None:
    result = cli("up", "--base-port", "5555")
    assert result.returncode == 2 and "emulator" in result.stderr


def test_up_gives_the_phones_the_storage_asked_for(cli, adb_server: AdbServer) -> None:
    """`--storage` is the capacity as marketed: /data is that less 8 GiB of system partitions."""
    assert "--storage" in cli("up", "--help").stdout
    port = free_port_pair()
    up = cli("up", "--storage", "12GB", "--base-port", str(port), "--compute", "cpu", "--connect")
    assert up.returncode == 0, up.stderr
    df = adb_server.run("-s", f"127.0.0.1:{port}", "shell", "df -k /data")
    assert df.stdout.splitlines()[1].split()[1] == str((12 * 10**9 - 8 * 1024**3) // 1024)


@pytest.mark.parametrize(
    ("storage", "says"),
    [("12XB", "a size such as 128GB"), ("lots", "a size such as 128GB"), ("9GB", "no room")],
)
def test_a_bad_storage_size_is_refused_in_one_line(cli, storage: str, says: str) -> None:
    result = cli("up", "--storage", storage, "--compute", "cpu")
    assert result.returncode == 2
    assert says in result.stderr and "--storage" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr
