"""Cross-device validation: the same inputs on every selected phone, compared with a reference.

A validation job (kind `validate`) fans out `generate` runs (fixed prompts, fixed seed) or `infer`
runs (held-out activations of one component) to every selected phone. Once its runs have settled,
the first read of its report compares each phone with the reference (FP32 on this host's CPU EP,
or a named golden phone) and with every other phone, and stores the verdicts in
`validation_results`; later reads come from the database.
"""

from __future__ import annotations

import base64
import io
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Annotated, Any, Literal

import numpy as np
from PIL import Image as PILImage
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from hexfleet.broker import device_queue
from hexfleet.errors import InvalidRequest, NotFound
from hexfleet.manifest import Manifest, Thresholds
from hexfleet.messages import RunTask
from hexfleet.models import similarity
from hexfleet.models.evaluate import held_out_prompts
from hexfleet.models.store import ModelStore
from hexfleet.orchestrator.db.schema import Job, Model, Run, ValidationBlob, ValidationResult
from hexfleet.orchestrator.jobs import (
    Dispatcher,
    ModelName,
    Precision,
    find_model,
    for_device,
    get_job,
    online_devices,
)
from hexfleet.orchestrator.scheduler import plan_runs
from hexfleet.orchestrator.selectors import MAX_LENGTH, parse_selector
from hexfleet.runner_spec import Component, GenerateParams, InferParams, Runtime
from hexfleet.states import FINAL_JOB_STATES, JobKind, RunState

CPU_FP32 = "cpu-fp32"
PHONE_ROW = "phone"  # validation_results.output of a phone's overall verdict
RECORDING_STEPS = 2  # denoising steps per prompt when recording held-out component inputs
Reference = Annotated[
    str, StringConstraints(pattern=r"^(cpu-fp32|serial=[A-Za-z0-9._:\-]{1,128})$")
]


class ValidationRequest(BaseModel):
    """The body of a validation submission (POST /api/v1/validations)."""

    model_config = ConfigDict(extra="forbid")

    version: Literal[1] = 1
    model: ModelName
    precision: Precision = "w8a16"
    selector: Annotated[str, StringConstraints(min_length=1, max_length=MAX_LENGTH)] = "all"
    reference: Reference = CPU_FP32
    prompts: list[str] | None = Field(default=None, min_length=1, max_length=16)
    prompt_count: int = Field(default=8, ge=1, le=16)
    inputs: int | None = Field(default=None, ge=1, le=64)
    component: Component = "unet"
    seed: int = Field(default=0, ge=0, lt=2**32)
    steps: int | None = Field(default=None, ge=1, le=150)
    guidance: float | None = Field(default=None, ge=0, le=30)
    scheduler: str | None = None
    runtime: Runtime = "htp"
    priority: int = Field(default=5, ge=0, le=9)
    deadline_s: float = Field(default=600, gt=0, le=6 * 3600)

    @model_validator(mode="after")
    def _one_mode(self) -> ValidationRequest:
        if self.prompts is not None and self.inputs is not None:
            raise ValueError("give prompts (images) or inputs (tensors), not both")
        # The runner's own parameter model checks prompts and the scheduler name.
        GenerateParams(prompts=self.prompts or ["x"], scheduler=self.scheduler)
        return self

    @property
    def mode(self) -> Literal["images", "tensors"]:
        return "tensors" if self.inputs is not None else "images"

    @property
    def reference_serial(self) -> str | None:
        return self.reference.removeprefix("serial=") if self.reference != CPU_FP32 else None


# submitting ----------------------------------------------------------------------------------


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def _from_npy(data: bytes) -> np.ndarray:
    return np.load(io.BytesIO(data), allow_pickle=False)


def fp32_manifest(store: ModelStore, manifest: Manifest) -> Manifest:
    """The FP32 variant of `manifest`'s model version: what the cpu-fp32 reference runs."""
    return store.load(manifest.name, manifest.version, "fp32")


