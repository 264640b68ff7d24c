"""Calibration data for quantization: each component's real inputs while the FP32 pipeline runs.

The text encoder sees real prompts' token ids, the UNet every step's latents, timesteps and
text states of real prompts, the VAE the final latents: no random tensors.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import onnx
import onnxruntime as ort
from onnxruntime.quantization.calibrate import CalibraterBase, CalibrationMethod, TensorsData

from hexfleet.manifest import Manifest
from hexfleet.models.pipeline import Graph, Pipeline
from hexfleet.models.registration import external_tensors, load_onnx
from hexfleet.models.runtime import TensorSpec

GENERIC_PROMPTS = (
    "a photo of an astronaut riding a horse on mars",
    "a watercolor painting of a lighthouse at sunset",
    "a red sports car parked in front of a modern house",
    "a bowl of fruit on a wooden table, studio lighting",
    "a portrait of an old man with a beard, oil painting",
    "a snowy mountain landscape with a frozen lake",
    "a cat sleeping on a windowsill in the sun",
    "a futuristic city skyline at night with neon lights",
    "a plate of sushi, top view, high detail",
    "a forest path in autumn with fallen leaves",
    "a cozy living room with a fireplace and a sofa",
    "a sailing boat on a calm sea under a blue sky",
    "a pencil sketch of a dragon",
    "a cup of coffee with latte art on a cafe table",
    "an aerial view of a tropical island",
    "a robot reading a book in a library",
)


def default_prompts(manifest: Manifest, count: int) -> list[str]:
    """Calibration prompts: tiny-sd's training prompts (never its held-out ones), else generic."""
    if manifest.prompt_world == "tiny-sd":
        from hexfleet.models.tiny_sd.world import prompt_for, split

        train, _ = split()
        stride = max(1, len(train) // count)
        return [prompt_for(scene) for scene in train[::stride][:count]]
    return [GENERIC_PROMPTS[i % len(GENERIC_PROMPTS)] for i in range(count)]


class RecordingGraph:
    """A Graph that keeps a copy of every feed it runs (then runs it for real)."""

    def __init__(self, inner: Graph) -> None:
        self.inner = inner
        self.inputs: list[TensorSpec] = inner.inputs
        self.outputs: list[TensorSpec] = inner.outputs
        self.feeds: list[dict[str, np.ndarray]] = []

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.feeds.append({name: np.array(value, copy=True) for name, value in feeds.items()})
        return self.inner.run(feeds)


@dataclass
class Activations:
    """Recorded feeds per component role, in the order the pipeline made them."""

    feeds: dict[str, list[dict[str, np.ndarray]]] = field(default_factory=dict)
    prompts: list[str] = field(default_factory=list)

    def count(self, role: str) -> int:
        return len(self.feeds.get(role, []))


def record_activations(
    pipeline: Pipeline,
    prompts: list[str],
    steps: int | None = None,
    scheduler: str | None = None,
    seed: int = 0,
    on_prompt: Callable[[int, int], None] | None = None,
) -> Activations:
    """Run the pipeline over the prompts (seed + i each) and keep every component's inputs;
    on_prompt(done, total) after each prompt."""
    recorders = {
        "text_encoder": RecordingGraph(pipeline.text_encoder),
        "unet": RecordingGraph(pipeline.unet),
        "vae_decoder": RecordingGraph(pipeline.vae_decoder),
    }
    recording = Pipeline(
        pipeline.manifest,
        recorders["text_encoder"],
        recorders["unet"],
        recorders["vae_decoder"],
        pipeline.tokenizer,
    )
    for i, prompt in enumerate(prompts):
        recording.generate(
            prompt, seed=seed + i, steps=steps, scheduler=scheduler, allow_unknown_words=True
        )
        if on_prompt:
            on_prompt(i + 1, len(prompts))
    return Activations({role: r.feeds for role, r in recorders.items()}, list(prompts))


def calibrated_tensors(model: onnx.ModelProto, op_types: Iterable[str] | None) -> dict[str, int]:
    """The tensors whose ranges the quantizer asks for (onnxruntime's own selection: float
    inputs and outputs of the nodes it quantizes), in the order the graph computes them, with
    their sizes in bytes (0 where shape inference leaves a dimension free)."""
    graph = onnx.shape_inference.infer_shapes(model)
    selector = SimpleNamespace(op_types_to_calibrate=list(op_types or []))
    wanted, infos = CalibraterBase.select_tensors_to_calibrate(selector, graph)  # type: ignore[arg-type]
    order = [i.name for i in graph.graph.input]
    for node in graph.graph.node:
        order.extend(node.output)
    sizes = {}
    for name in dict.fromkeys(order):
        if name in wanted:
            tensor = infos[name].type.tensor_type
            dims = [d.dim_value for d in tensor.shape.dim]
            itemsize = onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type).itemsize
            sizes[name] = int(np.prod(dims, dtype=np.int64)) * itemsize if all(dims) else 0
    return sizes


