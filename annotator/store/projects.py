"""Projects, their class tables and their datasets."""

from __future__ import annotations

from typing import Sequence

from ..types import ClassDef, Dataset, NotFound, Project, ProjectSummary, UserError
from .rows import utcnow


class ProjectsMixin:
    """Projects, the class table of each, datasets.
    Mixed into ``Store``: uses its ``_all``, ``_one``, ``_read``, ``transaction`` and ``_bulk_insert``.
    """

    # --- projects ----------------------------------------------------------------------------------
    def create_project(self, name: str, class_names: Sequence[str], description: str = "", user: str | None = None) -> int:
        with self.transaction() as cur:
            if cur.execute("SELECT 1 FROM projects WHERE lower(name) = lower(?)", [name]).fetchall():
                raise UserError(f"A project named {name!r} already exists")
            ((pid,),) = cur.execute(
                "INSERT INTO projects (name, description, created_at, created_by) VALUES (?, ?, ?, ?) RETURNING id",
                [name, description, utcnow(), user],
            ).fetchall()
            self._bulk_insert(
                cur, "classes", {"project_id": "int", "idx": "int", "name": "str"},
                [(pid, i, n) for i, n in enumerate(class_names)], returning="idx",
            )
        return int(pid)

    def _project_row_to_obj(self, row: tuple, classes: list[tuple]) -> Project:
        return Project(
            id=int(row[0]), name=row[1], description=row[2], created_at=row[3],
            classes=tuple(ClassDef(int(i), n) for i, n in classes),
        )

    # Two plain queries per lookup (every API call resolves its project, the editor's saves among them): a
    # join with list() aggregates costs more in DuckDB than the second round trip.
    def _project_where(self, where: str, params: list) -> Project | None:
        row = self._one(f"SELECT id, name, description, created_at FROM projects WHERE {where}", params)
        if row is None:
            return None
        classes = self._all("SELECT idx, name FROM classes WHERE project_id = ? ORDER BY idx", [int(row[0])])
        return self._project_row_to_obj(row, classes)

    def get_project(self, project_id: int) -> Project:
        found = self._project_where("id = ?", [project_id])
        if found is None:
            raise NotFound(f"No project with id {project_id}")
        return found

    def find_project(self, name: str) -> Project | None:
        return self._project_where("lower(name) = lower(?)", [name.strip()])

    def list_projects(self) -> list[ProjectSummary]:
        rows = self._all(
            """
            SELECT p.id, p.name, p.description, p.created_at,
                   (SELECT count(*) FROM classes c WHERE c.project_id = p.id),
                   (SELECT count(*) FROM datasets d WHERE d.project_id = p.id),
                   coalesce(i.n, 0), coalesce(i.approved, 0), coalesce(b.n, 0)
            FROM projects p
            LEFT JOIN (SELECT project_id, count(*) AS n, count(*) FILTER (WHERE status = 'approved') AS approved
                       FROM images GROUP BY project_id) i ON i.project_id = p.id
            LEFT JOIN (SELECT im.project_id, count(*) AS n FROM boxes bx JOIN images im ON im.id = bx.image_id
                       GROUP BY im.project_id) b ON b.project_id = p.id
            ORDER BY lower(p.name)
            """
        )
        return [
            ProjectSummary(
                id=int(r[0]), name=r[1], description=r[2], created_at=r[3], num_classes=int(r[4]),
                num_datasets=int(r[5]), num_images=int(r[6]), num_approved=int(r[7]), num_boxes=int(r[8]),
            )
            for r in rows
        ]

    def project_names(self) -> dict[int, str]:
        """id -> name, without the counts list_projects aggregates (for panels refreshed by a timer)."""
        return {int(i): n for i, n in self._all("SELECT id, name FROM projects")}

    def delete_project(self, project_id: int) -> None:
        with self.transaction() as cur:
            for table in ("boxes", "predictions", "review_edits"):
                cur.execute(f"DELETE FROM {table} WHERE image_id IN (SELECT id FROM images WHERE project_id = ?)",
                            [project_id])
            cur.execute("DELETE FROM job_images WHERE job_id IN (SELECT id FROM jobs WHERE project_id = ?)", [project_id])
            cur.execute("DELETE FROM training_images WHERE job_id IN (SELECT id FROM jobs WHERE project_id = ?)",
                        [project_id])
            for table in ("job_epochs", "job_shards"):
                cur.execute(f"DELETE FROM {table} WHERE job_id IN (SELECT id FROM jobs WHERE project_id = ?)",
                            [project_id])
            for table in ("images", "classes", "datasets", "uploads", "models", "jobs", "exports", "split_config",
                          "evaluations", "videos", "label_errors"):
                cur.execute(f"DELETE FROM {table} WHERE project_id = ?", [project_id])
            cur.execute("DELETE FROM projects WHERE id = ?", [project_id])

    # --- classes -----------------------------------------------------------------------------------
    def class_box_counts(self, project_id: int) -> dict[int, int]:
        rows = self._all(
            "SELECT b.class_idx, count(*) FROM boxes b JOIN images i ON i.id = b.image_id "
            "WHERE i.project_id = ? GROUP BY b.class_idx",
            [project_id],
        )
        return {int(k): int(v) for k, v in rows}

    def rename_class(self, project_id: int, idx: int, new_name: str) -> None:
        with self.transaction() as cur:
            clash = cur.execute(
                "SELECT idx FROM classes WHERE project_id = ? AND lower(name) = lower(?) AND idx <> ?",
                [project_id, new_name, idx],
            ).fetchone()
            if clash:
                raise UserError(f"Class name {new_name!r} is already used by class {clash[0]}")
            n = cur.execute(
                "UPDATE classes SET name = ? WHERE project_id = ? AND idx = ? RETURNING idx", [new_name, project_id, idx]
            ).fetchall()
            if not n:
                raise NotFound(f"Project {project_id} has no class with index {idx}")
            self._bump(cur, project_id)

    def add_classes(self, project_id: int, names: Sequence[str]) -> None:
        with self.transaction() as cur:
            existing = cur.execute("SELECT idx, name FROM classes WHERE project_id = ?", [project_id]).fetchall()
            taken = {n.lower() for _, n in existing}
            for name in names:
                if name.lower() in taken:
                    raise UserError(f"Class name {name!r} already exists in this project")
            start = len(existing)
            self._bulk_insert(
                cur, "classes", {"project_id": "int", "idx": "int", "name": "str"},
                [(project_id, start + i, n) for i, n in enumerate(names)], returning="idx",
            )
            self._bump(cur, project_id)

    def remap_classes(self, project_id: int, new_names: Sequence[str], box_map: dict[int, int | None]) -> dict[str, int]:
        """Replace the class table with ``new_names`` (index = position) and remap every box explicitly.

        ``box_map`` sends each old index to a new index, or to None (delete those boxes). Every old index
        in use by a box must appear in it; the caller (services) decides what the user confirmed.
        Returns counts: boxes remapped and deleted.
        """
        counts = {"remapped": 0, "deleted": 0}
        with self.transaction() as cur:
            used = {
                int(r[0]): int(r[1])
                for r in cur.execute(
                    "SELECT b.class_idx, count(*) FROM boxes b JOIN images i ON i.id = b.image_id "
                    "WHERE i.project_id = ? GROUP BY b.class_idx",
                    [project_id],
                ).fetchall()
            }
            missing = sorted(set(used) - set(box_map))
            if missing:
                raise UserError(f"Boxes use class index(es) {missing} but the remap does not say where they go")
            for new in box_map.values():
                if new is not None and not (0 <= new < len(new_names)):
                    raise UserError(f"Remap target {new} is not a class index of the new table")
            to_delete = [old for old, new in box_map.items() if new is None and old in used]
            if to_delete:
                counts["deleted"] = cur.execute(
                    "DELETE FROM boxes WHERE class_idx IN (SELECT unnest(?::INTEGER[])) AND image_id IN "
                    "(SELECT id FROM images WHERE project_id = ?) RETURNING 1",
                    [to_delete, project_id],
                ).fetchall().__len__()
            moves = {old: new for old, new in box_map.items() if new is not None and new != old and old in used}
            if moves:
                case = " ".join(f"WHEN {int(o)} THEN {int(n)}" for o, n in moves.items())
                counts["remapped"] = len(cur.execute(
                    f"UPDATE boxes SET class_idx = CASE class_idx {case} END "
                    "WHERE class_idx IN (SELECT unnest(?::INTEGER[])) AND image_id IN "
                    "(SELECT id FROM images WHERE project_id = ?) RETURNING 1",
                    [list(moves), project_id],
                ).fetchall())
            cur.execute("DELETE FROM classes WHERE project_id = ?", [project_id])
            self._bulk_insert(
                cur, "classes", {"project_id": "int", "idx": "int", "name": "str"},
                [(project_id, i, n) for i, n in enumerate(new_names)], returning="idx",
            )
            self._bump(cur, project_id)
        return counts

    # --- datasets ----------------------------------------------------------------------------------
    def list_datasets(self, project_id: int) -> list[Dataset]:
        rows = self._all(
            "SELECT d.id, d.project_id, d.name, d.created_at, "
            "(SELECT count(*) FROM images i WHERE i.dataset_id = d.id) "
            "FROM datasets d WHERE d.project_id = ? ORDER BY d.id",
            [project_id],
        )
        return [Dataset(int(r[0]), int(r[1]), r[2], r[3], int(r[4])) for r in rows]

    def find_dataset(self, project_id: int, name: str) -> Dataset | None:
        for d in self.list_datasets(project_id):
            if d.name.lower() == name.lower():
                return d
        return None
