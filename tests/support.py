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


@contextlib.contextmanager
def worker_process(log: Path, env: dict, *args: str):
    """`python -m annotator worker ARGS` from the checkout, on the CPU with one torch thread, ``env`` over this
    process's environment, its output in ``log``; stopped (SIGTERM, then SIGKILL) at the end."""
    with open(log, "ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "annotator", "worker", *args], cwd=ROOT, stdout=out,
                                stderr=subprocess.STDOUT,
                                env={**os.environ, "ANNOTATOR_CPU_THREADS": "1", "ANNOTATOR_DEVICE": "cpu", **env})
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()


def wait_for_workers(services, pids: set[int] | None = None, count: int | None = None, log: Path | None = None,
                     timeout: float = 90.0) -> None:
    """Until the workers with these pids (or ``count`` workers) announced themselves; else fail with the log."""
    def live() -> list[int]:
        return [int(w["worker"].rsplit(":", 1)[1]) for w in services.jobs.live_workers()]

    deadline = time.time() + timeout
    while time.time() < deadline:
        if (pids is None or pids <= set(live())) and (count is None or len(live()) >= count):
            return
        time.sleep(0.3)
    raise AssertionError(f"workers {pids or count} did not announce themselves: "
                         + (log.read_text(errors="replace")[-3000:] if log and log.exists() else ""))
