"""A validation's report: the verdicts of a settled job, computed once (by the ingest worker, when
the job's last run ends) and stored in `validation_results`; reading a report only reads.

`compute_report` compares every phone with the reference and with every other phone;
`store_report` adds its rows unless they exist; `load_report` builds what the API, the dashboard
and the CLI show, "pending" (`complete=False`) until the verdicts are stored.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Any

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from hexfleet.errors import Conflict, InvalidRequest, NotFound
from hexfleet.manifest import Manifest
from hexfleet.models.store import ModelStore
from hexfleet.orchestrator.db.schema import Base, Job, Model, Run, ValidationResult
from hexfleet.orchestrator.jobs import get_job
from hexfleet.orchestrator.validation.agreement import consensus_outliers, pair
from hexfleet.orchestrator.validation.outputs import (
    Outputs,
    phone_outputs,
    runs_by_phone,
    stored_runs,
)
from hexfleet.orchestrator.validation.reference import CPU_FP32, golden_serial, host_reference
from hexfleet.orchestrator.validation.scoring import (
    OutputScore,
    accuracy_check,
    compare,
    judge_prompts,
    passed_reason,
    prompt_scenes,
)
from hexfleet.orchestrator.validation.storage import (
    PHONE_ROW,
    REFERENCE_PREFIX,
    blobs,
    has_verdicts,
    stored_rows,
    verdict_row,
)
from hexfleet.states import FINAL_JOB_STATES, JobKind, RunState

IMAGE_THRESHOLDS = ("min_psnr_db", "min_ssim", "min_prompt_accuracy")
TENSOR_THRESHOLDS = ("min_tensor_psnr_db", "min_cosine", "max_rel_error")


@dataclass
class PhoneVerdict:
    """One phone: its run(s), its scores against the reference, its pass/fail and why."""

    serial: str
    passed: bool
    reason: str
    scores: dict[str, Any]
    outputs: list[OutputScore] = field(default_factory=list)


@dataclass
class ValidationReport:
    """What `hexfleet validate` prints and stores; `to_dict()` is the API's JSON body."""

    job_id: str
    state: str
    complete: bool
    model: str
    precision: str
    mode: str
    reference: str
    thresholds: dict[str, float]
    phones: list[PhoneVerdict]
    matrix: dict[str, dict[str, dict[str, Any]]]
    outliers: list[str]
    consensus: str
    prompts: list[str]
    simulated: bool

    @property
    def passed(self) -> bool:
        return self.complete and bool(self.phones) and all(p.passed for p in self.phones)

    @property
    def failed(self) -> list[PhoneVerdict]:
        return [p for p in self.phones if not p.passed]

    def to_dict(self) -> dict[str, Any]:
        body = asdict(self)
        body["version"] = 1
        body["passed"] = self.passed
        return body

    @classmethod
    def from_dict(cls, body: dict[str, Any]) -> ValidationReport:
        """The inverse of `to_dict` (what the CLI rebuilds from the API's JSON)."""
        fields = {k: v for k, v in body.items() if k not in ("version", "passed")}
        fields["phones"] = [
            PhoneVerdict(
                **{k: v for k, v in p.items() if k != "outputs"},
                outputs=[OutputScore(**o) for o in p.get("outputs", [])],
            )
            for p in body["phones"]
        ]
        return cls(**fields)


# computing (the worker) ----------------------------------------------------------------------


def _manifest(session: Session, job: Job) -> Manifest:
    model = session.get(Model, job.spec["model_id"])
    if model is None:
        raise NotFound(f"the model of validation job {job.id} is no longer registered")
    return Manifest.model_validate(model.manifest)


def _run_facts(runs: list[Run]) -> dict[str, Any]:
    times = [r.timings.get("total_s") or r.timings.get("infer_s") for r in runs]
    return {
        "run_ids": [r.id for r in runs],
        "states": sorted({r.state for r in runs}),
        "simulated": any(bool(r.simulated) for r in runs),
        "seconds": sum(t for t in times if isinstance(t, int | float)) or None,
    }


