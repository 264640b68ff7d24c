"""A model version as data: its files by sha256, their I/O, and how to sample and judge it.

One manifest per (name, version, precision, htp_arch); it crosses process and host boundaries
(store → runner → device), so it is a versioned pydantic model.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
)

from hexfleet.errors import InvalidRequest, ModelError

Precision = Literal["fp32", "w8a8", "w8a16"]
Role = Literal["text_encoder", "unet", "vae_decoder"]
PRECISIONS: tuple[str, ...] = ("fp32", "w8a8", "w8a16")
ROLES: tuple[Role, ...] = ("text_encoder", "unet", "vae_decoder")
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}\Z")
SHA256_PATTERN = re.compile(r"^[0-9a-f]{64}\Z")
# A file name: no folder part, not . or .., no control character, at most 255 characters.
_NAME_CHAR = r"[^/\\\x00-\x1f\x7f]"
_FIRST_CHAR = r"[^/\\.\x00-\x1f\x7f]"
FILE_NAME_PATTERN = re.compile(
    rf"^(?:{_FIRST_CHAR}{_NAME_CHAR}*|\.{_FIRST_CHAR}{_NAME_CHAR}*|\.\.{_NAME_CHAR}+)$"
)
# The same patterns as the API's schema states them (JSON Schema has no \Z).
NAME_SCHEMA = {"pattern": NAME_PATTERN.pattern.replace("\\Z", "$")}
SHA256_SCHEMA = {"pattern": SHA256_PATTERN.pattern.replace("\\Z", "$")}


def check_name(kind: str, value: str) -> str:
    """Names and versions become path parts and device file names: keep them plain."""
    if not NAME_PATTERN.match(value):
        raise InvalidRequest(
            f"{kind} {value!r} must be 1-64 of a-z, 0-9, '.', '_', '-' (starting alphanumeric)"
        )
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FileRef(_Strict):
    """A file by content: its sha256, byte size and the name it had (or must have) on disk."""

    name: str = Field(
        max_length=255, json_schema_extra={"pattern": FILE_NAME_PATTERN.pattern}
    )
    sha256: str = Field(json_schema_extra=SHA256_SCHEMA)
    size: int = Field(ge=0)

    @field_validator("sha256")
    @classmethod
    def _hex(cls, value: str) -> str:
        if not SHA256_PATTERN.match(value):
            raise ValueError(f"not a lower-case sha256 hex digest: {value!r}")
        return value

    @field_validator("name")
    @classmethod
    def _plain(cls, value: str) -> str:
        if not FILE_NAME_PATTERN.fullmatch(value):
            raise ValueError(f"file name must be a plain name, not {value!r}")
        return value


class TensorInfo(_Strict):
    """A graph input or output; a string dimension is free (dynamic)."""

    name: str
    shape: list[int | str]
    dtype: str


class Component(_Strict):
    """One ONNX graph of the model: the main file plus any files it needs beside it.

    `format` is "onnx" for a plain or QDQ graph and "epcontext" for a compiled QNN context.
    """

    file: FileRef
    extra_files: list[FileRef] = Field(default_factory=list)
    format: Literal["onnx", "epcontext"] = "onnx"
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]


class TokenizerSpec(_Strict):
    """`word`: tiny-sd's vocab.json; `clip-bpe`: vocab.json + merges.txt (+ optional maps)."""

    kind: Literal["word", "clip-bpe"]
    files: list[FileRef]
    max_length: int = Field(gt=2)


class Thresholds(_Strict):
    """What a run of this model must reach to count as valid (None: not checked).

    Images (against the reference image of the same prompt and seed, mean over the images):
    `min_psnr_db`, `min_ssim`; `min_prompt_accuracy` for a judged world. Tensors (range-based
    PSNR, cosine, max abs error over the reference's range, per output): `min_tensor_psnr_db`,
    `min_cosine`, `max_rel_error`. Fields added later default to None, so older manifests load.
    """

    min_prompt_accuracy: float | None = None
    min_psnr_db: float | None = None
    max_rel_error: float | None = None
    min_ssim: float | None = None
    min_tensor_psnr_db: float | None = None
    min_cosine: float | None = None

    def filled_from(self, defaults: Thresholds) -> Thresholds:
        """These thresholds, with every unset one taken from `defaults`."""
        mine = self.model_dump(exclude_none=True)
        return Thresholds.model_validate({**defaults.model_dump(exclude_none=True), **mine})


