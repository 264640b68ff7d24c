"""QDQ quantization (w8a8, w8a16) for the QNN HTP backend, calibrated on real prompts' activations.

Per component: fix shapes to what the pipeline feeds, `qnn_preprocess_model`, onnxruntime's QNN
QDQ config (8-bit weights always: 16-bit weights fail on HTP), then a check on the HTP
simulator with CPU fallback disabled that names any node that would fall back.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnxruntime.quantization import QuantType, quantize_static
from onnxruntime.quantization.calibrate import save_tensors_data
from onnxruntime.quantization.execution_providers.qnn import (
    get_qnn_qdq_config,
    qnn_preprocess_model,
)
from onnxruntime.tools.onnx_model_utils import make_input_shape_fixed

from hexfleet.errors import InvalidRequest, ModelError
from hexfleet.manifest import ROLES, Manifest, Precision, Thresholds
from hexfleet.models.calibration import (
    Activations,
    collect_ranges,
    default_prompts,
    record_activations,
)
from hexfleet.models.htp_rewrites import (
    constants_to_initializers,
    drop_unused_initializers,
    flatten_silu,
    fold_static_shapes,
    instance_norm_4d,
)
from hexfleet.models.pipeline import Pipeline
from hexfleet.models.registration import (
    attach_external_data,
    external_tensors,
    load_onnx,
    save_onnx,
    store_component,
)
from hexfleet.models.runtime import Placement, node_placement, open_session
from hexfleet.models.store import ModelStore
from hexfleet.progress import StageCallback

ACTIVATION_TYPES = {"w8a8": QuantType.QUInt8, "w8a16": QuantType.QUInt16}
ACCURACY_KEPT = {"w8a8": 0.85, "w8a16": 0.95}
MIN_PSNR_DB = {"w8a8": 20.0, "w8a16": 25.0}
ERROR_SAMPLES = 8
# QuantizeLinear/DequantizeLinear take 16-bit types from opset 21 on (w8a16, and w8a8's
# timestep path). onnxruntime's quantizer converts an older graph itself, but with its weights
# inside, which protobuf cannot serialize past 2 GB (SD 1.5's real UNet): so the graph is
# converted here, its weights left in their external file.
QDQ_OPSET = 21
# The activations whose ranges one calibration run collects (calibration.collect_ranges).
CALIBRATION_PART_BYTES = 2 * 10**9
WEIGHTED_OPS = frozenset({"Conv", "ConvTranspose", "Gemm", "MatMul"})


@dataclass
class ComponentReport:
    """How one quantized component came out: calibration size, error, and HTP placement."""

    role: str
    samples: int
    cpu_rel_error: float
    htp_rel_error: float | None = None
    htp_session_s: float | None = None
    placement: Placement | None = None
    htp_error: str | None = None

    @property
    def fully_on_htp(self) -> bool:
        return self.placement is not None and self.placement.fully_on_htp

    def to_dict(self) -> dict[str, object]:
        return {
            "calibration_samples": self.samples,
            "cpu_qdq_rel_error": self.cpu_rel_error,
            "htp_rel_error": self.htp_rel_error,
            "htp_session_create_s": self.htp_session_s,
            "fully_on_htp": self.fully_on_htp,
            "placement": None if self.placement is None else self.placement.summary(),
            "cpu_nodes": [] if self.placement is None else self.placement.cpu_nodes,
            "htp_error": self.htp_error,
        }


@dataclass
class QuantizationReport:
    manifest: Manifest
    components: dict[str, ComponentReport] = field(default_factory=dict)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, object]:
        return {
            "model": self.manifest.ref,
            "precision": self.manifest.precision,
            "seconds": self.seconds,
            "components": {role: r.to_dict() for role, r in self.components.items()},
        }


def rel_error(actual: np.ndarray, reference: np.ndarray) -> float:
    """Mean absolute error relative to the reference's mean magnitude."""
    scale = float(np.mean(np.abs(reference))) or 1.0
    return float(np.mean(np.abs(actual.astype(np.float64) - reference)) / scale)


