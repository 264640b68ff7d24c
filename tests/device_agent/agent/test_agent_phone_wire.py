"""The agent's own ADB client (device_agent.phone) against the real adb server and a virtual phone:
sync SEND/RECV/LIST at chunk boundaries, shell v2 exit codes and stderr, failures as DeviceLost,
pieces of a file hashed on the phone.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from agent_support import opened, shell_commands, watch_phone

from hexfleet.device_agent.phone import DD_BLOCK, SEND_BATCH, SYNC_DATA_MAX
from hexfleet.device_agent.phone import Phone as AgentPhone
from hexfleet.errors import DeviceLost, InvalidRequest
from hexfleet.runner_spec import DEVICE_ROOT_DIR
from hexfleet.virtual_phone.phone import VirtualPhone

BATCH = SEND_BATCH * SYNC_DATA_MAX
SIZES = [0, 1, SYNC_DATA_MAX - 1, SYNC_DATA_MAX, SYNC_DATA_MAX + 1, BATCH, BATCH + 1, 3 * BATCH + 7]


def test_files_round_trip_at_every_chunk_boundary(
    agent_phone: AgentPhone, phone: VirtualPhone, tmp_path: Path
) -> None:
    for size in SIZES:
        data = os.urandom(size)
        local = tmp_path / f"file-{size}"
        local.write_bytes(data)
        remote = f"{DEVICE_ROOT_DIR}/wire/file-{size}"
        assert agent_phone.push(local, remote) == size
        assert agent_phone.sha256(remote) == hashlib.sha256(data).hexdigest()
        assert agent_phone.pull_with(remote, lambda _raw: []) == (data, [])
    names = [f"{DEVICE_ROOT_DIR}/wire/file-{size}" for size in SIZES]
    # A file naming the files to pull next, all in one session (a result.json and its outputs).
    agent_phone.push_bytes("\n".join(names).encode(), f"{DEVICE_ROOT_DIR}/wire/list")
    listing, files = agent_phone.pull_with(
        f"{DEVICE_ROOT_DIR}/wire/list", lambda raw: raw.decode().split("\n")
    )
    assert listing.decode().split("\n") == names
    assert [len(data) for data in files] == SIZES
    agent_phone.push_bytes(b'{"spec": 1}', f"{DEVICE_ROOT_DIR}/wire/deeper/spec.json")
    assert (phone.fs.root / DEVICE_ROOT_DIR.lstrip("/") / "wire/deeper/spec.json").is_file()


def test_shell_reports_exit_codes_stdout_and_stderr(agent_phone: AgentPhone) -> None:
    code, out, err = agent_phone.shell("ls", "/data/local/tmp/hexfleet")
    assert code == 0 and "bin" in out.split() and err == ""
    code, out, err = agent_phone.shell("ls", "/data/local/tmp/nothing-here")
    assert code != 0 and out == "" and "nothing-here" in err
    with pytest.raises(DeviceLost, match="`ls` failed"):
        agent_phone.checked("ls", "/data/local/tmp/nothing-here")


def test_health_reads_battery_and_thermal_in_one_shell(
    agent_phone: AgentPhone, phone: VirtualPhone, caplog: pytest.LogCaptureFixture
) -> None:
    watch_phone(caplog)
    health = agent_phone.health()
    assert health.battery_level == phone.health.battery_level()
    assert health.battery_temp_c == pytest.approx(phone.health.battery_temp_c(), abs=0.1)
    assert health.max_temp_c == pytest.approx(max(phone.health.zone_temps_c()), abs=0.5)
    assert health.throttled is False
    assert [c.split()[0] for c in shell_commands(caplog)] == ["dumpsys"]  # one connection


def test_a_missing_file_or_cache_is_reported_and_the_connection_stays_usable(
    agent_phone: AgentPhone,
) -> None:
    assert agent_phone.cache_entries() == {}
    with pytest.raises(DeviceLost, match=r"pulling missing\.bin"):
        agent_phone.pull_with(f"{DEVICE_ROOT_DIR}/missing.bin", lambda _raw: [])
    with pytest.raises(DeviceLost, match="pushing a file"):
        agent_phone.push_bytes(b"x", "/system/bin/not-writable")
    assert agent_phone.shell("echo", "still here")[1] == "still here\n"


def test_a_shell_session_runs_command_lines_one_after_another_on_one_connection(
    agent_phone: AgentPhone, caplog: pytest.LogCaptureFixture
) -> None:
    watch_phone(caplog)
    with agent_phone.session() as shell:
        assert shell.run("echo one; echo two >&2", "echo") == ("one\n", "two\n")
        assert shell.run("false", "false") == ("", "")
        assert shell.run("echo piped | cat", "cat") == ("piped\n", "")  # and the shell reads on
        assert shell.run("echo -n three", "echo") == ("three", "")
    assert [o for o in opened(caplog) if o.startswith("shell")] == ["shell,v2,raw:"]


def test_pieces_of_a_file_are_hashed_on_the_phone_with_dd_and_its_size_read_after(
    agent_phone: AgentPhone, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Pieces of a whole number of dd blocks, the last one short; with the file's size after."""
    piece = 2 * DD_BLOCK
    data = os.urandom(2 * piece + 12345)
    local = tmp_path / "pieces"
    local.write_bytes(data)
    remote = f"{DEVICE_ROOT_DIR}/wire/pieces"
    agent_phone.push(local, remote)
    starts = range(0, len(data), piece)
    expected = [hashlib.sha256(data[i : i + piece]).hexdigest() for i in starts]
    empty = hashlib.sha256(b"").hexdigest()
    with agent_phone.session() as shell:
        assert shell.piece_digests(remote, 0, 3, piece) == (expected, len(data))
        assert shell.piece_digests(remote, 2, 1, piece) == (expected[2:], len(data))
        # Past the end, dd reads nothing: the empty input's digest; a missing file has no size.
        assert shell.piece_digests(remote, 3, 1, piece) == ([empty], len(data))
        assert shell.piece_digests(f"{remote}-gone", 0, 1, piece) == ([empty], None)
        assert shell.file_size(remote) == len(data)
        assert shell.file_size(f"{remote}-gone") is None
        with pytest.raises(InvalidRequest, match="refusing"):
            shell.piece_digests("/data/local/tmp/elsewhere", 0, 1, piece)
        with pytest.raises(InvalidRequest, match="bad pieces"):
            shell.piece_digests(remote, 0, 1, DD_BLOCK + 1)
