"""ONNX Runtime sessions on the CPU EP or the QNN HTP backend, and where their nodes ran.

The pipeline, the on-device runner and the virtual phone open every session through
`open_session`; on x86-64 the HTP backend is Qualcomm's simulator of the Hexagon NPU.
"""

from __future__ import annotations

import os
import sys
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Literal

import numpy as np
import onnxruntime as ort
from onnxruntime.capi import onnxruntime_pybind11_state as ort_errors

from hexfleet.errors import InvalidRequest, ModelError, NotFound

Runtime = Literal["cpu", "htp"]
Profiling = Literal["off", "basic", "detailed"]
RUNTIMES: tuple[str, ...] = ("cpu", "htp")
HTP_ARCHS: tuple[str, ...] = ("68", "69", "73", "75", "79", "81")
DEFAULT_HTP_ARCH = "73"
QNN_EP = "QNNExecutionProvider"
CPU_EP = "CPUExecutionProvider"

ORT_ERRORS: tuple[type[BaseException], ...] = (
    ort_errors.Fail,
    ort_errors.InvalidArgument,
    ort_errors.InvalidGraph,
    ort_errors.InvalidProtobuf,
    ort_errors.NoModel,
    ort_errors.NoSuchFile,
    ort_errors.NotImplemented,
    ort_errors.EPFail,
    ort_errors.EngineError,
    ort_errors.RuntimeException,
)

NUMPY_TYPES: dict[str, type[np.generic]] = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(uint8)": np.uint8,
    "tensor(int8)": np.int8,
    "tensor(uint16)": np.uint16,
    "tensor(bool)": np.bool_,
}


@dataclass(frozen=True)
class TensorSpec:
    """One graph input or output: name, shape (a str for a free dimension) and numpy dtype."""

    name: str
    shape: tuple[int | str, ...]
    dtype: type[np.generic]

    @property
    def static(self) -> bool:
        return all(isinstance(d, int) and d > 0 for d in self.shape)


@dataclass(frozen=True)
class Placement:
    """Which execution provider runs each node of a session ("name (OpType)" per EP)."""

    nodes_by_ep: dict[str, list[str]] = field(default_factory=dict)

    @property
    def cpu_nodes(self) -> list[str]:
        return self.nodes_by_ep.get(CPU_EP, [])

    @property
    def htp_nodes(self) -> list[str]:
        return self.nodes_by_ep.get(QNN_EP, [])

    @property
    def fully_on_htp(self) -> bool:
        return bool(self.htp_nodes) and not self.cpu_nodes

    def summary(self) -> str:
        """E.g. "120 nodes on QNNExecutionProvider, 2 on CPU (2x Transpose)"."""
        parts = [f"{len(self.htp_nodes)} nodes on {QNN_EP}"]
        if self.cpu_nodes:
            ops = Counter(node.rsplit("(", 1)[-1].rstrip(")") for node in self.cpu_nodes)
            detail = ", ".join(f"{n}x {op}" for op, n in ops.most_common())
            parts.append(f"{len(self.cpu_nodes)} on CPU ({detail})")
        return ", ".join(parts)

    def to_dict(self) -> dict[str, object]:
        return {
            "htp_nodes": len(self.htp_nodes),
            "cpu_nodes": list(self.cpu_nodes),
            "fully_on_htp": self.fully_on_htp,
        }


class Session:
    """An open model: `run(feeds)` returns outputs by name; creation time is kept for reports."""

    def __init__(
        self, inner: ort.InferenceSession, path: Path, runtime: Runtime, create_seconds: float
    ) -> None:
        self.inner = inner
        self.path = path
        self.runtime = runtime
        self.create_seconds = create_seconds
        self.inputs = [_spec(arg) for arg in inner.get_inputs()]
        self.outputs = [_spec(arg) for arg in inner.get_outputs()]

    def input(self, name: str) -> TensorSpec:
        """The input called `name`; a model without it is unusable here (ModelError)."""
        for spec in self.inputs:
            if spec.name == name:
                return spec
        names = [spec.name for spec in self.inputs]
        raise ModelError(f"{self.path.name} has no input {name!r} (it has {names})")

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        try:
            values = self.inner.run(None, dict(feeds))
        except ORT_ERRORS as err:
            raise ModelError(f"running {self.path.name} on {self.runtime} failed: {err}") from err
        return {spec.name: value for spec, value in zip(self.outputs, values, strict=True)}

    def placement(self) -> Placement:
        """Node placement, recorded when the session was created."""
        nodes: dict[str, list[str]] = {}
        for subgraph in self.inner.get_provider_graph_assignment_info():
            names = [f"{node.name} ({node.op_type})" for node in subgraph.get_nodes()]
            nodes.setdefault(subgraph.ep_name, []).extend(names)
        return Placement(nodes)

    def end_profiling(self) -> str:
        """Stop ORT's own profiler (CPU EP) and return its JSON file; '' if it was off."""
        return self.inner.end_profiling()


def _spec(arg: ort.NodeArg) -> TensorSpec:
    shape = tuple(d if isinstance(d, int) else str(d) for d in (arg.shape or []))
    return TensorSpec(arg.name, shape, NUMPY_TYPES.get(arg.type, np.float32))


@lru_cache(maxsize=1)
def qnn_device() -> ort.OrtEpDevice:
    """Register the QNN plugin EP library once per process and return its device."""
    import onnxruntime_qnn

    registered = {d.ep_name for d in ort.get_ep_devices()}
    if QNN_EP not in registered:
        ort.register_execution_provider_library(QNN_EP, onnxruntime_qnn.get_library_path())
    for device in ort.get_ep_devices():
        if device.ep_name == QNN_EP:
            return device
    raise ModelError("the QNN execution provider registered no device")


