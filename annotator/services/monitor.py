"""The app's side of background jobs: a thread that turns what workers report into DuckDB rows.

Only the app opens DuckDB, so workers report through the queue (jobs/protocol.py) and this monitor:
- pops result chunks in order and commits each with the job's tallies and channel cursor in ONE transaction (a crash
  loses at most the chunk in hand; a lost chunk is detected and counted, never waited for forever),
- moves jobs queued -> running -> succeeded | failed | cancelled, and marks a running job
  ``interrupted`` when its worker has been silent for ``settings.stale_after_s`` (kill -9, crash,
  power loss) — also right after an app restart, which is how orphaned jobs are reconciled,
- does the same per shard for a sharded job (auto-annotation): each shard's channel is read on its own, a
  shard whose worker went silent is given to the next free worker (its images left only, at most
  ``settings.shard_retries`` times, then the job is interrupted), and the job's progress, speed, ETA and
  the workers taking part are the sum of its shards',
- keeps the local worker process alive (restarting it if it dies), when it was given one.

What a chunk means, how a finished job is registered, which live fields to show and what to tell a person
when a worker died are each kind's own (a ``JobKind`` in annotation.py and training.py): the monitor
dispatches through ``KINDS``.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from datetime import datetime, timezone

from jobs.protocol import JobChannel

from ..types import ACTIVE_JOB_STATES, Job, JobShard
from . import annotation, loop, quality, training
from .context import AppContext
from .jobs import JobKind

log = logging.getLogger("annotator.monitor")

KINDS: dict[str, JobKind] = {k.kind: k for k in (annotation.KIND, loop.TRAIN_ROUND_KIND, training.EVALUATE_KIND,
                                                  quality.CHECK)}


def _ts(epoch: float | None) -> datetime | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, timezone.utc).replace(tzinfo=None)


def _drain(ch: JobChannel, done: dict | None, chunks_in: int, chunks_lost: int, logs_in: int, commit):
    """Commit a channel's waiting result chunks in order, ``commit(chunk, cursor)`` each with the cursor that
    follows it (chunks_in, chunks_lost: one transaction); a chunk the done marker counts but the queue no longer
    holds (popped, then the app died before committing it) is counted lost. Then pop the waiting log lines.
    Returns (chunks_in, chunks_lost, logs_in, log lines, the cursor of the last committed chunk or None)."""
    n, lost, committed = chunks_in, chunks_lost, None
    while True:
        chunk = ch.pop_chunk(n)
        if chunk is None:
            if done is not None and n < int(done.get("chunks", 0)):
                n, lost = n + 1, lost + 1
                continue
            break
        n += 1
        commit(chunk, {"chunks_in": n, "chunks_lost": lost})
        committed = (n, lost)
    logs, lines = logs_in, []
    while (line := ch.pop_log(logs)) is not None:
        lines.append(line)
        logs += 1
    return n, lost, logs, lines, committed


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
            for job in self.store.list_jobs(statuses=ACTIVE_JOB_STATES, limit=1000, with_log=False):
                self._sync(job)

    def _sync(self, job: Job) -> None:
        kind = KINDS.get(job.kind)
        if kind is None:
            self.store.update_job(job.id, expect_status=ACTIVE_JOB_STATES, status="failed", finished_at=_ts(time.time()),
                                  error=f"unknown job kind {job.kind!r}: no handler in this app version")
            return
        if kind.retry_shard is not None:
            shards = self.store.job_shards(job.id, job.attempt, with_images=False)
            if shards:
                self._sync_shards(job, kind, shards)
                return
        ch = JobChannel(self.ctx.queue, job.id, job.attempt)
        done = ch.read_done()
        n, lost, logs, lines, _ = _drain(ch, done, job.chunks_in, job.chunks_lost, job.logs_in,
                                         lambda chunk, cursor: kind.ingest(self.ctx, job, chunk, cursor))
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

    # --- a sharded job (auto-annotation): each shard on its own channel -------------------------------------
    def _sync_shards(self, job: Job, kind: JobKind, shards: list[JobShard]) -> None:
        now = time.time()
        lines: list[str] = []
        result_gain: dict = {}
        # from the shards running now; tries given up; whether this tick committed chunks
        seen = {"unmapped": 0, "batch": None, "retired": [], "ingested": False}
        updated: list[JobShard] = []
        for s in shards:
            if not s.active:
                updated.append(s)
                continue
            ch = JobChannel(self.ctx.queue, job.id, job.attempt, s.shard, s.retry)
            done = ch.read_done()
            n, lost, logs, new_lines, committed = _drain(
                ch, done, s.chunks_in, s.chunks_lost, s.logs_in,
                lambda chunk, cursor, shard=s.shard: kind.ingest(self.ctx, job, chunk, {"shard": shard, **cursor}))
            lines += new_lines
            if committed is not None:  # the cursor went with the chunk: not written twice
                s = dataclasses.replace(s, chunks_in=committed[0], chunks_lost=committed[1])
                seen["ingested"] = True
            progress = ch.read_progress()
            fields: dict = {"chunks_in": n, "chunks_lost": lost, "logs_in": logs}
            if progress:
                fields.update(done=s.done_before + int(progress.get("done", 0)), ips=progress.get("ips"),
                              worker=progress.get("worker"), device=progress.get("device"),
                              heartbeat_at=_ts(progress["ts"]))
                if s.status == "queued":
                    fields.update(status="running", started_at=_ts(progress["ts"]))
                seen["unmapped"] += int(progress.get("unmapped") or 0)
                seen["batch"] = progress.get("batch") or seen["batch"]
            if done is not None and n >= int(done.get("chunks", 0)) and logs >= int(done.get("logs", 0)):
                status = done["status"] if done["status"] in ("succeeded", "failed", "cancelled") else "failed"
                fields.update(status=status, error=done.get("error"), finished_at=_ts(done["ts"]), ips=None)
                result_gain["unmapped"] = result_gain.get("unmapped", 0) + int((done.get("state") or {}).get("unmapped") or 0)
                seen["unmapped"] -= int(progress.get("unmapped") or 0) if progress else 0
                if status == "failed":  # the job fails with its reason: the other shards stop
                    ch.request_cancel()
                    lines.append(f"{time.strftime('%H:%M:%S')} [shard {s.shard}] failed: the other shards stop")
            elif s.status == "running" or progress:
                last = progress["ts"] if progress else self._first_seen.setdefault((job.id, s.shard), now)
                silent = now - last
                if silent > self.ctx.settings.stale_after_s:
                    who = (progress or {}).get("worker") or s.worker or "its worker"
                    if s.retry < self.ctx.settings.shard_retries and not ch.cancel_requested():
                        again = kind.retry_shard(self.ctx, job, s)
                        left = again.pop("left")
                        if who != "its worker":  # the images it committed still count as its work
                            seen["retired"].append((who, fields.get("device") or s.device,
                                                    again["done_before"] - s.done_before))
                        fields.update(again)
                        lines.append(f"{time.strftime('%H:%M:%S')} [shard {s.shard}] worker {who} stopped responding "
                                     f"{silent:.0f} s ago: its {left} image(s) left go to "
                                     f"the next free worker (try {fields['retry'] + 1})")
                    else:  # its images done: what was committed, not the last heartbeat's count
                        images = self.store.shard_images(job.id, job.attempt, s.shard)
                        fields.update(done=len(images) - len(self.store.images_left(job.id, images)))
                        fields.update(status="interrupted", finished_at=_ts(now), ips=None,
                                      error=f"worker {who} stopped responding {silent:.0f} s ago (killed, crashed or "
                                            f"restarted), after {s.retry + 1} tr{'ies' if s.retry else 'y'}. "
                                            + kind.stale_hint)
            changed = {k: v for k, v in fields.items() if getattr(s, k) != v}
            if changed:
                self.store.update_shard(job.id, job.attempt, s.shard, expect_status=ACTIVE_JOB_STATES, **changed)
            updated.append(dataclasses.replace(s, **fields))
        self._finish_sharded(job, updated, lines, result_gain, seen, now)

    def _finish_sharded(self, job: Job, shards: list[JobShard], lines: list[str], result_gain: dict, seen: dict,
                        now: float) -> None:
        """The job's row from its shards: images done, progress, speed and ETA, the workers taking part
        (each with its images/s), and its end once every shard has ended."""
        running = [s for s in shards if s.status == "running"]
        # the tallies as committed (this tick's chunks moved them in the row)
        result = dict(self.store.get_job(job.id).result if result_gain or seen["ingested"] else job.result or {})
        # the heartbeats' counts, or what is committed already when a chunk came after the last heartbeat
        committed = sum(int(result.get(k, 0)) for k in ("images", "protected", "errors"))
        done = max(job.done_before + sum(s.done for s in shards), committed)
        total = job.total or sum(len(s.images) for s in shards)
        ips = round(sum(s.ips or 0.0 for s in running), 2)
        eta = round((total - done) / ips, 1) if ips and total > done else None
        past = {w: dict(v) for w, v in (job.live.get("past") or {}).items()}  # images of tries given up, by worker
        for worker, device, images in seen["retired"]:
            entry = past.setdefault(worker, {"device": device, "images": 0})
            entry["images"] += images
        workers: dict[str, dict] = {w: {"worker": w, "device": v["device"], "ips": 0.0, "images": v["images"],
                                        "shards": 0, "running": False} for w, v in past.items()}
        for s in shards:
            if s.worker:
                w = workers.setdefault(s.worker, {"worker": s.worker, "device": s.device, "ips": 0.0, "images": 0,
                                                  "shards": 0, "running": False})
                w["images"] += s.done - s.done_before
                w["shards"] += 1
                if s.status == "running":
                    w["ips"] = round(w["ips"] + (s.ips or 0.0), 2)
                    w["running"] = True
        for k, v in result_gain.items():
            result[k] = result.get(k, 0) + v
        counts = {st: sum(s.status == st for s in shards) for st in ("queued", "running", "succeeded", "failed",
                                                                      "cancelled", "interrupted")}
        live = {"stage": "running" if running else ("queued" if counts["queued"] else job.live.get("stage")),
                "ips": ips, "eta_s": eta, "batch": seen["batch"] or job.live.get("batch"),
                "device": ", ".join(sorted({s.device for s in running if s.device})) or job.live.get("device"),
                "unmapped": int(result.get("unmapped", 0)) + seen["unmapped"],
                "shards": {"total": len(shards), **counts}, "workers": list(workers.values()), "past": past}
        beats = [s.heartbeat_at for s in shards if s.heartbeat_at is not None]
        fields: dict = {"done": done, "total": total, "progress": (done / total) if total else 0.0,
                        "worker": ", ".join(sorted({s.worker for s in running if s.worker})) or job.worker,
                        "heartbeat_at": max(beats) if beats else job.heartbeat_at}
        if result_gain:
            fields["result"] = result
        if job.status == "queued" and (running or any(not s.active for s in shards)):
            started = [s.started_at for s in shards if s.started_at is not None]
            fields.update(status="running", started_at=job.started_at or (min(started) if started else _ts(now)))
        if all(not s.active for s in shards):
            ended = {s.status for s in shards}
            first = next((s for st in ("failed", "interrupted") for s in shards if s.status == st), None)
            status = ("succeeded" if ended == {"succeeded"} else first.status if first is not None else "cancelled")
            ends = [x.finished_at for x in shards if x.finished_at is not None]  # the workers' done markers
            fields.update(status=status, finished_at=max(ends) if ends else _ts(now), error=None if first is None else
                          (f"shard {first.shard}: {first.error}" if len(shards) > 1 else first.error))
            if status == "succeeded":
                fields["progress"] = 1.0
            begun = [x.started_at for x in shards if x.started_at is not None]
            span = (max(ends) - min(begun)).total_seconds() if ends and begun else 0.0
            # what stays shown: the job's own speed, all workers together, from its first image to its last
            live.update(stage=status, eta_s=None, ips=round((done - job.done_before) / span, 2) if span > 0 else 0.0)
            for s in shards:
                self._first_seen.pop((job.id, s.shard), None)
            ended_job = True
        else:
            ended_job = False
        fields["live"] = live
        current = {k: getattr(job, k) for k in fields}
        if lines:  # the log lines go with the row's update: one transaction (only the lines, when it ended meanwhile)
            if not self.store.update_job(job.id, log="\n".join(lines), expect_status=ACTIVE_JOB_STATES, **fields):
                self.store.update_job(job.id, log="\n".join(lines))
        elif current != fields:
            self.store.update_job(job.id, expect_status=ACTIVE_JOB_STATES, **fields)
        if ended_job:  # its markers go: every try of every shard, and the job's cancel key
            for s in shards:
                for retry in range(s.retry + 1):
                    JobChannel(self.ctx.queue, job.id, job.attempt, s.shard, retry).clear()
            JobChannel(self.ctx.queue, job.id, job.attempt).clear(cancel=True)
