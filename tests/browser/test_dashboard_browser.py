"""The dashboard in headless Chromium against a running embedded farm: each page loads with the
content that matters, refreshes by itself, and is saved as a screenshot (test-artifacts/)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from browser_support import Dashboard, job_body, wait_until
from kombu.exceptions import ChannelError
from selenium import webdriver
from selenium.webdriver.common.by import By
from sqlalchemy.orm import Session

from hexfleet.broker import make_celery
from hexfleet.messages import RunTask
from hexfleet.models.store import ModelStore
from hexfleet.orchestrator.db.engine import make_engine
from hexfleet.orchestrator.dispatch import CeleryDispatcher
from hexfleet.orchestrator.validation import ValidationRequest, submit_validation
from hexfleet.settings import Settings


def _login(browser: webdriver.Chrome, dashboard: Dashboard, page: str) -> None:
    browser.get(f"{dashboard.url}/{page}?token={dashboard.token}")
    assert "token=" not in browser.current_url  # the token went into a cookie


def _shot(browser: webdriver.Chrome, artifacts: Path, name: str) -> None:
    height = browser.execute_script("return document.documentElement.scrollHeight")
    browser.set_window_size(1400, max(900, min(int(height) + 40, 4000)))
    path = artifacts / f"{name}.png"
    assert browser.save_screenshot(str(path)), path
    assert path.stat().st_size > 10_000


def test_without_a_token_the_login_form_shows(
    browser: webdriver.Chrome, dashboard: Dashboard, artifacts: Path
) -> None:
    browser.delete_all_cookies()
    browser.get(f"{dashboard.url}/fleet")
    assert browser.find_element(By.NAME, "token").is_displayed()
    assert not browser.find_elements(By.CSS_SELECTOR, "tr.phone")
    _shot(browser, artifacts, "login")
    browser.find_element(By.NAME, "token").send_keys(dashboard.token)
    browser.find_element(By.CSS_SELECTOR, "form.login button").click()
    wait_until(lambda: browser.find_elements(By.CSS_SELECTOR, "tr.phone"), 15, "the fleet page")


def test_fleet_has_a_row_per_phone_and_refreshes_itself(
    browser: webdriver.Chrome, dashboard: Dashboard, artifacts: Path
) -> None:
    _login(browser, dashboard, "fleet")
    rows = browser.find_elements(By.CSS_SELECTOR, "tr.phone")
    assert {r.get_attribute("data-serial") for r in rows} == {
        p.serial for p in dashboard.farm.phones
    }
    text = browser.find_element(By.ID, "fleet").text
    for expected in ("SM8550", "SM8650", "v73", "v75", "host-a", "%", "°C"):
        assert expected in text
    for row in rows:
        assert row.get_attribute("data-state") in ("idle", "busy", "throttled")
    body = browser.find_element(By.CSS_SELECTOR, "#fleet tbody")
    wait_until(
        lambda: int(body.get_attribute("data-refreshed") or 0) >= 1, 20, "the fleet's refresh"
    )
    assert body.get_attribute("data-refresh-error") is None
    assert len(browser.find_elements(By.CSS_SELECTOR, "tr.phone")) == len(dashboard.farm.phones)
    _shot(browser, artifacts, "fleet")


def test_a_job_page_follows_the_job_live_and_shows_its_gallery(
    browser: webdriver.Chrome, dashboard: Dashboard, artifacts: Path
) -> None:
    job = dashboard.farm.post(
        "/api/v1/jobs",
        job_body(
            params={
                "prompts": [
                    "a red circle on the left in a blue background",
                    "a green square at the top in a white background",
                ],
                "steps": 6,
                "runtime": "cpu",
            }
        ),
    )
    _login(browser, dashboard, f"jobs/{job['id']}")
    assert len(browser.find_elements(By.CSS_SELECTOR, "tr.run")) == 2
    # No reload from here on: the page polls its live fragment until the job is finished.
    wait_until(
        lambda: browser.find_element(By.ID, "job-state").text == "succeeded",
        180,
        "the job page to show the job succeeded",
    )
    runs = browser.find_elements(By.CSS_SELECTOR, "tr.run")
    assert [r.get_attribute("data-state") for r in runs] == ["succeeded", "succeeded"]
    images = browser.find_elements(By.CSS_SELECTOR, "#gallery img")
    assert len(images) == 4  # two prompts on two phones

    def decoded() -> bool:
        return all(
            browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth", i)
            for i in images
        )

    wait_until(decoded, 15, "the gallery's images to decode")
    sizes = {
        tuple(
            browser.execute_script(
                "return [arguments[0].naturalWidth, arguments[0].naturalHeight]", i
            )
        )
        for i in images
    }
    assert sizes == {(16, 16)}  # the synthetic tiny-sd draws 16x16 images
    timings = browser.find_element(By.ID, "timings").text
    for column in ("load", "text encoder", "UNet (all steps)", "VAE decoder", "total"):
        assert column in timings
    assert "simulated" in browser.find_element(By.ID, "live").text
    _shot(browser, artifacts, "job")


def test_jobs_lists_both_jobs_and_filters(
    browser: webdriver.Chrome, dashboard: Dashboard, artifacts: Path
) -> None:
    _login(browser, dashboard, "jobs")
    kinds = {
        r.find_elements(By.TAG_NAME, "td")[1].text
        for r in browser.find_elements(By.CSS_SELECTOR, "tr.job")
    }
    assert {"generate", "benchmark"} <= kinds
    browser.get(f"{dashboard.url}/jobs?kind=benchmark")
    rows = browser.find_elements(By.CSS_SELECTOR, "tr.job")
    assert [r.get_attribute("data-job") for r in rows] == [dashboard.benchmark_id]
    _shot(browser, artifacts, "jobs")


def test_benchmark_charts_have_data_and_say_simulated(
    browser: webdriver.Chrome, dashboard: Dashboard, artifacts: Path
) -> None:
    _login(browser, dashboard, "benchmarks")
    assert "Simulated timings" in browser.find_element(By.ID, "simulated-banner").text
    points = browser.execute_script(
        """
        const counts = {};
        for (const id of ["distribution", "over-time"]) {
          const chart = Chart.getChart(document.getElementById(id));
          counts[id] = chart.data.datasets.map(d => d.data.filter(v => v !== null).length);
          counts[id + "-labels"] = chart.data.datasets.map(d => d.label);
        }
        return counts;
        """
    )
    # Distribution: 8 iterations on each of the two phones, plus the medians' dataset.
    assert points["distribution"] == [8, 8, 2]
    assert points["over-time"] == [1, 1]
    assert all("(simulated)" in label for label in points["over-time-labels"])
    canvas = browser.find_element(By.ID, "distribution")
    assert canvas.size["height"] > 100
    _shot(browser, artifacts, "benchmarks")


class _FreshDispatcher:
    """Sends each run through a new Celery connection, retrying a send that failed (bounded).

    Why: a process's first publish on the embedded (filesystem) broker declares the exchange in
    kombu's control-folder table while the farm's agent may be rewriting it; kombu can then report
    a channel error, reconnect, and retry on the dropped channel (AttributeError on
    `connection.client`). The API's long-lived connection is past that point; this test's
    process is not. No message is written before that failure, so a retry cannot duplicate one.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def send(self, task: RunTask, queue: str, priority: int) -> None:
        for attempt in range(3):
            try:
                CeleryDispatcher(make_celery(self.settings)).send(task, queue, priority)
                return
            except (AttributeError, ChannelError):
                if attempt == 2:
                    raise

    def revoke(self, run_ids: Sequence[str]) -> None:
        raise AssertionError("nothing is cancelled here")


