"""The phone's thermal zones as the runner reads them: /sys/class/thermal/thermal_zone*/temp.

Sampled between timed iterations (never inside one), so a benchmark carries its own temperature
trace; each zone's first trip point is where the kernel starts throttling.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hexfleet.runner.device import Device

THERMAL_DIR = "/sys/class/thermal"
# Zones reporting outside this range are disabled or broken sensors (some report 0 or -273).
PLAUSIBLE_C = (-30.0, 150.0)


def _read_c(path: Path) -> float | None:
    """A sysfs temperature in °C (millidegrees on Android; some drivers report degrees)."""
    for _ in range(2):  # a zone being rewritten can read empty once
        try:
            text = path.read_text().strip()
        except OSError:
            return None
        if text:
            break
    try:
        value = float(text)
    except ValueError:
        return None
    celsius = value / 1000 if abs(value) >= 1000 else value
    low, high = PLAUSIBLE_C
    return celsius if low <= celsius <= high else None


@dataclass(frozen=True)
class Zones:
    """The readable thermal zones of a phone (found once), read again at every sample."""

    folders: tuple[Path, ...]

    @classmethod
    def of(cls, device: Device) -> Zones:
        root = device.path(THERMAL_DIR)
        found = sorted(root.glob("thermal_zone*"), key=lambda p: (len(p.name), p.name))
        return cls(tuple(f for f in found if _read_c(f / "temp") is not None))

    def hottest(self) -> tuple[float, float | None] | None:
        """(temperature of the hottest zone, its first trip point) now; None without zones."""
        best: tuple[float, float | None] | None = None
        for folder in self.folders:
            temp = _read_c(folder / "temp")
            if temp is not None and (best is None or temp > best[0]):
                best = (temp, _read_c(folder / "trip_point_0_temp"))
        return best

    def max_temp_c(self) -> float | None:
        hottest = self.hottest()
        return hottest[0] if hottest else None
