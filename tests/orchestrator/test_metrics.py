"""`/metrics` in Prometheus' format, aggregated from the database and the broker at scrape time."""

from __future__ import annotations

import datetime as dt

import pytest
from dashboard_support import PHONES, VIEWER, Populated, heartbeat, populated
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.orm import Session

from hexfleet.broker import device_queue, queue_depths
from hexfleet.orchestrator.db.engine import make_engine
from hexfleet.orchestrator.db.schema import Device
from hexfleet.orchestrator.ingest import ingest_heartbeat
from hexfleet.orchestrator.metrics import exposition, registry_for
from hexfleet.settings import Settings

__all__ = ["populated"]

AUTH = {"Authorization": f"Bearer {VIEWER}"}


def _scrape(populated: Populated) -> dict[str, list]:
    answer = populated.client.get("/metrics", headers=AUTH)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain; version=")
    samples: dict[str, list] = {}
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append(sample)
    return samples


def _value(samples: dict[str, list], name: str, **labels: str) -> float:
    found = [s.value for s in samples[name] if all(s.labels.get(k) == v for k, v in labels.items())]
    assert len(found) == 1, (name, labels, samples.get(name))
    return found[0]


def test_metrics_need_a_viewer_token(populated: Populated) -> None:
    assert populated.client.get("/metrics").status_code == 401


def test_phones_runs_jobs_queues_pushes_and_latency(populated: Populated) -> None:
    samples = _scrape(populated)
    assert _value(samples, "hexfleet_phones", state="idle") == 3
    assert _value(samples, "hexfleet_phones", state="offline") == 0
    assert _value(samples, "hexfleet_phone_temperature_celsius", serial="vp-2") == 36.5
    assert _value(samples, "hexfleet_runs", state="succeeded", kind="generate") == 3
    assert _value(samples, "hexfleet_runs", state="succeeded", kind="benchmark") == 6
    assert _value(samples, "hexfleet_runs", state="queued", kind="generate") == 1
    assert _value(samples, "hexfleet_jobs", state="queued", kind="generate") == 1
    # Every task the fixture submitted still waits on the real Redis (no agent consumed them;
    # results were ingested directly): 3 jobs x 1 run per phone, plus the queued job on vp-1.
    assert _value(samples, "hexfleet_broker_up") == 1
    waiting = {s.labels["queue"]: s.value for s in samples["hexfleet_queue_depth"] if s.value}
    assert waiting == {device_queue("vp-1"): 4, device_queue("vp-2"): 3, device_queue("vp-3"): 3}
    assert _value(samples, "hexfleet_queue_depth", queue="ingest") == 0
    # Generate runs took 3 s on the phone; benchmark runs 15 s.
    assert _value(samples, "hexfleet_run_duration_seconds_count", kind="generate") == 3
    assert _value(samples, "hexfleet_run_duration_seconds_bucket", kind="generate", le="2.0") == 0
    assert _value(samples, "hexfleet_run_duration_seconds_bucket", kind="generate", le="5.0") == 3
    assert _value(samples, "hexfleet_run_duration_seconds_sum", kind="generate") == pytest.approx(
        9, abs=0.01
    )
    assert _value(samples, "hexfleet_run_duration_seconds_bucket", kind="benchmark", le="10.0") == 0
    assert _value(samples, "hexfleet_run_duration_seconds_bucket", kind="benchmark", le="20.0") == 6
    assert _value(samples, "hexfleet_run_queue_wait_seconds_count", kind="benchmark") == 6
    assert _value(samples, "hexfleet_pushed_bytes_total") == 1000
    assert _value(samples, "hexfleet_cache_hit_files_total") == 0 + 3 + 6
    assert _value(samples, "hexfleet_runs_without_push_total") == 2
    # The newest benchmark per phone: round 1's p50 = 53 + 10 * phone.
    p50 = {s.labels["serial"]: s.value for s in samples["hexfleet_benchmark_p50_ms"]}
    assert sorted(p50.values()) == [53.0, 63.0, 73.0]
    assert {s.labels["simulated"] for s in samples["hexfleet_benchmark_p50_ms"]} == {"true"}
    assert 0 <= _value(samples, "hexfleet_ingest_lag_seconds") < 60


def test_ingest_lag_follows_the_newest_heartbeat_and_states_follow_reports(
    populated: Populated,
) -> None:
    engine = make_engine(populated.settings.resolved_database_url)
    old = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=10)
    with Session(engine) as session:
        for serial, soc, arch in PHONES:
            ingest_heartbeat(
                session, heartbeat(serial, soc, arch).model_copy(update={"sent_at": old})
            )
        session.commit()
    samples = _scrape(populated)
    assert _value(samples, "hexfleet_ingest_lag_seconds") == pytest.approx(600, abs=30)
    assert _value(samples, "hexfleet_phones", state="offline") == 3  # silent for 10 minutes
    with Session(engine) as session:
        ingest_heartbeat(session, heartbeat("vp-1", "SM8550", 73, state="busy"))
        ingest_heartbeat(session, heartbeat("vp-2", "SM8650", 75, throttled=True))
        session.commit()
        assert session.get_one(Device, "vp-1").state == "busy"
    engine.dispose()
    samples = _scrape(populated)
    assert _value(samples, "hexfleet_ingest_lag_seconds") < 60
    assert _value(samples, "hexfleet_phones", state="busy") == 1
    assert _value(samples, "hexfleet_phones", state="throttled") == 1
    assert _value(samples, "hexfleet_phones", state="offline") == 1


def test_a_broker_that_does_not_answer_is_reported_not_fatal(populated: Populated) -> None:
    dead = populated.settings.model_copy(update={"broker_url": "redis://127.0.0.1:1/0"})
    text = exposition(registry_for(dead, populated.client.app.state.sessions)).decode()
    assert "hexfleet_broker_up 0.0" in text
    assert 'hexfleet_phones{state="idle"} 3.0' in text


def test_embedded_broker_depths_count_message_files(settings: Settings) -> None:
    folder = settings.broker_folder / "in"
    queue = device_queue("127.0.0.1:18500")
    folder.mkdir(parents=True)
    for i in range(3):
        (folder / f"{1000 + i}_abc{i}.{queue}.msg").write_text("{}")
    (folder / "1003_abc.ingest.msg").write_text("{}")
    (folder / ".incoming-partial").write_text("{")
    assert queue_depths(settings, [queue, "ingest", "any"]) == {queue: 3, "ingest": 1, "any": 0}