def test_validation_shows_verdicts_and_the_agreement_matrix(
    browser: webdriver.Chrome, dashboard: Dashboard, artifacts: Path
) -> None:
    # A real validation job (orchestrator.validation), run by the farm's agent on its phones.
    farm = dashboard.farm
    engine = make_engine(farm.settings.resolved_database_url)
    request = ValidationRequest(
        model="tiny-sd", precision="fp32", prompt_count=2, steps=2, runtime="cpu"
    )
    dispatcher = _FreshDispatcher(farm.settings)
    with Session(engine) as session:
        job = submit_validation(
            session, request, dispatcher, "qa", ModelStore.from_settings(farm.settings)
        )
        job_id = job.id
    engine.dispose()
    assert farm.wait_for_job(job_id, timeout=180)["state"] == "succeeded"
    _login(browser, dashboard, "validation")
    browser.find_element(By.CSS_SELECTOR, f'tr.validation[data-job="{job_id}"] a').click()
    wait_until(lambda: browser.find_elements(By.CSS_SELECTOR, "tr.verdict"), 30, "the verdicts")
    serials = sorted(p.serial for p in farm.phones)
    verdicts = browser.find_elements(By.CSS_SELECTOR, "tr.verdict")
    assert [v.get_attribute("data-serial") for v in verdicts] == serials
    # FP32 on the CPU EP on every phone: each one draws the reference's images.
    assert [v.get_attribute("data-passed") for v in verdicts] == ["true"] * len(serials)
    assert "pass" in browser.find_element(By.ID, "overall").text
    matrix = browser.find_element(By.ID, "agreement")
    assert len(matrix.find_elements(By.CSS_SELECTOR, "td.pass")) == len(serials) * (
        len(serials) - 1
    )
    outputs = browser.find_element(By.ID, "outputs")
    assert len(outputs.find_elements(By.CSS_SELECTOR, "td.pass")) == 2 * len(serials)
    _shot(browser, artifacts, "validation")
