"""Small helpers shared by the tests that start servers or need system packages."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]  # the checkout
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"  # screenshots for a person to look at (git-ignored)


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


@contextlib.contextmanager
def worker_world(tmp_path, stale_after_s: int, **env: str):
    """Services over a fresh data folder, a JobMonitor and a real local worker process (CPU); ``env``: more
    settings (ANNOTATOR_SHARD_IMAGES=...)."""
    from annotator.launch import start_jobs
    from annotator.services import Services
    from annotator.settings import Settings

    settings = Settings.from_env({"ANNOTATOR_DATA_DIR": str(tmp_path / "data"),
                                  "ANNOTATOR_STALE_AFTER_S": str(stale_after_s), "ANNOTATOR_DEVICE": "cpu", **env})
    services = Services.open(settings)
    monitor = start_jobs(services, local_worker=True, interval=0.2)
    try:
        yield services, monitor
    finally:
        monitor.stop()
        services.close()


def wait_for_job(services, job_id: int, until, timeout: float = 180.0):
    """Poll the job until ``until(job)``; AssertionError with its last state after ``timeout`` s."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        job = services.jobs.get_job(job_id)
        if until(job):
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not reach the state in {timeout} s: {services.jobs.get_job(job_id)}")


def run_cli(data_dir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "ANNOTATOR_DATA_DIR": str(data_dir)}
    proc = subprocess.run(
        [sys.executable, "-m", "annotator", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


@contextlib.contextmanager
def redis_server(folder: Path):
    """A throw-away redis-server on a free loopback port (no persistence); yields its URL."""
    redis = require_tool("redis-server", "redis-server")
    port = free_port()
    proc = subprocess.Popen([redis, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                             "--dir", str(folder)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                time.sleep(0.1)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
