"""A worker process: `annotator worker` (the app starts one as its child, ``LocalWorker``, unless told not to).

Thread workers, because ultralytics starts DataLoader processes and Huey's process workers are daemonic.
Every few seconds the worker announces itself (with its torch/CUDA facts) in the queue's storage.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from annotator.settings import Settings

from .protocol import announce
from .queue import make_huey
from .runtime import WORKER_ID, quiet_threads, system_info

ANNOUNCE_S = 3.0
PARENT_ENV = "ANNOTATOR_PARENT_PID"  # set by the app for its own worker: exit when that process is gone
PARENT_CHECK_S = 1.0
log = logging.getLogger("annotator.worker")


def run_worker(settings: Settings, workers: int = 1) -> None:
    threads = quiet_threads()  # before torch loads (system_info imports it)
    settings.prepare()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s worker %(levelname)s %(message)s")
    huey = make_huey(settings)
    info = system_info(settings.device)
    logging.info("worker %s: torch %s, CUDA %s, device %s, %s", WORKER_ID, info.get("torch"),
                 info.get("cuda_available"), info.get("device"), " ".join(f"{k}={v}" for k, v in threads.items()))

    def beat():
        while True:
            try:
                announce(huey, WORKER_ID, info)
            except Exception:  # noqa: BLE001 - the queue may be briefly locked; try again next beat
                logging.exception("announce failed")
            time.sleep(ANNOUNCE_S)

    threading.Thread(target=beat, name="announce", daemon=True).start()
    parent = os.environ.get(PARENT_ENV)
    if parent and parent.isdigit():
        threading.Thread(target=_exit_with_parent, args=(int(parent),), name="parent-watch", daemon=True).start()
    consumer = huey.create_consumer(workers=workers, worker_type="thread", periodic=False,
                                    initial_delay=0.1, backoff=1.15, max_delay=1.0, check_worker_health=True)
    consumer.run()


def _parent_alive(pid: int) -> bool:
    if os.getppid() != pid:  # re-parented: the app is gone
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def _exit_with_parent(pid: int, interval: float = PARENT_CHECK_S) -> None:
    """The app's own worker ends when the app does (kill -9 included), within ``interval`` seconds: an orphan
    would keep a GPU and pile up beside the next app's worker. A task it was running is recorded as running
    in the app's job table, which the next start reconciles (interrupted, resumable)."""
    while _parent_alive(pid):
        time.sleep(interval)
    log.warning("the app (pid %s) stopped: this worker exits too", pid)
    logging.shutdown()
    os._exit(0)


class LocalWorker:
    """`python -m annotator worker` as a child of the app, restarted if it dies."""

    def __init__(self, settings: Settings, max_restarts: int = 20):
        self.settings = settings
        self.proc: subprocess.Popen | None = None
        self.restarts = 0
        self.max_restarts = max_restarts
        self._last_start = 0.0

    def start(self) -> None:
        env = {**os.environ, "ANNOTATOR_DATA_DIR": str(self.settings.data_dir), PARENT_ENV: str(os.getpid())}
        if self.settings.queue_url:
            env["ANNOTATOR_QUEUE_URL"] = self.settings.queue_url
        logfile = open(self.settings.worker_log_path, "ab")  # noqa: SIM115 - owned by the child
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "annotator", "worker"], env=env, stdout=logfile, stderr=subprocess.STDOUT,
            cwd=str(Path(__file__).resolve().parents[1]),
        )
        logfile.close()
        self._last_start = time.time()

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def ensure_alive(self) -> None:
        if self.proc is None or self.alive() or self.restarts >= self.max_restarts:
            return
        if time.time() - self._last_start < 2.0:
            return
        log.warning("local worker exited with %s; restarting it", self.proc.returncode)
        self.restarts += 1
        self.start()

    def stop(self) -> None:
        if self.alive():
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
