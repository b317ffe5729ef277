"""The app's side of background jobs: a thread that turns what workers report into DuckDB rows.

Only the app opens DuckDB, so workers report through the queue (jobs/channel.py) and this monitor:
- pops result chunks in order and commits each with the job's counters in ONE transaction (a crash
  loses at most the chunk in hand; a lost chunk is detected and counted, never waited for forever),
- moves jobs queued -> running -> succeeded | failed | cancelled, and marks a running job
  ``interrupted`` when its worker has been silent for ``settings.stale_after_s`` (kill -9, crash,
  power loss) — also right after an app restart, which is how orphaned jobs are reconciled,
- keeps the local worker process alive (restarting it if it dies).
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

from jobs.channel import JobChannel

from .types import Box, Job

log = logging.getLogger("annotator.monitor")


def _ts(epoch: float | None) -> datetime | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, timezone.utc).replace(tzinfo=None)


class JobMonitor:
    def __init__(self, services, interval: float = 0.5):
        self.services = services
        self.store = services.store
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()  # one sync at a time (the thread, or a caller's explicit tick)
        self.worker: LocalWorker | None = None
        self._first_seen: dict[int, float] = {}
        self._last_written: dict[int, tuple] = {}

    # --- lifecycle -------------------------------------------------------------------------------------
    def start(self, local_worker: bool = True) -> "JobMonitor":
        if local_worker:
            self.worker = LocalWorker(self.services.settings)
            self.worker.start()
        self._thread = threading.Thread(target=self._run, name="job-monitor", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=10)
        if self.worker:
            self.worker.stop()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
                if self.worker:
                    self.worker.ensure_alive()
            except Exception:  # noqa: BLE001 - never let the monitor die; log and keep going
                log.exception("job monitor tick failed")
            self._stop.wait(self.interval)

    # --- one pass ----------------------------------------------------------------------------------------
    def tick(self) -> None:
        with self._lock:
            for job in self.store.list_jobs(statuses=("queued", "running"), limit=1000):
                self._sync(job)

    def _sync(self, job: Job) -> None:
        huey = self.services.huey
        ch = JobChannel(huey, job.id, job.attempt)
        counters = dict(job.counters)
        n = int(counters.get("chunks_in", 0))
        done = ch.read_done()
        while True:
            chunk = ch.pop_chunk(n)
            if chunk is None:
                if done is not None and n < int(done.get("chunks", 0)):
                    counters["chunks_lost"] = counters.get("chunks_lost", 0) + 1  # popped, then the app died
                    n += 1
                    counters["chunks_in"] = n
                    continue
                break
            n += 1
            counters = self._ingest(job, chunk, {**counters, "chunks_in": n})
        logs = int(counters.get("logs_in", 0))
        lines = []
        while (line := ch.pop_log(logs)) is not None:
            lines.append(line)
            logs += 1
        counters["logs_in"] = logs

        progress = ch.read_progress()
        now = time.time()
        fields: dict = {"counters": counters}
        if progress:
            finished = int(progress.get("done", 0)) + int(counters.get("done_before", 0))  # earlier attempts
            fraction = progress.get("fraction")  # training: epochs and the batches of the current one
            fields.update(heartbeat_at=_ts(progress["ts"]), worker=progress.get("worker"), done=finished,
                          progress=float(fraction) if fraction is not None else
                          ((finished / job.total) if job.total else 0.0))
            counters["live"] = {k: progress.get(k) for k in LIVE_KEYS.get(job.kind, LIVE_KEYS["annotate"])}
            if job.status == "queued":
                fields.update(status="running", started_at=job.started_at or _ts(progress["ts"]))
        if done is not None and n >= int(done.get("chunks", 0)) and logs >= int(done.get("logs", 0)):
            status = done["status"] if done["status"] in ("succeeded", "failed", "cancelled") else "failed"
            error = done.get("error")
            if job.kind in ("train", "evaluate"):  # the app registers what the worker produced
                try:
                    counters.update(self.services.training.finish_job(job, done))
                except Exception as e:  # noqa: BLE001 - the job fails with the reason, the monitor goes on
                    log.exception("registering the result of job %s failed", job.id)
                    status, error = "failed", f"the run ended but its result could not be registered: {e}"
            fields.update(status=status, error=error, finished_at=_ts(done["ts"]))
            if status == "succeeded":
                fields["progress"] = 1.0
            counters["live"] = {**counters.get("live", {}), "stage": status, "eta_s": None}
            self._first_seen.pop(job.id, None)
        elif job.status == "running" or (progress and job.status == "queued"):
            last = progress["ts"] if progress else self._first_seen.setdefault(job.id, now)
            silent = now - last
            if silent > self.services.settings.stale_after_s:
                who = progress.get("worker") if progress else "its worker"
                fields.update(
                    status="interrupted", finished_at=_ts(now),
                    error=(f"worker {who} stopped responding {silent:.0f} s ago (killed, crashed or restarted). "
                           + STALE_HINTS.get(job.kind, STALE_HINTS["annotate"])),
                )
                counters["live"] = {**counters.get("live", {}), "stage": "interrupted", "eta_s": None}
                self._first_seen.pop(job.id, None)
        if lines:
            self.store.update_job(job.id, log="\n".join(lines))
        # Write the row only when something happened: a tick with no news costs no transaction.
        seen = (progress or {}).get("ts"), n, logs, bool(done), fields.get("status")
        if self._last_written.get(job.id) == seen:
            return
        self._last_written[job.id] = seen
        self.store.update_job(job.id, expect_status=("queued", "running"), **fields)


    def _ingest(self, job: Job, chunk: dict, counters: dict) -> dict:
        """Commit one result chunk with the job's counters; what a chunk holds depends on the job's kind."""
        if job.kind == "annotate":
            items = [
                (int(image_id), [Box(x1=x1, y1=y1, x2=x2, y2=y2, class_idx=int(c), confidence=p, source="model",
                                     model_id=job.model_id, job_id=job.id)
                                 for c, x1, y1, x2, y2, p in boxes])
                for image_id, boxes in chunk["items"]
            ]
            return self.store.save_predictions(job.id, job.attempt, job.model_id, items, chunk.get("failed", []),
                                               job_counters=counters)
        # train / evaluate: one row per finished epoch (the curves); a restart (OOM fallback) starts over
        epochs = list(counters.get("epochs", []))
        for row in chunk.get("items", []):
            epochs = [] if row.get("restart") else epochs + [row]
        counters = {**counters, "epochs": epochs}
        self.store.update_job(job.id, counters=counters)
        return counters


LIVE_KEYS = {
    "annotate": ("stage", "ips", "eta_s", "batch", "device", "unmapped"),
    "train": ("stage", "eta_s", "batch", "device", "epoch", "epochs", "batch_i", "batches"),
    "evaluate": ("stage", "eta_s", "batch", "device"),
}
STALE_HINTS = {
    "annotate": "Boxes of the images it finished are kept; Resume does the rest.",
    "train": "Weights saved up to its last finished epoch stay in the job folder (run/weights); start the "
             "training again.",
    "evaluate": "Start the evaluation again.",
}


class LocalWorker:
    """`python -m annotator worker` as a child of the app, restarted if it dies."""

    def __init__(self, settings, max_restarts: int = 20):
        self.settings = settings
        self.proc: subprocess.Popen | None = None
        self.restarts = 0
        self.max_restarts = max_restarts
        self._last_start = 0.0

    def start(self) -> None:
        env = {**os.environ, "ANNOTATOR_DATA_DIR": str(self.settings.data_dir)}
        if self.settings.queue_url:
            env["ANNOTATOR_QUEUE_URL"] = self.settings.queue_url
        logfile = open(Path(self.settings.data_dir) / "worker.log", "ab")  # noqa: SIM115 - owned by the child
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
