"""The runner's contract as data: the job spec it reads and the result.json it writes (v2).

runner/CONTRACT.md describes the same thing for the native runner. The per-kind request models
(GenerateParams, ...) are what the orchestrator validates user requests with; the host turns them
into a job folder (models/job_folder.py).
"""

from __future__ import annotations

from typing import Annotated, Literal, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    WithJsonSchema,
)

from hexfleet.manifest import Component as ManifestComponent

MAX_PROMPT_CHARS = 1000
DEVICE_ROOT_DIR = "/data/local/tmp/hexfleet"
CACHE_DIR = f"{DEVICE_ROOT_DIR}/cache"
JOBS_DIR = f"{DEVICE_ROOT_DIR}/jobs"
# One folder per runner bundle, named by the bundle's sha256, holding its files by name.
RUNNERS_DIR = f"{DEVICE_ROOT_DIR}/runners"
# The samplers a spec may name; hexfleet.models.schedulers implements exactly these.
SchedulerName = Literal["ddim", "euler", "dpm++2m"]
SCHEDULER_NAMES: tuple[str, ...] = get_args(SchedulerName)
Runtime = Literal["htp", "cpu"]
Component = Literal["text_encoder", "unet", "vae_decoder"]
TensorName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.:/\-]{1,128}$")]


# Spaces, tabs and newlines around a prompt are dropped; nothing else counts as blank.
BLANK = " \t\n"
# What check_prompt accepts, as the API's schema says it: something besides blanks, and no
# control character but tab and newline (at most MAX_PROMPT_CHARS characters in all).
PROMPT_PATTERN = r"^[\t\n ]*[^\x00-\x20\x7f][^\x00-\x08\x0b-\x1f\x7f]*$"
TEXT_PATTERN = r"^[^\x00-\x08\x0b-\x1f\x7f]*$"


def check_prompt(text: str) -> str:
    """A prompt is 1–1000 characters of text, no control characters but tab and newline."""
    if len(text) > MAX_PROMPT_CHARS:
        raise ValueError(f"a prompt must be at most {MAX_PROMPT_CHARS} characters")
    if any((ord(c) < 32 and c not in "\t\n") or c == "\x7f" for c in text):
        raise ValueError("a prompt must not contain control characters")
    stripped = text.strip(BLANK)
    if not stripped:
        raise ValueError("a prompt must not be empty")
    return stripped


def _check_negative(text: str) -> str:
    return check_prompt(text) if text.strip(BLANK) else ""


def _check_scheduler(value: str) -> str:
    if value not in SCHEDULER_NAMES:
        names = ", ".join(SCHEDULER_NAMES)
        raise ValueError(f"unknown scheduler {value!r}; choose one of {names}")
    return value


# Checked by the functions above (their messages say what is wrong); the API's schema says the
# same with a pattern (tests/orchestrator/api/test_request_schemas.py holds the two equal).
Prompt = Annotated[
    str,
    AfterValidator(check_prompt),
    WithJsonSchema({"type": "string", "maxLength": MAX_PROMPT_CHARS, "pattern": PROMPT_PATTERN}),
]
NegativePrompt = Annotated[  # blank (no negative prompt) or a prompt
    str,
    AfterValidator(_check_negative),
    WithJsonSchema({"type": "string", "maxLength": MAX_PROMPT_CHARS, "pattern": TEXT_PATTERN}),
]
Scheduler = Annotated[
    str,
    AfterValidator(_check_scheduler),
    WithJsonSchema({"type": "string", "enum": list(SCHEDULER_NAMES)}),
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class GenerateParams(_Strict):
    kind: Literal["generate"] = "generate"
    prompts: list[Prompt] = Field(min_length=1, max_length=16)
    negative_prompt: NegativePrompt = ""
    seed: int = Field(default=0, ge=0, lt=2**32)
    steps: int | None = Field(default=None, ge=1, le=150)
    guidance: float | None = Field(default=None, ge=0, le=30)
    scheduler: Scheduler | None = None
    images_per_prompt: int = Field(default=1, ge=1, le=8)
    runtime: Runtime = "htp"


class BenchmarkParams(_Strict):
    kind: Literal["benchmark"] = "benchmark"
    component: Component = "unet"
    runtime: Runtime = "htp"
    warmup: int = Field(default=2, ge=0, le=100)
    iterations: int = Field(default=10, ge=1, le=10000)
    seed: int = Field(default=0, ge=0, lt=2**32)
    max_start_temp_c: float = Field(default=45.0, gt=0, le=100)


class InferParams(_Strict):
    """Inputs are .npy files the agent pushed into the job folder, named `<input>.npy`."""

    kind: Literal["infer"] = "infer"
    component: Component
    runtime: Runtime = "htp"
    inputs: list[TensorName] = Field(min_length=1, max_length=16)


Params = Annotated[GenerateParams | BenchmarkParams | InferParams, Field(discriminator="kind")]


class OutputFile(_Strict):
    name: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.\-]{1,128}$")]
    kind: Literal["image", "tensor"]
    index: int = 0
    prompt: str | None = None
    seed: int | None = None


