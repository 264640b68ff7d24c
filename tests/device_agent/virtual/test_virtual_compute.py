"""Programs on the phone: the runner hook, `hexfleet-onnx-run` on CPU and the HTP simulator,
streaming output, kill, crash and faulty-NPU faults, and the heat that compute produces."""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Callable
from pathlib import Path

import adbutils
import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper
from virtual_phone_support import AdbServer
from waiting import wait_until

from hexfleet.virtual_phone.phone import VirtualPhone
from hexfleet.virtual_phone.programs import RUNNER_PATH

JOB = "/data/local/tmp/hexfleet/jobs/j1"
FAKE_RUNNER = """
import json, os, pathlib, sys, time
spec_path = pathlib.Path(sys.argv[1])
spec = json.loads(spec_path.read_text())
root = pathlib.Path(os.environ["HEXFLEET_DEVICE_ROOT"])
print("cwd-is-job", os.getcwd() == str(spec_path.parent), flush=True)
for key in ("HEXFLEET_VIRTUAL_COMPUTE", "HEXFLEET_VIRTUAL_HTP_ARCH", "HEXFLEET_VIRTUAL_SOC",
            "HEXFLEET_VIRTUAL_FAULTY_NPU", "HEXFLEET_DEVICE_SERIAL"):
    print(key, os.environ.get(key), flush=True)
if spec.get("wait_for"):
    print("started", flush=True)
    flag = root / spec["wait_for"].lstrip("/")
    deadline = time.monotonic() + 30
    while not flag.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
print("progress 1/1", flush=True)
print("runner says hi on stderr", file=sys.stderr, flush=True)
(spec_path.parent / "result.json").write_text(json.dumps({"ok": True}))
sys.exit(spec.get("exit", 0))
"""


@pytest.fixture
def runner_phone(make_phone: Callable[..., VirtualPhone], tmp_path: Path) -> VirtualPhone:
    script = tmp_path / "fake_runner.py"
    script.write_text(FAKE_RUNNER)
    return make_phone("sm8650", program_commands={RUNNER_PATH: [sys.executable, str(script)]})


@pytest.fixture
def runner_device(adb_server: AdbServer, runner_phone: VirtualPhone):
    device = adb_server.connect(runner_phone.serial)
    yield device
    adb_server.disconnect(runner_phone.serial)


def push_spec(device: adbutils.AdbDevice, spec: dict) -> str:
    device.sync.push(json.dumps(spec).encode(), f"{JOB}/spec.json")
    return f"{JOB}/spec.json"


def read_until(connection: adbutils.AdbConnection, marker: bytes, timeout: float = 20) -> bytes:
    """Read a streaming shell until `marker` shows up (the socket timeout bounds the wait)."""
    connection.conn.settimeout(timeout)
    data = b""
    while marker not in data:
        chunk = connection.conn.recv(4096)
        if not chunk:
            raise AssertionError(f"stream ended before {marker!r}: {data!r}")
        data += chunk
    return data


def test_runner_hook_maps_the_spec_and_passes_compute_settings(
    runner_device: adbutils.AdbDevice, runner_phone: VirtualPhone
) -> None:
    spec = push_spec(runner_device, {"exit": 3})
    result = runner_device.shell2(f"{RUNNER_PATH} {spec}", v2=True)
    assert result.returncode == 3
    assert result.stderr == "runner says hi on stderr\n"
    lines = result.stdout.splitlines()
    assert lines[0] == "cwd-is-job True"
    assert "HEXFLEET_VIRTUAL_COMPUTE cpu" in lines
    assert "HEXFLEET_VIRTUAL_HTP_ARCH 75" in lines
    assert "HEXFLEET_VIRTUAL_SOC SM8650" in lines
    assert "HEXFLEET_VIRTUAL_FAULTY_NPU 0.0" in lines
    assert lines[-1] == "progress 1/1"
    assert json.loads(runner_device.sync.read_bytes(f"{JOB}/result.json")) == {"ok": True}


def test_runner_usage_and_missing_spec(runner_device: adbutils.AdbDevice) -> None:
    assert runner_device.shell2(RUNNER_PATH, v2=True).returncode == 2
    missing = runner_device.shell2(f"{RUNNER_PATH} /data/local/tmp/none.json", v2=True)
    assert missing.returncode == 1
    assert missing.stderr == (
        "hexfleet-runner: /data/local/tmp/none.json: No such file or directory\n"
    )
    runner_device.shell(f"rm {RUNNER_PATH}")
    gone = runner_device.shell2(f"{RUNNER_PATH} x", v2=True)
    assert gone.returncode == 127


