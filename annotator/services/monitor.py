"""The app's side of background jobs: a thread that turns what workers report into DuckDB rows.

Only the app opens DuckDB, so workers report through the queue (jobs/protocol.py) and this monitor:
- pops result chunks in order and commits each with the job's tallies and channel cursor in ONE transaction (a crash
  loses at most the chunk in hand; a lost chunk is detected and counted, never waited for forever),
- moves jobs queued -> running -> succeeded | failed | cancelled, and marks a running job
  ``interrupted`` when its worker has been silent for ``settings.stale_after_s`` (kill -9, crash,
  power loss) — also right after an app restart, which is how orphaned jobs are reconciled,
- keeps the local worker process alive (restarting it if it dies), when it was given one.

What a chunk means, how a finished job is registered, which live fields to show and what to tell a person
when a worker died are each kind's own (a ``JobKind`` in annotation.py and training.py): the monitor
dispatches through ``KINDS``.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime, timezone

from jobs.protocol import JobChannel

from ..types import ACTIVE_JOB_STATES, Job
from . import annotation, loop, training
from .context import AppContext
from .jobs import JobKind

log = logging.getLogger("annotator.monitor")

KINDS: dict[str, JobKind] = {k.kind: k for k in (annotation.KIND, loop.TRAIN_ROUND_KIND, training.EVALUATE_KIND)}


def _ts(epoch: float | None) -> datetime | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, timezone.utc).replace(tzinfo=None)


class JobMonitor:
    def __init__(self, ctx: AppContext, interval: float = 0.5, worker=None):
        """``worker``: a jobs.worker.LocalWorker to keep alive (started here), or None."""
        self.ctx = ctx
        self.store = ctx.store
        self.interval = interval
        self.worker = worker
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()  # one sync at a time (the thread, or a caller's explicit tick)
        self._first_seen: dict[int, float] = {}
        self._last_written: dict[int, tuple] = {}

    # --- lifecycle -------------------------------------------------------------------------------------
    def start(self) -> "JobMonitor":
        if self.worker is not None:
            self.worker.start()
        self._thread = threading.Thread(target=self._run, name="job-monitor", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=10)
        if self.worker is not None:
            self.worker.stop()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
                if self.worker is not None:
                    self.worker.ensure_alive()
            except Exception:  # noqa: BLE001 - never let the monitor die; log and keep going
                log.exception("job monitor tick failed")
            self._stop.wait(self.interval)

    # --- one pass ----------------------------------------------------------------------------------------
    def tick(self) -> None:
        with self._lock:
            for job in self.store.list_jobs(statuses=ACTIVE_JOB_STATES, limit=1000):
                self._sync(job)

    def _sync(self, job: Job) -> None:
        kind = KINDS.get(job.kind)
        if kind is None:
            self.store.update_job(job.id, expect_status=ACTIVE_JOB_STATES, status="failed", finished_at=_ts(time.time()),
                                  error=f"unknown job kind {job.kind!r}: no handler in this app version")
            return
        ch = JobChannel(self.ctx.queue, job.id, job.attempt)
        n, lost = job.chunks_in, job.chunks_lost
        done = ch.read_done()
        while True:
            chunk = ch.pop_chunk(n)
            if chunk is None:
                if done is not None and n < int(done.get("chunks", 0)):
                    n, lost = n + 1, lost + 1  # popped, then the app died before committing it
                    continue
                break
            n += 1
            kind.ingest(self.ctx, job, chunk, {"chunks_in": n, "chunks_lost": lost})  # commits the cursor too
        logs = job.logs_in
        lines = []
        while (line := ch.pop_log(logs)) is not None:
            lines.append(line)
            logs += 1

        progress = ch.read_progress()
        now = time.time()
        fields: dict = {"chunks_in": n, "chunks_lost": lost, "logs_in": logs}
        live = dict(job.live or {})
        if progress:
            finished = int(progress.get("done", 0)) + job.done_before  # earlier attempts
            fraction = progress.get("fraction")  # training: epochs and the batches of the current one
            fields.update(heartbeat_at=_ts(progress["ts"]), worker=progress.get("worker"), done=finished,
                          progress=float(fraction) if fraction is not None else
                          ((finished / job.total) if job.total else 0.0))
            live = {k: progress.get(k) for k in kind.live_keys}
            if job.status == "queued":
                fields.update(status="running", started_at=job.started_at or _ts(progress["ts"]))
        if done is not None and n >= int(done.get("chunks", 0)) and logs >= int(done.get("logs", 0)):
            status = done["status"] if done["status"] in ("succeeded", "failed", "cancelled") else "failed"
            error = done.get("error")
            if kind.finish is not None:  # the app registers what the worker produced
                try:
                    gained = kind.finish(self.ctx, job, done)
                    if gained:
                        fields["result"] = {**self.store.get_job(job.id).result, **gained}
                except Exception as e:  # noqa: BLE001 - the job fails with the reason, the monitor goes on
                    log.exception("registering the result of job %s failed", job.id)
                    status, error = "failed", f"the run ended but its result could not be registered: {e}"
            fields.update(status=status, error=error, finished_at=_ts(done["ts"]))
            if status == "succeeded":
                fields["progress"] = 1.0
            live = {**live, "stage": status, "eta_s": None}
            self._first_seen.pop(job.id, None)
        elif job.status == "running" or (progress and job.status == "queued"):
            last = progress["ts"] if progress else self._first_seen.setdefault(job.id, now)
            silent = now - last
            if silent > self.ctx.settings.stale_after_s:
                who = progress.get("worker") if progress else "its worker"
                fields.update(
                    status="interrupted", finished_at=_ts(now),
                    error=(f"worker {who} stopped responding {silent:.0f} s ago (killed, crashed or restarted). "
                           + kind.stale_hint),
                )
                live = {**live, "stage": "interrupted", "eta_s": None}
                self._first_seen.pop(job.id, None)
        fields["live"] = live
        if lines:
            self.store.update_job(job.id, log="\n".join(lines))
        # Write the row only when something happened: a tick with no news costs no transaction.
        seen = (progress or {}).get("ts"), n, logs, bool(done), fields.get("status")
        if self._last_written.get(job.id) == seen:
            return
        self._last_written[job.id] = seen
        self.store.update_job(job.id, expect_status=ACTIVE_JOB_STATES, **fields)
