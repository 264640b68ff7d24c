"""Fixtures for the browser tests: a real embedded farm (farm_support's build_farm: adb server,
virtual phones, agent, API, ingest) with a job in it, and Debian's headless Chromium (Selenium).

Chromium and chromedriver come from Debian (`apt-get install chromium chromium-driver`; .ci/run
installs them). Without them these tests skip, unless HEXFLEET_REQUIRE_SERVICES=1 (CI), where
they fail. Screenshots are written to test-artifacts/browser/ at the repository's root.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from farm_support import Farm, build_farm, job_body
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.chrome.service import Service
from waiting import wait_until as wait_for

from hexfleet.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "browser"
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")


def wait_until(condition: Callable[[], Any], timeout: float = 60.0, what: str = "") -> Any:
    """wait_until, where an element replaced by the page's live refresh between finding
    it and reading it counts as "not yet" (the next poll finds the new one)."""

    def fresh() -> Any:
        try:
            return condition()
        except StaleElementReferenceException:
            return None

    return wait_for(fresh, timeout, what)


@dataclass
class Dashboard:
    farm: Farm
    token: str
    benchmark_id: str

    @property
    def url(self) -> str:
        return f"{self.farm.settings.api_url}/ui"


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dashboard]:
    """Two virtual phones (SM8550, SM8650) with a finished benchmark job on both."""
    farms = build_farm(tmp_path_factory.mktemp("browser-farm"), {}, ["sm8550", "sm8650"])
    farm = next(farms)
    try:
        bench = farm.post(
            "/api/v1/jobs",
            job_body(
                kind="benchmark",
                params={"component": "unet", "runtime": "cpu", "iterations": 8, "warmup": 1},
            ),
        )
        assert farm.wait_for_job(bench["id"], timeout=180)["state"] == "succeeded"
        token = farm.settings.client_token()
        assert token
        yield Dashboard(farm, token, bench["id"])
    finally:
        next(farms, None)  # build_farm's own teardown: stop the processes and adb servers


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        message = f"{', '.join(missing)} missing: apt-get install -y chromium chromium-driver"
        if Settings().require_services:
            pytest.fail(f"{message} (HEXFLEET_REQUIRE_SERVICES=1: a missing service is a failure)")
        pytest.skip(message)
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1400,1600",
        "--force-device-scale-factor=1",
    ):
        options.add_argument(argument)
    try:
        driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    except WebDriverException as exc:
        pytest.fail(f"Chromium does not start: {exc.msg}")
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    shutil.rmtree(ARTIFACTS, ignore_errors=True)
    ARTIFACTS.mkdir(parents=True)
    print(f"\nbrowser screenshots in {ARTIFACTS}")
    return ARTIFACTS
