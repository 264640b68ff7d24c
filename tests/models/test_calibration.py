"""Range collection for quantization: the same numbers as onnxruntime's MinMax calibrator, a
part of the graph at a time, without loading the weights into Python."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from calibration_feeds import FeedsReader
from onnxruntime.quantization.calibrate import create_calibrator

from hexfleet.manifest import Manifest
from hexfleet.models.calibration import (
    calibrated_tensors,
    calibration_parts,
    collect_ranges,
    record_activations,
)
from hexfleet.models.pipeline import Pipeline
from hexfleet.models.quantize import prepare_graph
from hexfleet.models.registration import load_onnx
from hexfleet.models.store import ModelStore


@pytest.fixture
def unet_and_feeds(
    tiny_manifest: Manifest, store: ModelStore, tmp_path: Path
) -> tuple[Path, list[dict[str, np.ndarray]]]:
    pipeline = Pipeline.from_manifest(tiny_manifest, store, threads=1)
    feeds = record_activations(pipeline, ["a red car", "a cat on a sofa"], steps=2).feeds["unet"]
    source = store.component_path(tiny_manifest.components["unet"])
    return prepare_graph(source, tmp_path / "unet.fixed.onnx", feeds[0]), feeds


def test_ranges_equal_onnxruntimes_minmax_in_one_part_or_several(
    unet_and_feeds: tuple[Path, list[dict[str, np.ndarray]]], tmp_path: Path
) -> None:
    model, feeds = unet_and_feeds
    calibrator = create_calibrator(model, augmented_model_path=str(tmp_path / "augmented.onnx"))
    calibrator.collect_data(FeedsReader(feeds))
    expected = calibrator.compute_data()
    runs: list[tuple[int, int]] = []
    whole = collect_ranges(model, feeds, on_run=lambda *run: runs.append(run))
    parts = collect_ranges(model, feeds, part_bytes=200_000)
    assert runs[-1] == (len(feeds), len(feeds))
    assert set(whole.keys()) == set(expected.keys()) == set(parts.keys())
    assert len(expected.keys()) > 50
    for name in expected.keys():
        want = expected[name].range_value
        for got in (whole[name].range_value, parts[name].range_value):
            np.testing.assert_allclose(got[0], want[0], rtol=1e-6, atol=1e-7, err_msg=name)
            np.testing.assert_allclose(got[1], want[1], rtol=1e-6, atol=1e-7, err_msg=name)
    # No scratch model is left beside the one calibrated.
    assert sorted(p.name for p in model.parent.iterdir() if p.name.startswith(".")) == []


def test_tensors_come_in_the_order_the_graph_computes_them(
    unet_and_feeds: tuple[Path, list[dict[str, np.ndarray]]],
) -> None:
    model = load_onnx(unet_and_feeds[0])
    names = calibrated_tensors(model, None)
    assert len(calibration_parts(names, 200_000)) > 3
    produced = {o: i for i, n in enumerate(model.graph.node) for o in n.output}
    positions = [produced.get(n, -1) for n in names]
    assert positions == sorted(positions) and positions[0] == -1  # the inputs first
    assert all(size > 0 for size in names.values())
    only_convs = calibrated_tensors(model, ["Conv"])
    assert 0 < len(only_convs) < len(names)