def held_out_inputs(
    store: ModelStore, manifest: Manifest, component: str, count: int, seed: int
) -> list[dict[str, np.ndarray]]:
    """`count` real inputs of one component: recorded while the FP32 pipeline draws held-out
    prompts (seed + i) on this host's CPU, spread evenly over what was recorded."""
    from hexfleet.models.calibration import record_activations
    from hexfleet.models.pipeline import Pipeline

    fp32 = fp32_manifest(store, manifest)
    prompts, _ = held_out_prompts(fp32, min(count, 16))
    pipeline = Pipeline.from_manifest(fp32, store, "cpu", threads=1)
    recorded = record_activations(pipeline, prompts, steps=RECORDING_STEPS, seed=seed)
    unique: dict[bytes, dict[str, np.ndarray]] = {}
    for feed in recorded.feeds[component]:
        unique.setdefault(b"".join(_npy(v) for v in feed.values()), feed)
    feeds = list(unique.values())
    picks = np.linspace(0, len(feeds) - 1, min(count, len(feeds))).round().astype(int)
    return [feeds[i] for i in picks]


def _check_vocabulary(store: ModelStore, manifest: Manifest, prompts: list[str]) -> None:
    """Refuse a prompt the model cannot read now, rather than as a failed run on every phone."""
    from hexfleet.models.prompt_tokenizer import load_tokenizer

    tokenizer = load_tokenizer(manifest.tokenizer, store.file_paths(manifest.tokenizer.files))
    for prompt in prompts:
        unknown = tokenizer.unknown_words(prompt)
        if unknown:
            words = ", ".join(repr(w) for w in unknown)
            raise InvalidRequest(f"words not in the {manifest.name} vocabulary: {words}")


def _generate_params(
    request: ValidationRequest, manifest: Manifest, store: ModelStore
) -> GenerateParams:
    prompts = request.prompts or held_out_prompts(manifest, request.prompt_count)[0]
    _check_vocabulary(store, manifest, prompts)
    return GenerateParams(
        prompts=prompts,
        seed=request.seed,
        steps=request.steps or manifest.default_steps,
        guidance=manifest.default_guidance if request.guidance is None else request.guidance,
        scheduler=request.scheduler or manifest.default_scheduler,
        runtime=request.runtime,
    )


def submit_validation(
    session: Session,
    request: ValidationRequest,
    dispatcher: Dispatcher,
    submitted_by: str,
    store: ModelStore,
) -> Job:
    """Plan a validation job over the selected phones, store it with its inputs, dispatch it."""
    selector = parse_selector(request.selector)
    model = find_model(session, request.model, request.precision)
    manifest = Manifest.model_validate(model.manifest)
    serials = [p.serial for p in plan_runs(selector, online_devices(session)) if p.serial]
    golden = request.reference_serial
    if golden is not None and golden not in serials:
        raise InvalidRequest(
            f"the reference phone {golden} is not among the selected online phones "
            f"({', '.join(serials)})"
        )
    if golden is None:
        fp32_manifest(store, manifest)  # refuse now, not after the runs, if there is none
    job = Job(
        id=str(uuid.uuid4()),
        kind=JobKind.VALIDATE,
        selector=str(selector),
        priority=request.priority,
        submitted_by=submitted_by,
    )
    if request.mode == "images":
        generate = _generate_params(request, manifest, store)
        params = [generate.model_dump(mode="json")]
        tensors: list[dict[str, bytes]] = [{}]
        detail: dict[str, Any] = {
            "prompts": generate.prompts,
            "steps": generate.steps,
            "guidance": generate.guidance,
            "scheduler": generate.scheduler,
        }
    else:
        feeds = held_out_inputs(
            store, manifest, request.component, request.inputs or 1, request.seed
        )
        tensors = [{name: _npy(value) for name, value in feed.items()} for feed in feeds]
        infer = [
            InferParams(component=request.component, runtime=request.runtime, inputs=list(feed))
            for feed in feeds
        ]
        params = [p.model_dump(mode="json") for p in infer]
        detail = {"input_names": list(feeds[0]), "input_count": len(feeds)}
    job.spec = {
        **request.model_dump(mode="json"),
        "model_id": model.id,
        "mode": request.mode,
        "runs_per_phone": len(params),
        **detail,
    }
    session.add(job)
    session.flush()
    session.add_all(
        ValidationBlob(job_id=job.id, name=f"input-{k}/{name}", data=data)
        for k, feed in enumerate(tensors)
        for name, data in feed.items()
    )
    runs = [
        Run(
            id=str(uuid.uuid4()),
            job=job,
            slot=index * len(params) + k,
            queue=device_queue(serial),
            device_serial=serial,
            deadline_s=request.deadline_s,
            images=[],
        )
        for index, serial in enumerate(serials)
        for k in range(len(params))
    ]
    session.add_all(runs)
    session.commit()
    kind = "generate" if request.mode == "images" else "infer"
    for run in runs:
        variant = for_device(session, model, run.device_serial)
        k = run.slot % len(params)
        task = RunTask(
            run_id=run.id,
            job_id=job.id,
            attempt=run.attempt,
            kind=kind,
            model=f"{variant.name}/{variant.version}/{variant.variant}",
            manifest=variant.manifest,
            params=params[k],
            inputs=tensors[k],
            deadline_s=request.deadline_s,
        )
        dispatcher.send(task, run.queue, request.priority)
    return job


