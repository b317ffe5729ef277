"""What every query module shares: the clock, column lists, the boxes table's bulk-insert kinds and the
row -> object converters. Imports only ``annotator.types``, so the mixins and ``Store`` can all use it.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone

from ..types import ImageRecord, Job, ModelRecord

JOB_COLUMNS = (
    "id, project_id, kind, params, status, progress, done, total, result, error, log, worker, task_id, "
    "created_at, created_by, started_at, finished_at, heartbeat_at, attempt, model_id, live, chunks_in, logs_in, "
    "chunks_lost, done_before"
)
MODEL_COLUMNS = (
    "id, project_id, name, file, sha256, size_bytes, task, class_names, source, parent_id, job_id, params, "
    "metrics, created_at, created_by"
)

IMAGE_COLUMNS = (
    "id, project_id, dataset_id, rel_path, sha256, file, thumb, width, height, format, size_bytes, "
    "split, status, reviewed_by, reviewed_at, created_at, video_id, frame_index, frame_time"
)

# The boxes table as every bulk insert writes it (rows in this column order).
BOX_KINDS = {"image_id": "int", "class_idx": "int", "x1": "float", "y1": "float", "x2": "float", "y2": "float",
             "confidence": "float", "source": "str", "model_id": "int", "job_id": "int", "created_by": "str",
             "created_at": "ts", "track_id": "int"}


_SMALL_INSERT = 64  # rows; up to this many, one VALUES statement beats a pandas frame


def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def image_from_row(r: tuple) -> ImageRecord:
    """An ``IMAGE_COLUMNS`` row followed by the dataset's name."""
    return ImageRecord(
        id=int(r[0]), project_id=int(r[1]), dataset_id=int(r[2]), rel_path=r[3], sha256=r[4], file=r[5],
        thumb=r[6], width=int(r[7]), height=int(r[8]), format=r[9], size_bytes=int(r[10]), split=r[11],
        status=r[12], reviewed_by=r[13], reviewed_at=r[14], created_at=r[15], video_id=r[16], frame_index=r[17],
        frame_time=r[18], dataset=r[19],
    )


def job_from_row(r: tuple) -> Job:
    return Job(
        id=int(r[0]), project_id=r[1], kind=r[2], params=json.loads(r[3] or "{}"), status=r[4],
        progress=float(r[5] or 0), done=int(r[6] or 0), total=r[7], result=json.loads(r[8] or "{}"),
        error=r[9], log=r[10] or "", worker=r[11], task_id=r[12], created_at=r[13], created_by=r[14],
        started_at=r[15], finished_at=r[16], heartbeat_at=r[17], attempt=int(r[18] or 0), model_id=r[19],
        live=json.loads(r[20] or "{}"), chunks_in=int(r[21]), logs_in=int(r[22]), chunks_lost=int(r[23]),
        done_before=int(r[24]),
    )


def model_from_row(r: tuple) -> ModelRecord:
    return ModelRecord(
        id=int(r[0]), project_id=int(r[1]), name=r[2], file=r[3], sha256=r[4], size_bytes=int(r[5]), task=r[6],
        class_names=tuple(json.loads(r[7])), source=r[8], parent_id=r[9], job_id=r[10],
        params=json.loads(r[11] or "{}"), metrics=json.loads(r[12] or "{}"), created_at=r[13], created_by=r[14],
    )
