"""The dashboard's pages over a populated database: login by token, what each page shows, and
that nothing changes state without a submitter's token and the form's CSRF value."""

from __future__ import annotations

import datetime as dt
import io
import json
import re

from dashboard_support import PHONES, PROMPT, SUBMITTER, VIEWER, Populated, png, populated
from PIL import Image as PILImage
from sqlalchemy.orm import Session

from hexfleet.broker import make_celery
from hexfleet.messages import ImageOut, RunResult
from hexfleet.models.store import ModelStore
from hexfleet.orchestrator.db.engine import make_engine
from hexfleet.orchestrator.dispatch import CeleryDispatcher
from hexfleet.orchestrator.validation.submission import ValidationRequest, submit_validation
from hexfleet.orchestrator.web.session import COOKIE
from hexfleet.orchestrator.worker import ingest_result_and_report

__all__ = ["populated"]


def test_pages_need_a_token_and_a_token_in_the_url_becomes_a_cookie(populated: Populated) -> None:
    client = populated.client
    for path in ("/ui/fleet", "/ui/jobs", f"/ui/jobs/{populated.generate_id}", "/ui/benchmarks"):
        page = client.get(path)
        assert page.status_code == 401 and 'name="token"' in page.text, path
    assert client.get("/ui/fleet/rows").status_code == 401
    assert client.get("/ui/fleet?token=wrong").status_code == 401
    answer = client.get("/ui/jobs?state=succeeded&token=" + VIEWER, follow_redirects=False)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/ui/jobs?state=succeeded"  # the token leaves the URL
    cookie = answer.headers["set-cookie"]
    assert f"{COOKIE}={VIEWER}" in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie
    assert client.get("/ui/fleet").status_code == 200


def test_the_login_form_sets_the_cookie_and_refuses_a_bad_token(populated: Populated) -> None:
    client = populated.client
    bad = client.post("/ui/login", data={"token": "nope", "next": "/ui/jobs"})
    assert bad.status_code == 401 and "not valid" in bad.text
    good = client.post(
        "/ui/login", data={"token": VIEWER, "next": "https://evil.example/"}, follow_redirects=False
    )
    assert good.status_code == 303 and good.headers["location"] == "/ui/fleet"  # no open redirect
    assert client.get("/ui/jobs").status_code == 200


def test_fleet_has_a_row_per_phone_with_its_facts(populated: Populated) -> None:
    populated.login(VIEWER)
    rows = populated.client.get("/ui/fleet/rows").text
    for serial, soc, arch in PHONES:
        row = re.search(
            rf'<tr class="phone" data-serial="{serial}" data-state="(\w+)">(.*?)</tr>', rows, re.S
        )
        assert row is not None, serial
        assert row.group(1) == "idle"
        assert soc in row.group(2) and f"v{arch}" in row.group(2) and "80 %" in row.group(2)
        assert "36.5 °C" in row.group(2) and "host-a" in row.group(2)
    page = populated.client.get("/ui/fleet").text
    assert 'data-refresh="/ui/fleet/rows"' in page and "/ui/static/dashboard.js" in page


def test_jobs_filter_by_state_and_kind_and_refuse_unknown_values(populated: Populated) -> None:
    populated.login(VIEWER)
    client = populated.client
    everything = client.get("/ui/jobs").text
    assert everything.count('<tr class="job"') == 4
    benchmarks = client.get("/ui/jobs/rows?kind=benchmark").text
    assert benchmarks.count('<tr class="job"') == 2
    assert set(re.findall(r'data-job="([^"]+)"', benchmarks)) == set(populated.benchmark_ids)
    queued = client.get("/ui/jobs?state=queued").text
    assert re.findall(r'data-job="([^"]+)"', queued) == [populated.queued_id]
    refused = client.get("/ui/jobs?state=';drop table jobs")
    assert refused.status_code == 400 and "state must be one of" in refused.text
    assert client.get("/ui/jobs?limit=0").status_code == 400


def test_a_job_page_shows_runs_gallery_and_component_timings(populated: Populated) -> None:
    populated.login(VIEWER)
    client = populated.client
    page = client.get(f"/ui/jobs/{populated.generate_id}").text
    assert page.count('<tr class="run"') == 3
    assert "simulated timings" in page
    for column in ("load", "text encoder", "UNet (all steps)", "VAE decoder", "total", "pushed"):
        assert f"<th>{column}</th>" in page
    assert "0.60 s" in page  # the UNet's three 0.2 s steps
    assert page.count("2.0.0 x86_64 <code>bbbbbbbbbbbb</code>") == 3  # the runner behind each run
    images = re.findall(r'<img src="(/ui/images/\d+)"', page)
    assert len(images) == 3
    for url in images:
        answer = client.get(url)
        assert answer.headers["content-type"] == "image/png"
        with PILImage.open(io.BytesIO(answer.content)) as decoded:
            assert decoded.size == (32, 32)
    assert PROMPT in page
    assert "data-refresh" not in page  # a finished job does not poll
    live = client.get(f"/ui/jobs/{populated.generate_id}/live")
    assert live.headers["X-Hexfleet-Final"] == "1"
    assert client.get("/ui/jobs/not-a-uuid").status_code == 400
    assert client.get("/ui/jobs/00000000-0000-0000-0000-000000000000").status_code == 404