# the report ----------------------------------------------------------------------------------


@dataclass
class OutputScore:
    """One output of one phone against the reference's same output."""

    output: str
    passed: bool
    reason: str
    scores: dict[str, Any]


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


@dataclass
class _Outputs:
    """What one phone (or the host reference) produced, by output name."""

    images: dict[int, np.ndarray] = field(default_factory=dict)
    tensors: dict[str, np.ndarray] = field(default_factory=dict)


def _png_array(png: bytes) -> np.ndarray:
    with PILImage.open(io.BytesIO(png)) as image:
        return np.asarray(image.convert("RGB"))


def _phone_outputs(runs: Sequence[Run], runs_per_phone: int) -> _Outputs:
    outputs = _Outputs()
    for run in runs:
        for image in run.images:
            outputs.images[image.index] = _png_array(image.png)
        k = run.slot % runs_per_phone  # slot = phone index x runs per phone + input index
        for name, encoded in run.result.get("tensors", {}).items():
            outputs.tensors[f"input-{k}:{name}"] = _from_npy(base64.b64decode(encoded))
    return outputs


def _host_reference(session: Session, job: Job, manifest: Manifest, store: ModelStore) -> _Outputs:
    """The FP32 model on this host's CPU EP, on the job's prompts or inputs; stored as blobs on
    the first comparison, read back after."""
    stored = {
        b.name: b.data
        for b in session.scalars(
            select(ValidationBlob).where(
                ValidationBlob.job_id == job.id, ValidationBlob.name.startswith("reference/")
            )
        )
    }
    spec = job.spec
    outputs = _Outputs()
    fp32 = fp32_manifest(store, manifest)
    if spec["mode"] == "images":
        if not stored:
            from hexfleet.models.pipeline import Pipeline

            pipeline = Pipeline.from_manifest(fp32, store, "cpu", threads=1)
            for index, prompt in enumerate(spec["prompts"]):
                image = pipeline.generate(
                    prompt,
                    seed=spec["seed"],
                    steps=spec["steps"],
                    guidance=spec["guidance"],
                    scheduler=spec["scheduler"],
                ).image
                buffer = io.BytesIO()
                PILImage.fromarray(image, mode="RGB").save(buffer, format="PNG")
                stored[f"reference/image-{index}"] = buffer.getvalue()
            session.add_all(
                ValidationBlob(job_id=job.id, name=name, data=data) for name, data in stored.items()
            )
        for name, data in stored.items():
            outputs.images[int(name.rsplit("-", 1)[1])] = _png_array(data)
        return outputs
    if not stored:
        from hexfleet.models.runtime import open_session

        graph = open_session(
            store.component_path(fp32.components[spec["component"]]), "cpu", threads=1
        )
        for k in range(spec["input_count"]):
            feeds = {
                name: _from_npy(_blob(session, job, f"input-{k}/{name}"))
                for name in spec["input_names"]
            }
            for name, value in graph.run(feeds).items():
                stored[f"reference/input-{k}:{name}"] = _npy(value)
        session.add_all(
            ValidationBlob(job_id=job.id, name=name, data=data) for name, data in stored.items()
        )
    for name, data in stored.items():
        outputs.tensors[name.removeprefix("reference/")] = _from_npy(data)
    return outputs


def _blob(session: Session, job: Job, name: str) -> bytes:
    data = session.scalar(
        select(ValidationBlob.data).where(
            ValidationBlob.job_id == job.id, ValidationBlob.name == name
        )
    )
    if data is None:
        raise NotFound(f"validation job {job.id} has no stored {name}")
    return data


