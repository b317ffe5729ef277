"""What every job runner shares in a worker: who this worker is, which device it uses, the heartbeat that
keeps the app from declaring a job dead, and the one way an attempt ends (a final progress and the done
marker, with the reason when it failed). Never opens DuckDB."""

from __future__ import annotations

import os
import socket
import threading
import time
from typing import Any, Callable, Protocol

from annotator.types import disk_problem

from .protocol import JobChannel

WORKER_ID = f"{socket.gethostname()}:{os.getpid()}"
HEARTBEAT_S = 1.0

# OpenMP threads that wait at a barrier spin by default: on a machine where another process holds a core
# (a training beside auto-annotation), a spinning thread starves the one it waits for. Measured on 2 cores
# with one busy: YOLO predict on 2 torch threads 4 images/s spinning, 44 passive (1 thread: 43). GNU OpenMP
# (torch's wheels) reads OMP_WAIT_POLICY, Intel's (MKL builds) KMP_BLOCKTIME; both only when the OpenMP
# runtime loads, so before torch is imported.
QUIET_THREADS = {"OMP_WAIT_POLICY": "PASSIVE", "KMP_BLOCKTIME": "0"}


def quiet_threads() -> dict[str, str]:
    """Make waiting OpenMP threads sleep instead of spin (a value already set by the user is kept). Call
    before torch is imported; returns the settings in force."""
    for key, value in QUIET_THREADS.items():
        os.environ.setdefault(key, value)
    return {k: os.environ[k] for k in QUIET_THREADS}


class RunState(Protocol):
    """A runner's live state: ``stage`` is set to the final status at the end; ``snapshot()`` is what the
    progress key (the heartbeat) carries."""

    stage: str

    def snapshot(self) -> dict: ...


class FreeCores:
    """How many cores other processes leave this one, measured (Linux): the machine's busy time from
    /proc/stat minus this process's own CPU time, over at least ``window`` seconds. A worker running torch
    on every core while another process holds one runs slower than on one thread (issue 14): it asks this
    before each batch and uses that many threads (never more than ``maximum``, at least 1). Elsewhere (no
    /proc/stat) the answer is always ``maximum``."""

    def __init__(self, cores: int, window: float = 0.5):
        self.cores = max(1, int(cores))
        self.window = window
        self._last = self._sample()
        self._threads: int | None = None

    @staticmethod
    def _sample() -> tuple[float, float, float] | None:
        """(monotonic seconds, machine busy CPU seconds, this process's CPU seconds), or None."""
        try:
            with open("/proc/stat") as f:
                vals = [int(v) for v in f.readline().split()[1:9]]
            tick = os.sysconf("SC_CLK_TCK")
            busy = (sum(vals) - vals[3] - (vals[4] if len(vals) > 4 else 0)) / tick  # all but idle and iowait
            own = os.times()
            return time.monotonic(), busy, own.user + own.system
        except (OSError, ValueError, IndexError, AttributeError):
            return None

    def threads(self, maximum: int) -> int:
        maximum = max(1, int(maximum))
        now, last = self._sample(), self._last
        if now is None or last is None:
            return maximum
        if now[0] - last[0] < self.window:
            return min(maximum, self._threads or maximum)
        others = max(0.0, (now[1] - last[1]) - (now[2] - last[2])) / (now[0] - last[0])  # cores in use elsewhere
        self._last = now
        self._threads = max(1, min(maximum, int(self.cores - others + 0.5)))
        return self._threads