def prepare_graph(source: Path, target: Path, feed: dict[str, np.ndarray]) -> Path:
    """The FP32 graph as the HTP needs it: free dimensions fixed to a real feed's (HTP shapes
    are static), static shapes on every tensor, and the SiLU rewrite of models.htp_rewrites.

    The rewrites work on the graph alone (weights stay in their external file, if any, until
    it is written out), so a 3.4 GB UNet is rewritten like a small one and written with
    external data again.
    """
    model = load_onnx(source)
    external = bool(external_tensors(model))
    for value in model.graph.input:
        dims = value.type.tensor_type.shape.dim
        if value.name in feed and any(not d.HasField("dim_value") for d in dims):
            make_input_shape_fixed(model.graph, value.name, list(feed[value.name].shape))
    _fix_output_shapes(model)
    # Exporters leave shape annotations with free dimensions on intermediate tensors; the QNN
    # EP sizes its buffers from them (MEM_ALLOC at finalize), so infer them again, static.
    del model.graph.value_info[:]
    constants_to_initializers(model)
    fold_static_shapes(model)
    instance_norm_4d(model)
    flatten_silu(model)
    drop_unused_initializers(model)
    model = onnx.shape_inference.infer_shapes(model, data_prop=True)
    if external:
        # Read only now, into the inferred graph: shape inference serializes the model, which
        # protobuf cannot do past 2 GB.
        model = attach_external_data(model, source)
    return save_onnx(model, target, external)


def _opset(model: onnx.ModelProto) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def _fix_output_shapes(model: onnx.ModelProto) -> None:
    """Static output shapes from shape inference (onnxruntime's fix_output_shapes also runs
    onnx's checker, which looks for external data files relative to the working folder)."""
    inferred = onnx.shape_inference.infer_shapes(model)
    for declared, found in zip(model.graph.output, inferred.graph.output, strict=True):
        dims = found.type.tensor_type.shape.dim
        if dims and all(d.HasField("dim_value") for d in dims):
            declared.CopyFrom(found)


def timestep_only_tensors(model: onnx.ModelProto, name: str = "timestep") -> list[str]:
    """The tensors computed from the timestep input alone: sinusoids, time MLP, the per-block
    projections, up to where they meet the feature maps; and the constants that elementwise
    ops on that path use (the sinusoids' frequencies).

    8 bits cannot carry a timestep in [0, 1000) into sin/cos (one step is ~4 radians), nor the
    frequencies that multiply it (an 8-bit step of 1/255 turns into radians of error at t=999),
    which makes every ResBlock's time embedding noise: w8a8 keeps this small path at 16 bits.
    The weights of its Gemm/Conv/MatMul stay 8-bit (the HTP takes no 16-bit weights there).
    """
    if name not in {i.name for i in model.graph.input}:
        return []
    constants = {t.name for t in model.graph.initializer}
    derived = {name}
    path_constants: set[str] = set()
    for node in model.graph.node:
        inputs = [i for i in node.input if i and i not in constants]
        if inputs and all(i in derived for i in inputs):
            derived.update(node.output)
            if node.op_type not in WEIGHTED_OPS:
                path_constants.update(i for i in node.input if i in constants)
    return sorted(derived | path_constants)


def _spread(items: list[dict[str, np.ndarray]], count: int) -> list[dict[str, np.ndarray]]:
    if len(items) <= count:
        return items
    picks = np.linspace(0, len(items) - 1, count).round().astype(int)
    return [items[i] for i in picks]