# Cross-device validation's thresholds where a manifest sets none, by precision. Measured on
# tiny-sd, QDQ vs FP32 on the CPU EP (8 held-out prompts x 3 seeds, 20 DDIM steps): w8a16 images
# 44-48 dB mean PSNR, SSIM >= 0.987; w8a16 tensors >= 52 dB, cosine >= 0.99994. A faulty NPU adding
# noise of 0.05 x an output's spread gives SSIM ~0.82 and tensors ~42 dB, cosine ~0.9987.
# w8a8 values are looser by the usual 8-bit gap (not measured on tiny-sd).
VALIDATION_DEFAULTS: dict[str, Thresholds] = {
    "fp32": Thresholds(
        min_psnr_db=40.0, min_ssim=0.98, min_tensor_psnr_db=60.0, min_cosine=0.99999
    ),
    "w8a16": Thresholds(min_psnr_db=25.0, min_ssim=0.9, min_tensor_psnr_db=45.0, min_cosine=0.9995),
    "w8a8": Thresholds(min_psnr_db=20.0, min_ssim=0.8, min_tensor_psnr_db=35.0, min_cosine=0.998),
}


class Manifest(_Strict):
    """Everything needed to run, quantize, compile and validate one model variant.

    `prompt_world` names the synthetic world whose judge scores this model's prompt accuracy.
    """

    schema_version: Literal[1] = 1
    name: str = Field(json_schema_extra=NAME_SCHEMA)
    version: str = Field(json_schema_extra=NAME_SCHEMA)
    precision: Precision = "fp32"
    # Part of the variant's name, so of a file name in the store: digits only (e.g. "73").
    htp_arch: Annotated[str, StringConstraints(pattern=r"^[0-9]{1,4}$")] | None = None
    components: dict[Role, Component] = Field(json_schema_extra={"required": list(ROLES)})
    tokenizer: TokenizerSpec
    image_size: int = Field(gt=0)
    latent_channels: int = Field(gt=0)
    latent_size: int = Field(gt=0)
    latent_scale: float = Field(gt=0)
    scheduler: dict[str, object]
    default_scheduler: str = "ddim"
    default_steps: int = Field(default=20, gt=0)
    default_guidance: float = 7.5
    thresholds: Thresholds = Field(default_factory=Thresholds)
    prompt_world: Literal["tiny-sd"] | None = None
    source: str = ""
    parent: str | None = None

    @field_validator("name", "version")
    @classmethod
    def _plain_name(cls, value: str) -> str:
        if not NAME_PATTERN.match(value):
            raise ValueError(f"must match {NAME_PATTERN.pattern}, not {value!r}")
        return value

    @field_validator("components")
    @classmethod
    def _all_roles(cls, value: dict[str, Component]) -> dict[str, Component]:
        missing = [role for role in ROLES if role not in value]
        if missing:
            raise ValueError(f"missing components {missing}")
        return value

    @property
    def variant(self) -> str:
        """ "fp32", "w8a16", or "w8a16-v73" for a context compiled for one Hexagon arch."""
        return self.precision if self.htp_arch is None else f"{self.precision}-v{self.htp_arch}"

    @property
    def ref(self) -> str:
        """name/version/variant: how users and other manifests name this one."""
        return f"{self.name}/{self.version}/{self.variant}"

    def validation_thresholds(self) -> Thresholds:
        """What cross-device validation checks: the manifest's own thresholds, and for each one
        it leaves unset the default for its precision (VALIDATION_DEFAULTS)."""
        return self.thresholds.filled_from(VALIDATION_DEFAULTS[self.precision])

    def files(self) -> list[FileRef]:
        """Every file the model needs, components first, without duplicates."""
        refs: dict[str, FileRef] = {}
        for role in ROLES:
            component = self.components[role]
            for ref in (component.file, *component.extra_files):
                refs.setdefault(ref.sha256, ref)
        for ref in self.tokenizer.files:
            refs.setdefault(ref.sha256, ref)
        return list(refs.values())

    def total_size(self) -> int:
        return sum(ref.size for ref in self.files())


def parse_manifest(text: str, origin: str = "manifest") -> Manifest:
    """A manifest from JSON; anything malformed is a ModelError naming where it came from."""
    try:
        return Manifest.model_validate_json(text)
    except ValidationError as err:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'document'}: {e['msg']}" for e in err.errors()
        )
        raise ModelError(f"{origin} is not a valid model manifest: {problems}") from err