def _runs_by_phone(job: Job) -> dict[str, list[Run]]:
    """Each phone's runs (validation runs are never retried elsewhere: one attempt per slot)."""
    phones: dict[str, list[Run]] = {}
    for run in sorted(job.runs, key=lambda r: r.slot):
        phones.setdefault(run.device_serial or run.queue, []).append(run)
    return phones


def _mean(values: Sequence[float]) -> float | None:
    return float(np.mean(values)) if values else None


def _image_scores(image: np.ndarray, reference: np.ndarray) -> dict[str, Any]:
    return {
        "psnr_db": similarity.psnr(image, reference),
        "ssim": similarity.ssim(image, reference),
    }


def _tensor_scores(tensor: np.ndarray, reference: np.ndarray) -> dict[str, Any]:
    error = similarity.max_abs_error(tensor, reference)
    return {
        "psnr_db": similarity.tensor_psnr(tensor, reference),
        "cosine": similarity.cosine(tensor, reference),
        "max_abs_error": error,
        "rel_error": error / similarity.value_range(reference),
    }


def _image_checks(scores: dict[str, Any], limits: Thresholds) -> list[str]:
    out = []
    if limits.min_psnr_db is not None and scores["psnr_db"] < limits.min_psnr_db:
        out.append(f"PSNR {scores['psnr_db']:.1f} dB < {limits.min_psnr_db:g} dB")
    if limits.min_ssim is not None and scores["ssim"] < limits.min_ssim:
        out.append(f"SSIM {scores['ssim']:.3f} < {limits.min_ssim:g}")
    return out


def _tensor_checks(scores: dict[str, Any], limits: Thresholds) -> list[str]:
    out = []
    if limits.min_tensor_psnr_db is not None and scores["psnr_db"] < limits.min_tensor_psnr_db:
        out.append(f"PSNR {scores['psnr_db']:.1f} dB < {limits.min_tensor_psnr_db:g} dB")
    if limits.min_cosine is not None and scores["cosine"] < limits.min_cosine:
        out.append(f"cosine {scores['cosine']:.6f} < {limits.min_cosine:g}")
    if limits.max_rel_error is not None and scores["rel_error"] > limits.max_rel_error:
        out.append(f"max error {scores['rel_error']:.4f} of range > {limits.max_rel_error:g}")
    return out


def _summary(outputs: list[OutputScore], mode: str) -> dict[str, Any]:
    """Mean PSNR (as `models evaluate` judges), the worst SSIM/cosine, the largest error."""
    psnrs = [o.scores["psnr_db"] for o in outputs]
    summary: dict[str, Any] = {"psnr_db": _mean(psnrs), "min_psnr_db": min(psnrs, default=None)}
    if mode == "images":
        ssims = [o.scores["ssim"] for o in outputs]
        summary.update(ssim=_mean(ssims), min_ssim=min(ssims, default=None))
    else:
        summary.update(
            cosine=min((o.scores["cosine"] for o in outputs), default=None),
            max_abs_error=max((o.scores["max_abs_error"] for o in outputs), default=None),
            rel_error=max((o.scores["rel_error"] for o in outputs), default=None),
        )
    return summary


def _shape_mismatch(output: np.ndarray, reference: np.ndarray) -> str:
    """Why an output cannot be scored against its reference ('' when it can)."""
    if output.shape == reference.shape:
        return ""
    return f"shape {tuple(output.shape)} differs from the reference's {tuple(reference.shape)}"