def quantize_component(
    source: Path,
    target: Path,
    feeds: list[dict[str, np.ndarray]],
    precision: Precision,
    workdir: Path,
    *,
    threads: int | None = None,
    on_run: Callable[[int, int], None] | None = None,
) -> Path:
    """One ONNX file → its QDQ version for QNN, calibrated on `feeds` (ranges by
    calibration.collect_ranges, in parts of the graph; on_run(done, total) per run)."""
    if not feeds:
        raise ModelError(f"no calibration data for {source.name}")
    fixed = prepare_graph(source, workdir / f"{target.stem}.fixed.onnx", feeds[0])
    pre = workdir / f"{target.stem}.pre.onnx"
    # qnn_preprocess_model writes nothing when it has nothing to change.
    external = bool(external_tensors(load_onnx(fixed)))
    if not qnn_preprocess_model(
        str(fixed),
        str(pre),
        fuse_layernorm=True,
        save_as_external_data=external,
        all_tensors_to_one_file=True,
        external_data_location=f"{pre.name}.data",
    ):
        pre = fixed
    # After qnn_preprocess_model, whose GELU fusion expects the exporter's opset.
    graph = load_onnx(pre)
    if _opset(graph) < QDQ_OPSET:
        onnx.save_model(onnx.version_converter.convert_version(graph, QDQ_OPSET), str(pre))
    overrides = None
    if precision == "w8a8":
        path = timestep_only_tensors(onnx.load(str(pre), load_external_data=False))
        overrides = {t: [{"quant_type": QuantType.QUInt16}] for t in path} or None
    config = get_qnn_qdq_config(
        str(pre),
        None,  # type: ignore[arg-type]  # the ranges come from collect_ranges, below
        activation_type=ACTIVATION_TYPES[precision],
        weight_type=QuantType.QUInt8,
        init_overrides=overrides,
    )
    extra = dict(config.extra_options)
    ranges = collect_ranges(
        pre,
        feeds,
        op_types=config.op_types_to_quantize,
        symmetric=bool(extra.get("CalibTensorRangeSymmetric", False)),
        part_bytes=CALIBRATION_PART_BYTES,
        threads=threads,
        on_run=on_run,
    )
    cache = workdir / f"{target.stem}.ranges.json"
    save_tensors_data(ranges, cache)
    extra.pop("CalibStridedMinMax", None)
    with _quiet_root_logger():
        quantize_static(
            str(pre),
            str(target),
            None,
            calibrate_method=config.calibrate_method,
            quant_format=config.quant_format,
            activation_type=config.activation_type,
            weight_type=config.weight_type,
            op_types_to_quantize=config.op_types_to_quantize,
            nodes_to_quantize=config.nodes_to_quantize,
            nodes_to_exclude=config.nodes_to_exclude,
            per_channel=config.per_channel,
            reduce_range=config.reduce_range,
            use_external_data_format=config.use_external_data_format,
            extra_options=extra,
            calibration_cache_path=cache,
        )
    return target


def _remove_scratch(workdir: Path) -> None:
    """Drop a finished component's intermediate files: at real size each is gigabytes."""
    for path in workdir.iterdir():
        if path.is_file():
            path.unlink()


