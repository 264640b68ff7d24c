"""A virtual phone's battery and thermal zones: they heat while the phone computes and cool idle.

A single heat level (0 = idle, 1 = saturated) follows the compute load with first-order lags;
every zone's temperature is ambient plus its share of that heat, and sustained load carries the
hottest zone across the throttling threshold.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from hexfleet.virtual_phone.filesystem import PhoneFilesystem


@dataclass(frozen=True)
class Zone:
    """One /sys/class/thermal/thermal_zoneN: its type and its rise above ambient at full heat."""

    type: str
    rise_c: float


ZONES = (
    Zone("cpu-0-0-usr", 42.0),
    Zone("cpu-1-0-usr", 48.0),
    Zone("gpuss-0-usr", 30.0),
    Zone("nsphvx-0-usr", 66.0),
    Zone("nsphmx-0-usr", 62.0),
    Zone("battery", 14.0),
    Zone("sys-therm-1", 22.0),
)


@dataclass(frozen=True)
class ThermalSettings:
    """Time constants and thresholds; tests shorten the time constants."""

    ambient_c: float = 31.0
    # How often a computing phone rewrites its /sys thermal files: a thermal driver's polling
    # delay (1 s is typical); programs such as the runner's temperature trace read the files.
    poll_s: float = 1.0
    heat_time_s: float = 40.0
    cool_time_s: float = 60.0
    throttle_c: float = 85.0
    battery_start_pct: float = 80.0
    charge_pct_per_min: float = 1.0
    drain_pct_per_min: float = 2.0


@dataclass
class Health:
    """Battery and thermal state of one phone, advanced lazily from a clock."""

    settings: ThermalSettings = field(default_factory=ThermalSettings)
    clock: Callable[[], float] = time.monotonic
    heat: float = 0.0
    battery_pct: float = -1.0
    load: float = 0.0
    _last: float = -1.0
    # What this phone last wrote to each /sys file (it is their only writer).
    _written: dict[Path, str] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self._last = self.clock()
        if self.battery_pct < 0:
            self.battery_pct = self.settings.battery_start_pct

    def set_load(self, load: float) -> None:
        """Change the compute load (0 idle … 1 NPU saturated) from now on."""
        self._advance()
        self.load = max(0.0, min(1.0, load))

    def _advance(self) -> None:
        now = self.clock()
        elapsed = max(0.0, now - self._last)
        self._last = now
        if elapsed == 0.0:
            return
        tau = self.settings.heat_time_s if self.load > self.heat else self.settings.cool_time_s
        self.heat = self.load + (self.heat - self.load) * math.exp(-elapsed / tau)
        if self.load > 0:
            delta = -self.settings.drain_pct_per_min * self.load * elapsed / 60.0
        else:
            delta = self.settings.charge_pct_per_min * elapsed / 60.0
        self.battery_pct = max(1.0, min(100.0, self.battery_pct + delta))

    def zone_temps_c(self) -> list[float]:
        """Each zone's temperature now, in degrees Celsius, in ZONES order."""
        self._advance()
        return [self.settings.ambient_c + zone.rise_c * self.heat for zone in ZONES]

    def max_temp_c(self) -> float:
        return max(self.zone_temps_c())

    def throttling(self) -> bool:
        """Whether the hottest zone is at or above the throttling threshold."""
        return self.max_temp_c() >= self.settings.throttle_c

    def thermal_status(self) -> int:
        """Android's PowerManager thermal status: 0 none … 3 severe (throttling) … 4 critical."""
        hottest = self.max_temp_c()
        limit = self.settings.throttle_c
        if hottest >= limit + 10:
            return 4
        if hottest >= limit:
            return 3
        if hottest >= limit - 10:
            return 2
        if hottest >= limit - 20:
            return 1
        return 0

    def battery_temp_c(self) -> float:
        return self.zone_temps_c()[[z.type for z in ZONES].index("battery")]

    def battery_level(self) -> int:
        self._advance()
        return int(self.battery_pct)

    def dumpsys_battery(self) -> str:
        """The text of `dumpsys battery` (field names as Android prints them)."""
        level = self.battery_level()
        charging = self.load == 0 and level < 100
        status = 2 if charging else (5 if level >= 100 else 3)
        lines = [
            "Current Battery Service state:",
            "  AC powered: false",
            "  USB powered: true",
            "  Wireless powered: false",
            "  Dock powered: false",
            "  Max charging current: 3000000",
            "  Max charging voltage: 9000000",
            f"  Charge counter: {int(3_900_000 * level / 100)}",
            f"  status: {status}",
            "  health: 2",
            "  present: true",
            f"  level: {level}",
            "  scale: 100",
            f"  voltage: {3500 + 7 * level}",
            f"  temperature: {round(self.battery_temp_c() * 10)}",
            "  technology: Li-ion",
        ]
        return "\n".join(lines) + "\n"

    def dumpsys_thermalservice(self) -> str:
        """A short `dumpsys thermalservice`: status, then every zone's current temperature."""
        temps = self.zone_temps_c()
        lines = [
            "IsStatusOverride: false",
            "ThermalEventListeners:",
            f"Thermal Status: {self.thermal_status()}",
            "Current temperatures from HAL:",
        ]
        for zone, temp in zip(ZONES, temps, strict=True):
            lines.append(
                f"\tTemperature{{mValue={temp:.1f}, mType=0, mName={zone.type}, mStatus=0}}"
            )
        return "\n".join(lines) + "\n"

    def write_sysfs(self, fs: PhoneFilesystem) -> None:
        """Write the thermal zones and battery files under the phone's /sys.

        A computing phone calls this every `poll_s`: only files whose text changed since this
        phone last wrote them are written (none is read back), static ones once.
        """
        temps = self.zone_temps_c()
        thermal = fs.root / "sys/class/thermal"
        trip = f"{round(self.settings.throttle_c * 1000)}\n"
        for index, (zone, temp) in enumerate(zip(ZONES, temps, strict=True)):
            folder = thermal / f"thermal_zone{index}"
            self._write(folder / "type", f"{zone.type}\n")
            self._write(folder / "temp", f"{round(temp * 1000)}\n")
            self._write(folder / "trip_point_0_temp", trip)
        battery = fs.root / "sys/class/power_supply/battery"
        self._write(battery / "capacity", f"{self.battery_level()}\n")
        self._write(battery / "temp", f"{round(self.battery_temp_c() * 10)}\n")
        self._write(battery / "status", "Charging\n" if self.load == 0 else "Discharging\n")

    def _write(self, path: Path, text: str) -> None:
        """Replace the file in one step when its text changed: a program reading it meanwhile
        (the runner's thermal trace) sees the old text or the new, never an empty file. A file
        removed since (the phone's folder recreated) is written again."""
        if self._written.get(path) == text and path.exists():
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.new")
        partial.write_text(text)
        os.replace(partial, path)
        self._written[path] = text
