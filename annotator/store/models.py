"""The model registry."""

from __future__ import annotations

import json
from typing import Sequence

from ..types import ModelRecord, NotFound, UserError
from .rows import MODEL_COLUMNS, model_from_row, utcnow


class ModelsMixin:
    """Model rows.
    Mixed into ``Store``: uses its ``_all``, ``_one``, ``_read``, ``transaction`` and ``_bulk_insert``.
    """

    def add_model(self, project_id: int, name: str, file: str, sha256: str, size_bytes: int, class_names: Sequence[str],
                  source: str, task: str = "detect", parent_id: int | None = None, job_id: int | None = None,
                  params: dict | None = None, metrics: dict | None = None, user: str | None = None) -> int:
        with self.transaction() as cur:
            clash = cur.execute(
                "SELECT id FROM models WHERE project_id = ? AND lower(name) = lower(?)", [project_id, name]
            ).fetchall()
            if clash:
                raise UserError(f"A model named {name!r} is already registered in this project")
            ((mid,),) = cur.execute(
                f"INSERT INTO models ({', '.join(c.strip() for c in MODEL_COLUMNS.split(',')[1:])}) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                [project_id, name, file, sha256, size_bytes, task, json.dumps(list(class_names)), source, parent_id,
                 job_id, json.dumps(params or {}), json.dumps(metrics or {}), utcnow(), user],
            ).fetchall()
        return int(mid)

    def list_models(self, project_id: int) -> list[ModelRecord]:
        rows = self._all(f"SELECT {MODEL_COLUMNS} FROM models WHERE project_id = ? ORDER BY id", [project_id])
        return [model_from_row(r) for r in rows]

    def get_model(self, model_id: int) -> ModelRecord:
        row = self._one(f"SELECT {MODEL_COLUMNS} FROM models WHERE id = ?", [model_id])
        if row is None:
            raise NotFound(f"No model with id {model_id}")
        return model_from_row(row)
