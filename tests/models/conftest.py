"""Fixtures for the model tooling: a store in the test's data dir and random-weight models."""

from __future__ import annotations

from pathlib import Path

import pytest
from synthetic_sd import write_optimum_layout, write_tiny_layout

from hexfleet.manifest import Manifest
from hexfleet.models.registration import register_tiny_sd
from hexfleet.models.store import ModelStore
from hexfleet.settings import Settings


@pytest.fixture(scope="session")
def tiny_layout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weight model in tiny-sd's folder layout (weights/*.onnx, info.json, vocab)."""
    return write_tiny_layout(tmp_path_factory.mktemp("tiny_sd"))


@pytest.fixture(scope="session")
def optimum_layout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weight SD 1.5-shaped export in optimum's layout (shrunk)."""
    return write_optimum_layout(tmp_path_factory.mktemp("sd15-tiny"))


@pytest.fixture
def store(settings: Settings) -> ModelStore:
    return ModelStore.from_settings(settings)


@pytest.fixture
def tiny_manifest(store: ModelStore, tiny_layout: Path) -> Manifest:
    return register_tiny_sd(store, tiny_layout)
