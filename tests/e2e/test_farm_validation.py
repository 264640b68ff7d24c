"""`hexfleet validate` through the real farm: CLI → API → broker → agent → three virtual phones over
the real adb server → ingest → comparison with FP32 on the host. A phone with a faulty NPU is
flagged on every seed; the healthy fleet passes on every seed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from farm_support import Farm, build_farm

from hexfleet.virtual_phone.faults import FaultCommand

FAULT = 0.05  # noise of 5 % of each output's spread: the image still shows the prompt


@pytest.fixture(scope="module")
def farm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Farm]:
    yield from build_farm(tmp_path_factory.mktemp("vfarm"), {}, ["sm8550", "sm8650", "sm8750"])


def validate(farm: Farm, out: Path, *extra: str) -> tuple[int, dict, str]:
    result = farm.cli(
        "validate",
        "tiny-sd",
        "--precision",
        "fp32",
        "--runtime",
        "cpu",
        "--steps",
        "2",
        "--prompt-count",
        "3",
        "--out",
        str(out),
        "--json",
        *extra,
    )
    assert result.returncode in (0, 1), result.stderr + farm.logs()
    return result.returncode, json.loads(result.stdout), result.stderr


@pytest.mark.parametrize("seed", [0, 1])
def test_a_healthy_fleet_passes(farm: Farm, tmp_path: Path, seed: int) -> None:
    code, report, _ = validate(farm, tmp_path, "--seed", str(seed))
    assert code == 0 and report["passed"] is True, report["phones"]
    assert sorted(p["serial"] for p in report["phones"]) == sorted(p.serial for p in farm.phones)
    assert report["consensus"] == "all 3 phones agree" and report["outliers"] == []
    assert report["simulated"] is True
    (html,) = tmp_path.glob("validation-*.html")
    page = html.read_text()
    assert page.count("data:image/png;base64,") == 3 * 4  # reference + 3 phones, 3 prompts
    assert "<script" not in page and not re.search(r"(src|href)=\"(https?:)?//", page)
    stored = farm.api(f"/api/v1/jobs/{report['job_id']}/validation")
    assert stored == report  # what the CLI printed is what the database holds


@pytest.mark.parametrize("seed", [0, 1])
def test_a_faulty_npu_is_flagged(farm: Farm, tmp_path: Path, seed: int) -> None:
    faulty = farm.phones[1]
    farm.fleet.call(faulty.apply(FaultCommand(kind="faulty_npu", value=FAULT)))
    try:
        code, report, stderr = validate(farm, tmp_path, "--seed", str(seed))
    finally:
        farm.fleet.call(faulty.apply(FaultCommand(kind="clear")))
    verdicts = {p["serial"]: p for p in report["phones"]}
    assert code == 1 and report["passed"] is False
    assert not verdicts[faulty.serial]["passed"]
    assert all(v["passed"] for s, v in verdicts.items() if s != faulty.serial), verdicts
    assert report["outliers"] == [faulty.serial]
    last = stderr.splitlines()[-1]  # progress goes to stderr under --json; the error is last
    assert last.startswith("error: validation failed on 1 of 3 phones") and faulty.serial in last
    assert list(tmp_path.glob("validation-*.html")), "the report is written when phones fail"


def test_tensors_against_a_golden_phone(farm: Farm, tmp_path: Path) -> None:
    golden, faulty = farm.phones[0], farm.phones[2]
    farm.fleet.call(faulty.apply(FaultCommand(kind="faulty_npu", value=FAULT)))
    try:
        code, report, _ = validate(
            farm,
            tmp_path,
            "--inputs",
            "2",
            "--component",
            "unet",
            "--reference",
            f"serial={golden.serial}",
        )
    finally:
        farm.fleet.call(faulty.apply(FaultCommand(kind="clear")))
    verdicts = {p["serial"]: p for p in report["phones"]}
    assert code == 1 and report["mode"] == "tensors"
    assert verdicts[golden.serial]["reason"] == "the reference phone"
    assert verdicts[farm.phones[1].serial]["passed"] is True
    assert not verdicts[faulty.serial]["passed"] and "cosine" in verdicts[faulty.serial]["reason"]
    assert report["outliers"] == [faulty.serial]