def compute_report(session: Session, job: Job, store: ModelStore) -> list[Base]:
    """Compare every phone of a settled validation job: the verdict rows, and the host
    reference's blobs when it was computed now. Nothing is added to the session (a failure
    half-way leaves it as it was)."""
    spec = job.spec
    manifest = _manifest(session, job)
    limits = manifest.validation_thresholds()
    mode = spec["mode"]
    by_phone = runs_by_phone(stored_runs(session, job))
    ok = {
        s: runs for s, runs in by_phone.items() if all(r.state == RunState.SUCCEEDED for r in runs)
    }
    produced = {s: phone_outputs(runs, spec["runs_per_phone"]) for s, runs in ok.items()}
    golden = golden_serial(spec["reference"])
    new_blobs: list[Base] = []
    reference: Outputs | None
    if golden is None:
        reference, computed = host_reference(session, job, manifest, store)
        new_blobs.extend(computed)
    else:
        reference = produced.get(golden)
    scenes = prompt_scenes(manifest, spec.get("prompts") or []) if mode == "images" else []
    reference_correct = 0
    if reference is not None and scenes:
        reference_correct = sum(bool(c) for c in judge_prompts(reference.images, scenes))
    serials = sorted(produced)
    cells = {
        a: {b: pair(produced[a], produced[b], mode, limits) for b in serials if b != a}
        for a in serials
    }
    outliers, _ = consensus_outliers(
        serials, {a: {b: c["agree"] for b, c in row.items()} for a, row in cells.items()}
    )
    rows: list[Base] = []
    for serial, runs in sorted(by_phone.items()):
        facts = _run_facts(runs)
        base = {**facts, "agreement": cells.get(serial, {}), "outlier": serial in outliers}
        row = partial(verdict_row, job.id, spec["reference"], serial)
        if serial not in produced:
            errors = sorted({r.error or r.state for r in runs if r.state != RunState.SUCCEEDED})
            reason = f"run {', '.join(facts['states'])}: {'; '.join(errors)}"
            rows.append(row(PHONE_ROW, False, reason, base))
            continue
        if reference is None:
            reason = f"the reference phone {golden} produced nothing to compare with"
            rows.append(row(PHONE_ROW, False, reason, base))
            continue
        outputs, summary, failures = compare(produced[serial], reference, mode, limits)
        if scenes:
            judged = judge_prompts(produced[serial].images, scenes)
            accuracy, missed = accuracy_check(judged, reference_correct, limits.min_prompt_accuracy)
            summary.update(accuracy)
            failures += missed
            for output, correct in zip(outputs, judged, strict=False):
                output.scores["prompt_correct"] = correct
        if serial == golden:
            reason = "the reference phone"
        else:
            reason = "; ".join(failures) or passed_reason(summary, mode)
        rows.append(row(PHONE_ROW, not failures, reason, {**base, **summary}))
        rows.extend(row(o.output, o.passed, o.reason, o.scores) for o in outputs)
    return new_blobs + rows


def store_report(session: Session, job: Job, store: ModelStore) -> bool:
    """Add a settled validation job's verdicts (not committed) unless they are stored already;
    True when they were added now. Called twice, the second call adds nothing."""
    if job.kind != JobKind.VALIDATE:
        raise InvalidRequest(f"job {job.id} is a {job.kind} job, not a validation")
    if job.state not in FINAL_JOB_STATES or has_verdicts(session, job.id):
        return False
    session.add_all(compute_report(session, job, store))
    return True


def unreported_jobs(session: Session) -> list[str]:
    """Settled validation jobs with no stored verdicts (cancelled ones, or ones whose
    comparison failed or was interrupted), oldest first."""
    return list(
        session.scalars(
            select(Job.id)
            .where(
                Job.kind == JobKind.VALIDATE,
                Job.state.in_(FINAL_JOB_STATES),
                ~exists().where(ValidationResult.job_id == Job.id),
            )
            .order_by(Job.created_at)
        )
    )


# reading (the API, the dashboard) ------------------------------------------------------------


def _shown_thresholds(manifest: Manifest, mode: str) -> dict[str, float]:
    """The thresholds that apply to this job's kind of output."""
    names = IMAGE_THRESHOLDS if mode == "images" else TENSOR_THRESHOLDS
    limits = manifest.validation_thresholds().model_dump(exclude_none=True)
    return {name: limits[name] for name in names if name in limits}


