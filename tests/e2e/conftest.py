"""The e2e farm fixture: two virtual phones on the embedded defaults (farm_support builds it)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from farm_support import Farm, build_farm

# Test modules here import these from farm_support and waiting; re-exported for the ones that
# still say `from conftest import ...`.
__all__ = ["Farm", "build_farm"]


@pytest.fixture(scope="module")
def farm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Farm]:
    """Embedded defaults (SQLite, filesystem broker): two phones, SM8550 and SM8650."""
    yield from build_farm(tmp_path_factory.mktemp("farm"), {}, ["sm8550", "sm8650"])