# What the host computes once travels in the job folder (CONTRACT.md): token ids (tokens.npy),
# initial latents (latents.npy), the sampler as per-step linear coefficients, the benchmark's
# inputs. The phone program needs no tokenizer, no scheduler and no user text.

SPEC_VERSION_2 = 2
TOKENS_FILE = "tokens.npy"
LATENTS_FILE = "latents.npy"


def input_file(index: int) -> str:
    """The job folder's name for an infer or benchmark kind's input tensor `index`."""
    return f"input-{index}.npy"


class SamplerStep(_Strict):
    """One denoising step: the UNet sees `timestep` and the sample times `input_scale`; the next
    sample is `sample`·x + `output`·ε + `prev_sample`·x_prev + `prev_output`·ε_prev, evaluated in
    float64 left to right and rounded to float32 (ε: the guided prediction; *_prev: the previous
    step's, zero on the first)."""

    timestep: float
    input_scale: float = 1.0
    sample: float
    output: float
    prev_sample: float = 0.0
    prev_output: float = 0.0


class ImagePlan(_Strict):
    """Image i of a generate job: its prompt's row in tokens.npy (row 0 is the negative prompt)
    and its seed (informational: the latents already carry it)."""

    prompt_row: int = Field(ge=1)
    seed: int = Field(ge=0)


class GeneratePlan(_Strict):
    kind: Literal["generate"] = "generate"
    images: list[ImagePlan] = Field(min_length=1, max_length=128)
    guidance: float
    latent_scale: float = Field(gt=0)
    scheduler: str
    steps: list[SamplerStep] = Field(min_length=1, max_length=1000)


class BenchmarkPlan(_Strict):
    """The benchmark's inputs are tensors the host wrote (`input-<i>.npy`, named by `inputs`)."""

    kind: Literal["benchmark"] = "benchmark"
    component: Component
    warmup: int = Field(default=2, ge=0, le=100)
    iterations: int = Field(default=10, ge=1, le=10000)
    seed: int = Field(default=0, ge=0, lt=2**32)
    inputs: list[TensorName] = Field(min_length=1, max_length=16)
    max_start_temp_c: float = Field(default=45.0, gt=0, le=100)


class InferPlan(_Strict):
    kind: Literal["infer"] = "infer"
    component: Component
    inputs: list[TensorName] = Field(min_length=1, max_length=16)


PlanParams = Annotated[GeneratePlan | BenchmarkPlan | InferPlan, Field(discriminator="kind")]


class QnnLibraries(_Strict):
    """Where the QNN HTP EP comes from. `ep_library` (a device path) set: the plugin form
    (RegisterExecutionProviderLibrary); null: built into onnxruntime (Android's QNN package).
    `backend_path`: libQnnHtp.so (a device path), null: found by name by the loader."""

    ep_library: str | None = None
    backend_path: str | None = None


class RunnerSpecV2(_Strict):
    """spec.json, contract version 2."""

    version: Literal[2] = SPEC_VERSION_2
    run_id: Annotated[str, StringConstraints(pattern=r"^[0-9a-f\-]{36}$")]
    model: str = ""
    runtime: Runtime = "htp"
    htp_arch: str | None = None
    allow_cpu_fallback: bool = False
    qnn: QnnLibraries | None = None
    cache_dir: str = CACHE_DIR
    components: dict[Component, ManifestComponent]
    params: PlanParams


class RunnerResultV2(_Strict):
    """result.json, contract version 2: image outputs carry no prompt text (the host maps their
    index back), and `runner` names the program that produced it."""

    version: Literal[2] = SPEC_VERSION_2
    run_id: str
    kind: str
    runtime: Runtime
    htp_arch: str | None
    simulated: bool
    timings: dict[str, object]
    metrics: dict[str, object] = {}
    outputs: list[OutputFile] = []
    runner: str | None = None
