"""Host tools some tests need (cross compilers, qemu-user, bubblewrap): skip without them, or
fail when HEXFLEET_REQUIRE_SERVICES=1 (CI installs them: .ci/run)."""

from __future__ import annotations

import os
import shutil

import pytest


def require_tool(name: str, package: str) -> str:
    """The tool's path; a skip (or, in CI, a failure) naming the Debian package when missing."""
    found = shutil.which(name)
    if found is not None:
        return found
    message = f"{name} is not installed (apt-get install {package})"
    if os.environ.get("HEXFLEET_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{message}; HEXFLEET_REQUIRE_SERVICES=1 makes it a failure")
    pytest.skip(message)
