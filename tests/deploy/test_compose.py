"""docker-compose.yml is a valid Compose file that deploys what the README says it deploys.

No Docker engine runs here, so the file is validated, not run: parsed by the compose-spec parser
(spec-compliant), then checked for what matters to hexfleet.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from compose_spec import PyCompose

from hexfleet.settings import Settings
from orchestrator.cli import app

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]


def test_the_compose_spec_parser_accepts_it() -> None:
    parsed = PyCompose.from_json(json.dumps(COMPOSE))
    assert set(parsed.service_names()) == {"redis", "postgres", "api", "ingest", "agent", "flower"}


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
            if not source.startswith("/"):
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
