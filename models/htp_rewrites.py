"""Equivalent rewrites of FP32 graphs that the QNN HTP backend needs to load them and be right.

Measured on the HTP simulator (QNN 2.51, onnxruntime-qnn 2.7):
- torch exports norm weights and reshape targets as Constant nodes; quantized, they become
  Q/DQ pairs on activations, and InstanceNormalization fed that way fails to finalize
  (QNN_COMMON_ERROR_MEM_ALLOC). As initializers they are weights, and it loads.
- the QNN EP does not take Shape; on a static tensor it is a constant, so it is folded.
- GroupNorm as torch exports it (Reshape to [N, G, C/G·H·W] → InstanceNormalization) takes
  ~90 % of a UNet step there: a 3-D InstanceNormalization on [2, 8, 8192] costs 3.6 s, the same
  statistics over a 4-D view [N, G, C/G·H, W] 0.56 s. The reshape target becomes 4-D.
- with 16-bit activations, Add → SiLU (Sigmoid + Mul) on an NCHW tensor of ≥ 32 channels at
  ≤ 8x8 returns garbage (mean error ~100 % against the CPU's QDQ result), while the same SiLU
  on a 3-D view is exact. So every 4-D SiLU is wrapped in Reshape to [N, C, H·W] and back.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper


def _static_shapes(model: onnx.ModelProto) -> dict[str, list[int]]:
    inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)
    shapes: dict[str, list[int]] = {}
    graph = inferred.graph
    for value in [*graph.value_info, *graph.input, *graph.output]:
        dims = value.type.tensor_type.shape.dim
        if dims and all(d.HasField("dim_value") for d in dims):
            shapes[value.name] = [d.dim_value for d in dims]
    return shapes


def constants_to_initializers(model: onnx.ModelProto) -> int:
    """Turn tensor-valued Constant nodes into initializers of the same name; returns how many."""
    graph = model.graph
    kept = []
    moved = 0
    for node in graph.node:
        value = next((a for a in node.attribute if a.name == "value"), None)
        if node.op_type == "Constant" and value is not None and len(node.attribute) == 1:
            tensor = onnx.TensorProto()
            tensor.CopyFrom(value.t)
            tensor.name = node.output[0]
            graph.initializer.append(tensor)
            moved += 1
        else:
            kept.append(node)
    if moved:
        del graph.node[:]
        graph.node.extend(kept)
    return moved


def fold_static_shapes(model: onnx.ModelProto) -> int:
    """Replace Shape of a tensor whose shape is static by that shape, as an initializer."""
    shapes = _static_shapes(model)
    graph = model.graph
    kept = []
    folded = 0
    for node in graph.node:
        shape = shapes.get(node.input[0]) if node.op_type == "Shape" else None
        if shape is not None and not node.attribute:
            graph.initializer.append(
                numpy_helper.from_array(np.array(shape, np.int64), node.output[0])
            )
            folded += 1
        else:
            kept.append(node)
    if folded:
        del graph.node[:]
        graph.node.extend(kept)
    return folded


def instance_norm_4d(model: onnx.ModelProto) -> int:
    """Make every Reshape(4-D x → [N, G, L]) → InstanceNormalization (→ Reshape only)
    normalize a 4-D view [N, G, L/W, W] instead: the same per-(N, G) statistics.

    Expects a graph without stale shape annotations (value_info), as prepare_graph leaves it.
    """
    shapes = _static_shapes(model)
    graph = model.graph
    producers = {out: node for node in graph.node for out in node.output}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    initializers = {t.name: t for t in graph.initializer}
    changed = 0
    for norm in [n for n in graph.node if n.op_type == "InstanceNormalization"]:
        reshape = producers.get(norm.input[0])
        if reshape is None or reshape.op_type != "Reshape":
            continue
        source = shapes.get(reshape.input[0])
        grouped = shapes.get(norm.input[0])
        users = consumers.get(norm.output[0], [])
        if (
            source is None
            or grouped is None
            or len(source) != 4
            or len(grouped) != 3
            or not users
            or any(u.op_type != "Reshape" for u in users)
            or len(consumers.get(reshape.output[0], [])) != 1
        ):
            continue
        width = source[3]
        if grouped[2] % width:
            continue
        target = np.array([grouped[0], grouped[1], grouped[2] // width, width], np.int64)
        name = f"{reshape.output[0]}_4d_shape"
        if name not in initializers:
            graph.initializer.append(numpy_helper.from_array(target, name))
        reshape.input[1] = name
        changed += 1
    return changed


def drop_unused_initializers(model: onnx.ModelProto) -> int:
    """Remove initializers no node reads any more (left behind by the rewrites above)."""
    graph = model.graph
    used = {name for node in graph.node for name in node.input}
    used |= {out.name for out in graph.output}
    kept = [t for t in graph.initializer if t.name in used]
    dropped = len(graph.initializer) - len(kept)
    if dropped:
        del graph.initializer[:]
        graph.initializer.extend(kept)
    return dropped


def flatten_silu(model: onnx.ModelProto) -> int:
    """Wrap every x · Sigmoid(x) on a static 4-D x in Reshapes to 3-D; returns how many."""
    shapes = _static_shapes(model)
    graph = model.graph
    nodes = list(graph.node)  # one wrapper per node, so id() is stable below
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in nodes:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    before: dict[int, onnx.NodeProto] = {}
    after: dict[int, onnx.NodeProto] = {}
    for sigmoid in [n for n in nodes if n.op_type == "Sigmoid"]:
        x = sigmoid.input[0]
        shape = shapes.get(x)
        muls = [
            n
            for n in consumers.get(sigmoid.output[0], [])
            if n.op_type == "Mul" and set(n.input) == {x, sigmoid.output[0]}
        ]
        if shape is None or len(shape) != 4 or len(muls) != 1:
            continue
        mul = muls[0]
        tag = f"silu3d_{len(before)}"
        flat = numpy_helper.from_array(
            np.array([shape[0], shape[1], shape[2] * shape[3]], np.int64), f"{tag}_flat_shape"
        )
        back = numpy_helper.from_array(np.array(shape, np.int64), f"{tag}_shape")
        graph.initializer.extend([flat, back])
        x3, out3 = f"{tag}_x", f"{tag}_y"
        before[id(sigmoid)] = helper.make_node("Reshape", [x, flat.name], [x3], name=f"{tag}_in")
        after[id(mul)] = helper.make_node(
            "Reshape", [out3, back.name], [mul.output[0]], name=f"{tag}_out"
        )
        sigmoid.input[0] = x3
        mul.input[:] = [x3 if name == x else name for name in mul.input]
        mul.output[0] = out3
    ordered: list[onnx.NodeProto] = []
    for node in nodes:
        if id(node) in before:
            ordered.append(before[id(node)])
        copy = onnx.NodeProto()
        copy.CopyFrom(node)
        ordered.append(copy)
        if id(node) in after:
            ordered.append(after[id(node)])
    del graph.node[:]
    graph.node.extend(ordered)
    return len(before)