def _compare(
    phone: _Outputs, reference: _Outputs, mode: str, limits: Thresholds
) -> tuple[list[OutputScore], dict[str, Any], list[str]]:
    """Per-output scores, the phone's summary, and the summary's failed checks."""
    outputs = []
    if mode == "images":
        for index in sorted(reference.images):
            if index not in phone.images:
                outputs.append(OutputScore(f"image-{index}", False, "missing", {}))
                continue
            mismatch = _shape_mismatch(phone.images[index], reference.images[index])
            if mismatch:
                outputs.append(OutputScore(f"image-{index}", False, mismatch, {}))
                continue
            scores = _image_scores(phone.images[index], reference.images[index])
            failures = _image_checks(scores, limits)
            outputs.append(OutputScore(f"image-{index}", not failures, "; ".join(failures), scores))
    else:
        for name in sorted(reference.tensors):
            if name not in phone.tensors:
                outputs.append(OutputScore(name, False, "missing", {}))
                continue
            mismatch = _shape_mismatch(phone.tensors[name], reference.tensors[name])
            if mismatch:
                outputs.append(OutputScore(name, False, mismatch, {}))
                continue
            scores = _tensor_scores(phone.tensors[name], reference.tensors[name])
            failures = _tensor_checks(scores, limits)
            outputs.append(OutputScore(name, not failures, "; ".join(failures), scores))
    present = [o for o in outputs if o.scores]
    summary = _summary(present, mode)
    missing = [o.output for o in outputs if not o.scores and o.reason == "missing"]
    failures = [f"missing outputs {', '.join(missing)}"] if missing else []
    failures += [
        f"{o.output}: {o.reason}" for o in outputs if not o.scores and o.reason != "missing"
    ]
    if present:
        checks = _image_checks if mode == "images" else _tensor_checks
        failures += [_aggregate_label(f, mode) for f in checks(summary, limits)]
    return outputs, summary, failures


def _aggregate_label(failure: str, mode: str) -> str:
    """Say which aggregate failed: PSNR and SSIM are means, cosine and error the worst."""
    if failure.startswith("PSNR") or mode == "images":
        return f"mean {failure}"
    return f"worst {failure}"


def _judged(images: dict[int, np.ndarray], scenes: list[Any]) -> list[bool | None]:
    from hexfleet.models.tiny_sd.judge import judge

    return [
        None if scene is None or i not in images else judge(images[i]) == scene
        for i, scene in enumerate(scenes)
    ]


def _scenes(manifest: Manifest, prompts: list[str]) -> list[Any]:
    """The world scene each prompt asks for (None for a prompt outside the judged world)."""
    if manifest.prompt_world != "tiny-sd":
        return [None] * len(prompts)
    from hexfleet.models.tiny_sd.world import parse_prompt

    scenes = []
    for prompt in prompts:
        try:
            scenes.append(parse_prompt(prompt))
        except InvalidRequest:
            scenes.append(None)
    return scenes


def _accuracy_check(
    correct: list[bool | None], reference_correct: int, limit: float | None
) -> tuple[dict[str, Any], list[str]]:
    """Prompt accuracy fails a phone when it is below the manifest's minimum *and* the phone drew
    fewer prompts right than the reference did: the model's own misses are not the phone's."""
    judged = [c for c in correct if c is not None]
    if not judged:
        return {}, []
    hits = sum(judged)
    scores = {
        "prompt_accuracy": hits / len(judged),
        "prompts_correct": hits,
        "prompts_judged": len(judged),
        "reference_prompts_correct": reference_correct,
    }
    if limit is not None and hits / len(judged) < limit and hits < reference_correct:
        return scores, [
            f"prompt accuracy {hits}/{len(judged)} < {limit:g} "
            f"(the reference drew {reference_correct}/{len(judged)})"
        ]
    return scores, []


def _pair(a: _Outputs, b: _Outputs, mode: str, limits: Thresholds) -> dict[str, Any]:
    """How well two phones agree: mean PSNR and the worse of SSIM / cosine, symmetric."""
    if mode == "images":
        common = sorted(
            i
            for i in set(a.images) & set(b.images)
            if not _shape_mismatch(a.images[i], b.images[i])
        )
        scores = [_image_scores(a.images[i], b.images[i]) for i in common]
        cell = {
            "psnr_db": _mean([s["psnr_db"] for s in scores]),
            "ssim": min((s["ssim"] for s in scores), default=None),
        }
    else:
        common = sorted(
            n
            for n in set(a.tensors) & set(b.tensors)
            if not _shape_mismatch(a.tensors[n], b.tensors[n])
        )
        scores = [
            s
            for n in common
            for s in (
                _tensor_scores(a.tensors[n], b.tensors[n]),
                _tensor_scores(b.tensors[n], a.tensors[n]),
            )
        ]
        cell = {
            "psnr_db": _mean([s["psnr_db"] for s in scores]),
            "cosine": min((s["cosine"] for s in scores), default=None),
            "rel_error": max((s["rel_error"] for s in scores), default=None),
        }
    checks = _image_checks if mode == "images" else _tensor_checks
    cell["agree"] = bool(common) and not checks(cell, limits)
    return cell


