"""Cross-device validation from submit to stored verdicts: the orchestrator's side for real (jobs,
ingest, database, the FP32 reference on this host), phones played by the runner's own job code
in-process (a faulty one with the virtual phone's NPU fault), over several seeds."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session
from validation_support import RecordingDispatcher, play_phones

from hexfleet.errors import InvalidRequest
from hexfleet.models.store import ModelStore
from hexfleet.orchestrator.db.schema import Job, Run, ValidationBlob, ValidationResult
from hexfleet.orchestrator.jobs import retry_lost
from hexfleet.orchestrator.validation.agreement import consensus_outliers, pair
from hexfleet.orchestrator.validation.outputs import Outputs
from hexfleet.orchestrator.validation.report import load_report, store_report
from hexfleet.orchestrator.validation.scoring import compare
from hexfleet.orchestrator.validation.submission import ValidationRequest, submit_validation

FLEET = [("a", "SM8550", 73), ("b", "SM8650", 75), ("c", "SM8750", 79)]
FAULT = 0.05  # noise of 5 % of an output's spread: subtle, well below what breaks the image
AddFleet = Callable[[Session, list[tuple[str, str, int]]], None]


def validation(**overrides: object) -> ValidationRequest:
    body: dict[str, object] = {
        "model": "tiny-sd",
        "precision": "fp32",
        "prompt_count": 3,
        "steps": 2,
        "runtime": "cpu",
    }
    body.update(overrides)
    return ValidationRequest.model_validate(body)


@pytest.fixture
def fleet_session(
    db_engine: Engine, add_fleet: AddFleet, model_store: ModelStore
) -> Iterator[Session]:
    with Session(db_engine, expire_on_commit=False) as session:
        add_fleet(session, FLEET)
        yield session


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_faulty_npu_is_flagged_and_healthy_phones_pass(
    fleet_session: Session, model_store: ModelStore, tmp_path: Path, seed: int
) -> None:
    session, dispatcher = fleet_session, RecordingDispatcher()
    job = submit_validation(session, validation(seed=seed), dispatcher, "qa", model_store)
    assert job.kind == "validate" and len(dispatcher.sent) == 3
    assert {t.kind for t, _ in dispatcher.sent} == {"generate"}
    assert len({json.dumps(t.params, sort_keys=True) for t, _ in dispatcher.sent}) == 1
    play_phones(session, dispatcher, model_store, tmp_path, faulty={"b": FAULT})

    report = load_report(session, job.id)
    verdicts = {p.serial: p for p in report.phones}
    assert report.complete and not report.passed
    assert verdicts["a"].passed and verdicts["c"].passed, verdicts["a"].reason
    assert not verdicts["b"].passed
    assert "SSIM" in verdicts["b"].reason or "PSNR" in verdicts["b"].reason
    assert verdicts["a"].scores["psnr_db"] == 100.0  # FP32 on the CPU EP: the reference's bytes
    assert verdicts["b"].scores["psnr_db"] < report.thresholds["min_psnr_db"]
    assert report.outliers == ["b"]
    assert report.matrix["a"]["c"]["agree"] and not report.matrix["a"]["b"]["agree"]
    assert report.simulated is True
    assert len(verdicts["b"].outputs) == 3 and not any(o.passed for o in verdicts["b"].outputs)


def test_the_report_is_stored_once_and_read_back(
    fleet_session: Session, model_store: ModelStore, tmp_path: Path
) -> None:
    session, dispatcher = fleet_session, RecordingDispatcher()
    job = submit_validation(session, validation(), dispatcher, "qa", model_store)
    pending = load_report(session, job.id)
    assert not pending.complete and not pending.passed
    play_phones(session, dispatcher, model_store, tmp_path)
    first = load_report(session, job.id).to_dict()
    rows = session.scalar(
        select(func.count()).select_from(ValidationResult).where(ValidationResult.job_id == job.id)
    )
    assert rows == 3 * (1 + 3)  # a verdict row and one row per image, per phone
    references = session.scalars(
        select(ValidationBlob.name).where(ValidationBlob.job_id == job.id)
    ).all()
    assert sorted(references) == [f"reference/image-{i}" for i in range(3)]
    again = load_report(session, job.id).to_dict()
    assert again == first and first["passed"] is True
    # Computing again (a redelivered result, the worker's sweep) stores nothing twice.
    assert store_report(session, session.get_one(Job, job.id), model_store) is False
    session.commit()
    assert load_report(session, job.id).to_dict() == first
    assert rows == session.scalar(
        select(func.count()).select_from(ValidationResult).where(ValidationResult.job_id == job.id)
    )
    assert (
        len(session.scalars(select(ValidationBlob).where(ValidationBlob.job_id == job.id)).all())
        == 3
    )
    assert first["consensus"] == "all 3 phones agree"
    assert json.loads(json.dumps(first)) == first  # JSON-safe as stored and served


@pytest.mark.parametrize("seed", [0, 3])
def test_tensors_of_one_component_on_held_out_inputs(
    fleet_session: Session, model_store: ModelStore, tmp_path: Path, seed: int
) -> None:
    session, dispatcher = fleet_session, RecordingDispatcher()
    request = validation(inputs=3, component="unet", seed=seed, prompt_count=8)
    job = submit_validation(session, request, dispatcher, "qa", model_store)
    assert len(dispatcher.sent) == 9 and {t.kind for t, _ in dispatcher.sent} == {"infer"}
    sent_inputs = {json.dumps(sorted(t.inputs)) for t, _ in dispatcher.sent}
    assert sent_inputs == {json.dumps(["encoder_hidden_states", "sample", "timestep"])}
    play_phones(session, dispatcher, model_store, tmp_path, faulty={"c": FAULT})
    report = load_report(session, job.id)
    verdicts = {p.serial: p for p in report.phones}
    assert verdicts["a"].passed and verdicts["b"].passed
    assert not verdicts["c"].passed and report.outliers == ["c"]
    assert verdicts["c"].scores["cosine"] < report.thresholds["min_cosine"]
    assert {o.output for o in verdicts["a"].outputs} == {f"input-{k}:out_sample" for k in range(3)}


def test_a_golden_phone_as_the_reference(
    fleet_session: Session, model_store: ModelStore, tmp_path: Path
) -> None:
    session, dispatcher = fleet_session, RecordingDispatcher()
    with pytest.raises(InvalidRequest, match="not among the selected"):
        submit_validation(
            session,
            validation(reference="serial=a", selector="soc=SM8650"),
            dispatcher,
            "qa",
            model_store,
        )
    job = submit_validation(
        session, validation(reference="serial=a"), dispatcher, "qa", model_store
    )
    play_phones(session, dispatcher, model_store, tmp_path, faulty={"a": FAULT})
    report = load_report(session, job.id)
    verdicts = {p.serial: p for p in report.phones}
    # The golden phone is faulty: the others disagree with it, and the matrix shows who is odd.
    assert verdicts["a"].passed and verdicts["a"].reason == "the reference phone"
    assert not verdicts["b"].passed and not verdicts["c"].passed
    assert report.outliers == ["a"]
    assert not session.scalars(select(ValidationBlob).where(ValidationBlob.job_id == job.id)).all()


def test_requests_are_checked_before_anything_is_stored(
    fleet_session: Session, model_store: ModelStore
) -> None:
    with pytest.raises(ValidationError, match="not both"):
        validation(prompts=["a red circle on the left in a blue background"], inputs=2)
    with pytest.raises(ValidationError):
        validation(reference="serial=a; reboot")
    with pytest.raises(ValidationError):
        validation(prompts=["bad\x00prompt"])
    with pytest.raises(InvalidRequest, match="vocabulary"):
        submit_validation(
            fleet_session,
            validation(prompts=["a red circle; rm -rf /"]),
            RecordingDispatcher(),
            "qa",
            model_store,
        )
    assert fleet_session.scalar(select(func.count()).select_from(Job)) == 0


def test_a_lost_validation_run_is_not_retried_on_another_phone(
    fleet_session: Session, model_store: ModelStore
) -> None:
    session, dispatcher = fleet_session, RecordingDispatcher()
    job = submit_validation(session, validation(), dispatcher, "qa", model_store)
    run = session.scalars(select(Run).where(Run.job_id == job.id)).first()
    assert run is not None
    assert retry_lost(session, run, dispatcher) is None
    assert len(dispatcher.sent) == 3


def test_outliers_need_a_strict_majority() -> None:
    def agree(pairs: set[frozenset[str]], serials: list[str]) -> dict[str, dict[str, bool]]:
        return {a: {b: frozenset((a, b)) in pairs for b in serials if b != a} for a in serials}

    four = ["a", "b", "c", "d"]
    ok = {frozenset(p) for p in [("a", "b"), ("a", "c"), ("b", "c")]}
    assert consensus_outliers(four, agree(ok, four))[0] == ["d"]
    two_groups = {frozenset(("a", "b")), frozenset(("c", "d"))}
    assert consensus_outliers(four, agree(two_groups, four))[0] == []
    assert consensus_outliers(["a", "b"], agree(set(), ["a", "b"]))[0] == []
    everyone = {frozenset((a, b)) for a in four for b in four if a != b}
    assert consensus_outliers(four, agree(everyone, four)) == ([], "all 4 phones agree")
    # Two faulty phones disagree with each other too: both are outliers of the healthy pair.
    assert consensus_outliers(four, agree({frozenset(("a", "b"))}, four))[0] == ["c", "d"]


def test_a_healthy_fleet_passes_on_the_decoder_too(
    fleet_session: Session, model_store: ModelStore, tmp_path: Path
) -> None:
    session, dispatcher = fleet_session, RecordingDispatcher()
    request = validation(inputs=2, component="vae_decoder")
    job = submit_validation(session, request, dispatcher, "qa", model_store)
    play_phones(session, dispatcher, model_store, tmp_path)
    run = session.scalars(select(Run).where(Run.job_id == job.id)).first()
    assert run is not None
    (encoded,) = run.result["tensors"].values()
    assert base64.b64decode(encoded).startswith(b"\x93NUMPY")
    report = load_report(session, job.id)
    assert report.passed and report.consensus == "all 3 phones agree"


def test_an_output_of_the_wrong_shape_fails_its_phone_with_the_reason() -> None:
    """A phone returning a 32x32 image (or a reshaped tensor) fails; the report does not crash."""
    from hexfleet.manifest import Thresholds

    limits = Thresholds(min_psnr_db=25.0, min_ssim=0.9)
    reference = Outputs(images={0: np.zeros((64, 64, 3), np.uint8)})
    small = Outputs(images={0: np.zeros((32, 32, 3), np.uint8)})
    outputs, _summary, failures = compare(small, reference, "images", limits)
    assert not outputs[0].passed and "(32, 32, 3)" in outputs[0].reason
    assert failures == ["image-0: shape (32, 32, 3) differs from the reference's (64, 64, 3)"]
    assert pair(small, reference, "images", limits)["agree"] is False
    tensors = Outputs(tensors={"out": np.zeros((2, 4), np.float32)})
    flat = Outputs(tensors={"out": np.zeros(8, np.float32)})
    outputs, _summary, failures = compare(flat, tensors, "tensors", limits)
    assert not outputs[0].passed and failures[0].startswith("out: shape (8,)")
