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


def parse_devices(spec: str, gpu_count: int | None = None) -> list[str]:
    """``--devices``: "all" (every GPU of this host), "0,1,2", or "cpu" entries (one CPU worker process each):
    the device of each worker process to start, in order. A GPU this host does not have is refused by name."""
    items = [d.strip().lower() for d in str(spec or "").split(",") if d.strip()]
    if not items:
        raise ValueError("--devices needs 'all', GPU numbers such as 0,1,2, or cpu")
    if gpu_count is None and any(d != "cpu" for d in items):
        gpu_count = _gpu_count()
    if items == ["all"]:
        if not gpu_count:
            raise ValueError("--devices all: this host has no CUDA GPU (torch sees none); run `annotator worker` "
                             "without --devices for a CPU worker, or check `annotator doctor`")
        return [str(i) for i in range(gpu_count)]
    out = []
    for d in items:
        if d == "cpu":
            out.append("cpu")
        elif d.isdigit():
            if int(d) >= gpu_count:
                raise ValueError(f"--devices {spec}: GPU {d} is not on this host (it has {gpu_count} GPU(s))")
            out.append(str(int(d)))
        else:
            raise ValueError(f"--devices {spec}: {d!r} is neither a GPU number nor 'cpu' (or use 'all')")
    return out


def _gpu_count() -> int:
    try:
        import torch

        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    except Exception:  # noqa: BLE001 - no torch: no GPU
        return 0


def device_env(device: str) -> dict[str, str]:
    """The environment of the worker process for ``device``. A GPU process sees only its GPU
    (CUDA_VISIBLE_DEVICES, set before torch loads: ultralytics' own per-call setting comes too late once CUDA
    is initialised, and every process would use GPU 0) and uses it for jobs that ask for "auto"."""
    from .runtime import WORKER_DEVICE_ENV, WORKER_GPU_ENV

    if device == "cpu":
        return {WORKER_DEVICE_ENV: "cpu", "CUDA_VISIBLE_DEVICES": ""}
    return {WORKER_DEVICE_ENV: "0", WORKER_GPU_ENV: device, "CUDA_VISIBLE_DEVICES": device}


def run_device_workers(settings: Settings, devices: list[str], workers: int = 1, max_restarts: int = 20) -> None:
    """`annotator worker --devices ...`: one worker process per device, each restarted when it dies (at most
    ``max_restarts`` times in all), all stopped together on Ctrl+C / SIGTERM."""
    import signal

    env = {**os.environ, "ANNOTATOR_DATA_DIR": str(settings.data_dir)}
    if settings.queue_url:
        env["ANNOTATOR_QUEUE_URL"] = settings.queue_url
    cmd = [sys.executable, "-m", "annotator", "worker", "--workers", str(int(workers))]
    root = str(Path(__file__).resolve().parents[1])
    procs: dict[int, subprocess.Popen] = {}

    def start(n: int) -> None:
        procs[n] = subprocess.Popen(cmd, env={**env, **device_env(devices[n])}, cwd=root)
        log.info("worker process %s on %s: pid %s", n, "CPU" if devices[n] == "cpu" else f"GPU {devices[n]}",
                 procs[n].pid)

    stopping = threading.Event()

    def stop(*_):
        stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s workers %(levelname)s %(message)s")
    for n in range(len(devices)):
        start(n)
    restarts = 0
    try:
        while not stopping.wait(1.0):
            for n, proc in list(procs.items()):
                if proc.poll() is not None and restarts < max_restarts:
                    log.warning("worker process %s (%s) exited with %s; restarting it", n, devices[n], proc.returncode)
                    restarts += 1
                    start(n)
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in procs.values():
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()


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