@contextmanager
def _quiet_root_logger() -> Iterator[None]:
    """onnxruntime's quantizer warns on the root logger about steps we do on purpose."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def check_component(
    role: str,
    fp32: Path,
    qdq: Path,
    feeds: list[dict[str, np.ndarray]],
    htp_arch: str | None,
    check_htp: bool,
    threads: int | None,
) -> ComponentReport:
    """Error of the QDQ model vs FP32 on CPU (and on the HTP simulator), and its placement."""
    samples = _spread(feeds, ERROR_SAMPLES)
    reference = open_session(fp32, "cpu", threads=threads)
    quantized = open_session(qdq, "cpu", threads=threads)
    expected = [next(iter(reference.run(f).values())) for f in samples]
    errors = [
        rel_error(next(iter(quantized.run(f).values())), e)
        for f, e in zip(samples, expected, strict=True)
    ]
    report = ComponentReport(role, len(feeds), float(np.mean(errors)))
    if not check_htp:
        return report
    try:
        htp = open_session(qdq, "htp", htp_arch=htp_arch, threads=threads)
    except ModelError as err:
        report.htp_error = str(err)
        try:
            report.placement = node_placement(qdq, htp_arch=htp_arch, threads=threads)
        except ModelError as placement_err:
            report.htp_error += f"; with CPU fallback allowed too: {placement_err}"
        return report
    report.htp_session_s = htp.create_seconds
    report.placement = htp.placement()
    few = _spread(samples, 2)
    report.htp_rel_error = float(
        np.mean(
            [
                rel_error(next(iter(htp.run(f).values())), next(iter(reference.run(f).values())))
                for f in few
            ]
        )
    )
    return report


def quantize_model(
    store: ModelStore,
    manifest: Manifest,
    precision: Precision,
    *,
    prompts: list[str] | None = None,
    calibration_prompts: int = 32,
    calibration_steps: int | None = None,
    htp_arch: str | None = None,
    check_htp: bool = True,
    threads: int | None = None,
    on_stage: StageCallback | None = None,
) -> QuantizationReport:
    """Quantize an FP32 manifest to `precision`, store the QDQ manifest, report per component.

    Progress: on_stage("calibration", prompts run, prompts), then per component
    on_stage(f"{role}: ranges", runs done, runs) while its ranges are collected and
    on_stage(f"{role}: {step}", steps done, 3) through its quantize, check and store.
    """

    def stage(name: str, done: int, total: int) -> None:
        if on_stage:
            on_stage(name, done, total)

    if precision not in ACTIVATION_TYPES:
        raise InvalidRequest(
            f"precision must be one of {list(ACTIVATION_TYPES)}, not {precision!r}"
        )
    if manifest.precision != "fp32":
        raise InvalidRequest(f"quantize an FP32 model, not {manifest.ref}")
    start = time.perf_counter()
    prompts = prompts or default_prompts(manifest, calibration_prompts)
    pipeline = Pipeline.from_manifest(manifest, store, "cpu", threads=threads)
    stage("calibration", 0, len(prompts))
    activations: Activations = record_activations(
        pipeline,
        prompts,
        steps=calibration_steps,
        on_prompt=lambda done, total: stage("calibration", done, total),
    )
    del pipeline  # a real-size model's sessions hold gigabytes the quantizer needs
    components = {}
    reports = {}
    with tempfile.TemporaryDirectory(prefix="hexfleet-quantize-") as tmp:
        workdir = Path(tmp)
        for role in ROLES:
            fp32 = store.component_path(manifest.components[role])
            target = workdir / f"{role}.{precision}.onnx"
            feeds = activations.feeds[role]
            large = bool(external_tensors(load_onnx(fp32)))
            stage(f"{role}: quantize", 0, 3)
            quantize_component(
                fp32,
                target,
                feeds,
                precision,
                workdir,
                threads=threads,
                on_run=lambda done, total, role=role: stage(f"{role}: ranges", done, total),
            )
            stage(f"{role}: check", 1, 3)
            # Each real-size UNet run takes seconds to minutes: check on fewer samples.
            samples = _spread(feeds, 2 if large else ERROR_SAMPLES)
            reports[role] = check_component(
                role, fp32, target, samples, htp_arch, check_htp, threads
            )
            reports[role].samples = len(feeds)
            stage(f"{role}: store", 2, 3)
            components[role] = store_component(store, target, role)
            stage(f"{role}: store", 3, 3)
            _remove_scratch(workdir)
    parent = manifest.thresholds.min_prompt_accuracy
    quantized = Manifest.model_validate(
        {
            **manifest.model_dump(),
            "precision": precision,
            "htp_arch": None,
            "components": components,
            "parent": manifest.ref,
            "thresholds": Thresholds(
                min_prompt_accuracy=None if parent is None else parent * ACCURACY_KEPT[precision],
                min_psnr_db=MIN_PSNR_DB[precision],
            ),
            "source": (
                f"QDQ {precision} of {manifest.ref}, calibrated on {len(prompts)} prompts "
                f"({activations.count('unet')} UNet steps)"
                + (", timestep path at 16 bits" if precision == "w8a8" else "")
            ),
        }
    )
    store.save(quantized)
    return QuantizationReport(quantized, reports, time.perf_counter() - start)
