"""Configuration flows from one place: only hexfleet/settings.py reads the environment."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ["hexfleet", "models", "device_agent", "orchestrator"]
READS = re.compile(r"os\.getenv\(|os\.environ\.get\(|os\.environ\[|environ\.get\(|getenv\(")


def test_no_module_but_settings_reads_environment_variables() -> None:
    offenders = []
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            if path == ROOT / "hexfleet" / "settings.py":
                continue
            for number, line in enumerate(path.read_text().splitlines(), 1):
                if READS.search(line):
                    offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert offenders == []
