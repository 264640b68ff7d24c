"""QNN context binaries per Hexagon arch: compiled, loaded with fallback disabled, same output."""

from __future__ import annotations

import onnx
import pytest

from hexfleet.errors import InvalidRequest
from hexfleet.manifest import Manifest
from hexfleet.models.compile import binary_target, compile_model
from hexfleet.models.pipeline import Pipeline
from hexfleet.models.quantize import quantize_model
from hexfleet.models.store import ModelStore


@pytest.mark.slow
def test_compile_for_two_archs_and_load(tiny_manifest: Manifest, store: ModelStore) -> None:
    qdq = quantize_model(
        store, tiny_manifest, "w8a8", calibration_prompts=2, calibration_steps=2, check_htp=False
    ).manifest
    for arch, soc in (("73", "SM8550"), ("68", "SM8350")):
        from_qdq = Pipeline.from_manifest(qdq, store, "htp", htp_arch=arch)
        reference = from_qdq.generate("a red circle", seed=4, steps=2)
        report = compile_model(store, qdq, arch)
        compiled = report.manifest
        assert compiled.ref == f"tiny-sd/1/w8a8-v{arch}" and compiled.parent == qdq.ref
        assert store.load("tiny-sd", precision="w8a8", htp_arch=arch) == compiled
        for role, component in compiled.components.items():
            assert component.format == "epcontext"
            path = store.component_path(component)
            assert binary_target(path) == (soc, arch)
            graph = onnx.load(str(path)).graph
            assert [n.op_type for n in graph.node] == ["EPContext"], role
            assert [i.name for i in graph.input] == [i.name for i in qdq.components[role].inputs]
            timing = report.components[role]
            assert timing.context_load_s < timing.qdq_load_s
        summary = report.to_dict()
        assert summary["soc"] == soc and summary["qdq_over_context"] > 1  # type: ignore[operator]
        pipeline = Pipeline.from_manifest(compiled, store, "htp")
        image = pipeline.generate("a red circle", seed=4, steps=2).image
        assert image.tobytes() == reference.image.tobytes()  # the same graph, compiled earlier
    with pytest.raises(InvalidRequest, match="run it with --runtime htp"):
        Pipeline.from_manifest(compiled, store, "cpu")
    with pytest.raises(InvalidRequest, match="compile a quantized QDQ model"):
        compile_model(store, compiled, "75")


def test_compile_needs_a_quantized_model_and_a_known_arch(
    tiny_manifest: Manifest, store: ModelStore
) -> None:
    with pytest.raises(InvalidRequest, match="compile a quantized QDQ model"):
        compile_model(store, tiny_manifest, "73")
    with pytest.raises(InvalidRequest, match="unknown Hexagon arch '72'"):
        compile_model(store, tiny_manifest, "72")


def test_fastest_finalization_compiles_a_model_that_runs_and_says_so(
    tiny_manifest: Manifest, store: ModelStore
) -> None:
    qdq = quantize_model(
        store, tiny_manifest, "w8a16", calibration_prompts=2, calibration_steps=2, check_htp=False
    ).manifest
    with pytest.raises(InvalidRequest, match="finalization mode must be one of 1, 2, 3, not '9'"):
        compile_model(store, qdq, "73", finalization="9")
    compiled = compile_model(store, qdq, "73", finalization="1").manifest
    assert compiled.source.endswith(", finalization mode 1")
    image = Pipeline.from_manifest(compiled, store, "htp").generate("a red circle", steps=2).image
    assert image.shape == (16, 16, 3) and image.std() > 0
