"""Small helpers shared by the tests that start servers or need system packages."""

from __future__ import annotations

import os
import shutil
import socket

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def require_tool(name: str, apt_package: str) -> str:
    """The tool's path. Missing: a module-level skip on a dev machine, an error in CI (.ci/run installs it)."""
    path = shutil.which(name)
    if path:
        return path
    if os.environ.get("CI"):
        raise RuntimeError(f"{name} is missing: .ci/run installs Debian's {apt_package} before `make test`")
    pytest.skip(f"{name} is not installed (apt-get install -y {apt_package})", allow_module_level=True)
