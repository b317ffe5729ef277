"""Export and import: the export snapshot, matching imported labels to images, the export history."""

from __future__ import annotations

import json
from typing import Sequence

from ..types import Box, ImageRecord
from .rows import BOX_KINDS, IMAGE_COLUMNS, image_from_row, utcnow


class TransferMixin:
    """Exports and imports.
    Mixed into ``Store``: uses its ``_all``, ``_one``, ``_read``, ``transaction`` and ``_bulk_insert``.
    """

    # --- export ------------------------------------------------------------------------------------
    @staticmethod
    def _export_filter(project_id: int, dataset_ids: Sequence[int] | None, statuses: Sequence[str]) -> tuple[str, list]:
        where = ["i.project_id = ?", "i.status IN (SELECT unnest(?::VARCHAR[]))"]
        params: list = [project_id, list(statuses)]
        if dataset_ids:
            where.append("i.dataset_id IN (SELECT unnest(?::INTEGER[]))")
            params.append(list(dataset_ids))
        return " AND ".join(where), params

    def export_rows(self, project_id: int, dataset_ids: Sequence[int] | None,
                          statuses: Sequence[str]) -> tuple[list[ImageRecord], dict]:
        """Every image of the project in the given review states (optionally some datasets), by id, and their
        boxes as numpy columns (image_id, class_idx, x1, y1, x2, y2, confidence with NaN for none) by image
        then box id: 100k boxes without 100k Python objects. One snapshot: both read in one transaction."""
        cols = ", ".join(f"i.{c.strip()}" for c in IMAGE_COLUMNS.split(","))
        where, params = self._export_filter(project_id, dataset_ids, statuses)
        with self._read() as cur:
            cur.execute("BEGIN TRANSACTION")
            try:
                rows = cur.execute(
                    f"SELECT {cols}, d.name FROM images i JOIN datasets d ON d.id = i.dataset_id WHERE {where} "
                    "ORDER BY i.id", params,
                ).fetchall()
                boxes = cur.execute(
                    "SELECT b.image_id, b.class_idx, b.x1, b.y1, b.x2, b.y2, "
                    "COALESCE(b.confidence, 'NaN'::DOUBLE) AS confidence "
                    f"FROM boxes b JOIN images i ON i.id = b.image_id WHERE {where} ORDER BY b.image_id, b.id",
                    params,
                ).fetchnumpy()
            finally:
                cur.execute("ROLLBACK")
        return [image_from_row(r) for r in rows], boxes

    def add_export(self, project_id: int, fmt: str, options: dict, summary: dict, file: str, size_bytes: int,
                   user: str | None) -> int:
        with self.transaction() as cur:
            ((eid,),) = cur.execute(
                "INSERT INTO exports (project_id, format, options, summary, file, size_bytes, created_at, created_by) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                [project_id, fmt, json.dumps(options), json.dumps(summary), file, size_bytes, utcnow(), user],
            ).fetchall()
        return int(eid)

    def exports(self, project_id: int, limit: int = 20) -> list[dict]:
        rows = self._all(
            "SELECT id, format, options, summary, file, size_bytes, created_at, created_by FROM exports "
            "WHERE project_id = ? ORDER BY id DESC LIMIT ?", [project_id, limit],
        )
        return [{"id": int(r[0]), "format": r[1], "options": json.loads(r[2]), "summary": json.loads(r[3]),
                 "file": r[4], "size_bytes": int(r[5]), "created_at": r[6], "created_by": r[7]} for r in rows]

    # --- import ------------------------------------------------------------------------------------
    def image_ids_by_sha(self, project_id: int, shas: Sequence[str]) -> dict[str, int]:
        rows = self._all("SELECT sha256, id FROM images WHERE project_id = ? AND sha256 IN (SELECT unnest(?::VARCHAR[]))",
                         [project_id, list(shas)])
        return {sha: int(i) for sha, i in rows}

    def image_ids_by_basename(self, project_id: int) -> dict[str, list[int]]:
        """lower-cased base name of rel_path -> image ids (COCO imports match images by file name)."""
        out: dict[str, list[int]] = {}
        for rel, i in self._all("SELECT rel_path, id FROM images WHERE project_id = ? ORDER BY id", [project_id]):
            out.setdefault(rel.rsplit("/", 1)[-1].lower(), []).append(int(i))
        return out

    def save_imported_labels(self, items: Sequence[tuple[int, Sequence[Box], str | None]], approve: bool,
                             user: str | None, replace: bool = False) -> dict[str, int]:
        """(image id, boxes, split) from an import, in ONE transaction: the imported boxes become the image's
        labels (earlier imported boxes and the machine's boxes go: approving an import must not approve the
        model's guesses beside it), fills the split only where none is stored, optionally approves. Images
        a person approved or edited are left alone and counted as protected, unless ``replace`` (then every
        box of theirs goes too, and they count as ``replaced_protected``). ``replaced_machine``: machine
        boxes removed."""
        ids = [int(i) for i, _, _ in items]
        counts = {"images": 0, "boxes": 0, "protected": 0, "approved": 0, "replaced_machine": 0,
                  "replaced_protected": 0}
        if not ids:
            return counts
        now = utcnow()
        with self.transaction() as cur:
            protected = set() if replace else self._protected(cur, ids)
            if replace:
                counts["replaced_protected"] = len(self._protected(cur, ids))
            writable = [i for i in ids if i not in protected]
            if writable:
                counts["replaced_machine"] = len(cur.execute(
                    "DELETE FROM boxes WHERE source = 'model' AND image_id IN (SELECT unnest(?::BIGINT[])) "
                    "RETURNING id", [writable]).fetchall())
                gone = "" if replace else "source = 'import' AND "
                cur.execute(f"DELETE FROM boxes WHERE {gone}image_id IN (SELECT unnest(?::BIGINT[]))", [writable])
                cur.execute("UPDATE images SET version = version + 1, changed_by = ?, changed_at = ? "
                            "WHERE id IN (SELECT unnest(?::BIGINT[]))", [f"an import by {user or 'local'}", now,
                                                                         writable])
                self._bump(cur, image_ids=writable[:1])
            rows, splits = [], {}
            for image_id, boxes, split in items:
                if image_id in protected:
                    continue
                rows += [(image_id, b.class_idx, b.x1, b.y1, b.x2, b.y2, None, "import", None, None, user, now, None)
                         for b in boxes]
                if split:
                    splits[int(image_id)] = split
            if splits:  # one statement for every image whose source says its split
                cur.execute("UPDATE images SET split = u.split FROM (SELECT unnest(?::BIGINT[]) AS id, "
                            "unnest(?::VARCHAR[]) AS split) u WHERE images.id = u.id AND images.split IS NULL",
                            [list(splits), list(splits.values())])
            self._bulk_insert(
                cur, "boxes",
                BOX_KINDS,
                rows,
            )
            if approve and writable:
                counts["approved"] = len(cur.execute(
                    "UPDATE images SET status = 'approved', reviewed_by = ?, reviewed_at = ? "
                    "WHERE id IN (SELECT unnest(?::BIGINT[])) RETURNING id", [user, now, writable]).fetchall())
        counts.update(images=len(writable), boxes=len(rows), protected=len(protected))
        return counts
