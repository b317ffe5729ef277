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
             b.created_by, b.created_at or now)
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
            "created_at FROM boxes WHERE image_id IN (SELECT unnest(?::BIGINT[])) ORDER BY image_id, id",
            [list(out)],
        )
        for r in rows:
            out[int(r[0])].append(Box(x1=r[3], y1=r[4], x2=r[5], y2=r[6], class_idx=int(r[2]), confidence=r[7],
                                      source=r[8], model_id=r[9], job_id=r[10], created_by=r[11],
                                      created_at=r[12], id=int(r[1])))
        return out

    def boxes_for_image(self, image_id: int) -> list[Box]:
        rows = self._all(
            "SELECT id, class_idx, x1, y1, x2, y2, confidence, source, model_id, job_id, created_by, created_at "
            "FROM boxes WHERE image_id = ? ORDER BY id",
            [image_id],
        )
        return [
            Box(x1=r[2], y1=r[3], x2=r[4], y2=r[5], class_idx=int(r[1]), confidence=r[6], source=r[7],
                model_id=r[8], job_id=r[9], created_by=r[10], created_at=r[11], id=int(r[0]))
            for r in rows
        ]

    @staticmethod
    def _protected(cur, image_ids: Sequence[int]) -> set[int]:
        """Images a person saved or approved: no job and no import may change their boxes."""
        return {int(r[0]) for r in cur.execute(
            "SELECT id FROM images WHERE id IN (SELECT unnest(?::BIGINT[])) "
            "AND (edited_at IS NOT NULL OR status = 'approved')", [list(image_ids)]).fetchall()}