def test_runner_output_streams_and_kill_works(runner_device: adbutils.AdbDevice) -> None:
    spec = push_spec(runner_device, {"wait_for": "/data/local/tmp/never"})
    stream = runner_device.shell(f"{RUNNER_PATH} {spec}; echo EXIT:$?", stream=True)
    try:
        read_until(stream, b"started\n")
        pid = runner_device.shell("pidof hexfleet-runner")
        assert pid.isdigit()
        assert runner_device.shell2(f"kill {pid}", v2=True).returncode == 0
        tail = read_until(stream, b"EXIT:") + stream.read_until_close(encoding=None)
        assert b"EXIT:143\n" in tail
    finally:
        stream.close()
    assert runner_device.shell2("pidof hexfleet-runner", v2=True).returncode == 1


def test_crash_fault_kills_the_runner(
    runner_device: adbutils.AdbDevice, runner_phone: VirtualPhone
) -> None:
    runner_phone.faults.crash_runner(after_s=0.3)
    spec = push_spec(runner_device, {"wait_for": "/data/local/tmp/never"})
    assert runner_device.shell2(f"{RUNNER_PATH} {spec}", v2=True).returncode == 139
    assert (
        runner_device.shell2(f"{RUNNER_PATH} {push_spec(runner_device, {})}", v2=True).returncode
        == 0
    )


def test_sustained_compute_heats_past_throttling_and_cools_idle(
    runner_device: adbutils.AdbDevice, runner_phone: VirtualPhone
) -> None:
    spec = push_spec(runner_device, {"wait_for": "/data/local/tmp/go"})
    nsp = "/sys/class/thermal/thermal_zone3/temp"
    stream = runner_device.shell(f"{RUNNER_PATH} {spec}", stream=True)
    try:
        read_until(stream, b"started\n")
        wait_until(lambda: int(runner_device.shell(f"cat {nsp}")) >= 85_000, 10, "throttling")
        status = runner_device.shell("dumpsys thermalservice")
        assert "Thermal Status: 3" in status or "Thermal Status: 4" in status
        runner_device.shell("touch /data/local/tmp/go")
        read_until(stream, b"progress 1/1")
    finally:
        stream.close()
    wait_until(lambda: int(runner_device.shell(f"cat {nsp}")) < 40_000, 10, "cooling")


def test_a_computing_phone_keeps_its_sys_files_current_for_programs_that_read_them(
    runner_device: adbutils.AdbDevice, runner_phone: VirtualPhone
) -> None:
    """The runner reads /sys itself (no shell command refreshes it): the phone keeps it current."""
    spec = push_spec(runner_device, {"wait_for": "/data/local/tmp/go"})
    host_file = runner_phone.fs.root / "sys/class/thermal/thermal_zone3/temp"
    idle = int(host_file.read_text())
    stream = runner_device.shell(f"{RUNNER_PATH} {spec}", stream=True)
    try:
        read_until(stream, b"started\n")
        wait_until(lambda: int(host_file.read_text()) >= idle + 20_000, 10, "a warmer /sys file")
        runner_device.shell("touch /data/local/tmp/go")
        read_until(stream, b"progress 1/1")
    finally:
        stream.close()


def tiny_model() -> bytes:
    weights = numpy_helper.from_array(np.arange(16, dtype=np.float32).reshape(4, 4) / 10, "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["m"]), helper.make_node("Relu", ["m"], ["y"])],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
        [weights],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


def npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


@pytest.mark.parametrize("compute", ["cpu", "htp"])
def test_onnx_run_on_cpu_and_htp_simulator(
    adb_server: AdbServer, make_phone: Callable[..., VirtualPhone], compute: str
) -> None:
    phone = make_phone("sm8550", compute=compute)
    device = adb_server.connect(phone.serial)
    try:
        x = np.array([[1.0, -2.0, 0.5, 3.0]], dtype=np.float32)
        device.sync.push(tiny_model(), "/data/local/tmp/m/tiny.onnx")
        device.sync.push(npy(x), "/data/local/tmp/m/x.npy")
        result = device.shell2(
            "cd /data/local/tmp/m && hexfleet-onnx-run tiny.onnx x.npy y.npy", v2=True
        )
        assert result.returncode == 0, result.stderr
        if compute == "htp":
            assert "htp_arch 73" in result.stdout
            assert "providers QNNExecutionProvider" in result.stdout
        else:
            assert "providers CPUExecutionProvider" in result.stdout
        y = np.load(io.BytesIO(device.sync.read_bytes("/data/local/tmp/m/y.npy")))
        expected = np.maximum(x @ (np.arange(16, dtype=np.float32).reshape(4, 4) / 10), 0)
        np.testing.assert_allclose(y, expected, rtol=1e-3, atol=1e-3)
        phone.faults.faulty_npu = 0.5
        assert (
            device.shell2(
                "cd /data/local/tmp/m && hexfleet-onnx-run tiny.onnx x.npy z.npy", v2=True
            ).returncode
            == 0
        )
        z = np.load(io.BytesIO(device.sync.read_bytes("/data/local/tmp/m/z.npy")))
        assert np.abs(z - expected).max() > 0.05
    finally:
        adb_server.disconnect(phone.serial)