def test_user_text_is_escaped(populated: Populated) -> None:
    populated.login(VIEWER)
    page = populated.client.get(f"/ui/jobs/{populated.queued_id}").text
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_a_viewer_cannot_cancel_and_a_submitter_needs_the_csrf_value(populated: Populated) -> None:
    client = populated.client
    job = f"/ui/jobs/{populated.queued_id}"
    populated.login(VIEWER)
    page = client.get(job).text
    assert 'id="cancel"' not in page  # no button for a viewer
    csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', page).group(1)  # the logout form's
    assert client.post(f"{job}/cancel", data={"csrf": csrf}).status_code == 403
    populated.login(SUBMITTER)
    page = client.get(job).text
    assert 'id="cancel"' in page
    csrf = re.search(r'id="cancel">\s*<input type="hidden" name="csrf" value="([0-9a-f]+)"', page)
    assert client.post(f"{job}/cancel", data={"csrf": "0" * 64}).status_code == 400
    assert client.post(f"{job}/cancel").status_code == 400
    assert 'id="job-state">queued' in client.get(job).text
    done = client.post(f"{job}/cancel", data={"csrf": csrf.group(1)}, follow_redirects=False)
    assert done.status_code == 303
    assert 'id="job-state">cancelled' in client.get(job).text


def test_benchmarks_chart_data_per_phone_and_across_jobs(populated: Populated) -> None:
    populated.login(VIEWER)
    page = populated.client.get("/ui/benchmarks").text
    assert 'id="simulated-banner"' in page and "(simulated)" in page
    assert "/ui/static/chart.umd.min.js" in page
    data = json.loads(
        re.search(
            r'<script type="application/json" id="bench-data">(.*?)</script>', page, re.S
        ).group(1)
    )
    assert [len(d["iterations_ms"]) for d in data["distribution"]] == [5, 5, 5]
    assert len(data["over_time"]["labels"]) == 2
    assert all(
        len(s["p50_ms"]) == 2 and None not in s["p50_ms"] for s in data["over_time"]["series"]
    )
    assert populated.client.get("/ui/benchmarks?model=nope").status_code == 400


def test_static_files_are_served_locally(populated: Populated) -> None:
    chart = populated.client.get("/ui/static/chart.umd.min.js")
    assert chart.status_code == 200 and "Chart.js v4" in chart.text[:200]
    assert populated.client.get("/ui/static/dashboard.js").status_code == 200


def _validation_job(populated: Populated) -> str:
    """A real validation job (orchestrator.validation) on the three phones, their results stored
    by the ingest worker's write (which stores the verdicts with the last one): vp-1 and vp-2
    return the same images, vp-3 other ones. None matches the host's FP32 reference (these are
    flat colours, not the model's images), so every verdict fails while the phones' agreement
    with each other still shows vp-3 as the odd one."""
    engine = make_engine(populated.settings.resolved_database_url)
    request = ValidationRequest(
        model="tiny-sd", precision="fp32", prompt_count=2, steps=2, runtime="cpu"
    )
    store = ModelStore.from_settings(populated.settings)
    dispatcher = CeleryDispatcher(make_celery(populated.settings))
    now = dt.datetime.now(dt.UTC)
    with Session(engine) as session:
        job = submit_validation(session, request, dispatcher, "qa", store)
        for run in job.runs:
            odd = run.device_serial == "vp-3"
            colour = (200, 90 if odd else 20, 40)
            images = [  # the synthetic tiny-sd's reference images are 16x16
                ImageOut(index=i, prompt=f"prompt {i}", seed=i, png=png(colour, 16)) for i in (0, 1)
            ]
            ingest_result_and_report(
                session,
                RunResult(
                    run_id=run.id,
                    attempt=1,
                    serial=run.device_serial or "",
                    host="host-a",
                    outcome="succeeded",
                    simulated=True,
                    images=images,
                    started_at=now,
                    finished_at=now,
                ),
                None,
                store,
            )
            session.commit()
        job_id = job.id
    engine.dispose()
    return job_id


def test_validation_shows_verdicts_and_the_agreement_matrix(populated: Populated) -> None:
    job_id = _validation_job(populated)
    populated.login(VIEWER)
    page = populated.client.get(f"/ui/validation/{job_id}").text
    verdicts = dict(re.findall(r'data-serial="([^"]+)" data-passed="(\w+)"', page))
    assert verdicts == {"vp-1": "false", "vp-2": "false", "vp-3": "false"}
    assert 'id="overall"' in page and "cpu-fp32" in page
    matrix = page[page.index('id="agreement"') : page.index('id="outputs"')]
    # vp-1 and vp-2 agree both ways; every pair with vp-3 differs.
    assert matrix.count('class="pass"') == 2 and matrix.count('class="fail"') == 4
    assert "outlier" in page[: page.index('id="agreement"')]
    outputs = page[page.index('id="outputs"') :]
    assert "image-0" in outputs and "image-1" in outputs and 'class="pass"' not in outputs
    listing = populated.client.get("/ui/validation").text
    assert re.findall(r'<tr class="validation" data-job="([^"]+)"', listing) == [job_id]
    assert re.search(rf'data-job="{job_id}">.*?<td class="num">3</td>', listing, re.S)
    refused = populated.client.get(f"/ui/validation/{populated.generate_id}")
    assert refused.status_code == 400 and "not a validation" in refused.text
