"""Training: the images each training job used, its model, model evaluations."""

from __future__ import annotations

import json
from typing import Sequence

from ..types import ModelRecord
from .rows import MODEL_COLUMNS, model_from_row, utcnow


class TrainingMixin:
    """Training data and evaluations.
    Mixed into ``Store``: uses its ``_all``, ``_one``, ``_read``, ``transaction`` and ``_bulk_insert``.
    """

    def save_training_images(self, job_id: int, rows: Sequence[tuple[int, str]]) -> None:
        with self.transaction() as cur:
            cur.execute("DELETE FROM training_images WHERE job_id = ?", [job_id])
            self._bulk_insert(cur, "training_images", {"job_id": "int", "image_id": "int", "split": "str"},
                              [(job_id, int(i), s) for i, s in rows], returning="image_id")

    def training_images(self, job_id: int) -> list[tuple[int, str]]:
        return [(int(i), s) for i, s in self._all(
            "SELECT image_id, split FROM training_images WHERE job_id = ? ORDER BY image_id", [job_id])]

    def model_for_job(self, job_id: int) -> ModelRecord | None:
        row = self._one(f"SELECT {MODEL_COLUMNS} FROM models WHERE job_id = ? AND source = 'trained'", [job_id])
        return None if row is None else model_from_row(row)

    def add_evaluation(self, project_id: int, model_id: int, job_id: int | None, metrics: dict, snapshot: dict,
                       user: str | None) -> int:
        with self.transaction() as cur:
            ((eid,),) = cur.execute(
                "INSERT INTO evaluations (project_id, model_id, job_id, metrics, snapshot, created_at, created_by) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
                [project_id, model_id, job_id, json.dumps(metrics), json.dumps(snapshot), utcnow(), user],
            ).fetchall()
        return int(eid)

    def latest_evaluations(self, project_id: int) -> dict[int, dict]:
        """model id -> its newest evaluation in the project."""
        rows = self._all(
            "SELECT model_id, id, job_id, metrics, snapshot, created_at FROM evaluations WHERE project_id = ? "
            "QUALIFY row_number() OVER (PARTITION BY model_id ORDER BY id DESC) = 1", [project_id])
        return {int(r[0]): {"id": int(r[1]), "job_id": r[2], "metrics": json.loads(r[3]),
                            "snapshot": json.loads(r[4]), "created_at": r[5]} for r in rows}

    # --- keep learning --------------------------------------------------------------------------------------
    def learn_setting(self, project_id: int) -> tuple[int, int]:
        """(every K approvals, 0 = off; approved images when the last round began)."""
        row = self._one("SELECT coalesce(learn_every, 0), coalesce(learn_mark, 0) FROM projects WHERE id = ?",
                        [project_id])
        return (int(row[0]), int(row[1])) if row else (0, 0)

    def set_learn_setting(self, project_id: int, every: int | None = None, mark: int | None = None) -> None:
        with self.transaction() as cur:
            if every is not None:
                cur.execute("UPDATE projects SET learn_every = ? WHERE id = ?", [int(every), project_id])
            if mark is not None:
                cur.execute("UPDATE projects SET learn_mark = ? WHERE id = ?", [int(mark), project_id])
