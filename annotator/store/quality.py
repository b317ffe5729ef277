"""Dataset quality: the rows the health view counts, and the likely label errors a model found."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .rows import utcnow

LABEL_ERROR_COLUMNS = ("id", "image_id", "job_id", "model_id", "kind", "score", "box_id", "class_idx",
                       "suggestion_class", "x1", "y1", "x2", "y2", "confidence", "message", "status")


class QualityMixin:
    """Health rows and label errors.
    Mixed into ``Store``: uses its ``_all``, ``_one``, ``_read``, ``transaction`` and ``_bulk_insert``.
    """

    def health_rows(self, project_id: int, approved_only: bool) -> tuple[list[tuple], np.ndarray]:
        """(images: (id, split, status, width, height), boxes: an (n, 6) array of image id, class, x1, y1,
        x2, y2) of the project: every image and box, or only approved images' boxes and those images."""
        where = "i.project_id = ?" + (" AND i.status = 'approved'" if approved_only else "")
        images = self._all(f"SELECT i.id, i.split, i.status, i.width, i.height FROM images i WHERE {where} "
                           "ORDER BY i.id", [project_id])
        with self._read() as cur:
            cols = cur.execute(f"SELECT b.image_id, b.class_idx, b.x1, b.y1, b.x2, b.y2 FROM boxes b "
                               f"JOIN images i ON i.id = b.image_id WHERE {where}", [project_id]).fetchnumpy()
        boxes = np.column_stack([np.asarray(cols[k], dtype=np.float64) for k in
                                 ("image_id", "class_idx", "x1", "y1", "x2", "y2")]) if len(cols["x1"]) else \
            np.zeros((0, 6))
        return images, boxes

    def save_label_check(self, project_id: int, job_id: int, attempt: int, model_id: int | None,
                         image_ids: Sequence[int], rows: Sequence[dict], failed: Sequence[int] = (),
                         cursor: dict | None = None) -> int:
        """One chunk of a label check, in ONE transaction: the open findings of ``image_ids`` are replaced by
        ``rows`` (dicts: image_id, kind, score, box_id, class_idx, suggestion_class, box, confidence, message;
        findings already accepted or dismissed stay, as the record of what was done), the images are recorded
        in job_images, and with ``cursor`` the job's tallies and channel cursor commit with them."""
        now = utcnow()
        ids = [int(i) for i in image_ids]
        with self.transaction() as cur:
            cur.execute("DELETE FROM label_errors WHERE project_id = ? AND status = 'open' "
                        "AND image_id IN (SELECT unnest(?::BIGINT[]))", [project_id, ids])
            cols = {"project_id": "int", "image_id": "int", "job_id": "int", "model_id": "int", "kind": "str",
                    "score": "float", "box_id": "int", "class_idx": "int", "suggestion_class": "int", "x1": "float",
                    "y1": "float", "x2": "float", "y2": "float", "confidence": "float", "message": "str",
                    "created_at": "ts"}
            self._bulk_insert(cur, "label_errors", cols, [
                (project_id, r["image_id"], job_id, model_id, r["kind"], r["score"], r.get("box_id"),
                 r.get("class_idx"), r.get("suggestion_class"), *(r.get("box") or (None,) * 4),
                 r.get("confidence"), r["message"], now) for r in rows])
            per_image = {i: 0 for i in ids}
            for r in rows:
                per_image[int(r["image_id"])] = per_image.get(int(r["image_id"]), 0) + 1
            self._bulk_insert(
                cur, "job_images",
                {"job_id": "int", "image_id": "int", "attempt": "int", "boxes": "int", "status": "str"},
                [(job_id, i, attempt, n, "done") for i, n in per_image.items()]
                + [(job_id, int(i), attempt, 0, "error") for i in failed], returning="image_id")
            self._bump(cur, project_id)
            if cursor is not None:
                self._commit_tallies(cur, job_id, attempt, {"images": len(ids), "findings": len(rows),
                                                            "errors": len(failed)}, cursor)
        return len(rows)

    def frames_of(self, image_ids: Sequence[int]) -> dict[int, tuple[int, int, float]]:
        """Of those images that are a video's frames: image id -> (video id, frame index, the rate of the video's
        sampled frames per second: what a tracker follows them at)."""
        rows = self._all(
            "SELECT i.id, i.video_id, i.frame_index, CASE WHEN v.duration_s > 0 AND v.kept > 1 "
            "THEN least(v.fps, v.kept / v.duration_s) ELSE v.fps END FROM images i JOIN videos v ON v.id = i.video_id "
            "WHERE i.id IN (SELECT unnest(?::BIGINT[]))", [[int(i) for i in image_ids]])
        return {int(i): (int(v), int(f or 0), float(r or 30.0)) for i, v, f, r in rows}

    def approved_images(self, project_id: int) -> list[tuple[int, str, int, int]]:
        """(id, file, width, height) of the project's approved images, by id (what a label check reads)."""
        rows = self._all("SELECT id, file, width, height FROM images WHERE project_id = ? AND status = 'approved' "
                         "ORDER BY id", [project_id])
        return [(int(i), f, int(w), int(h)) for i, f, w, h in rows]

    def label_errors(self, project_id: int, status: str | None = "open", image_id: int | None = None) -> list[dict]:
        """Findings of a project (or of one image), worst first."""
        where, params = ["project_id = ?"], [project_id]
        if status:
            where.append("status = ?")
            params.append(status)
        if image_id is not None:
            where.append("image_id = ?")
            params.append(int(image_id))
        rows = self._all(f"SELECT {', '.join(LABEL_ERROR_COLUMNS)} FROM label_errors WHERE {' AND '.join(where)} "
                         "ORDER BY score DESC, image_id, id", params)
        return [dict(zip(LABEL_ERROR_COLUMNS, r)) for r in rows]

    def label_error_queue(self, project_id: int) -> list[int]:
        """Images with open findings, the worst finding first."""
        return [int(i) for (i,) in self._all(
            "SELECT image_id FROM label_errors WHERE project_id = ? AND status = 'open' GROUP BY image_id "
            "ORDER BY max(score) DESC, image_id", [project_id])]

    def resolve_label_error(self, project_id: int, error_id: int, status: str, user: str | None) -> dict | None:
        """Mark one finding accepted or dismissed; returns it as it was (None: no such open finding)."""
        with self.transaction() as cur:
            row = cur.execute(f"UPDATE label_errors SET status = ?, resolved_by = ?, resolved_at = ? "
                              f"WHERE id = ? AND project_id = ? AND status = 'open' "
                              f"RETURNING {', '.join(LABEL_ERROR_COLUMNS)}",
                              [status, user, utcnow(), int(error_id), project_id]).fetchall()
            if row:
                self._bump(cur, project_id)
        return dict(zip(LABEL_ERROR_COLUMNS, row[0])) if row else None
