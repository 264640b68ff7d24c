"""The served API under schemathesis: `hexfleet serve` on the real PostgreSQL and Redis, fuzzed
from its own OpenAPI schema with every check on, with no token, a viewer's and a submitter's.

Passing means a client generated from the schema can rely on it: no 5xx, every status code,
content type and body documented and matching, no schema-valid request refused (but for the
one cross-field rule in schemathesis.toml), Allow headers that list the path's methods, auth
never ignored; without a submitting token nothing in the database or the store changes; and
the farm still takes and shows a job afterwards. The seed and the number of examples per
operation are fixed, so a run is repeatable and takes about a minute per token.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from waiting import free_port, wait_until

from hexfleet.broker import INGEST_HEARTBEAT_TASK, INGEST_QUEUE, make_celery
from hexfleet.messages import DeviceFacts, DeviceHealth, Heartbeat
from hexfleet.models.registration import register_tiny_sd
from hexfleet.models.store import ModelStore
from hexfleet.orchestrator.db.engine import make_engine
from hexfleet.settings import Settings

BIN = Path(sys.executable).parent
CONFIG = Path(__file__).with_name("schemathesis.toml")
TOKENS = {"none": None, "viewer": "fuzz-viewer-token", "submitter": "fuzz-submit-token"}
# Examples per operation: enough to reach every status an operation documents, bounded so the
# three runs stay within a few minutes on two shared cores.
EXAMPLES = {"none": 5, "viewer": 8, "submitter": 15}
SEED = 17
PHONES = [("fuzz-8550", "SM8550", 73), ("fuzz-8650", "SM8650", 75)]
TABLES = ("jobs", "runs", "models", "model_artifacts", "artifacts", "runner_bundles", "images")
JOB = {
    "kind": "generate",
    "model": "tiny-sd",
    "precision": "fp32",
    "selector": "soc=SM8550",
    "params": {"prompts": ["a red circle on the left in a blue background"]},
}


@dataclass(frozen=True)
class Farm:
    url: str
    database_url: str
    store: ModelStore


def _beat(settings: Settings, stop: threading.Event) -> None:
    """The phones' heartbeats, every 5 s through the ingest worker, so they stay online."""
    app = make_celery(settings)
    while True:
        for serial, soc, arch in PHONES:
            beat = Heartbeat(
                host="fuzz-host",
                facts=DeviceFacts(serial=serial, soc=soc, htp_arch=arch, is_virtual=True),
                health=DeviceHealth(battery_level=80, max_temp_c=30.0),
                state="idle",
                sent_at=dt.datetime.now(dt.UTC),
            )
            app.send_task(INGEST_HEARTBEAT_TASK, args=[beat.model_dump_json()], queue=INGEST_QUEUE)
        if stop.wait(5.0):
            return


@pytest.fixture(scope="module")
def farm(
    tmp_path_factory: pytest.TempPathFactory,
    synthetic_tiny_sd: Path,
    module_postgres_url: str,
    module_redis_url: str,
) -> Iterator[Farm]:
    data_dir = tmp_path_factory.mktemp("fuzz-data")
    url = f"http://127.0.0.1:{free_port()}"
    settings = Settings(data_dir=data_dir, api_url=url, broker_url=module_redis_url)
    store = ModelStore.from_settings(settings)
    register_tiny_sd(store, synthetic_tiny_sd)
    env = {
        **os.environ,
        "HEXFLEET_DATA_DIR": str(data_dir),
        "HEXFLEET_API_URL": url,
        "HEXFLEET_DATABASE_URL": module_postgres_url,
        "HEXFLEET_BROKER_URL": module_redis_url,
        "HEXFLEET_VIEWER_TOKENS": f'["{TOKENS["viewer"]}"]',
        "HEXFLEET_SUBMIT_TOKENS": f'["{TOKENS["submitter"]}"]',
    }
    env.pop("HEXFLEET_API_TOKEN", None)
    log = (data_dir / "serve.log").open("w")
    process = subprocess.Popen(
        [str(BIN / "hexfleet"), "serve"], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    stop = threading.Event()
    beats = threading.Thread(target=_beat, args=(settings, stop), daemon=True)

    def devices() -> bool:
        if process.poll() is not None:
            pytest.fail(f"serve exited: {(data_dir / 'serve.log').read_text()[-2000:]}")
        try:
            answer = httpx.get(f"{url}/api/v1/devices", headers=_auth("viewer"), timeout=2)
        except httpx.TransportError:
            return False
        return answer.status_code == 200 and len(answer.json()) == len(PHONES)

    try:
        wait_until(lambda: _healthy(url) or process.poll() is not None, 60, "the API")
        beats.start()
        wait_until(devices, 60, "the phones' heartbeats ingested")
        yield Farm(url, module_postgres_url, store)
    finally:
        stop.set()
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/api/v1/health", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def _auth(who: str) -> dict[str, str]:
    token = TOKENS[who]
    return {"Authorization": f"Bearer {token}"} if token else {}


def _stored(farm: Farm) -> dict[str, object]:
    """What a write would change: row counts and the store's files."""
    engine = make_engine(farm.database_url)
    try:
        with engine.connect() as conn:
            counts = {t: conn.scalar(sa.text(f"SELECT count(*) FROM {t}")) for t in TABLES}  # noqa: S608
    finally:
        engine.dispose()
    files = sorted(str(p.relative_to(farm.store.root)) for p in farm.store.root.rglob("*"))
    return {**counts, "store": files}


def _schemathesis(farm: Farm, who: str, report: Path) -> subprocess.CompletedProcess[str]:
    headers = [f"--header=Authorization: Bearer {TOKENS[who]}"] if TOKENS[who] else []
    return subprocess.run(
        [
            str(BIN / "st"),
            "--config-file",
            str(CONFIG),
            "run",
            f"{farm.url}/openapi.json",
            *headers,
            "--checks=all",
            f"--max-examples={EXAMPLES[who]}",
            f"--seed={SEED}",
            "--generation-deterministic",
            "--workers=1",
            "--no-color",
            "--report=junit",
            f"--report-dir={report}",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        cwd=report.parent,
    )


@pytest.mark.parametrize("who", ["none", "viewer", "submitter"])
def test_schemathesis_finds_nothing(farm: Farm, who: str, tmp_path: Path) -> None:
    before = _stored(farm)
    result = _schemathesis(farm, who, tmp_path / "report")
    summary = result.stdout[result.stdout.find("SUMMARY") :]
    assert result.returncode == 0, result.stdout[-12000:] + result.stderr[-2000:]
    assert " passed" in summary or "No issues found" in summary, summary
    if who != "submitter":
        assert _stored(farm) == before, "a request without a submitting token changed something"
    # The farm still serves: healthy, and a job submitted now is stored and shown.
    assert _healthy(farm.url)
    created = httpx.post(f"{farm.url}/api/v1/jobs", json=JOB, headers=_auth("submitter"))
    assert created.status_code == 201, created.text
    shown = httpx.get(f"{farm.url}/api/v1/jobs/{created.json()['id']}", headers=_auth("viewer"))
    assert shown.status_code == 200 and shown.json()["runs"][0]["device_serial"] == "fuzz-8550"