def _from_rows(job: Job, manifest: Manifest, rows: list[ValidationResult]) -> ValidationReport:
    spec = job.spec
    phones: dict[str, PhoneVerdict] = {}
    for row in rows:
        if row.output == PHONE_ROW:
            phones[row.device_serial] = PhoneVerdict(
                row.device_serial, row.passed, row.reason, dict(row.scores)
            )
    for row in rows:
        if row.output != PHONE_ROW and row.device_serial in phones:
            phones[row.device_serial].outputs.append(
                OutputScore(row.output, row.passed, row.reason, dict(row.scores))
            )
    matrix = {s: p.scores.get("agreement", {}) for s, p in phones.items()}
    serials = sorted(phones)
    _, consensus = consensus_outliers(
        [s for s in serials if matrix[s] or len(serials) == 1],
        {s: {o: c["agree"] for o, c in matrix[s].items()} for s in serials},
    )
    return ValidationReport(
        job_id=job.id,
        state=job.state,
        complete=True,
        model=f"{manifest.name}/{manifest.version}",
        precision=manifest.precision,
        mode=spec["mode"],
        reference=spec["reference"],
        thresholds=_shown_thresholds(manifest, spec["mode"]),
        phones=[phones[s] for s in serials],
        matrix=matrix,
        outliers=[s for s in serials if phones[s].scores.get("outlier")],
        consensus=consensus,
        prompts=list(spec.get("prompts") or []),
        simulated=any(p.scores.get("simulated") for p in phones.values()),
    )


def _pending(job: Job, manifest: Manifest, reason: str) -> ValidationReport:
    phones = [
        PhoneVerdict(serial, False, reason, _run_facts(runs))
        for serial, runs in sorted(runs_by_phone(job.runs).items())
    ]
    return ValidationReport(
        job_id=job.id,
        state=job.state,
        complete=False,
        model=f"{manifest.name}/{manifest.version}",
        precision=manifest.precision,
        mode=job.spec["mode"],
        reference=job.spec["reference"],
        thresholds=_shown_thresholds(manifest, job.spec["mode"]),
        phones=phones,
        matrix={},
        outliers=[],
        consensus="",
        prompts=list(job.spec.get("prompts") or []),
        simulated=any(p.scores.get("simulated") for p in phones),
    )


def load_report(session: Session, job_id: str) -> ValidationReport:
    """A validation job's report as stored; `complete=False` while its runs have not all ended
    or the worker has not stored its verdicts yet. Never computes anything."""
    job = get_job(session, job_id)
    if job.kind != JobKind.VALIDATE:
        raise Conflict(f"job {job_id} is a {job.kind} job, not a validation")
    manifest = _manifest(session, job)
    if job.state not in FINAL_JOB_STATES:
        return _pending(job, manifest, "runs not finished")
    rows = stored_rows(session, job.id)
    if not rows:
        return _pending(job, manifest, "verdicts not stored yet")
    return _from_rows(job, manifest, rows)


def report_images(session: Session, job: Job) -> dict[str, dict[int, bytes]]:
    """PNG bytes of every image the report compares: by phone serial, and under "reference"."""
    images: dict[str, dict[int, bytes]] = {}
    for serial, runs in runs_by_phone(job.runs).items():
        for run in runs:
            for image in run.images:
                images.setdefault(serial, {})[image.index] = image.png
    golden = golden_serial(job.spec["reference"])
    if job.spec["reference"] == CPU_FP32:
        stored = blobs(session, job.id, f"{REFERENCE_PREFIX}image-")
        images["reference"] = {int(n.rsplit("-", 1)[1]): d for n, d in stored.items()}
    else:
        images["reference"] = images.get(golden or "", {})
    return images


def number(value: Any, digits: int = 1, unit: str = "") -> str:
    """`value` with `digits` decimals and a unit, or "-" when it is not a number."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f"{value:.{digits}f}{unit}"
    return "-"


def prompts_summary(scores: dict[str, Any]) -> str:
    """Prompts drawn right, and how many the reference drew right."""
    if "prompts_correct" not in scores:
        return "-"
    n = scores["prompts_judged"]
    return f"{scores['prompts_correct']}/{n} (ref {scores['reference_prompts_correct']}/{n})"
