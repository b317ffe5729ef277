"""Auto-annotation: which images a job may annotate, what it finished, committing its predictions."""

from __future__ import annotations

import json
from typing import Sequence

from ..types import Box
from .rows import BOX_KINDS, utcnow

# The columns of a prediction row (the machine's box as the job wrote it), in insert order.
PREDICTION_KINDS = {"image_id": "int", "class_idx": "int", "x1": "float", "y1": "float", "x2": "float",
                    "y2": "float", "confidence": "float", "model_id": "int", "job_id": "int", "track_id": "int"}


class AnnotationMixin:
    """Auto-annotation jobs' reads and writes.
    Mixed into ``Store``: uses its ``_all``, ``_one``, ``_read``, ``transaction`` and ``_bulk_insert``.
    """

    def images_for_annotation(self, project_id: int, dataset_ids: Sequence[int] | None, statuses: Sequence[str],
                              exclude_job: int | None = None) -> list[tuple[int, str, int, int]]:
        """(id, file, width, height) of images no person has saved or approved, in the given review states,
        optionally minus those a job already finished."""
        where = ["i.project_id = ?", "i.edited_at IS NULL", "i.status IN (SELECT unnest(?::VARCHAR[]))"]
        params: list = [project_id, [s for s in statuses if s != "approved"]]
        if dataset_ids:
            where.append("i.dataset_id IN (SELECT unnest(?::INTEGER[]))")
            params.append(list(dataset_ids))
        if exclude_job is not None:
            where.append("i.id NOT IN (SELECT image_id FROM job_images WHERE job_id = ?)")
            params.append(exclude_job)
        rows = self._all(
            f"SELECT i.id, i.file, i.width, i.height FROM images i WHERE {' AND '.join(where)} ORDER BY i.id", params
        )
        return [(int(a), b, int(c), int(d)) for a, b, c, d in rows]

    def images_left(self, job_id: int, image_ids: Sequence[int]) -> list[tuple[int, str, int, int]]:
        """(id, file, width, height) of those of ``image_ids`` the job has not finished (in any attempt), in id
        order: what a shard's next try is given."""
        rows = self._all("SELECT i.id, i.file, i.width, i.height FROM images i WHERE i.id IN "
                         "(SELECT unnest(?::BIGINT[])) AND i.id NOT IN (SELECT image_id FROM job_images WHERE job_id = ?) "
                         "ORDER BY i.id", [[int(i) for i in image_ids], job_id])
        return [(int(i), f, int(w), int(h)) for i, f, w, h in rows]

    def job_image_count(self, job_id: int) -> int:
        return int(self._one("SELECT count(*) FROM job_images WHERE job_id = ?", [job_id])[0])

    def job_images(self, job_id: int) -> list[tuple[int, int, int, str]]:
        """(image id, attempt, boxes, status) of every image a job has finished, by image then attempt:
        what a resume skips."""
        rows = self._all("SELECT image_id, attempt, boxes, status FROM job_images WHERE job_id = ? "
                         "ORDER BY image_id, attempt", [job_id])
        return [(int(i), int(a), int(n), s) for i, a, n, s in rows]

    def save_predictions(self, job_id: int, attempt: int, model_id: int | None,
                         items: Sequence[tuple[int, Sequence[Box]]], failed: Sequence[int] = (),
                         cursor: dict | None = None) -> dict[str, int]:
        """Replace the machine boxes of each image with a job's predictions, in ONE transaction.

        Images a person has saved or approved (checked here, at commit time) are left alone and counted as
        protected; human and imported boxes are never touched. Every image is recorded in job_images. With
        ``cursor`` (chunks_in, chunks_lost: the monitor's place in the job's channel, or with ``shard`` in that
        shard's), the job's tallies (its result) and cursor commit with its boxes, or not at all; returns the
        job's tallies then.
        """
        counts = {"images": 0, "boxes": 0, "protected": 0, "errors": len(failed)}
        ids = [int(i) for i, _ in items]
        now = utcnow()
        with self.transaction() as cur:
            protected = self._protected(cur, ids)
            writable = [i for i in ids if i not in protected]
            if writable:
                cur.execute(
                    "DELETE FROM boxes WHERE source = 'model' AND image_id IN (SELECT unnest(?::BIGINT[]))", [writable]
                )
                cur.execute("DELETE FROM predictions WHERE image_id IN (SELECT unnest(?::BIGINT[]))", [writable])
                # An editor that opened one of these images before gets a conflict instead of erasing them.
                cur.execute("UPDATE images SET version = version + 1, changed_by = ?, changed_at = ? "
                            "WHERE id IN (SELECT unnest(?::BIGINT[]))", [f"job #{job_id}", now, writable])
                self._bump(cur, image_ids=writable[:1])
            rows, done = [], []
            for image_id, boxes in items:
                if image_id in protected:
                    done.append((job_id, image_id, attempt, 0, "protected"))
                    continue
                for b in boxes:
                    rows.append((image_id, b.class_idx, b.x1, b.y1, b.x2, b.y2, b.confidence, "model", model_id,
                                 job_id, None, now, b.track_id))
                done.append((job_id, image_id, attempt, len(boxes), "done"))
            done += [(job_id, int(i), attempt, 0, "error") for i in failed]
            self._bulk_insert(
                cur, "boxes",
                BOX_KINDS,
                rows,
            )
            self._bulk_insert(cur, "predictions", PREDICTION_KINDS, [r[:7] + r[8:10] + r[12:] for r in rows],
                              returning="image_id")
            self._bulk_insert(
                cur, "job_images",
                {"job_id": "int", "image_id": "int", "attempt": "int", "boxes": "int", "status": "str"},
                done, returning="image_id",
            )
            counts.update(images=len(writable), boxes=len(rows), protected=len(protected))
            if cursor is not None:  # the job's bookkeeping commits with its boxes, or not at all
                counts = self._commit_tallies(cur, job_id, attempt, counts, cursor)
        return counts

    @staticmethod
    def _commit_tallies(cur, job_id: int, attempt: int, counts: dict, cursor: dict) -> dict:
        """Inside a chunk's transaction: add ``counts`` to the job's result and store the channel cursor
        (the job's, or with ``shard`` that shard's). Returns the job's tallies."""
        (raw,) = cur.execute("SELECT result FROM jobs WHERE id = ?", [job_id]).fetchone()
        merged = json.loads(raw or "{}")
        for k, v in counts.items():
            merged[k] = merged.get(k, 0) + v
        if cursor.get("shard") is None:
            cur.execute("UPDATE jobs SET result = ?, chunks_in = ?, chunks_lost = ? WHERE id = ?",
                        [json.dumps(merged), int(cursor["chunks_in"]), int(cursor.get("chunks_lost", 0)), job_id])
        else:  # a shard's cursor is its own
            cur.execute("UPDATE jobs SET result = ? WHERE id = ?", [json.dumps(merged), job_id])
            cur.execute("UPDATE job_shards SET chunks_in = ?, chunks_lost = ? WHERE job_id = ? AND attempt = ? "
                        "AND shard = ?", [int(cursor["chunks_in"]), int(cursor.get("chunks_lost", 0)), job_id,
                                          attempt, int(cursor["shard"])])
        return merged
