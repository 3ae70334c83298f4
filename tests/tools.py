"""The Debian tools the tests run for real (.ci/run installs each)."""

from __future__ import annotations

import shutil

import pytest


def debian_tool(name: str) -> str:
    """The path of command ``name`` (Debian's package of that name); fails the test when it is
    not installed, rather than skipping it."""
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is missing: .ci/run installs it (apt-get install {name})")
    return found
