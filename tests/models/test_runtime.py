"""ONNX Runtime sessions on the CPU EP and the QNN HTP simulator: placement and failures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from calibration_feeds import FeedsReader
from onnx import TensorProto, helper, numpy_helper
from onnxruntime.quantization import quantize
from onnxruntime.quantization.execution_providers.qnn import get_qnn_qdq_config

from hexfleet.errors import InvalidRequest, ModelError, NotFound
from hexfleet.models.runtime import node_placement, open_session, qnn_device


def _qdq_model(tmp_path: Path, middle: onnx.NodeProto) -> Path:
    """x + 1.5 → middle → · 1.5, quantized for QNN (w8a8) on a few random calibration feeds."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])
    c = numpy_helper.from_array(np.full([1], 1.5, np.float32), "c")
    nodes = [
        helper.make_node("Add", ["x", "c"], ["a"]),
        middle,
        helper.make_node("Mul", ["b", "c"], ["y"]),
    ]
    model = helper.make_model(
        helper.make_graph(nodes, "g", [x], [y], [c]), opset_imports=[helper.make_opsetid("", 17)]
    )
    model.ir_version = 8
    fp32, qdq = tmp_path / "fp32.onnx", tmp_path / "qdq.onnx"
    onnx.save(model, str(fp32))
    rng = np.random.default_rng(0)
    feeds = [{"x": rng.standard_normal((1, 4, 8, 8)).astype(np.float32)} for _ in range(3)]
    quantize(str(fp32), str(qdq), get_qnn_qdq_config(str(fp32), FeedsReader(feeds)))
    return qdq


def test_qdq_model_runs_entirely_on_htp(tmp_path: Path) -> None:
    qdq = _qdq_model(tmp_path, helper.make_node("Sigmoid", ["a"], ["b"]))
    session = open_session(qdq, "htp", htp_arch="75")
    placement = session.placement()
    assert placement.fully_on_htp and placement.cpu_nodes == []
    x = np.linspace(-2, 2, 256, dtype=np.float32).reshape(1, 4, 8, 8)
    htp = session.run({"x": x})["y"]
    cpu = open_session(qdq, "cpu").run({"x": x})["y"]
    assert np.abs(htp - cpu).mean() < 0.01 * np.abs(cpu).mean()
    assert session.create_seconds > 0
    assert qnn_device() is qnn_device()  # the plugin EP is registered once per process


def test_fallback_disabled_names_the_nodes(tmp_path: Path) -> None:
    qdq = _qdq_model(tmp_path, helper.make_node("Mod", ["a", "c"], ["b"], fmod=1))
    with pytest.raises(ModelError, match=r"does not run entirely on the HTP backend: .*1x Mod"):
        open_session(qdq, "htp")
    placement = node_placement(qdq)
    assert [n.endswith("(Mod)") for n in placement.cpu_nodes] == [True]
    assert not placement.fully_on_htp
    allowed = open_session(qdq, "htp", allow_cpu_fallback=True)
    assert allowed.run({"x": np.ones((1, 4, 8, 8), np.float32)})["y"].shape == (1, 4, 8, 8)


def test_bad_requests(tmp_path: Path) -> None:
    with pytest.raises(NotFound):
        open_session(tmp_path / "missing.onnx")
    (tmp_path / "m.onnx").write_bytes(b"x")
    with pytest.raises(InvalidRequest, match="unknown runtime 'gpu'"):
        open_session(tmp_path / "m.onnx", "gpu")  # type: ignore[arg-type]
    with pytest.raises(InvalidRequest, match="unknown Hexagon arch '70'"):
        open_session(tmp_path / "m.onnx", "htp", htp_arch="70")
    with pytest.raises(ModelError, match="cannot load m.onnx on cpu"):
        open_session(tmp_path / "m.onnx")


def test_profiling_on_both_runtimes(tmp_path: Path) -> None:
    qdq = _qdq_model(tmp_path, helper.make_node("Sigmoid", ["a"], ["b"]))
    x = {"x": np.ones((1, 4, 8, 8), np.float32)}
    csv = tmp_path / "htp_profile.csv"
    htp = open_session(qdq, "htp", profiling="detailed", profiling_file=csv)
    htp.run(x)
    assert "QNN (execute) time" in csv.read_text()  # simulated, not device, microseconds
    cpu = open_session(qdq, "cpu", profiling="basic", profiling_file=tmp_path / "cpu")
    cpu.run(x)
    assert Path(cpu.end_profiling()).name.startswith("cpu")
