"""The SiLU rewrite: same FP32 results, and right results on the HTP simulator at 16 bits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from calibration_feeds import FeedsReader
from onnx import TensorProto, helper, numpy_helper
from onnxruntime.quantization import QuantType, quantize
from onnxruntime.quantization.execution_providers.qnn import get_qnn_qdq_config

from hexfleet.models.htp_rewrites import (
    constants_to_initializers,
    drop_unused_initializers,
    flatten_silu,
    fold_static_shapes,
    instance_norm_4d,
)
from hexfleet.models.quantize import quantize_component
from hexfleet.models.runtime import open_session

SHAPE = [1, 64, 8, 8]  # ≥ 32 channels at ≤ 8x8: where 16-bit Add → SiLU goes wrong on HTP


def _add_silu_conv() -> onnx.ModelProto:
    rng = np.random.default_rng(1)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, SHAPE)
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, SHAPE)
    weight = (rng.standard_normal((64, 64, 3, 3)) / 24).astype(np.float32)
    inits = [
        numpy_helper.from_array(np.full([1], 0.1, np.float32), "c"),
        numpy_helper.from_array(weight, "w"),
    ]
    nodes = [
        helper.make_node("Add", ["x", "c"], ["a"]),
        helper.make_node("Sigmoid", ["a"], ["s"]),
        helper.make_node("Mul", ["a", "s"], ["m"]),
        helper.make_node("Conv", ["m", "w"], ["y"], pads=[1, 1, 1, 1]),
    ]
    model = helper.make_model(
        helper.make_graph(nodes, "g", [x], [y], inits), opset_imports=[helper.make_opsetid("", 17)]
    )
    model.ir_version = 8
    return model


def test_rewrite_keeps_fp32_results(tmp_path: Path) -> None:
    model = _add_silu_conv()
    onnx.save(model, str(tmp_path / "a.onnx"))
    assert flatten_silu(model) == 1
    onnx.checker.check_model(model)
    assert [n.op_type for n in model.graph.node] == [
        "Add",
        "Reshape",
        "Sigmoid",
        "Mul",
        "Reshape",
        "Conv",
    ]
    onnx.save(model, str(tmp_path / "b.onnx"))
    x = np.random.default_rng(0).standard_normal(SHAPE).astype(np.float32)
    a = open_session(tmp_path / "a.onnx").run({"x": x})["y"]
    b = open_session(tmp_path / "b.onnx").run({"x": x})["y"]
    assert np.array_equal(a, b)


def test_rewritten_silu_is_right_on_htp_at_16_bits(tmp_path: Path) -> None:
    model = _add_silu_conv()
    flatten_silu(model)
    fp32, qdq = tmp_path / "fp32.onnx", tmp_path / "qdq.onnx"
    onnx.save(model, str(fp32))
    rng = np.random.default_rng(0)
    feeds = [{"x": rng.standard_normal(SHAPE).astype(np.float32)} for _ in range(3)]
    config = get_qnn_qdq_config(
        str(fp32),
        FeedsReader(feeds),
        activation_type=QuantType.QUInt16,
        weight_type=QuantType.QUInt8,
    )
    quantize(str(fp32), str(qdq), config)
    cpu = open_session(qdq, "cpu").run(feeds[0])["y"]
    htp = open_session(qdq, "htp").run(feeds[0])["y"]
    assert np.abs(htp - cpu).mean() < 0.01 * np.abs(cpu).mean()


def _torch_style_group_norm() -> onnx.ModelProto:
    """Conv → GroupNorm as torch exports it: Constant nodes for the shape and the norm's
    weights, and Reshape back through Shape."""
    rng = np.random.default_rng(2)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 32, 32])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 48, 32, 32])

    def constant(name: str, value: np.ndarray) -> onnx.NodeProto:
        return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(value))

    weight = (rng.standard_normal((48, 3, 3, 3)) / 5).astype(np.float32)
    nodes = [
        constant("groups", np.array([0, 8, -1], np.int64)),
        constant("ones", np.ones(8, np.float32)),
        constant("zeros", np.zeros(8, np.float32)),
        helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Reshape", ["c", "groups"], ["g"]),
        helper.make_node("InstanceNormalization", ["g", "ones", "zeros"], ["n"], epsilon=1e-5),
        helper.make_node("Shape", ["c"], ["s"]),
        helper.make_node("Reshape", ["n", "s"], ["y"]),
    ]
    graph = helper.make_graph(nodes, "g", [x], [y], [numpy_helper.from_array(weight, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def test_constants_shapes_and_group_norm_rewrites(tmp_path: Path) -> None:
    model = _torch_style_group_norm()
    onnx.save(model, str(tmp_path / "a.onnx"))
    assert constants_to_initializers(model) == 3
    assert fold_static_shapes(model) == 1
    assert instance_norm_4d(model) == 1
    assert drop_unused_initializers(model) == 1  # the 3-D group shape
    onnx.checker.check_model(model)
    assert [n.op_type for n in model.graph.node] == [
        "Conv",
        "Reshape",
        "InstanceNormalization",
        "Reshape",
    ]
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    assert inits[model.graph.node[1].input[1]].tolist() == [1, 8, 192, 32]
    onnx.save(model, str(tmp_path / "b.onnx"))
    x = np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(np.float32)
    assert np.array_equal(
        open_session(tmp_path / "a.onnx").run({"x": x})["y"],
        open_session(tmp_path / "b.onnx").run({"x": x})["y"],
    )


def test_torch_style_group_norm_loads_on_htp_once_prepared(tmp_path: Path) -> None:
    fp32 = tmp_path / "gn.onnx"
    onnx.save(_torch_style_group_norm(), str(fp32))
    rng = np.random.default_rng(0)
    feeds = [{"x": rng.standard_normal((1, 3, 32, 32)).astype(np.float32)} for _ in range(3)]
    qdq = quantize_component(fp32, tmp_path / "gn.qdq.onnx", feeds, "w8a8", tmp_path)
    htp = open_session(qdq, "htp")
    assert htp.placement().fully_on_htp
    cpu = open_session(qdq, "cpu").run(feeds[0])["y"]
    assert np.abs(htp.run(feeds[0])["y"] - cpu).mean() < 0.02 * np.abs(cpu).mean()
