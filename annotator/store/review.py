"""Review: review states, the editor's load/save with its version check, the review queue, stats."""

from __future__ import annotations

from typing import Sequence

from ..types import REVIEW_STATES, Box, Conflict, NotFound, UserError
from .rows import _SMALL_INSERT, BOX_KINDS, utcnow


class ReviewMixin:
    """Review states and the editor.
    Mixed into ``Store``: uses its ``_all``, ``_one``, ``_read``, ``transaction`` and ``_bulk_insert``.
    """

    # --- review states -----------------------------------------------------------------------------
    def set_review_status(self, image_ids: Sequence[int], status: str, user: str | None,
                          drop_machine_below: float | None = None, expected_version: int | None = None) -> int:
        """Set the review state of images (who and when); returns how many changed. With
        ``drop_machine_below``, machine boxes under that confidence are deleted in the same transaction
        (approving with low-confidence predictions thrown away). With ``expected_version`` (one image only)
        nothing is written and Conflict raised if the image changed since the reviewer saw that version.
        A review is a change of the image: its version advances."""
        if status not in REVIEW_STATES:
            raise UserError(f"review status must be {', '.join(REVIEW_STATES[:-1])} or {REVIEW_STATES[-1]}, "
                            f"got {status!r}")
        reset = status == "unreviewed"
        ids = [int(i) for i in image_ids]
        if expected_version is not None and len(ids) != 1:
            raise UserError("a version check needs exactly one image")
        now = utcnow()
        project_id = None
        with self.transaction() as cur:
            if expected_version is not None:
                verb = {"approved": "approval", "rejected": "rejection"}.get(status, "reset")
                project_id = self._check_version(cur, ids[0], expected_version, f"Your {verb} and any edits were")
            if drop_machine_below is not None:
                cur.execute("DELETE FROM boxes WHERE source = 'model' AND confidence < ? "
                            "AND image_id IN (SELECT unnest(?::BIGINT[]))", [float(drop_machine_below), ids])
            changed = len(cur.execute(
                "UPDATE images SET status = ?, reviewed_by = ?, reviewed_at = ?, version = version + 1, "
                "changed_by = ?, changed_at = ? WHERE id IN (SELECT unnest(?::BIGINT[])) RETURNING id",
                [status, None if reset else user, None if reset else now, user, now, ids],
            ).fetchall())
            if project_id is not None:
                self._bump(cur, project_id)
            else:
                self._bump(cur, image_ids=ids)
            return changed

    @staticmethod
    def _check_version(cur, image_id: int, expected: int, what: str) -> int:
        """Conflict (naming who or which job changed the image, and when) unless it is at ``expected``;
        returns the image's project id."""
        row = cur.execute("SELECT version, changed_by, changed_at, edited_by, edited_at, project_id FROM images "
                          "WHERE id = ?", [image_id]).fetchone()
        if row is None:
            raise NotFound(f"image {image_id} does not exist")
        version, by, at, edited_by, edited_at, project_id = row
        if int(version) == int(expected):
            return int(project_id)
        if not by:  # changed before the store recorded who changes images: the last person's save, if any
            by, at = edited_by, edited_at
        who = f"by {by} at {at:%H:%M:%S}" if by and at else "by an auto-annotation job or an import"
        raise Conflict(
            f"Image {image_id} was changed {who} after you opened it (version {version}, yours {expected}). "
            f"{what} NOT saved and are still in the editor: reload the image to see the other change, then "
            "redo yours.", image_id=int(image_id), version=int(version), changed_by=by, changed_at=at)

    # --- review (the editor) -----------------------------------------------------------------------
    _EDITOR_STATE = ("version", "edited_by", "edited_at", "reviewed_by", "reviewed_at", "status", "changed_by",
                     "changed_at")

    def editor_state(self, image_id: int) -> dict:
        """What the editor needs besides the image row: version, who last saved / reviewed it and when, and
        who or which job last changed it (any version bump) and when."""
        row = self._one(f"SELECT {', '.join(self._EDITOR_STATE)} FROM images WHERE id = ?", [image_id])
        if row is None:
            raise NotFound(f"image {image_id} does not exist")
        return dict(zip(self._EDITOR_STATE, row))

    def image_changes(self, image_ids: Sequence[int], project_id: int | None = None) -> dict[int, dict]:
        """image id -> its editor_state(), for several images at once (what an open editor checks when the
        project's revision moved); only those of ``project_id`` when given."""
        ids = [int(i) for i in image_ids]
        if not ids:
            return {}
        where, params = "id IN (SELECT unnest(?::BIGINT[]))", [ids]
        if project_id is not None:
            where += " AND project_id = ?"
            params.append(project_id)
        rows = self._all(f"SELECT id, {', '.join(self._EDITOR_STATE)} FROM images WHERE {where}", params)
        return {int(r[0]): dict(zip(self._EDITOR_STATE, r[1:])) for r in rows}

    def project_revision(self, project_id: int) -> int:
        """A number that moves whenever the project's boxes, reviews, images, splits or classes change."""
        row = self._one("SELECT revision FROM projects WHERE id = ?", [project_id])
        if row is None:
            raise NotFound(f"No project with id {project_id}")
        return int(row[0] or 0)

    def save_image_boxes(self, image_id: int, boxes: Sequence[Box], expected_version: int, user: str | None,
                         return_ids: bool = False):
        """Replace ALL boxes of one image with ``boxes`` (as given: provenance included), if the image is still
        at ``expected_version``; returns the new version. A newer change by anyone (a person in another tab,
        a review, a job, an import) raises Conflict naming who and when, and nothing is written. A given box
        equal to a stored box of this image with its ``id`` keeps that row (and its id); the rest are new.
        With ``return_ids``: (new version, the stored id of each given box in order, the project's revision
        after the save); the ids are None when more than a few boxes were new (a bulk insert does not
        promise the order of its ids)."""
        now = utcnow()
        with self.transaction() as cur:
            project_id = self._check_version(cur, image_id, expected_version, "Your boxes were")
            stored = {int(r[0]): tuple(r[1:]) for r in cur.execute(
                "SELECT id, class_idx, x1, y1, x2, y2, confidence, source, model_id, job_id FROM boxes "
                "WHERE image_id = ?", [image_id]).fetchall()}
            keep: set[int] = set()
            new: list[Box] = []
            ids: list[int | None] = []
            for b in boxes:
                same = (b.class_idx, b.x1, b.y1, b.x2, b.y2, b.confidence, b.source, b.model_id, b.job_id)
                if b.id is not None and b.id not in keep and stored.get(b.id) == same:
                    keep.add(b.id)
                    ids.append(b.id)
                else:
                    new.append(b)
                    ids.append(None)
            cur.execute("DELETE FROM boxes WHERE image_id = ? AND id NOT IN (SELECT unnest(?::BIGINT[]))",
                        [image_id, sorted(keep)])
            new_ids = iter(self._bulk_insert(cur, "boxes", BOX_KINDS, [
                (image_id, b.class_idx, b.x1, b.y1, b.x2, b.y2, b.confidence, b.source, b.model_id, b.job_id,
                 b.created_by, b.created_at or now, b.track_id) for b in new]))
            ids = [i if i is not None else int(next(new_ids)) for i in ids] if len(new) <= _SMALL_INSERT else None
            cur.execute("UPDATE images SET version = version + 1, edited_by = ?, edited_at = ?, changed_by = ?, "
                        "changed_at = ? WHERE id = ?", [user, now, user, now, image_id])
            revision = self._bump(cur, project_id)
        return (int(expected_version) + 1, ids, revision) if return_ids else int(expected_version) + 1

    SORTS = ("upload", "uncertain")

    def review_queue(self, project_id: int, *, status: str | None = None, dataset_id: int | None = None,
                     class_idx: int | None = None, no_boxes: bool = False, below_conf: float | None = None,
                     sort: str = "upload"):
        """The ids of the images a reviewer goes through, in order (a numpy int64 array).

        Filters combine with AND: review status, dataset, "has a box of class", "has no box at all",
        "has a machine box below this confidence". ``sort="uncertain"``: the image whose least confident
        machine box is lowest first; images without machine boxes last; then upload order. (The
        "informative" order is the services' own: it re-orders this queue with queue_scores.)"""
        if sort not in self.SORTS:
            raise UserError(f"sort must be one of {', '.join(self.SORTS)}, got {sort!r}")
        where, params = self._image_filter(project_id, dataset_id, status)
        if class_idx is not None:
            where += " AND i.id IN (SELECT image_id FROM boxes WHERE class_idx = ?)"
            params.append(int(class_idx))
        if no_boxes:
            where += " AND i.id NOT IN (SELECT image_id FROM boxes)"
        if below_conf is not None:
            where += " AND i.id IN (SELECT image_id FROM boxes WHERE source = 'model' AND confidence < ?)"
            params.append(float(below_conf))
        if sort == "uncertain":
            sql = (f"SELECT i.id FROM images i LEFT JOIN (SELECT image_id, min(confidence) AS c FROM boxes "
                   f"WHERE source = 'model' GROUP BY image_id) m ON m.image_id = i.id WHERE {where} "
                   "ORDER BY m.c ASC NULLS LAST, i.id")
        else:
            sql = f"SELECT i.id FROM images i WHERE {where} ORDER BY i.id"
        with self._read() as cur:
            return cur.execute(sql, params).fetchnumpy()["id"]

    def queue_scores(self, image_ids: Sequence[int]) -> dict[int, tuple[float | None, int | None]]:
        """image id -> (its least confident machine box's confidence, its dhash); None where there is none."""
        ids = [int(i) for i in image_ids]
        if not ids:
            return {}
        return {int(i): (c, None if h is None else int(h)) for i, c, h in self._all(
            "SELECT i.id, min(b.confidence) FILTER (WHERE b.source = 'model'), any_value(i.phash) FROM images i "
            "LEFT JOIN boxes b ON b.image_id = i.id WHERE i.id IN (SELECT unnest(?::BIGINT[])) GROUP BY i.id", [ids])}

    def approved_hashes(self, project_id: int, limit: int) -> list[int]:
        """The dhashes of the project's newest ``limit`` approved images (oldest of them first)."""
        rows = self._all("SELECT phash FROM images WHERE project_id = ? AND status = 'approved' AND phash IS NOT NULL "
                         "ORDER BY reviewed_at DESC NULLS LAST, id DESC LIMIT ?", [project_id, int(limit)])
        return [int(h) for (h,) in reversed(rows)]

    def images_without_hash(self, project_id: int, limit: int = 100_000) -> list[tuple[int, str]]:
        """(id, thumbnail path) of the project's images whose dhash is not computed yet."""
        return [(int(i), t) for i, t in self._all(
            "SELECT id, thumb FROM images WHERE project_id = ? AND phash IS NULL ORDER BY id LIMIT ?",
            [project_id, int(limit)])]

    def set_image_hashes(self, pairs: Sequence[tuple[int, int]]) -> None:
        """Store computed dhashes (image id, hash); one statement."""
        if not pairs:
            return
        with self.transaction() as cur:
            cur.execute("UPDATE images SET phash = h.h FROM (SELECT unnest(?::BIGINT[]) AS id, "
                        "unnest(?::UBIGINT[]) AS h) h WHERE images.id = h.id",
                        [[int(i) for i, _ in pairs], [int(h) for _, h in pairs]])

    def project_hashes(self, project_id: int) -> tuple[list[int], list[int | None]]:
        """(ids, hashes) of every image of the project, by id (None: no hash yet)."""
        rows = self._all("SELECT id, phash FROM images WHERE project_id = ? ORDER BY id", [project_id])
        return [int(i) for i, _ in rows], [None if h is None else int(h) for _, h in rows]

    def video_frames(self, project_id: int) -> list[tuple[int, int, float | None]]:
        """(image id, video id, frame time) of the project's video frames, by video and time."""
        return [(int(i), int(v), t) for i, v, t in self._all(
            "SELECT id, video_id, frame_time FROM images WHERE project_id = ? AND video_id IS NOT NULL "
            "ORDER BY video_id, frame_index, id", [project_id])]

    def image_hashes(self, image_ids: Sequence[int]) -> dict[int, int | None]:
        ids = [int(i) for i in image_ids]
        if not ids:
            return {}
        return {int(i): (None if h is None else int(h)) for i, h in self._all(
            "SELECT id, phash FROM images WHERE id IN (SELECT unnest(?::BIGINT[]))", [ids])}

    def queue_items(self, image_ids: Sequence[int]) -> list[dict]:
        """Filmstrip rows for some images, in the order given: id, thumb, status, rel_path, boxes, lowest
        machine confidence."""
        ids = [int(i) for i in image_ids]
        if not ids:
            return []
        rows = self._all(
            "SELECT i.id, i.thumb, i.status, i.rel_path, count(b.id), min(b.confidence) FILTER (WHERE b.source = 'model') "
            "FROM images i LEFT JOIN boxes b ON b.image_id = i.id WHERE i.id IN (SELECT unnest(?::BIGINT[])) "
            "GROUP BY ALL", [ids])
        by_id = {int(r[0]): {"id": int(r[0]), "thumb": r[1], "status": r[2], "rel_path": r[3], "boxes": int(r[4]),
                             "min_conf": r[5]} for r in rows}
        return [by_id[i] for i in ids if i in by_id]

    def review_stats(self, project_id: int) -> dict:
        """Boxes per class and source, images per review state, and reviews per day (for the plots)."""
        per_class = self._all(
            "SELECT b.class_idx, b.source, count(*) FROM boxes b JOIN images i ON i.id = b.image_id "
            "WHERE i.project_id = ? AND i.status <> 'rejected' GROUP BY ALL ORDER BY ALL", [project_id])
        per_day = self._all(
            "SELECT CAST(reviewed_at AS DATE), status, count(*) FROM images WHERE project_id = ? "
            "AND reviewed_at IS NOT NULL GROUP BY ALL ORDER BY ALL", [project_id])
        return {"per_class": [(int(c), s, int(n)) for c, s, n in per_class],
                "status": self.image_status_counts(project_id),
                "per_day": [(d, s, int(n)) for d, s, n in per_day]}

    # --- the loop: what the machine showed, what the reviewer changed ------------------------------------
    def predictions_for(self, image_ids: Sequence[int]) -> dict[int, tuple[int, int | None, list[tuple]]]:
        """image id -> (job id, model id, [(class, x1, y1, x2, y2), ...]): the latest machine pass of each
        image as its job wrote it; a pass that found nothing (every object a miss to draw) gives an empty
        list. Images no job annotated are left out."""
        ids = [int(i) for i in image_ids]
        if not ids:
            return {}
        rows = self._all("SELECT image_id, job_id, model_id, class_idx, x1, y1, x2, y2 FROM predictions "
                         "WHERE image_id IN (SELECT unnest(?::BIGINT[])) ORDER BY image_id", [ids])
        out: dict[int, tuple[int, int | None, list[tuple]]] = {}
        for image_id, job_id, model_id, *box in rows:
            entry = out.setdefault(int(image_id), (int(job_id), None if model_id is None else int(model_id), []))
            entry[2].append((int(box[0]), *map(float, box[1:])))
        empty = [i for i in ids if i not in out]
        if empty:  # no predictions row: the latest job that wrote this image found nothing (it deleted the rows)
            for image_id, job_id, model_id in self._all(
                    "SELECT ji.image_id, ji.job_id, j.model_id FROM job_images ji JOIN jobs j ON j.id = ji.job_id "
                    "WHERE ji.status = 'done' AND ji.image_id IN (SELECT unnest(?::BIGINT[])) "
                    "QUALIFY row_number() OVER (PARTITION BY ji.image_id ORDER BY ji.job_id DESC, ji.attempt DESC) = 1",
                    [empty]):
                out[int(image_id)] = (int(job_id), None if model_id is None else int(model_id), [])
        return out

    def record_review_edits(self, rows: Sequence[tuple], drop: Sequence[int] = ()) -> None:
        """Replace the edit records of images: ``rows`` are (image_id, job_id, model_id, shown, approved,
        deleted, added, reclassed, adjusted, edits, reviewed_by); ``drop``: images whose record goes (their
        approval was withdrawn)."""
        ids = [int(r[0]) for r in rows] + [int(i) for i in drop]
        if not ids:
            return
        if not rows and not self._one("SELECT 1 FROM review_edits WHERE image_id IN (SELECT unnest(?::BIGINT[])) "
                                      "LIMIT 1", [ids]):
            return  # nothing to drop: no write (and no commit to wait for) on a reject or reset
        now = utcnow()
        with self.transaction() as cur:
            cur.execute("DELETE FROM review_edits WHERE image_id IN (SELECT unnest(?::BIGINT[]))", [ids])
            if rows:
                one = "(" + ", ".join("?" * 12) + ")"
                cur.execute(f"INSERT INTO review_edits VALUES {', '.join([one] * len(rows))}",
                            [v for r in rows for v in (*r, now)])

    def review_edit_rows(self, project_id: int, image_ids: Sequence[int] | None = None) -> list[dict]:
        """The edit records of a project's approved images (optionally only these), with the job's model."""
        where, params = "i.project_id = ?", [project_id]
        if image_ids is not None:
            where += " AND e.image_id IN (SELECT unnest(?::BIGINT[]))"
            params.append([int(i) for i in image_ids])
        cols = ("image_id", "job_id", "model_id", "shown", "approved", "deleted", "added", "reclassed", "adjusted",
                "edits", "reviewed_by", "measured_at")
        rows = self._all(f"SELECT {', '.join('e.' + c for c in cols)} FROM review_edits e "
                         f"JOIN images i ON i.id = e.image_id WHERE {where} ORDER BY e.job_id, e.image_id", params)
        return [dict(zip(cols, r)) for r in rows]
