"""The production path: Redis as the broker, PostgreSQL as the database, two hosts (two adb
servers, two agents) — every run of a fan-out job lands exactly once.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from farm_support import Farm, build_farm, job_body
from waiting import wait_until

SUBMIT = "submit-secret"


@pytest.fixture(scope="module")
def production_farm(
    tmp_path_factory: pytest.TempPathFactory, module_redis_url: str, module_postgres_url: str
) -> Iterator[Farm]:
    overrides = {
        "HEXFLEET_DATABASE_URL": module_postgres_url,
        "HEXFLEET_BROKER_URL": module_redis_url,
        "HEXFLEET_SUBMIT_TOKENS": f'["{SUBMIT}"]',
        "HEXFLEET_VIEWER_TOKENS": '["viewer-secret"]',
        "HEXFLEET_API_TOKEN": SUBMIT,
    }
    farms = build_farm(tmp_path_factory.mktemp("prod"), overrides, ["sm8550", "sm8650"])
    farm = next(farms)
    try:
        farm.add_host("host-b", ["sm8750", "sm8450"])
        wait_until(lambda: len(farm.online_in_api()) == 4, 90, "both hosts' phones")
        yield farm
    finally:
        farms.close()


def test_every_run_lands_once_across_two_hosts(production_farm: Farm) -> None:
    farm = production_farm
    job = farm.post("/api/v1/jobs", job_body(repeat=3))
    done = farm.wait_for_job(job["id"], timeout=240)
    assert done["state"] == "succeeded", [r["error"] for r in done["runs"]]
    assert len(done["runs"]) == 12
    engine = sa.create_engine(str(farm.settings.resolved_database_url))
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT r.device_serial, count(DISTINCT r.id), count(i.id) FROM runs r "
            "JOIN images i ON i.run_id = r.id WHERE r.job_id = :job GROUP BY r.device_serial"
        ), {"job": job["id"]}).all()
        hosts = dict(conn.execute(sa.text(
            "SELECT host_id, count(*) FROM devices GROUP BY host_id")).all())
        dialect = conn.dialect.name
    engine.dispose()
    assert dialect == "postgresql"
    assert sorted((runs, images) for _, runs, images in rows) == [(3, 3)] * 4
    assert hosts == {"host-a": 2, "host-b": 2}
