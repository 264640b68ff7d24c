"""docker-compose.yml is a valid Compose file that deploys what the README says it deploys.

No Docker engine runs here, so the file is validated, not run: parsed by the compose-spec parser
(spec-compliant), then checked for what matters to hexfleet.
"""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from compose_spec import PyCompose
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from hexfleet.broker import make_celery
from hexfleet.cli.app import app
from hexfleet.orchestrator.api.app import create_app
from hexfleet.orchestrator.db.engine import upgrade
from hexfleet.orchestrator.dispatch import CeleryDispatcher
from hexfleet.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]


def test_the_compose_spec_parser_accepts_it() -> None:
    parsed = PyCompose.from_json(json.dumps(COMPOSE))
    assert set(parsed.service_names()) == {
        "redis",
        "postgres",
        "api",
        "ingest",
        "agent",
        "flower",
        "prometheus",
        "grafana",
    }


def test_the_parser_would_catch_a_broken_file() -> None:
    broken = {**COMPOSE, "services": {**SERVICES, "api": {**SERVICES["api"], "restart": "often"}}}
    with pytest.raises(ValueError, match="unknown variant"):
        PyCompose.from_json(json.dumps(broken))


def test_references_resolve() -> None:
    for name, service in SERVICES.items():
        for dependency in service.get("depends_on", {}):
            assert dependency in SERVICES, f"{name} depends on unknown {dependency}"
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), f"{name} mounts {source}, which is not in the repo"
            elif not source.startswith("/"):
                assert source in COMPOSE["volumes"], f"{name} uses undeclared volume {source}"


def test_every_hexfleet_variable_is_a_setting() -> None:
    known = {f"HEXFLEET_{field.upper()}" for field in Settings.model_fields}
    for name, service in SERVICES.items():
        for variable in service.get("environment", {}):
            if variable.startswith("HEXFLEET_"):
                assert variable in known, f"{name} sets {variable}, which hexfleet never reads"


def test_hexfleet_services_run_real_commands() -> None:
    commands = {c.name or c.callback.__name__ for c in app.registered_commands if c.callback}
    commands |= {g.name for g in app.registered_groups if g.name}
    for name in ("api", "ingest", "agent"):
        assert SERVICES[name]["command"][0] in commands
    assert SERVICES["api"]["command"] == ["serve", "--role", "api"]
    assert SERVICES["ingest"]["command"] == ["serve", "--role", "ingest"]


def test_the_agent_can_reach_usb_phones_and_the_host_adb_server() -> None:
    agent = SERVICES["agent"]
    assert agent["network_mode"] == "host"
    assert "/dev/bus/usb:/dev/bus/usb" in agent["volumes"]


def test_the_dockerfile_ships_every_package() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    for package in ("hexfleet", "models", "device_agent", "orchestrator"):
        assert re.search(rf"^COPY {package} {package}$", dockerfile, re.M)


def _mounts(service: str) -> dict[str, Path]:
    """A service's bind mounts from the repository: container path -> repository path."""
    mounts = {}
    for volume in SERVICES[service]["volumes"]:
        source, target, *_ = volume.split(":")
        if source.startswith("./"):
            mounts[target] = ROOT / source
    return mounts


def _in_container(service: str, path: str) -> Path:
    """The repository file a service sees at `path` through its bind mounts."""
    for target, source in _mounts(service).items():
        if path == target or path.startswith(target + "/"):
            return source / path[len(target) :].lstrip("/")
    raise AssertionError(f"{service} does not mount anything at {path}")


def _exported_metric_names() -> set[str]:
    """Every series name GET /metrics exports, asked of the real app over a migrated database."""
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(
            data_dir=Path(tmp),
            database_url=None,
            broker_url=None,
            viewer_tokens=["viewer"],
            submit_tokens=["submit"],
        )
        upgrade(settings.resolved_database_url)
        app = create_app(settings, CeleryDispatcher(make_celery(settings)))
        with TestClient(app) as client:
            answer = client.get("/metrics", headers={"Authorization": "Bearer viewer"})
        app.state.engine.dispose()
    assert answer.status_code == 200
    names = set()
    suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"]}
    for family in text_string_to_metric_families(answer.text):
        names.update(family.name + s for s in suffixes.get(family.type, [""]))
    return names


def test_prometheus_scrapes_the_api_with_a_viewer_token() -> None:
    prometheus = SERVICES["prometheus"]
    config = yaml.safe_load(
        _in_container("prometheus", "/etc/prometheus/prometheus.yml").read_text()
    )
    (job,) = config["scrape_configs"]
    assert job["metrics_path"] == "/metrics"
    port = SERVICES["api"]["ports"][0].split(":")[1]
    assert job["static_configs"][0]["targets"] == [f"api:{port}"]
    token_file = job["authorization"]["credentials_file"]
    assert f"> {token_file}" in prometheus["command"][0]
    assert (
        prometheus["environment"]["SCRAPE_TOKEN"]
        == "${HEXFLEET_VIEWER_TOKEN:?set HEXFLEET_VIEWER_TOKEN}"
    )


def test_grafana_provisions_the_prometheus_source_and_the_dashboard() -> None:
    provisioning = "/etc/grafana/provisioning"
    sources = yaml.safe_load(
        _in_container("grafana", f"{provisioning}/datasources/prometheus.yml").read_text()
    )
    (source,) = sources["datasources"]
    assert (
        source["url"] == "http://prometheus:9090" and "9090:9090" in SERVICES["prometheus"]["ports"]
    )
    providers = yaml.safe_load(
        _in_container("grafana", f"{provisioning}/dashboards/hexfleet.yml").read_text()
    )
    folder = _in_container("grafana", providers["providers"][0]["options"]["path"])
    dashboards = sorted(folder.glob("*.json"))
    assert [d.name for d in dashboards] == ["hexfleet.json"]
    dashboard = json.loads(dashboards[0].read_text())
    assert dashboard["panels"]
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == source["uid"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == source["uid"], panel["title"]


def test_every_dashboard_query_names_a_metric_that_metrics_exports() -> None:
    exported = _exported_metric_names()
    dashboard = json.loads(
        (ROOT / "deploy" / "grafana" / "dashboards" / "hexfleet.json").read_text()
    )
    used = set()
    for panel in dashboard["panels"]:
        assert panel["targets"], f"panel {panel['title']!r} has no query"
        for target in panel["targets"]:
            names = set(re.findall(r"\bhexfleet_[a-z0-9_]+", target["expr"]))
            assert names, f"panel {panel['title']!r} queries no hexfleet metric: {target['expr']}"
            assert names <= exported, f"{panel['title']!r} uses {names - exported}"
            used |= names
    # The list: phones by state, queue depths, runs by state and kind, latency
    # histograms, push bytes, cache hits, ingest lag — each on the dashboard.
    for name in (
        "hexfleet_phones",
        "hexfleet_queue_depth",
        "hexfleet_runs",
        "hexfleet_run_duration_seconds_bucket",
        "hexfleet_pushed_bytes_total",
        "hexfleet_cache_hit_files_total",
        "hexfleet_ingest_lag_seconds",
    ):
        assert name in used, name
