"""A runner bundle: the native runner for one CPU ABI plus the libraries it loads, by content.

A bundle is registered once per ABI (`hexfleet runners register --abi ABI FOLDER`), stored like
model files (every file by sha256) and travels in every run task, so the agent can push the one
matching its phone's `ro.product.cpu.abi` and run it from a fixed command template. Its own
identity is the sha256 of its canonical JSON: a result names the exact binary behind it.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from hexfleet.manifest import FileRef

ABIS = ("x86_64", "arm64-v8a")
Abi = Literal["x86_64", "arm64-v8a"]
RUNNER_FILE = "hexfleet-runner"
# ELF e_machine values of the ABIs above.
_MACHINES = {62: "x86_64", 183: "arm64-v8a"}
# A bundle file's name is used verbatim in device paths: plain file names only.
_FILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}\Z")
_FILE_NAME_SCHEMA = _FILE_NAME.pattern.replace("\\Z", "$")


def elf_abi(path: Path) -> str | None:
    """The ABI an ELF executable is built for, or None when the file is not ELF (or not ours)."""
    try:
        with path.open("rb") as handle:
            header = handle.read(20)
    except OSError:
        return None
    if len(header) < 20 or header[:4] != b"\x7fELF":
        return None
    return _MACHINES.get(int.from_bytes(header[18:20], "little"))


class RunnerBundle(BaseModel):
    """What a bundle holds: the runner (`hexfleet-runner`), onnxruntime, and optionally the QNN
    EP plugin library and the QNN backend libraries (`qnn_ep`, `qnn_backend` name two of them)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: Literal[1] = 1
    abi: Abi
    runner_version: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$")
    # The schema says what the validator below checks, but for unique names (JSON Schema cannot).
    files: list[FileRef] = Field(
        min_length=1,
        json_schema_extra={
            "contains": {"properties": {"name": {"const": RUNNER_FILE}}, "required": ["name"]},
            "allOf": [{"items": {"properties": {"name": {"pattern": _FILE_NAME_SCHEMA}}}}],
        },
    )
    qnn_ep: str | None = None
    qnn_backend: str | None = None

    @field_validator("files")
    @classmethod
    def _files(cls, files: list[FileRef]) -> list[FileRef]:
        names = [ref.name for ref in files]
        for name in names:
            if not _FILE_NAME.match(name):
                raise ValueError(f"bundle file name {name!r} must be a plain file name")
        if len(set(names)) != len(names):
            raise ValueError("bundle file names must be unique")
        if RUNNER_FILE not in names:
            raise ValueError(f"a bundle needs its runner, {RUNNER_FILE!r}")
        return sorted(files, key=lambda ref: ref.name)

    @model_validator(mode="after")
    def _named_files_exist(self) -> RunnerBundle:
        names = {ref.name for ref in self.files}
        for role, name in (("qnn_ep", self.qnn_ep), ("qnn_backend", self.qnn_backend)):
            if name is not None and name not in names:
                raise ValueError(f"{role} names {name!r}, which is not one of the bundle's files")
        return self

    @property
    def sha256(self) -> str:
        """The bundle's identity: the sha256 of its canonical JSON."""
        return hashlib.sha256(self.model_dump_json().encode()).hexdigest()

    def file(self, name: str) -> FileRef:
        return next(ref for ref in self.files if ref.name == name)


class RunnerInfo(BaseModel):
    """Which runner produced a result: the bundle, its runner's version, the phone's ABI."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    bundle_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    runner_version: str = Field(max_length=64)
    abi: str = Field(max_length=32)