def check_htp_arch(htp_arch: str | None) -> str:
    arch = (htp_arch or DEFAULT_HTP_ARCH).removeprefix("v")
    if arch not in HTP_ARCHS:
        raise InvalidRequest(f"unknown Hexagon arch {htp_arch!r}; choose one of {HTP_ARCHS}")
    return arch


# QNN's graph finalization modes: 1 prepares fastest (a less optimized graph), 2 and 3 optimize
# more and take longer; None leaves QNN's default. SD 1.5's VAE decoder (512x512) compiled for
# v73 in 148 s at 3.4 GB with 1; with the default it ran 49 min to 21.6 GB without finishing.
FINALIZATION_MODES = ("1", "2", "3")


def check_finalization(mode: str) -> str:
    if mode not in FINALIZATION_MODES:
        raise InvalidRequest(
            f"finalization mode must be one of {', '.join(FINALIZATION_MODES)}, not {mode!r}"
        )
    return mode


def htp_provider_options(
    htp_arch: str | None = None,
    profiling: Profiling = "off",
    profiling_file: Path | None = None,
    finalization: str | None = None,
) -> dict[str, str]:
    """QNN EP options: the HTP backend, arch, and graph I/O quantization kept on the NPU.

    `offload_graph_io_quantization=0` puts the input Q and output DQ on the HTP too, so a QDQ
    model runs with CPU fallback disabled and an EPContext model has float I/O.
    """
    import onnxruntime_qnn

    options = {
        "backend_path": onnxruntime_qnn.get_qnn_htp_path(),
        "htp_arch": check_htp_arch(htp_arch),
        "offload_graph_io_quantization": "0",
        # What a phone runs inference with; the simulator ignores it (docs/measurements.md).
        "htp_performance_mode": "burst",
    }
    if finalization is not None:
        options["htp_graph_finalization_optimization_mode"] = check_finalization(finalization)
    if profiling != "off":
        options["profiling_level"] = profiling
        if profiling_file is not None:
            options["profiling_file_path"] = str(profiling_file)
    return options


def session_options(
    runtime: Runtime,
    *,
    htp_arch: str | None = None,
    allow_cpu_fallback: bool = False,
    profiling: Profiling = "off",
    profiling_file: Path | None = None,
    threads: int | None = None,
    config: Mapping[str, str] | None = None,
    finalization: str | None = None,
) -> ort.SessionOptions:
    """ORT session options for a runtime; `config` adds session config entries (ep.context_*)."""
    if runtime not in RUNTIMES:
        raise InvalidRequest(f"unknown runtime {runtime!r}; choose one of {RUNTIMES}")
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.add_session_config_entry("session.record_ep_graph_assignment_info", "1")
    if threads is not None:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    if runtime == "htp":
        fallback = "0" if allow_cpu_fallback else "1"
        options.add_session_config_entry("session.disable_cpu_ep_fallback", fallback)
        provider = htp_provider_options(htp_arch, profiling, profiling_file, finalization)
        options.add_provider_for_devices([qnn_device()], provider)
    elif profiling != "off":
        options.enable_profiling = True
        if profiling_file is not None:
            options.profile_file_prefix = str(profiling_file)
    for key, value in (config or {}).items():
        options.add_session_config_entry(key, value)
    return options


def open_session(
    path: str | Path,
    runtime: Runtime = "cpu",
    *,
    htp_arch: str | None = None,
    allow_cpu_fallback: bool = False,
    profiling: Profiling = "off",
    profiling_file: Path | None = None,
    threads: int | None = None,
    finalization: str | None = None,
) -> Session:
    """Open an ONNX (QDQ or EPContext) model on the CPU EP or the QNN HTP backend.

    On "htp" with fallback disabled, a model with nodes the HTP cannot run raises ModelError
    naming them. A missing file is NotFound; an unreadable one is ModelError.
    """
    path = Path(path)
    if not path.is_file():
        raise NotFound(f"model file {path} does not exist")
    options = session_options(
        runtime,
        htp_arch=htp_arch,
        allow_cpu_fallback=allow_cpu_fallback,
        profiling=profiling,
        profiling_file=profiling_file,
        threads=threads,
        finalization=finalization,
    )
    start = time.perf_counter()
    try:
        if runtime == "htp":
            with native_stdout_to_stderr():
                inner = ort.InferenceSession(str(path), sess_options=options)
        else:
            inner = ort.InferenceSession(str(path), sess_options=options, providers=[CPU_EP])
    except ORT_ERRORS as err:
        if runtime == "htp" and not allow_cpu_fallback and "fallback" in str(err).lower():
            placement = node_placement(path, htp_arch=htp_arch, threads=threads)
            raise ModelError(
                f"{path.name} does not run entirely on the HTP backend: {placement.summary()}"
            ) from err
        raise ModelError(f"cannot load {path.name} on {runtime}: {_first_line(err)}") from err
    return Session(inner, path, runtime, time.perf_counter() - start)


@contextmanager
def native_stdout_to_stderr() -> Iterator[None]:
    """Send native writes to stdout (fd 1) to stderr while the block runs.

    Qualcomm's HTP library prints a banner on stdout when it first starts; stdout carries the
    CLI's JSON and the runner's progress lines, so HTP session creation runs inside this.
    """
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def _first_line(err: BaseException) -> str:
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__


def node_placement(
    path: str | Path, *, htp_arch: str | None = None, threads: int | None = None
) -> Placement:
    """Open the model on the HTP backend with CPU fallback allowed and report where nodes went."""
    session = open_session(path, "htp", htp_arch=htp_arch, allow_cpu_fallback=True, threads=threads)
    return session.placement()
