"""Ahead-of-time compilation of QDQ models to QNN context binaries, one per Hexagon arch.

Each component becomes an EPContext model (one node, float I/O, binary embedded) that a phone
with that arch loads without compiling; the report compares its session-creation time with the
QDQ model's, which the HTP backend has to compile at every load.
"""

from __future__ import annotations

import re
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import onnxruntime as ort

from hexfleet.errors import InvalidRequest, ModelError
from hexfleet.manifest import ROLES, Manifest
from hexfleet.models.registration import store_component
from hexfleet.models.runtime import (
    ORT_ERRORS,
    check_finalization,
    check_htp_arch,
    native_stdout_to_stderr,
    open_session,
    session_options,
)
from hexfleet.models.store import ModelStore
from hexfleet.progress import StageCallback

SOC_FOR_ARCH = {
    "68": "SM8350",
    "69": "SM8450",
    "73": "SM8550",
    "75": "SM8650",
    "79": "SM8750",
    "81": "SM8850",
}
_ARCH_IN_BINARY = re.compile(rb";soc_type=(SM\d+);arch=(\d+);")


@dataclass
class CompiledComponent:
    role: str
    compile_s: float
    context_load_s: float
    qdq_load_s: float
    size: int
    soc_in_binary: str | None

    def to_dict(self) -> dict[str, object]:
        return {
            "compile_s": self.compile_s,
            "context_session_create_s": self.context_load_s,
            "qdq_session_create_s": self.qdq_load_s,
            "qdq_over_context": self.qdq_load_s / self.context_load_s,
            "context_bytes": self.size,
            "soc_in_binary": self.soc_in_binary,
        }


@dataclass
class CompileReport:
    manifest: Manifest
    components: dict[str, CompiledComponent] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        context = sum(c.context_load_s for c in self.components.values())
        qdq = sum(c.qdq_load_s for c in self.components.values())
        return {
            "model": self.manifest.ref,
            "htp_arch": self.manifest.htp_arch,
            "soc": SOC_FOR_ARCH.get(self.manifest.htp_arch or ""),
            "components": {role: c.to_dict() for role, c in self.components.items()},
            "context_session_create_s": context,
            "qdq_session_create_s": qdq,
            "qdq_over_context": qdq / context if context else None,
        }


def binary_target(path: Path) -> tuple[str, str] | None:
    """(SoC, arch) written into an embedded QNN context binary, e.g. ("SM8550", "73")."""
    match = _ARCH_IN_BINARY.search(path.read_bytes())
    return None if match is None else (match.group(1).decode(), match.group(2).decode())


def compile_context(
    qdq: Path, target: Path, htp_arch: str, finalization: str | None = None
) -> float:
    """Compile a QDQ model for one arch into an EPContext model; returns the seconds it took.

    Basic graph optimizations run first, as in a session, so static Shape nodes fold away
    (the QNN EP does not take Shape, and CPU fallback is disabled).
    """
    options = session_options("htp", htp_arch=htp_arch, finalization=finalization)
    start = time.perf_counter()
    try:
        compiler = ort.ModelCompiler(
            options,
            str(qdq),
            embed_compiled_data_into_model=True,
            graph_optimization_level=ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        )
        with native_stdout_to_stderr():
            compiler.compile_to_file(str(target))
    except ORT_ERRORS as err:
        raise ModelError(f"compiling {target.stem} for v{htp_arch} failed: {err}") from err
    return time.perf_counter() - start


def compile_model(
    store: ModelStore,
    manifest: Manifest,
    htp_arch: str,
    threads: int | None = None,
    on_stage: StageCallback | None = None,
    finalization: str | None = None,
) -> CompileReport:
    """Compile a quantized manifest for one Hexagon arch and store the context manifest.

    Progress: on_stage(f"{role}: {step}", steps done, 3): compile, load both ways, store.
    """
    arch = check_htp_arch(htp_arch)
    if finalization is not None:
        check_finalization(finalization)
    if manifest.precision == "fp32" or manifest.htp_arch is not None:
        raise InvalidRequest(f"compile a quantized QDQ model (w8a8/w8a16), not {manifest.ref}")
    report = CompileReport(manifest)
    components = {}
    with tempfile.TemporaryDirectory(prefix="hexfleet-compile-") as tmp:
        for role in ROLES:
            qdq = store.component_path(manifest.components[role])
            target = Path(tmp) / f"{role}.{manifest.precision}.v{arch}.onnx"
            if on_stage:
                on_stage(f"{role}: compile", 0, 3)
            seconds = compile_context(qdq, target, arch, finalization)
            found = binary_target(target)
            if found is not None and found[1] != arch:
                raise ModelError(f"{target.name} was compiled for v{found[1]}, not v{arch}")
            if on_stage:
                on_stage(f"{role}: load", 1, 3)
            # One session at a time: at SD 1.5's size each holds gigabytes.
            context_s = open_session(target, "htp", htp_arch=arch, threads=threads).create_seconds
            qdq_s = open_session(
                qdq, "htp", htp_arch=arch, threads=threads, finalization=finalization
            ).create_seconds
            if on_stage:
                on_stage(f"{role}: store", 2, 3)
            report.components[role] = CompiledComponent(
                role,
                seconds,
                context_s,
                qdq_s,
                target.stat().st_size,
                None if found is None else found[0],
            )
            components[role] = store_component(store, target, role)
            if on_stage:
                on_stage(f"{role}: store", 3, 3)
    compiled = Manifest.model_validate(
        {
            **manifest.model_dump(),
            "htp_arch": arch,
            "components": components,
            "parent": manifest.ref,
            "source": f"QNN context binaries for v{arch} ({SOC_FOR_ARCH[arch]}) of {manifest.ref}"
            + ("" if finalization is None else f", finalization mode {finalization}"),
        }
    )
    store.save(compiled)
    report.manifest = compiled
    return report
