"""Boxes: bulk insert, per-image reads, and which images' boxes no job or import may change."""

from __future__ import annotations

from typing import Iterable, Sequence

from ..types import Box
from .rows import BOX_KINDS, utcnow


class BoxesMixin:
    """Box rows.
    Mixed into ``Store``: uses its ``_all``, ``_one``, ``_read``, ``transaction`` and ``_bulk_insert``.
    """

    def insert_boxes(self, rows: Iterable[tuple[int, Box]]) -> list[int]:
        """Insert (image_id, Box) pairs in one transaction."""
        now = utcnow()
        data = [
            (image_id, b.class_idx, b.x1, b.y1, b.x2, b.y2, b.confidence, b.source, b.model_id, b.job_id,
             b.created_by, b.created_at or now, b.track_id)
            for image_id, b in rows
        ]
        with self.transaction() as cur:
            return [int(i) for i in self._bulk_insert(
                cur, "boxes",
                BOX_KINDS,
                data,
            )]

    def boxes_for_images(self, image_ids: Sequence[int]) -> dict[int, list[Box]]:
        """The boxes of several images at once (a gallery page), keyed by image id."""
        out: dict[int, list[Box]] = {int(i): [] for i in image_ids}
        if not out:
            return out
        rows = self._all(
            "SELECT image_id, id, class_idx, x1, y1, x2, y2, confidence, source, model_id, job_id, created_by, "
            "created_at, track_id FROM boxes WHERE image_id IN (SELECT unnest(?::BIGINT[])) ORDER BY image_id, id",
            [list(out)],
        )
        for r in rows:
            out[int(r[0])].append(Box(x1=r[3], y1=r[4], x2=r[5], y2=r[6], class_idx=int(r[2]), confidence=r[7],
                                      source=r[8], model_id=r[9], job_id=r[10], created_by=r[11],
                                      created_at=r[12], id=int(r[1]), track_id=r[13]))
        return out

    def boxes_for_image(self, image_id: int) -> list[Box]:
        rows = self._all(
            "SELECT id, class_idx, x1, y1, x2, y2, confidence, source, model_id, job_id, created_by, created_at, "
            "track_id FROM boxes WHERE image_id = ? ORDER BY id",
            [image_id],
        )
        return [
            Box(x1=r[2], y1=r[3], x2=r[4], y2=r[5], class_idx=int(r[1]), confidence=r[6], source=r[7],
                model_id=r[8], job_id=r[9], created_by=r[10], created_at=r[11], id=int(r[0]), track_id=r[12])
            for r in rows
        ]

    def delete_track_after(self, image_id: int, job_id: int, track_id: int, user: str | None) -> dict[str, int]:
        """Delete the machine boxes of one track (a job's track id) in the frames AFTER this image's frame of
        the same video, in one transaction. Frames a person saved or approved are left alone (and counted).
        Each changed frame's version moves (an editor holding it gets a conflict, not a silent overwrite)."""
        now = utcnow()
        with self.transaction() as cur:
            row = cur.execute("SELECT video_id, frame_index, project_id FROM images WHERE id = ?", [image_id]).fetchone()
            if row is None or row[0] is None:
                return {"deleted": 0, "images": 0, "protected": 0}
            video_id, frame, project_id = row
            later = [int(r[0]) for r in cur.execute(
                "SELECT DISTINCT b.image_id FROM boxes b JOIN images i ON i.id = b.image_id WHERE i.video_id = ? "
                "AND i.frame_index > ? AND b.source = 'model' AND b.job_id = ? AND b.track_id = ?",
                [video_id, frame, job_id, track_id]).fetchall()]
            protected = self._protected(cur, later) if later else set()
            writable = [i for i in later if i not in protected]
            deleted = 0
            if writable:
                deleted = len(cur.execute(
                    "DELETE FROM boxes WHERE image_id IN (SELECT unnest(?::BIGINT[])) AND source = 'model' "
                    "AND job_id = ? AND track_id = ? RETURNING id", [writable, job_id, track_id]).fetchall())
                cur.execute("UPDATE images SET version = version + 1, edited_by = ?, edited_at = ?, changed_by = ?, "
                            "changed_at = ? WHERE id IN (SELECT unnest(?::BIGINT[]))", [user, now, user, now, writable])
                self._bump(cur, project_id)
        return {"deleted": deleted, "images": len(writable), "protected": len(protected)}

    @staticmethod
    def _protected(cur, image_ids: Sequence[int]) -> set[int]:
        """Images a person saved or approved: no job and no import may change their boxes."""
        return {int(r[0]) for r in cur.execute(
            "SELECT id FROM images WHERE id IN (SELECT unnest(?::BIGINT[])) "
            "AND (edited_at IS NOT NULL OR status = 'approved')", [list(image_ids)]).fetchall()}
