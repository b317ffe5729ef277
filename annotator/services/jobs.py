"""Job control shared by every kind of job: look jobs up, cancel them, queue a task, and what the app knows
of the workers (system info). Each kind's own half (start, ingest a result chunk, finish, live keys, stale
hint) lives in its module (annotation.py, training.py) as a ``JobKind``; the monitor dispatches on it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from jobs.protocol import JobChannel

from ..store import utcnow
from ..types import Job, JobShard, UserError
from .context import AppContext, project, require


@dataclass(frozen=True)
class JobKind:
    """The app-side half of one kind of job, as the monitor needs it."""

    kind: str
    # (ctx, job, chunk, cursor): commit one result chunk together with the channel cursor (chunks_in,
    # chunks_lost) that follows it, in one transaction
    ingest: Callable[[AppContext, Job, dict, dict], None]
    # (ctx, job, done marker) -> what the job's result gains (registering what the worker produced), or None
    finish: Callable[[AppContext, Job, dict], dict] | None
    live_keys: tuple[str, ...]  # the progress fields shown while it runs
    stale_hint: str  # what a person can do when its worker died
    # (ctx, job, shard) -> the shard's new fields (and "left": its images not finished, queued again for
    # another worker); a sharded kind only
    retry_shard: Callable[[AppContext, Job, JobShard], dict] | None = None


def get_job(ctx: AppContext, job_id: int | str) -> Job:
    try:
        return ctx.store.get_job(int(job_id))
    except (TypeError, ValueError):
        raise UserError(f"job id must be a number, got {job_id!r}") from None


def list_jobs(ctx: AppContext, ref=None, limit: int = 30) -> list[Job]:
    pid = project(ctx, ref).id if ref not in (None, "") else None
    return ctx.store.list_jobs(pid, limit=limit)


def jobs_signature(ctx: AppContext, limit: int = 12) -> str:
    """Changes whenever one of the newest ``limit`` jobs is added or moves (cheap: no logs read)."""
    return ctx.store.jobs_signature(limit)


def enqueue(ctx: AppContext, task_name: str, payload: dict):
    """Put one task on the queue; returns the Huey task (its id goes into the job row)."""
    task = getattr(ctx.queue, task_name).s(payload)
    ctx.queue.enqueue(task)
    return task


def require_job_owner(ctx: AppContext, job: Job, user: str | None, doing: str) -> None:
    """An annotator acts on their own jobs; someone else's needs an admin."""
    if job.created_by and job.created_by != ctx.user(user):
        require(ctx, user, "admin", f"{doing} job {job.id} of {job.created_by}")


def cancel_job(ctx: AppContext, job_id: int | str, user: str | None = None) -> Job:
    """Cancel a queued or running job (an annotator cancels their own jobs, an admin anyone's)."""
    require(ctx, user, "annotator", "cancelling a job")
    job = get_job(ctx, job_id)
    require_job_owner(ctx, job, user, "cancelling")
    if not job.active:
        raise UserError(f"Job {job.id} is already {job.status}; nothing to cancel")
    JobChannel(ctx.queue, job.id, job.attempt).request_cancel()  # every shard of the job reads this one key
    shards = ctx.store.job_shards(job.id, job.attempt)
    for s in shards:  # shards still waiting in the queue never start
        if s.status == "queued":
            if s.task_id:
                ctx.queue.revoke_by_id(s.task_id)
            ctx.store.update_shard(job.id, job.attempt, s.shard, expect_status=("queued",), status="cancelled",
                                   finished_at=utcnow())
    if job.status == "queued":
        if job.task_id and not shards:
            ctx.queue.revoke_by_id(job.task_id)
        ctx.store.update_job(job.id, expect_status=("queued",), status="cancelled", finished_at=utcnow(),
                             log="cancelled before it started")
    else:
        ctx.store.update_job(job.id, log="cancel requested: stopping after the current batch")
    return ctx.store.get_job(job.id)


def system_info(ctx: AppContext) -> dict:
    """torch / CUDA / GPUs / device for this process, and what every live worker reported."""
    from jobs.runtime import system_info as here

    return {"app": here(ctx.settings.device), "workers": live_workers(ctx)}


def live_workers(ctx: AppContext) -> list[dict]:
    from jobs.protocol import live_workers as read

    return read(ctx.queue)
