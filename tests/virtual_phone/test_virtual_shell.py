"""The virtual shell: mksh-like parsing and toybox-like commands, confined to the phone."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hexfleet.virtual_phone.phone import PhoneConfig, VirtualPhone
from hexfleet.virtual_phone.pipes import BufferOutput, BytesInput
from hexfleet.virtual_phone.profiles import get_profile
from hexfleet.virtual_phone.shell import IO, ShellSyntaxError, parse


@pytest.fixture
def offline_phone(tmp_path: Path) -> VirtualPhone:
    """A phone whose shell is driven directly, without ADB."""
    phone = VirtualPhone(PhoneConfig(get_profile("sm8650"), tmp_path / "root", compute="cpu"))
    phone.fs.create_layout()
    return phone


def sh(phone: VirtualPhone, script: str, stdin: bytes = b"") -> tuple[int, str, str]:
    async def run() -> tuple[int, str, str]:
        out, err = BufferOutput(), BufferOutput()
        state = phone.toolbox.new_state()
        status = await phone.toolbox.interpreter(state).run(script, IO(BytesInput(stdin), out, err))
        return status, out.data.decode(), err.data.decode()

    return asyncio.run(run())


def test_unknown_command_is_androids_not_found_and_127(offline_phone: VirtualPhone) -> None:
    assert sh(offline_phone, "foo --bar") == (
        127,
        "",
        "/system/bin/sh: foo: inaccessible or not found\n",
    )
    assert sh(offline_phone, "/data/local/tmp/nothing")[0] == 127


def test_quoting_variables_and_status(offline_phone: VirtualPhone) -> None:
    assert sh(offline_phone, "echo 'a  b' \"c $HOSTNAME\" d\\ e")[1] == "a  b c e1q d e\n"
    assert sh(offline_phone, "false; echo $?; true && echo yes || echo no")[1] == "1\nyes\n"
    assert sh(offline_phone, "X=1; echo ${X}2 $(echo sub) `echo tick`")[1] == "12 sub tick\n"
    assert sh(offline_phone, "exit 7; echo never") == (7, "", "")
    assert sh(offline_phone, "echo -n a; echo -e 'b\\tc'")[1] == "ab\tc\n"
    assert sh(offline_phone, "! false && echo negated")[1] == "negated\n"


@given(st.text(max_size=80))
def test_any_text_parses_or_is_a_syntax_error(text: str) -> None:
    with contextlib.suppress(ShellSyntaxError):
        parse(text)


def test_syntax_errors_are_reported_not_run(offline_phone: VirtualPhone) -> None:
    status, _, err = sh(offline_phone, "echo 'unterminated")
    assert status == 1 and "syntax error" in err
    with pytest.raises(ShellSyntaxError):
        parse("a && ; b")
    status, _, err = sh(offline_phone, "if true; then echo x; fi")
    assert status == 2 and "not supported" in err


def test_redirections_pipes_and_globs(offline_phone: VirtualPhone) -> None:
    script = (
        "cd /data/local/tmp && echo one > a.txt && echo two >> a.txt && cat a.txt | wc -l; "
        "ls /nope 2>/dev/null || echo missing; ls /nope 2>&1 | cat; cat < a.txt | head -n 1; "
        "echo *.txt"
    )
    status, out, err = sh(offline_phone, script)
    assert out == ("2\nmissing\nls: /nope: No such file or directory\none\na.txt\n")
    assert (offline_phone.fs.root / "data/local/tmp/a.txt").read_text() == "one\ntwo\n"
    assert status == 0 and err == ""


def test_files_commands(offline_phone: VirtualPhone) -> None:
    status, out, err = sh(
        offline_phone,
        "mkdir -p /data/local/tmp/a/b && echo hi > /data/local/tmp/a/b/f && "
        "chmod 600 /data/local/tmp/a/b/f && ls -l /data/local/tmp/a/b && "
        "sha256sum /data/local/tmp/a/b/f && rm -rf /data/local/tmp/a && ls /data/local/tmp",
    )
    assert status == 0, err
    lines = out.splitlines()
    assert lines[0] == "total 4"
    assert lines[1].startswith("-rw------- 1 shell shell 3 ") and lines[1].endswith(" f")
    digest = hashlib.sha256(b"hi\n").hexdigest()
    assert lines[2] == f"{digest}  /data/local/tmp/a/b/f"
    assert lines[3:] == ["hexfleet"]
    assert sh(offline_phone, "mkdir /data/local/tmp/x/y")[2] == (
        "mkdir: '/data/local/tmp/x/y': No such file or directory\n"
    )
    assert sh(offline_phone, "rm /data/local/tmp/none") == (
        1,
        "",
        "rm: /data/local/tmp/none: No such file or directory\n",
    )
    assert sh(offline_phone, "cat /system/bin")[2] == "cat: /system/bin: Is a directory\n"


def test_dd_copies_blocks_skips_counts_and_summarises_as_toybox(
    offline_phone: VirtualPhone,
) -> None:
    """toybox's dd (toys/posix/dd.c): skip/count in input blocks, bs passing short reads along,
    ibs/obs re-cut, its records summary on stderr (none with status=none or 2>/dev/null)."""
    data = bytes(range(256)) * 40_000  # 10 240 000 bytes: two whole MiB blocks, then a short one
    (offline_phone.fs.root / "data/local/tmp/f").write_bytes(data)
    mib = 1024 * 1024
    status, out, err = sh(
        offline_phone, f"dd if=/data/local/tmp/f bs={mib} skip=1 count=2 2>/dev/null | sha256sum"
    )
    assert (status, out, err) == (0, f"{hashlib.sha256(data[mib : 3 * mib]).hexdigest()}  -\n", "")
    status, out, err = sh(offline_phone, "dd if=/data/local/tmp/f bs=4M skip=2 | sha256sum")
    assert out == f"{hashlib.sha256(data[8 * mib :]).hexdigest()}  -\n"
    assert err.startswith("0+1 records in\n0+1 records out\n1851392 bytes (1.7 M) copied, ")
    # Past the end of a file there is nothing to read: an empty output, no error.
    assert sh(offline_phone, "dd if=/data/local/tmp/f bs=4M skip=9 status=none | wc -c") == (
        0,
        "0\n",
        "",
    )
    status, out, err = sh(offline_phone, "echo hello | dd ibs=1 obs=4 skip=1 status=noxfer")
    assert (status, out, err) == (0, "ello\n", "5+0 records in\n1+1 records out\n")
    status, _, err = sh(
        offline_phone,
        "dd if=/data/local/tmp/f of=/data/local/tmp/g bs=1000 count=3 status=none && "
        "dd if=/data/local/tmp/f of=/data/local/tmp/g bs=1000 skip=5 seek=1 count=1 "
        "conv=notrunc status=none",
    )
    assert (status, err) == (0, "")
    written = (offline_phone.fs.root / "data/local/tmp/g").read_bytes()
    assert written == data[:1000] + data[5000:6000] + data[2000:3000]
    status, _, err = sh(offline_phone, "dd if=/data/local/tmp/nope bs=1M")
    assert status == 1  # and the summary all the same: toybox prints it at exit
    assert err.startswith(
        "dd: /data/local/tmp/nope: No such file or directory\n0+0 records in\n0+0 records out\n"
        "0 bytes (0 B) copied, "
    )
    for bad, message in [
        ("bs=0", "bad 0"),
        ("count", "bad arg count"),
        ("skip=1q", "not integer: 1q"),
        ("status=loud", "unknown status 'loud'"),
        ("conv=ucase", "bad conv=ucase"),
    ]:
        assert sh(offline_phone, f"dd {bad}") == (1, "", f"dd: {message}\n")
    assert sh(offline_phone, "dd if=/data/local/tmp/f of=/system/bin/f")[0] == 1


def test_writes_outside_data_are_refused_and_paths_never_escape(
    offline_phone: VirtualPhone,
) -> None:
    outside = offline_phone.fs.root.parent / "outside.txt"
    outside.write_text("host secret")
    status, _, err = sh(offline_phone, "echo x > /system/bin/evil")
    assert status == 1 and "Read-only file system" in err
    assert sh(offline_phone, f"cat {outside}")[0] == 1
    assert sh(offline_phone, "cat ../../../../../../../outside.txt")[0] == 1
    assert sh(offline_phone, "rm -rf /")[0] == 1
    assert sh(offline_phone, "cd /data/local/tmp/../../../../.. && pwd")[1] == "/\n"
    assert outside.read_text() == "host secret"


def test_getprop_names_the_soc_and_hexagon_arch(offline_phone: VirtualPhone) -> None:
    assert sh(offline_phone, "getprop ro.soc.model")[1] == "SM8650\n"
    assert sh(offline_phone, "getprop ro.hexfleet.htp_arch")[1] == "v75\n"
    assert sh(offline_phone, "getprop no.such.prop fallback")[1] == "fallback\n"
    listing = sh(offline_phone, "getprop")[1]
    for key in (
        "ro.soc.manufacturer",
        "ro.board.platform",
        "ro.product.manufacturer",
        "ro.product.model",
        "ro.product.device",
        "ro.build.version.release",
        "ro.build.version.sdk",
        "ro.product.cpu.abi",
        "ro.serialno",
    ):
        assert f"[{key}]: [" in listing


def test_dumpsys_battery_thermal_and_df(offline_phone: VirtualPhone) -> None:
    battery = sh(offline_phone, "dumpsys battery")[1]
    assert "  level: 80\n" in battery and "  USB powered: true\n" in battery
    temps = sh(offline_phone, "cat /sys/class/thermal/thermal_zone*/temp")[1].split()
    assert len(temps) == 7 and all(int(t) == 31000 for t in temps)
    df = sh(offline_phone, "df /data/local/tmp")[1].splitlines()
    assert df[0].startswith("Filesystem") and df[1].endswith(" /data")


def test_ps_and_kill_only_reach_the_phones_own_processes(offline_phone: VirtualPhone) -> None:
    status, out, _ = sh(offline_phone, "ps -A -o PID,NAME")
    assert status == 0 and "1 init" in out and " sh" in out
    assert sh(offline_phone, "kill 1")[2] == "kill: 1: Operation not permitted\n"
    assert sh(offline_phone, "kill 99999")[2] == "kill: 99999: No such process\n"
    status, out, _ = sh(offline_phone, "sleep 30 & kill $!; echo $?")
    assert out == "0\n"
