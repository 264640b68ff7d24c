"""Path confinement: no device path, however built, resolves outside the phone's folder."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hexfleet.virtual_phone.filesystem import PhoneFilesystem, check_writable

COMPONENTS = st.sampled_from(
    [
        "..",
        ".",
        "",
        "data",
        "local",
        "tmp",
        "etc",
        "passwd",
        "up",
        "out",
        "loop",
        "abs",
        "...",
        "/",
        "//",
        "\\",
        "~",
        "root",
    ]
)
PATHS = st.one_of(
    st.lists(COMPONENTS, max_size=12).map("/".join),
    st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=60),
)


@pytest.fixture(scope="module")
def fs(tmp_path_factory: pytest.TempPathFactory) -> PhoneFilesystem:
    """A phone folder booby-trapped with symlinks that point out of it."""
    phone = PhoneFilesystem(tmp_path_factory.mktemp("phone"))
    phone.create_layout()
    tmp = phone.root / "data/local/tmp"
    os.symlink("/etc", tmp / "abs")
    os.symlink("../../../../../../..", tmp / "up")
    os.symlink(str(phone.root.parent), tmp / "out")
    os.symlink("loop", tmp / "loop")
    return phone


def _inside(fs: PhoneFilesystem, host: Path) -> bool:
    real = os.path.realpath(host)
    return real == str(fs.root) or real.startswith(str(fs.root) + os.sep)


@settings(max_examples=400, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=PATHS, cwd=st.sampled_from(["/", "/data/local/tmp", "/data/local/tmp/up"]))
def test_every_path_resolves_inside_the_root_or_is_refused(
    fs: PhoneFilesystem, path: str, cwd: str
) -> None:
    try:
        resolved = fs.resolve(path, cwd)
    except OSError as exc:
        assert exc.errno in (errno.ENOENT, errno.EINVAL, errno.ELOOP, errno.ENAMETOOLONG)
        assert str(fs.root) not in str(exc)
        return
    assert _inside(fs, resolved.host)
    assert resolved.device.startswith("/")
    assert ".." not in resolved.device.split("/")


def test_dotdot_stops_at_the_phone_root(fs: PhoneFilesystem) -> None:
    assert fs.resolve("/../../../etc/passwd").host == fs.root / "etc/passwd"
    assert fs.resolve("../../..", "/data/local/tmp").device == "/"


def test_symlinks_are_read_as_device_paths(fs: PhoneFilesystem) -> None:
    assert fs.resolve("/data/local/tmp/abs/passwd").host == fs.root / "etc/passwd"
    assert fs.resolve("/data/local/tmp/up/etc").host == fs.root / "etc"
    # A link naming the host folder *above* the phone lands inside the phone under that name.
    assert _inside(fs, fs.resolve("/data/local/tmp/out/x").host)
    with pytest.raises(OSError) as raised:
        fs.resolve("/data/local/tmp/loop/x")
    assert raised.value.errno == errno.ELOOP


def test_absolute_host_paths_are_phone_paths(fs: PhoneFilesystem) -> None:
    host_file = str(fs.root / "data/local/tmp/file")
    assert fs.resolve(host_file).host == fs.root / host_file.lstrip("/")


def test_lstat_semantics_keep_the_final_link(fs: PhoneFilesystem) -> None:
    resolved = fs.resolve("/data/local/tmp/abs", follow_final=False)
    assert resolved.host.is_symlink()
    assert resolved.device == "/data/local/tmp/abs"


def test_nul_bytes_and_long_paths_are_refused(fs: PhoneFilesystem) -> None:
    with pytest.raises(OSError) as raised:
        fs.resolve("/data/\0/x")
    assert raised.value.errno == errno.EINVAL
    with pytest.raises(OSError) as raised:
        fs.resolve("/" + "a" * 2000)
    assert raised.value.errno == errno.ENAMETOOLONG


def test_only_data_and_sdcard_are_writable() -> None:
    check_writable("/data/local/tmp/x")
    check_writable("/sdcard/x")
    for path in ("/system/bin/x", "/", "/sys/class/thermal/thermal_zone0/temp", "/datax"):
        with pytest.raises(OSError) as raised:
            check_writable(path)
        assert raised.value.errno == errno.EROFS


def test_glob_matches_inside_the_phone(fs: PhoneFilesystem) -> None:
    for index in range(3):
        zone = fs.root / f"sys/class/thermal/thermal_zone{index}"
        zone.mkdir(parents=True, exist_ok=True)
        (zone / "temp").write_text("30000\n")
    assert fs.glob("/sys/class/thermal/thermal_zone*/temp") == [
        f"/sys/class/thermal/thermal_zone{i}/temp" for i in range(3)
    ]
    assert fs.glob("class/thermal/zone*", "/sys") == []
    assert fs.glob("/sys/class/thermal/thermal_zone[*]") == []
