"""Health: heat follows load with a lag, crosses the throttling threshold, cools when idle."""

from __future__ import annotations

from pathlib import Path

from hexfleet.virtual_phone.filesystem import PhoneFilesystem
from hexfleet.virtual_phone.health import ZONES, Health, ThermalSettings


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_sustained_load_throttles_and_idle_cools() -> None:
    clock = Clock()
    health = Health(ThermalSettings(heat_time_s=40, cool_time_s=60), clock=clock)
    assert health.thermal_status() == 0 and not health.throttling()
    health.set_load(1.0)
    clock.now = 10
    assert not health.throttling()  # a short burst stays below the threshold
    clock.now = 120
    assert health.throttling() and health.thermal_status() >= 3
    peak = health.max_temp_c()
    health.set_load(0.0)
    clock.now = 180
    assert health.max_temp_c() < peak
    clock.now = 600
    assert not health.throttling() and health.max_temp_c() < 35


def test_battery_drains_under_load_and_charges_idle() -> None:
    clock = Clock()
    health = Health(ThermalSettings(battery_start_pct=50), clock=clock)
    health.set_load(1.0)
    clock.now = 300
    assert health.battery_level() == 40
    health.set_load(0.0)
    clock.now = 900
    assert health.battery_level() == 50
    assert "  level: 50\n" in health.dumpsys_battery()


def test_sysfs_files_follow_the_model(tmp_path: Path) -> None:
    clock = Clock()
    health = Health(ThermalSettings(), clock=clock)
    fs = PhoneFilesystem(tmp_path)
    fs.create_layout()
    fs.add_refresher("/sys/", health.write_sysfs)
    temp = fs.resolve("/sys/class/thermal/thermal_zone3/temp").host
    assert temp.read_text() == "31000\n"
    health.set_load(1.0)
    clock.now = 1000
    temp = fs.resolve("/sys/class/thermal/thermal_zone3/temp").host
    assert int(temp.read_text()) == round((31 + ZONES[3].rise_c) * 1000)
    assert fs.resolve("/sys/class/thermal/thermal_zone3/type").host.read_text() == "nsphvx-0-usr\n"


def test_sysfs_writes_only_what_changed_and_restores_what_was_removed(tmp_path: Path) -> None:
    clock = Clock()
    health = Health(ThermalSettings(), clock=clock)
    fs = PhoneFilesystem(tmp_path)
    health.write_sysfs(fs)
    zone = tmp_path / "sys/class/thermal/thermal_zone3"
    static = (zone / "type").stat().st_mtime_ns, (zone / "type").stat().st_ino
    health.set_load(1.0)
    clock.now = 30
    health.write_sysfs(fs)
    assert ((zone / "type").stat().st_mtime_ns, (zone / "type").stat().st_ino) == static
    assert int((zone / "temp").read_text()) > 31_000 + 30_000
    (zone / "trip_point_0_temp").unlink()
    health.write_sysfs(fs)
    assert (zone / "trip_point_0_temp").read_text() == "85000\n"
    assert not list(zone.glob(".*")), "a partial file was left behind"