def calibration_parts(sizes: dict[str, int], part_bytes: int | None) -> list[list[str]]:
    """Consecutive runs of tensors whose sizes add up to at most `part_bytes` (a tensor larger
    than that is a part of its own); one part for all if `part_bytes` is None."""
    if part_bytes is None:
        return [list(sizes)] if sizes else []
    parts: list[list[str]] = []
    held = part_bytes + 1
    for name, size in sizes.items():
        if held + size > part_bytes:
            parts.append([])
            held = 0
        parts[-1].append(name)
        held += size
    return parts


def _needed_nodes(model: onnx.ModelProto, outputs: set[str]) -> list[onnx.NodeProto]:
    """The nodes that `outputs` depend on, in graph order (the rest are left out of a part)."""
    needed = set(outputs)
    kept = []
    for node in reversed(model.graph.node):
        if needed.intersection(node.output):
            kept.append(node)
            needed.update(i for i in node.input if i)
    return kept[::-1]


def _range_graph(model: onnx.ModelProto, tensors: list[str]) -> onnx.ModelProto:
    """`model` cut down to what computes `tensors`, whose only outputs are each tensor's min
    and max, reduced in the graph right where the tensor is made (a run returns two numbers per
    tensor, not the tensor)."""
    sliced = onnx.ModelProto()
    sliced.CopyFrom(model)
    graph = sliced.graph
    index = {name: k for k, name in enumerate(tensors)}
    nodes = []

    def reduce(names: Iterable[str]) -> None:
        for name in names:
            if name in index:
                for op in ("ReduceMin", "ReduceMax"):
                    out = f"hexfleet_range_{index[name]}_{op}"
                    nodes.append(onnx.helper.make_node(op, [name], [out], keepdims=0))
                    graph.output.append(
                        onnx.helper.make_tensor_value_info(out, onnx.TensorProto.FLOAT, [])
                    )

    del graph.output[:]
    reduce(i.name for i in model.graph.input)
    for node in _needed_nodes(model, set(tensors)):
        nodes.append(node)
        reduce(node.output)
    used = {i for n in nodes for i in n.input}
    kept = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    del graph.node[:]
    graph.node.extend(nodes)
    return sliced


def _range_session(
    graph: onnx.ModelProto, beside: Path | None, options: ort.SessionOptions
) -> ort.InferenceSession:
    """A CPU session of a range graph; one with external data is written `beside` the model it
    came from for the session's load (its weights are found under the same relative name)."""
    providers = ["CPUExecutionProvider"]
    if beside is None:
        return ort.InferenceSession(graph.SerializeToString(), options, providers=providers)
    scratch = beside.with_name(f".{beside.stem}.ranges-{uuid.uuid4().hex}.onnx")
    onnx.save_model(graph, str(scratch))
    try:
        return ort.InferenceSession(str(scratch), options, providers=providers)
    finally:
        scratch.unlink()


def collect_ranges(
    path: Path,
    feeds: list[dict[str, np.ndarray]],
    *,
    op_types: Iterable[str] | None = None,
    symmetric: bool = False,
    part_bytes: int | None = None,
    threads: int | None = None,
    on_run: Callable[[int, int], None] | None = None,
) -> TensorsData:
    """Min/max of every tensor the quantizer calibrates, over `feeds` (onnxruntime's MinMax
    calibration, to the number), in bounded memory at SD 1.5's size.

    onnxruntime's calibrator loads the weights into Python, writes a copy of the model, and runs
    it with every observed activation alive to the end of the run: 22.4 GB of them in SD 1.5's
    UNet at batch 2, which the OOM killer stopped at 21.7 GB. Here the graph is read without its
    weights (each run's model refers to the original external data), the reductions happen in
    the graph, and the tensors are taken `part_bytes` at a time: each part's run computes only
    the nodes that part needs. SD 1.5's UNet in 2 GB parts: 13 runs a feed, 5.9 GB peak.
    on_run(done, total) after each run.
    """
    model = load_onnx(path)
    sizes = calibrated_tensors(model, op_types)
    names = list(sizes)
    lowest = {name: np.inf for name in names}
    highest = {name: -np.inf for name in names}
    parts = calibration_parts(sizes, part_bytes)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.enable_cpu_mem_arena = False  # the arena's power-of-two growth overshoots by GBs
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    if threads is not None:
        options.intra_op_num_threads = threads
    done, total = 0, len(parts) * len(feeds)
    external = bool(external_tensors(model))
    for part in parts:
        session = _range_session(_range_graph(model, part), path if external else None, options)
        wanted = {i.name for i in session.get_inputs()}
        for feed in feeds:
            values = session.run(None, {k: v for k, v in feed.items() if k in wanted})
            for k, name in enumerate(part):
                lowest[name] = min(lowest[name], float(values[2 * k]))
                highest[name] = max(highest[name], float(values[2 * k + 1]))
            done += 1
            if on_run:
                on_run(done, total)
        del session
    ranges = {}
    for name in names:
        low, high = lowest[name], highest[name]
        if symmetric:
            low, high = -max(abs(low), abs(high)), max(abs(low), abs(high))
        ranges[name] = (np.array([low], dtype=np.float32), np.array([high], dtype=np.float32))
    return TensorsData(CalibrationMethod.MinMax, ranges)
