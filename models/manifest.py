"""A model version as data: its files by sha256, their I/O, and how to sample and judge it.

One manifest per (name, version, precision, htp_arch); it crosses process and host boundaries
(store → runner → device), so it is a versioned pydantic model.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from hexfleet.errors import InvalidRequest, ModelError

Precision = Literal["fp32", "w8a8", "w8a16"]
Role = Literal["text_encoder", "unet", "vae_decoder"]
PRECISIONS: tuple[str, ...] = ("fp32", "w8a8", "w8a16")
ROLES: tuple[Role, ...] = ("text_encoder", "unet", "vae_decoder")
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
SHA256_PATTERN = re.compile(r"^[0-9a-f]{64}$")


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

    name: str
    sha256: str
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
        if not value or "/" in value or "\\" in value or value in (".", ".."):
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
    """What a run of this model must reach to count as valid (None: not checked)."""

    min_prompt_accuracy: float | None = None
    min_psnr_db: float | None = None
    max_rel_error: float | None = None


class Manifest(_Strict):
    """Everything needed to run, quantize, compile and validate one model variant.

    `prompt_world` names the synthetic world whose judge scores this model's prompt accuracy.
    """

    schema_version: Literal[1] = 1
    name: str
    version: str
    precision: Precision = "fp32"
    htp_arch: str | None = None
    components: dict[Role, Component]
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