def verify_model_file(path: str | os.PathLike) -> str:
    """A registered model's file, checked before ultralytics loads (unpickles) it: the app stores a .pt
    under its SHA-256 only after checking what its pickle imports (annotator.checkpoints), so a file whose
    content no longer matches its name is refused here and never loaded. Returns the path as a string."""
    import hashlib
    import re
    from pathlib import Path

    p = Path(path)
    if p.suffix.lower() != ".pt" or not re.fullmatch(r"[0-9a-f]{64}", p.stem):
        raise RuntimeError(f"{p.name} is not a registered model file (the app registers every .pt a job loads)")
    h = hashlib.sha256()
    with open(p, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    if h.hexdigest() != p.stem:
        raise RuntimeError(f"model file {p} changed since it was registered (its SHA-256 is {h.hexdigest()[:12]}...): "
                           "refusing to load it; register the file again")
    return str(p)


def resolve_device(device: str | int | None) -> str:
    """'auto' -> first GPU if any, else CPU; '0', '1', 'cuda:0', 'cpu', 'mps' pass through."""
    d = str(device if device is not None else "auto").strip().lower() or "auto"
    if d != "auto":
        return d
    try:
        import torch

        if torch.cuda.is_available():
            return "0"
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return "mps"
    except Exception:  # noqa: BLE001 - no torch, no GPU: CPU it is
        pass
    return "cpu"


WORKER_DEVICE_ENV = "ANNOTATOR_WORKER_DEVICE"  # set per process by `annotator worker --devices`
WORKER_GPU_ENV = "ANNOTATOR_WORKER_GPU"  # ... with the host's index of the one GPU that process sees


def worker_device(device: str | int | None) -> str:
    """The device a job runs on in this worker: what the job asked for, except in a process of
    ``annotator worker --devices`` (one per GPU, each seeing only its own): there "auto" and any GPU mean
    that GPU. Which worker takes a shard is the queue's choice, so a job's "GPU 1" can only mean "a GPU"."""
    d = str(device if device is not None else "auto").strip().lower() or "auto"
    pinned = os.environ.get(WORKER_DEVICE_ENV, "").strip()
    if pinned and d not in ("cpu", "mps"):
        return resolve_device(pinned)
    return resolve_device(d)


def system_info(device: str = "auto") -> dict:
    """What a person checks by hand when inference is slow: torch, CUDA, GPU, the device jobs use."""
    info: dict[str, Any] = {"worker": WORKER_ID}
    try:
        import torch

        info["torch"] = torch.__version__
        info["cuda_available"] = bool(torch.cuda.is_available())
        info["cuda_version"] = torch.version.cuda
        gpus = []
        if info["cuda_available"]:
            for i in range(torch.cuda.device_count()):
                p = torch.cuda.get_device_properties(i)
                gpus.append({"index": i, "name": p.name, "memory_gb": round(p.total_memory / 2**30, 1)})
        info["gpus"] = gpus
    except Exception as e:  # noqa: BLE001
        info["torch"] = f"not importable: {e}"
        info["cuda_available"] = False
        info["gpus"] = []
    try:
        import ultralytics

        info["ultralytics"] = ultralytics.__version__
    except Exception as e:  # noqa: BLE001
        info["ultralytics"] = f"not importable: {e}"
    info["device"] = worker_device(device)
    host_gpu = os.environ.get(WORKER_GPU_ENV, "").strip()
    if host_gpu.isdigit():  # a process of `annotator worker --devices`: it sees one GPU, the host's number N
        info["device_label"] = f"GPU {host_gpu}"
        for g in info["gpus"]:
            g["index"] = int(host_gpu)
    info["cpu_count"] = os.cpu_count()
    return info


def is_oom(e: BaseException) -> bool:
    return "out of memory" in str(e).lower() or type(e).__name__ == "OutOfMemoryError"


def free_gpu() -> None:
    import gc

    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except Exception:  # noqa: BLE001
        pass


def heartbeat(channel: JobChannel, state: RunState) -> threading.Event:
    """Report ``state`` now and every HEARTBEAT_S from a thread (also while a model loads); set the
    returned event to stop."""
    stop = threading.Event()

    def beat():
        while not stop.wait(HEARTBEAT_S):
            channel.progress(**state.snapshot())

    channel.progress(**state.snapshot())
    threading.Thread(target=beat, name="heartbeat", daemon=True).start()
    return stop


def run_attempt(channel: JobChannel, state: RunState, body: Callable[[], tuple[str, dict | None, str | None]],
                cleanup: Callable[[], None] | None = None) -> str:
    """One attempt of a job: heartbeat while ``body()`` works, then the final progress and the done marker.

    ``body`` returns (status, result, error). Any exception ends the job as failed with its reason, never
    silently. Returns the final status."""
    stop = heartbeat(channel, state)
    try:
        status, result, error = body()
    except Exception as e:  # noqa: BLE001 - any failure ends the job with its reason
        problem = disk_problem(e)  # a full disk says so, with the free space, not as an errno
        reason = str(problem) if problem is not None else f"{type(e).__name__}: {e}"
        channel.log(f"failed: {reason}")
        status, result, error = "failed", None, reason
    finally:
        stop.set()
        if cleanup is not None:
            cleanup()
    state.stage = status
    channel.progress(**state.snapshot())
    channel.finish(status, error, result=result or {}, **state.snapshot())
    return status