def consensus_outliers(
    serials: list[str], agree: dict[str, dict[str, bool]]
) -> tuple[list[str], str]:
    """Phones outside the one largest group of phones that agree with each other.

    Groups are the connected parts of the "agrees with" graph. Outliers are named only when one
    group of at least two phones is strictly the largest: two phones that disagree, or two
    groups of equal size, leave it to the reference to say which is right.
    """
    groups: list[set[str]] = []
    seen: set[str] = set()
    for start in serials:
        if start in seen:
            continue
        group, todo = set(), [start]
        while todo:
            serial = todo.pop()
            if serial in group:
                continue
            group.add(serial)
            todo.extend(o for o in serials if o not in group and agree[serial].get(o))
        seen |= group
        groups.append(group)
    sizes = sorted((len(g) for g in groups), reverse=True)
    if len(serials) < 2:
        return [], "one phone: nothing to compare it with"
    if len(groups) == 1:
        return [], f"all {len(serials)} phones agree"
    if sizes[0] < 2 or sizes[0] == sizes[1]:
        return [], "no majority of agreeing phones: the reference decides"
    largest = max(groups, key=len)
    outliers = sorted(set(serials) - largest)
    return (
        outliers,
        f"{len(largest)} of {len(serials)} phones agree; outliers: {', '.join(outliers)}",
    )


def _run_facts(runs: Sequence[Run]) -> dict[str, Any]:
    times = [r.timings.get("total_s") or r.timings.get("infer_s") for r in runs]
    return {
        "run_ids": [r.id for r in runs],
        "states": sorted({r.state for r in runs}),
        "simulated": any(bool(r.simulated) for r in runs),
        "seconds": sum(t for t in times if isinstance(t, int | float)) or None,
    }


def compute_report(session: Session, job: Job, store: ModelStore) -> None:
    """Compare every phone of a settled validation job and store the verdicts (not committed)."""
    spec = job.spec
    model = session.get(Model, spec["model_id"])
    if model is None:
        raise NotFound(f"the model of validation job {job.id} is no longer registered")
    manifest = Manifest.model_validate(model.manifest)
    limits = manifest.validation_thresholds()
    mode = spec["mode"]
    by_phone = _runs_by_phone(job)
    ok = {
        s: runs for s, runs in by_phone.items() if all(r.state == RunState.SUCCEEDED for r in runs)
    }
    produced = {s: _phone_outputs(runs, spec["runs_per_phone"]) for s, runs in ok.items()}
    golden = spec["reference"].removeprefix("serial=") if spec["reference"] != CPU_FP32 else None
    if golden is None:
        reference: _Outputs | None = _host_reference(session, job, manifest, store)
    else:
        reference = produced.get(golden)
    scenes = _scenes(manifest, spec.get("prompts") or []) if mode == "images" else []
    reference_correct = 0
    if reference is not None and scenes:
        reference_correct = sum(bool(c) for c in _judged(reference.images, scenes))
    serials = sorted(produced)
    cells = {
        a: {b: _pair(produced[a], produced[b], mode, limits) for b in serials if b != a}
        for a in serials
    }
    outliers, _ = consensus_outliers(
        serials, {a: {b: c["agree"] for b, c in row.items()} for a, row in cells.items()}
    )
    rows = []
    for serial, runs in sorted(by_phone.items()):
        facts = _run_facts(runs)
        base = {**facts, "agreement": cells.get(serial, {}), "outlier": serial in outliers}
        if serial not in produced:
            errors = sorted({r.error or r.state for r in runs if r.state != RunState.SUCCEEDED})
            reason = f"run {', '.join(facts['states'])}: {'; '.join(errors)}"
            rows.append(_row(job, serial, PHONE_ROW, spec["reference"], False, reason, base))
            continue
        if reference is None:
            reason = f"the reference phone {golden} produced nothing to compare with"
            rows.append(_row(job, serial, PHONE_ROW, spec["reference"], False, reason, base))
            continue
        outputs, summary, failures = _compare(produced[serial], reference, mode, limits)
        if scenes:
            judged = _judged(produced[serial].images, scenes)
            accuracy, missed = _accuracy_check(
                judged, reference_correct, limits.min_prompt_accuracy
            )
            summary.update(accuracy)
            failures += missed
            for output, correct in zip(outputs, judged, strict=False):
                output.scores["prompt_correct"] = correct
        if serial == golden:
            reason = "the reference phone"
        else:
            reason = "; ".join(failures) or _passed_reason(summary, mode)
        rows.append(
            _row(
                job, serial, PHONE_ROW, spec["reference"], not failures, reason, {**base, **summary}
            )
        )
        rows.extend(
            _row(job, serial, o.output, spec["reference"], o.passed, o.reason, o.scores)
            for o in outputs
        )
    session.add_all(rows)


