"""The app's own worker process ends when the app does, kill -9 included (an orphan keeps the GPU and piles
up beside the next app's worker)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

PARENT = """
import os, subprocess, sys, time
env = {**os.environ, "ANNOTATOR_PARENT_PID": str(os.getpid())}
worker = subprocess.Popen([sys.executable, "-m", "annotator", "worker"], env=env, cwd=sys.argv[1],
                          stdout=open(sys.argv[2], "ab"), stderr=subprocess.STDOUT)
print(worker.pid, flush=True)
time.sleep(600)
"""


def _gone(pid: int) -> bool:
    """Exited (a zombie no one has reaped yet counts: it runs nothing)."""
    try:
        state = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True
    return "\nState:\tZ" in state or "\nState:\tX" in state


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads /proc to see the worker end")
def test_the_local_worker_exits_when_its_app_is_killed(tmp_path):
    env = {**os.environ, "ANNOTATOR_DATA_DIR": str(tmp_path / "data"), "ANNOTATOR_QUEUE_URL": ""}
    log = tmp_path / "worker.log"
    parent = subprocess.Popen([sys.executable, "-c", PARENT, str(ROOT), str(log)], env=env,
                              stdout=subprocess.PIPE, text=True)
    worker = int(parent.stdout.readline())
    try:
        deadline = time.time() + 60
        while "consumer" not in log.read_text(errors="replace").lower() and time.time() < deadline:
            time.sleep(0.5)  # started (torch imported, the consumer running)
        assert not _gone(worker), log.read_text()
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
        t = time.time()
        while not _gone(worker) and time.time() - t < 15:
            time.sleep(0.2)
        assert _gone(worker), f"the worker outlived its app by 15 s: {log.read_text()[-2000:]}"
        assert time.time() - t < 10
        assert "the app (pid" in log.read_text()
    finally:
        if not _gone(worker):
            os.kill(worker, signal.SIGKILL)
