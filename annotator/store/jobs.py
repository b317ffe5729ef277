"""Job rows: create, read, list, update (status, progress, cursors, live state, result, log); epochs."""

from __future__ import annotations

import json
from typing import Sequence

from ..types import Job, JobShard, NotFound
from .rows import JOB_COLUMNS, job_from_row, utcnow


class JobsMixin:
    """Job rows.
    Mixed into ``Store``: uses its ``_all``, ``_one``, ``_read``, ``transaction`` and ``_bulk_insert``.
    """

    def create_job(self, project_id: int | None, kind: str, params: dict, total: int, model_id: int | None = None,
                   user: str | None = None) -> int:
        with self.transaction() as cur:
            ((jid,),) = cur.execute(
                "INSERT INTO jobs (project_id, kind, params, status, total, result, created_at, created_by, "
                "attempt, model_id) VALUES (?, ?, ?, 'queued', ?, '{}', ?, ?, 0, ?) RETURNING id",
                [project_id, kind, json.dumps(params), total, utcnow(), user, model_id],
            ).fetchall()
        return int(jid)

    def get_job(self, job_id: int) -> Job:
        row = self._one(f"SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?", [job_id])
        if row is None:
            raise NotFound(f"No job with id {job_id}")
        return job_from_row(row)

    def list_jobs(self, project_id: int | None = None, statuses: Sequence[str] | None = None,
                  limit: int = 50, with_log: bool = True) -> list[Job]:
        """Newest first. ``with_log=False``: every field but the log (up to 200 KB a job), for callers that
        look at states only (the job monitor, several times a second)."""
        where, params = ["true"], []
        if project_id is not None:
            where.append("project_id = ?")
            params.append(project_id)
        if statuses:
            where.append("status IN (SELECT unnest(?::VARCHAR[]))")
            params.append(list(statuses))
        columns = JOB_COLUMNS if with_log else JOB_COLUMNS.replace(" log,", " '' AS log,")
        rows = self._all(
            f"SELECT {columns} FROM jobs WHERE {' AND '.join(where)} ORDER BY id DESC LIMIT ?", params + [limit]
        )
        return [job_from_row(r) for r in rows]

    _JOB_FIELDS = {"status", "progress", "done", "total", "result", "live", "error", "worker", "task_id",
                   "started_at", "finished_at", "heartbeat_at", "attempt", "params", "chunks_in", "logs_in",
                   "chunks_lost", "done_before"}
    _JSON_FIELDS = ("params", "result", "live")

    def jobs_signature(self, limit: int = 12) -> str:
        """A short string that changes whenever one of the newest jobs is added or moves (status, progress,
        live telemetry, result, log): what a jobs panel polls instead of reading every log."""
        rows = self._all("SELECT id, status, done, progress, length(log), "
                         "md5(coalesce(CAST(live AS VARCHAR), '') || coalesce(CAST(result AS VARCHAR), '')) "
                         "FROM jobs ORDER BY id DESC LIMIT ?", [limit])
        return ";".join(",".join(str(v) for v in r) for r in rows)

    def update_job(self, job_id: int, log: str | None = None, expect_status: Sequence[str] | None = None,
                   **fields) -> bool:
        """Update a job's fields (and append to its log). With ``expect_status`` only if the job is in one
        of those states; returns whether a row changed."""
        unknown = set(fields) - self._JOB_FIELDS
        if unknown:
            raise ValueError(f"unknown job fields: {sorted(unknown)}")
        sets, params = [], []
        for k, v in fields.items():
            sets.append(f"{k} = ?")
            params.append(json.dumps(v) if k in self._JSON_FIELDS and v is not None else v)
        if log:
            sets.append("log = right(log || ?, 200000)")
            params.append(log if log.endswith("\n") else log + "\n")
        if not sets:
            return False
        sql = f"UPDATE jobs SET {', '.join(sets)} WHERE id = ?"
        params.append(job_id)
        if expect_status:
            sql += " AND status IN (SELECT unnest(?::VARCHAR[]))"
            params.append(list(expect_status))
        with self.transaction() as cur:
            return bool(cur.execute(sql + " RETURNING id", params).fetchall())

    def save_epochs(self, job_id: int, rows: Sequence[dict], chunks_in: int, restart: bool = False) -> None:
        """Add finished epochs of a training job (``restart``: the run started over, its earlier epochs go)
        and the channel cursor they came with, in one transaction."""
        with self.transaction() as cur:
            if restart:
                cur.execute("DELETE FROM job_epochs WHERE job_id = ?", [job_id])
            for row in rows:
                cur.execute("INSERT INTO job_epochs VALUES (?, ?, ?)", [job_id, int(row["epoch"]), json.dumps(row)])
            cur.execute("UPDATE jobs SET chunks_in = ? WHERE id = ?", [int(chunks_in), job_id])

    def job_epochs(self, job_id: int) -> list[dict]:
        """The finished epochs of a training job, in order (its curves)."""
        return [json.loads(m) for (m,) in self._all(
            "SELECT metrics FROM job_epochs WHERE job_id = ? ORDER BY epoch", [job_id])]

    # --- shards of an auto-annotation job --------------------------------------------------------------------
    _SHARD_COLUMNS = ("job_id", "attempt", "shard", "images", "status", "retry", "done", "done_before", "task_id",
                      "worker", "device", "ips", "chunks_in", "chunks_lost", "logs_in", "heartbeat_at", "started_at",
                      "finished_at", "error")
    _SHARD_FIELDS = frozenset(_SHARD_COLUMNS[4:])

    def create_shards(self, job_id: int, attempt: int, shards: Sequence[Sequence[int]],
                      task_ids: Sequence[str]) -> None:
        """The shards of a job's attempt (image ids each, and the queue task of each), all queued; one
        statement."""
        if not shards:
            return
        ids = [list(map(int, g)) for g in shards]
        with self.transaction() as cur:
            cur.execute("INSERT INTO job_shards (job_id, attempt, shard, images, task_id, status) "
                        "SELECT ?, ?, s.n - 1, s.ids, s.task, 'queued' FROM (SELECT unnest(?::BIGINT[][]) AS ids, "
                        "unnest(?::VARCHAR[]) AS task, generate_subscripts(?::BIGINT[][], 1) AS n) s",
                        [job_id, attempt, ids, [str(t) for t in task_ids], ids])

    def job_shards(self, job_id: int, attempt: int, with_images: bool = True) -> list[JobShard]:
        """The shards of a job's attempt, in order. ``with_images=False``: ``images`` empty (a 100k-image job's
        ids are not read on every monitor tick; shard_images reads one shard's)."""
        columns = [c if c != "images" or with_images else "[]::BIGINT[] AS images" for c in self._SHARD_COLUMNS]
        rows = self._all(f"SELECT {', '.join(columns)} FROM job_shards WHERE job_id = ? AND attempt = ? "
                         "ORDER BY shard", [job_id, attempt])
        return [JobShard(**{**dict(zip(self._SHARD_COLUMNS, r)), "images": tuple(int(i) for i in r[3])}) for r in rows]

    def shard_images(self, job_id: int, attempt: int, shard: int) -> tuple[int, ...]:
        row = self._one("SELECT images FROM job_shards WHERE job_id = ? AND attempt = ? AND shard = ?",
                        [job_id, attempt, shard])
        return () if row is None else tuple(int(i) for i in row[0])

    def update_shard(self, job_id: int, attempt: int, shard: int, expect_status: Sequence[str] | None = None,
                     **fields) -> bool:
        """Update one shard's fields; with ``expect_status`` only if it is in one of those states."""
        unknown = set(fields) - self._SHARD_FIELDS
        if unknown:
            raise ValueError(f"unknown shard fields: {sorted(unknown)}")
        if not fields:
            return False
        sql = (f"UPDATE job_shards SET {', '.join(f'{k} = ?' for k in fields)} "
               "WHERE job_id = ? AND attempt = ? AND shard = ?")
        params = [*fields.values(), job_id, attempt, shard]
        if expect_status:
            sql += " AND status IN (SELECT unnest(?::VARCHAR[]))"
            params.append(list(expect_status))
        with self.transaction() as cur:
            return bool(cur.execute(sql + " RETURNING shard", params).fetchall())
