"""tiny-sd samples with the shared schedulers: its noise schedule is the one it was trained on,
and exporting does not pull in training (export must not import train, which imports export)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from hexfleet.models.schedulers import SchedulerConfig
from hexfleet.models.tiny_sd.model import NOISE_SCHEDULE

INFO = Path(__file__).parents[3] / "models" / "tiny_sd" / "info.json"


def test_the_schedule_is_the_one_the_shipped_weights_were_trained_with() -> None:
    assert NOISE_SCHEDULE == SchedulerConfig(
        num_train_timesteps=1000,
        beta_schedule="squaredcos_cap_v2",
        prediction_type="v_prediction",
        timestep_spacing="trailing",
        set_alpha_to_one=True,
    )
    # info.json (written by export) carries the same fields into the manifest.
    info = json.loads(INFO.read_text())
    assert SchedulerConfig.from_dict(info) == NOISE_SCHEDULE


def test_importing_export_does_not_import_training() -> None:
    probe = (
        "import sys, hexfleet.models.tiny_sd.export; "
        "print('hexfleet.models.tiny_sd.train' in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stdout.strip() == "False"
