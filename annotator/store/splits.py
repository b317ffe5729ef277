"""The split manager: per-project ratios and seed, stored splits, bulk moves, the split summary."""

from __future__ import annotations

from typing import Sequence

from .rows import utcnow


class SplitsMixin:
    """Train/val/test splits.
    Mixed into ``Store``: uses its ``_all``, ``_one``, ``_read``, ``transaction`` and ``_bulk_insert``.
    """

    def split_config(self, project_id: int) -> dict | None:
        row = self._one("SELECT train, val, test, seed FROM split_config WHERE project_id = ?", [project_id])
        return None if row is None else {"train": row[0], "val": row[1], "test": row[2], "seed": int(row[3])}

    def set_split_config(self, project_id: int, train: float, val: float, test: float, seed: int,
                         user: str | None) -> None:
        with self.transaction() as cur:
            cur.execute("DELETE FROM split_config WHERE project_id = ?", [project_id])
            cur.execute("INSERT INTO split_config VALUES (?, ?, ?, ?, ?, ?, ?)",
                        [project_id, train, val, test, int(seed), utcnow(), user])
            self._bump(cur, project_id)

    def split_counts(self, project_id: int) -> dict[str | None, int]:
        """Images per stored split (None = not assigned yet), all review states."""
        rows = self._all("SELECT split, count(*) FROM images WHERE project_id = ? GROUP BY split", [project_id])
        return {s: int(n) for s, n in rows}

    def images_without_split(self, project_id: int) -> list[tuple[int, str]]:
        rows = self._all("SELECT id, sha256 FROM images WHERE project_id = ? AND split IS NULL ORDER BY id",
                         [project_id])
        return [(int(i), sha) for i, sha in rows]

    def image_splits(self, project_id: int) -> list[tuple[int, str, str | None]]:
        """(id, sha256, split) of every image of the project, by id."""
        rows = self._all("SELECT id, sha256, split FROM images WHERE project_id = ? ORDER BY id", [project_id])
        return [(int(i), sha, s) for i, sha, s in rows]

    def set_splits(self, project_id: int, assignments: Sequence[tuple[int, str]], only_unassigned: bool) -> int:
        """Store (image id, split) pairs in one statement; with ``only_unassigned`` an image that got a
        split meanwhile keeps it. Returns how many rows changed."""
        if not assignments:
            return 0
        import pandas as pd

        frame = pd.DataFrame({"id": pd.Series([int(i) for i, _ in assignments], dtype="Int64"),
                              "split": pd.Series([s for _, s in assignments], dtype="object")})
        with self.transaction() as cur:
            cur.register("_split_updates", frame)
            try:
                guard = " AND images.split IS NULL" if only_unassigned else ""
                changed = len(cur.execute(
                    "UPDATE images SET split = u.split FROM _split_updates u WHERE images.id = u.id "
                    f"AND images.project_id = ?{guard} RETURNING images.id", [project_id]).fetchall())
            finally:
                cur.unregister("_split_updates")
            if changed:
                self._bump(cur, project_id)
            return changed

    def bulk_set_split(self, project_id: int, split: str, image_ids: Sequence[int] | None = None,
                       dataset_id: int | None = None, status: str | None = None) -> int:
        """Move the project's images (all, some ids, one dataset and/or one review state) to ``split``."""
        where, params = self._image_filter(project_id, dataset_id, status)
        if image_ids is not None:
            where += " AND i.id IN (SELECT unnest(?::BIGINT[]))"
            params.append([int(i) for i in image_ids])
        with self.transaction() as cur:
            changed = len(cur.execute(f"UPDATE images AS i SET split = ? WHERE {where} RETURNING id",
                                      [split] + params).fetchall())
            if changed:
                self._bump(cur, project_id)
            return changed

    def split_summary(self, project_id: int) -> list[tuple[str | None, str, int, int]]:
        """(split, review status, images, boxes) for the whole project."""
        rows = self._all(
            "SELECT i.split, i.status, count(*), coalesce(sum(b.n), 0) FROM images i "
            "LEFT JOIN (SELECT image_id, count(*) AS n FROM boxes GROUP BY image_id) b ON b.image_id = i.id "
            "WHERE i.project_id = ? GROUP BY i.split, i.status ORDER BY i.split, i.status", [project_id])
        return [(s, st, int(n), int(nb)) for s, st, n, nb in rows]