def _passed_reason(summary: dict[str, Any], mode: str) -> str:
    parts = [f"mean PSNR {summary['psnr_db']:.1f} dB"]
    if mode == "images":
        parts.append(f"SSIM {summary['ssim']:.3f}")
        if "prompt_accuracy" in summary:
            parts.append(f"prompts {summary['prompts_correct']}/{summary['prompts_judged']}")
    else:
        parts.append(f"cosine {summary['cosine']:.6f}")
    return "passed: " + ", ".join(parts)


def _row(
    job: Job, serial: str, output: str, reference: str, passed: bool, reason: str, scores: dict
) -> ValidationResult:
    return ValidationResult(
        job_id=job.id,
        device_serial=serial,
        output=output,
        reference=reference,
        passed=passed,
        reason=reason,
        scores=_plain(scores),
    )


def _plain(value: Any) -> Any:
    """JSON-safe copy: numpy scalars to Python numbers."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _stored_rows(session: Session, job: Job) -> list[ValidationResult]:
    return list(
        session.scalars(
            select(ValidationResult)
            .where(ValidationResult.job_id == job.id)
            .order_by(ValidationResult.device_serial, ValidationResult.id)
        )
    )


IMAGE_THRESHOLDS = ("min_psnr_db", "min_ssim", "min_prompt_accuracy")
TENSOR_THRESHOLDS = ("min_tensor_psnr_db", "min_cosine", "max_rel_error")


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


def load_report(session: Session, job_id: str, store: ModelStore) -> ValidationReport:
    """A validation job's report: computed and stored on the first read after its runs settled,
    read back from validation_results afterwards. An unsettled job gives `complete=False`."""
    job = get_job(session, job_id)
    if job.kind != JobKind.VALIDATE:
        raise InvalidRequest(f"job {job_id} is a {job.kind} job, not a validation")
    model = session.get(Model, job.spec["model_id"])
    if model is None:
        raise NotFound(f"the model of validation job {job_id} is no longer registered")
    manifest = Manifest.model_validate(model.manifest)
    if job.state not in FINAL_JOB_STATES:
        return _pending(job, manifest)
    rows = _stored_rows(session, job)
    if not rows:
        try:
            compute_report(session, job, store)
            session.commit()
        except IntegrityError:
            session.rollback()  # another reader stored the same report first: read theirs
        rows = _stored_rows(session, job)
    return _from_rows(job, manifest, rows)


def _pending(job: Job, manifest: Manifest) -> ValidationReport:
    phones = [
        PhoneVerdict(serial, False, "runs not finished", _run_facts(runs))
        for serial, runs in sorted(_runs_by_phone(job).items())
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


def report_images(session: Session, job: Job) -> dict[str, dict[int, bytes]]:
    """PNG bytes of every image the report compares: by phone serial, and under "reference"."""
    images: dict[str, dict[int, bytes]] = {}
    for serial, runs in _runs_by_phone(job).items():
        for run in runs:
            for image in run.images:
                images.setdefault(serial, {})[image.index] = image.png
    golden = job.spec["reference"].removeprefix("serial=")
    if job.spec["reference"] == CPU_FP32:
        blobs = session.scalars(
            select(ValidationBlob).where(
                ValidationBlob.job_id == job.id, ValidationBlob.name.startswith("reference/image-")
            )
        )
        images["reference"] = {int(b.name.rsplit("-", 1)[1]): b.data for b in blobs}
    else:
        images["reference"] = images.get(golden, {})
    return images
