"""Prometheus metrics (`GET /metrics`): the farm read from the database and broker at scrape time.

Nothing is counted in memory: every figure is an aggregate over the database (or the broker's
queues) when Prometheus scrapes, so any number of API processes report the same thing, a
restart loses nothing, and the ingest worker needs no metrics port of its own. Counters and
histograms over finished runs only grow, as Prometheus expects, unless runs are deleted.

Ingest lag is `now - newest heartbeat stored from a phone its agent has not reported offline`:
agents send a heartbeat per phone every 3 s, so it sits at 0-3 s while ingest keeps up and grows
without bound when the ingest worker stalls or falls behind. It grows too when every agent is
gone (nothing is sent): either way the database no longer follows the fleet.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import Counter
from collections.abc import Iterator

import redis
import sqlalchemy as sa
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString
from sqlalchemy.orm import Session, sessionmaker

from hexfleet.broker import (
    ANY_QUEUE,
    INGEST_QUEUE,
    arch_queue,
    device_queue,
    queue_depths,
    soc_queue,
)
from hexfleet.orchestrator.db.schema import Device, Job, Run
from hexfleet.orchestrator.db.schema import Metric as MetricRow
from hexfleet.orchestrator.presence import phone_state
from hexfleet.settings import Settings
from hexfleet.states import JobState, PhoneState, RunState

log = logging.getLogger(__name__)

# Seconds. Runs span a cached 3-step CPU generation (~1 s) to long HTP-simulator jobs (minutes).
DURATION_BUCKETS = (0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800, 3600)
WAIT_BUCKETS = (0.1, 0.5, 1, 2, 5, 10, 30, 60, 300, 900, 3600)
BENCHMARK_WINDOW = 2000  # newest benchmark runs read for the per-phone latency gauges
CONTENT_TYPE = CONTENT_TYPE_LATEST


def _seconds_between(session: Session, start: sa.ColumnElement, end: sa.ColumnElement):  # noqa: ANN202
    """`end - start` in seconds as SQL, on SQLite and PostgreSQL."""
    if session.get_bind().dialect.name == "sqlite":
        return (sa.func.julianday(end) - sa.func.julianday(start)) * 86400.0
    return sa.extract("epoch", end - start)


class FarmCollector(Collector):
    """Yields every hexfleet metric from one database session and one broker query."""

    def __init__(self, settings: Settings, sessions: sessionmaker[Session]) -> None:
        self.settings = settings
        self.sessions = sessions

    def collect(self) -> Iterator[Metric]:
        now = dt.datetime.now(dt.UTC)
        with self.sessions() as session:
            devices = list(session.scalars(sa.select(Device)))
            yield from self._phones(devices, now)
            yield from self._counts(session)
            yield self._histogram(
                session,
                "hexfleet_run_duration_seconds",
                "Succeeded runs' time on the phone (started_at to finished_at), by job kind.",
                Run.started_at,
                Run.finished_at,
                DURATION_BUCKETS,
            )
            yield self._histogram(
                session,
                "hexfleet_run_queue_wait_seconds",
                "Succeeded runs' wait from submission to the phone starting them, by job kind.",
                Run.created_at,
                Run.started_at,
                WAIT_BUCKETS,
            )
            yield from self._pushes(session)
            yield from self._benchmarks(session)
            queued = set(
                session.scalars(sa.select(Run.queue).where(Run.state == RunState.QUEUED).distinct())
            )
        yield from self._queues(devices, queued)
        yield self._ingest_lag(devices, now)

    def _phones(self, devices: list[Device], now: dt.datetime) -> Iterator[Metric]:
        states = Counter(phone_state(d, now) for d in devices)
        phones = GaugeMetricFamily(
            "hexfleet_phones", "Phones by state (idle, busy, throttled, offline).", labels=["state"]
        )
        for state in PhoneState:
            phones.add_metric([state.value], states[state])
        yield phones
        labels = ["serial", "soc", "host"]
        temperature = GaugeMetricFamily(
            "hexfleet_phone_temperature_celsius", "A phone's hottest sensor.", labels=labels
        )
        battery = GaugeMetricFamily(
            "hexfleet_phone_battery_percent", "A phone's battery level.", labels=labels
        )
        for device in devices:
            if phone_state(device, now) == PhoneState.OFFLINE:
                continue
            values = [device.serial, device.soc, device.host_id]
            if device.temperature_c is not None:
                temperature.add_metric(values, device.temperature_c)
            if device.battery_level is not None:
                battery.add_metric(values, device.battery_level)
        yield temperature
        yield battery

    def _counts(self, session: Session) -> Iterator[Metric]:
        runs = GaugeMetricFamily(
            "hexfleet_runs", "Runs (attempts) by state and job kind.", labels=["state", "kind"]
        )
        found = dict.fromkeys(((s.value, "generate") for s in RunState), 0)
        rows = session.execute(
            sa.select(Run.state, Job.kind, sa.func.count())
            .join(Job, Run.job_id == Job.id)
            .group_by(Run.state, Job.kind)
        )
        found.update({(state, kind): count for state, kind, count in rows})
        for (state, kind), count in sorted(found.items()):
            runs.add_metric([state, kind], count)
        yield runs
        jobs = GaugeMetricFamily(
            "hexfleet_jobs", "Jobs by state and kind.", labels=["state", "kind"]
        )
        found = dict.fromkeys(((s.value, "generate") for s in JobState), 0)
        rows = session.execute(
            sa.select(Job.state, Job.kind, sa.func.count()).group_by(Job.state, Job.kind)
        )
        found.update({(state, kind): count for state, kind, count in rows})
        for (state, kind), count in sorted(found.items()):
            jobs.add_metric([state, kind], count)
        yield jobs

    def _histogram(
        self,
        session: Session,
        name: str,
        documentation: str,
        start: sa.ColumnElement,
        end: sa.ColumnElement,
        buckets: tuple[float, ...],
    ) -> Metric:
        """A histogram aggregated in SQL: one row per kind, one column per bucket."""
        seconds = _seconds_between(session, start, end)
        columns = [sa.func.sum(sa.case((seconds <= b, 1), else_=0)) for b in buckets]
        rows = session.execute(
            sa.select(Job.kind, sa.func.count(), sa.func.sum(seconds), *columns)
            .join(Job, Run.job_id == Job.id)
            .where(Run.state == RunState.SUCCEEDED, start.is_not(None), end.is_not(None))
            .group_by(Job.kind)
        )
        family = HistogramMetricFamily(name, documentation, labels=["kind"])
        for kind, count, total, *cumulative in rows:
            points = [
                (floatToGoString(b), int(c or 0)) for b, c in zip(buckets, cumulative, strict=True)
            ]
            points.append(("+Inf", int(count)))
            family.add_metric([kind], points, sum_value=max(0.0, float(total or 0)))
        return family

    def _pushes(self, session: Session) -> Iterator[Metric]:
        """What the agents reported about model pushes (run metrics pushed_bytes etc.)."""
        sums = dict(
            session.execute(
                sa.select(MetricRow.name, sa.func.sum(MetricRow.value))
                .where(MetricRow.name.in_(("pushed_bytes", "cached_files", "push_s")))
                .group_by(MetricRow.name)
            ).all()
        )
        without_push = session.scalar(
            sa.select(sa.func.count())
            .select_from(MetricRow)
            .where(MetricRow.name == "pushed_bytes", MetricRow.value == 0)
        )
        for name, key, documentation in (
            ("hexfleet_pushed_bytes", "pushed_bytes", "Model bytes pushed to phones."),
            (
                "hexfleet_cache_hit_files",
                "cached_files",
                "Model files a run found in its phone's cache (not pushed again).",
            ),
            ("hexfleet_push_seconds", "push_s", "Time spent pushing model files to phones."),
        ):
            yield CounterMetricFamily(name, documentation, value=float(sums.get(key) or 0))
        yield CounterMetricFamily(
            "hexfleet_runs_without_push",
            "Runs whose model was entirely in the phone's cache already.",
            value=float(without_push or 0),
        )

    def _benchmarks(self, session: Session) -> Iterator[Metric]:
        """Median latency of each phone's newest benchmark per model and component."""
        family = GaugeMetricFamily(
            "hexfleet_benchmark_p50_ms",
            "Median iteration latency of a phone's newest benchmark of a model component; "
            "simulated=true: QNN HTP simulator on a host, not device timings.",
            labels=["serial", "model", "component", "runtime", "simulated"],
        )
        rows = session.execute(
            sa.select(Run.device_serial, Run.simulated, Run.timings, Run.result, Job.spec)
            .join(Job, Run.job_id == Job.id)
            .where(Job.kind == "benchmark", Run.state == RunState.SUCCEEDED)
            .order_by(Run.finished_at.desc(), Job.created_at.desc())
            .limit(BENCHMARK_WINDOW)
        )
        seen = set()
        for serial, simulated, timings, result, spec in rows:
            metrics = result.get("metrics", {})
            key = (
                serial or "",
                f"{spec.get('model', '')}/{spec.get('precision', '')}",
                str(metrics.get("component", "")),
                str(metrics.get("runtime", "")),
                "true" if simulated else "false",
            )
            p50 = timings.get("p50_ms")
            if key in seen or not isinstance(p50, int | float):
                continue
            seen.add(key)
            family.add_metric(list(key), float(p50))
        yield family

    def _queues(self, devices: list[Device], queued: set[str]) -> Iterator[Metric]:
        queues = {INGEST_QUEUE, ANY_QUEUE, *queued}
        for device in devices:
            queues.add(device_queue(device.serial))
            if device.soc:
                queues.add(soc_queue(device.soc))
            if device.htp_arch is not None:
                queues.add(arch_queue(device.htp_arch))
        up = GaugeMetricFamily("hexfleet_broker_up", "1 when the broker answered this scrape.")
        depth = GaugeMetricFamily(
            "hexfleet_queue_depth", "Messages waiting on a broker queue.", labels=["queue"]
        )
        try:
            depths = queue_depths(self.settings, queues)
        except (redis.RedisError, OSError) as exc:
            log.warning("queue depths unavailable: %s", exc)
            up.add_metric([], 0)
            yield up
            yield depth
            return
        up.add_metric([], 1)
        for queue, count in sorted(depths.items()):
            depth.add_metric([queue], count)
        yield up
        yield depth

    def _ingest_lag(self, devices: list[Device], now: dt.datetime) -> Metric:
        family = GaugeMetricFamily(
            "hexfleet_ingest_lag_seconds",
            "Now minus the newest heartbeat stored from a phone not reported offline.",
        )
        seen = [d.last_seen for d in devices if d.state != PhoneState.OFFLINE]
        if seen:
            family.add_metric([], max(0.0, (now - max(seen)).total_seconds()))
        return family


def registry_for(settings: Settings, sessions: sessionmaker[Session]) -> CollectorRegistry:
    """A registry of its own per app (tests build many apps in one process)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(FarmCollector(settings, sessions))
    return registry


def exposition(registry: CollectorRegistry) -> bytes:
    """The registry in Prometheus' text format."""
    return generate_latest(registry)
