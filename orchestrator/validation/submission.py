"""Submitting a validation: the request body, the inputs every phone gets (fixed prompts and
seed, or held-out activations of one component), launched through `jobs.launch` like any job."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator
from sqlalchemy.orm import Session

from hexfleet.broker import device_queue
from hexfleet.errors import Conflict
from hexfleet.manifest import Manifest
from hexfleet.models.evaluate import held_out_prompts
from hexfleet.models.store import ModelStore
from hexfleet.orchestrator.db.schema import Job, ValidationBlob
from hexfleet.orchestrator.jobs import (
    Dispatcher,
    ModelName,
    Placement,
    Precision,
    find_model,
    launch,
    online_devices,
)
from hexfleet.orchestrator.runners import check_abis
from hexfleet.orchestrator.scheduler import plan_runs
from hexfleet.orchestrator.selectors import SelectorText, parse_selector
from hexfleet.orchestrator.validation.reference import CPU_FP32, fp32_manifest, golden_serial
from hexfleet.orchestrator.validation.storage import to_npy
from hexfleet.runner_spec import (
    Component,
    GenerateParams,
    InferParams,
    Prompt,
    Runtime,
    Scheduler,
)
from hexfleet.states import JobKind

RECORDING_STEPS = 2  # denoising steps per prompt when recording held-out component inputs
Reference = Annotated[
    str, StringConstraints(pattern=r"^(cpu-fp32|serial=[A-Za-z0-9._:\-]{1,128})$")
]


class ValidationRequest(BaseModel):
    """The body of a validation submission (POST /api/v1/validations)."""

    # Prompts (images) or inputs (tensors), not both: the schema says so too.
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "not": {
                "required": ["prompts", "inputs"],
                "properties": {"prompts": {"type": "array"}, "inputs": {"type": "integer"}},
            }
        },
    )

    version: Literal[1] = 1
    model: ModelName
    precision: Precision = "w8a16"
    selector: SelectorText = "all"
    reference: Reference = CPU_FP32
    prompts: list[Prompt] | None = Field(default=None, min_length=1, max_length=16)
    prompt_count: int = Field(default=8, ge=1, le=16)
    inputs: int | None = Field(default=None, ge=1, le=64)
    component: Component = "unet"
    seed: int = Field(default=0, ge=0, lt=2**32)
    steps: int | None = Field(default=None, ge=1, le=150)
    guidance: float | None = Field(default=None, ge=0, le=30)
    scheduler: Scheduler | None = None
    runtime: Runtime = "htp"
    priority: int = Field(default=5, ge=0, le=9)
    deadline_s: float = Field(default=600, gt=0, le=6 * 3600)

    @model_validator(mode="after")
    def _one_mode(self) -> ValidationRequest:
        if self.prompts is not None and self.inputs is not None:
            raise ValueError("give prompts (images) or inputs (tensors), not both")
        return self

    @property
    def mode(self) -> Literal["images", "tensors"]:
        return "tensors" if self.inputs is not None else "images"

    @property
    def reference_serial(self) -> str | None:
        return golden_serial(self.reference)


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
        unique.setdefault(b"".join(to_npy(v) for v in feed.values()), feed)
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
            raise Conflict(f"words not in the {manifest.name} vocabulary: {words}")


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


def _run_inputs(
    request: ValidationRequest, manifest: Manifest, store: ModelStore
) -> tuple[str, list[dict[str, Any]], list[dict[str, bytes]], dict[str, Any]]:
    """What each phone runs: the runner kind, one parameter set and its tensors per run, and
    what the job's spec records of them."""
    if request.mode == "images":
        generate = _generate_params(request, manifest, store)
        detail = {
            "prompts": generate.prompts,
            "steps": generate.steps,
            "guidance": generate.guidance,
            "scheduler": generate.scheduler,
        }
        return "generate", [generate.model_dump(mode="json")], [{}], detail
    feeds = held_out_inputs(store, manifest, request.component, request.inputs or 1, request.seed)
    tensors = [{name: to_npy(value) for name, value in feed.items()} for feed in feeds]
    params = [
        InferParams(
            component=request.component, runtime=request.runtime, inputs=list(feed)
        ).model_dump(mode="json")
        for feed in feeds
    ]
    return "infer", params, tensors, {"input_names": list(feeds[0]), "input_count": len(feeds)}


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
    devices = online_devices(session)
    serials = [p.serial for p in plan_runs(selector, devices) if p.serial]
    check_abis(session, (str(d["abi"]) for d in devices if d["serial"] in serials))
    golden = request.reference_serial
    if golden is not None and golden not in serials:
        raise Conflict(
            f"the reference phone {golden} is not among the selected online phones "
            f"({', '.join(serials)})"
        )
    if golden is None:
        fp32_manifest(store, manifest)  # refuse now, not after the runs, if there is none
    kind, params, tensors, detail = _run_inputs(request, manifest, store)
    job = Job(
        id=str(uuid.uuid4()),
        kind=JobKind.VALIDATE,
        selector=str(selector),
        priority=request.priority,
        submitted_by=submitted_by,
        spec={
            **request.model_dump(mode="json"),
            "model_id": model.id,
            "mode": request.mode,
            "runs_per_phone": len(params),
            **detail,
        },
    )
    # Every phone runs every input, on its own queue: slot = phone index x inputs + input index.
    placements = [
        Placement(
            index * len(params) + k, device_queue(serial), serial, kind, params[k], tensors[k]
        )
        for index, serial in enumerate(serials)
        for k in range(len(params))
    ]
    inputs = [
        ValidationBlob(job_id=job.id, name=f"input-{k}/{name}", data=data)
        for k, feed in enumerate(tensors)
        for name, data in feed.items()
    ]
    return launch(
        session, job, model, placements, dispatcher, deadline_s=request.deadline_s, attached=inputs
    )
