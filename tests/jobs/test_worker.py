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


def test_worker_threads_wait_passively_unless_the_user_chose(monkeypatch):
    """OpenMP threads that spin starve a busy machine (issue 14: 4 vs 44 images/s on 2 cores with one taken);
    the worker asks for passive waiting before torch loads, and a value the user set wins."""
    from jobs.runtime import quiet_threads

    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    monkeypatch.setenv("KMP_BLOCKTIME", "200")
    assert quiet_threads() == {"OMP_WAIT_POLICY": "PASSIVE", "KMP_BLOCKTIME": "200"}
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"


def test_nothing_before_the_worker_starts_imports_torch():
    """The policy only counts if it is set before the OpenMP runtime loads: the worker's entry point (the CLI,
    the settings, jobs.worker) must not import torch on its own."""
    code = ("import sys, annotator.cli, annotator.settings, jobs.worker, jobs.queue; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         cwd=str(Path(__file__).resolve().parents[2]))
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "False"


def test_threads_follow_the_cores_other_processes_leave_free(monkeypatch):
    """FreeCores: the machine's busy CPU time minus this process's own, per second, is what others use; the
    rest (rounded, at least 1, at most the maximum) is how many threads the next batch gets. Within the
    window the last answer stands; without /proc/stat the maximum."""
    from jobs.runtime import FreeCores

    samples = iter([(0.0, 100.0, 10.0),     # at start
                    (1.0, 101.1, 11.0),     # 1.1 s busy, 1.0 of it ours: others use 0.1 cores -> 4 free
                    (1.2, 101.5, 11.2),     # inside the window: the last answer (capped by the maximum)
                    (2.2, 104.4, 12.2),     # since 1.0: 3.3 busy, 1.2 ours: others 1.75 cores -> 2 free
                    (3.2, 108.6, 12.4),     # 4.2 busy, 0.2 ours: others hold all 4 -> still 1 thread
                    None])                  # no /proc/stat: the maximum
    monkeypatch.setattr(FreeCores, "_sample", staticmethod(lambda: next(samples)))
    fc = FreeCores(4, window=0.5)
    assert [fc.threads(8), fc.threads(3), fc.threads(8), fc.threads(8), fc.threads(8)] == [4, 3, 2, 1, 8]


def test_without_proc_stat_every_core_is_used(monkeypatch):
    from jobs.runtime import FreeCores

    monkeypatch.setattr(FreeCores, "_sample", staticmethod(lambda: None))
    assert FreeCores(2).threads(8) == 8 and FreeCores(2).threads(0) == 1
