"""The metadata store: the ONLY module that imports duckdb or holds SQL.

One ``Store`` owns one DuckDB connection for the app process. Reads take a fresh cursor per call (safe
across Gradio's worker threads); writes go through ``transaction()``, which serialises writers in this
process and rolls back on any error. The schema is a list of numbered migrations applied on open.

DuckDB lets exactly one process hold the file read-write; a second one gets a lock error, which
``Store.open`` turns into ``StoreBusy`` naming the process that holds it.
"""

from __future__ import annotations

import json
import re
import threading
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import duckdb

from .types import (
    Box,
    ClassDef,
    Conflict,
    Dataset,
    ImageRecord,
    Job,
    ModelRecord,
    NotFound,
    Project,
    ProjectSummary,
    StoreBusy,
    UserError,
)

# --- schema --------------------------------------------------------------------------------------------
# Each migration is (version, description, statements). Never edit a released one; append a new one.
MIGRATIONS: list[tuple[int, str, list[str]]] = [
    (
        1,
        "initial schema",
        [
            "CREATE SEQUENCE project_ids START 1",
            """CREATE TABLE projects (
                id INTEGER PRIMARY KEY DEFAULT nextval('project_ids'),
                name VARCHAR NOT NULL,
                description VARCHAR NOT NULL DEFAULT '',
                created_at TIMESTAMP NOT NULL,
                created_by VARCHAR
            )""",
            # No key constraint: reorder/delete rewrite idx in place, which DuckDB's unique indexes
            # can reject mid-statement. Uniqueness of (project_id, idx) and of names is kept by the
            # store's class methods, all of which run inside one transaction.
            """CREATE TABLE classes (
                project_id INTEGER NOT NULL,
                idx INTEGER NOT NULL,
                name VARCHAR NOT NULL
            )""",
            "CREATE SEQUENCE dataset_ids START 1",
            """CREATE TABLE datasets (
                id INTEGER PRIMARY KEY DEFAULT nextval('dataset_ids'),
                project_id INTEGER NOT NULL,
                name VARCHAR NOT NULL,
                created_at TIMESTAMP NOT NULL,
                created_by VARCHAR
            )""",
            "CREATE SEQUENCE image_ids START 1",
            """CREATE TABLE images (
                id BIGINT PRIMARY KEY DEFAULT nextval('image_ids'),
                project_id INTEGER NOT NULL,
                dataset_id INTEGER NOT NULL,
                rel_path VARCHAR NOT NULL,
                sha256 VARCHAR NOT NULL,
                file VARCHAR NOT NULL,
                thumb VARCHAR NOT NULL,
                width INTEGER NOT NULL,
                height INTEGER NOT NULL,
                format VARCHAR NOT NULL,
                size_bytes BIGINT NOT NULL,
                split VARCHAR CHECK (split IN ('train', 'val', 'test')),
                status VARCHAR NOT NULL DEFAULT 'unreviewed'
                    CHECK (status IN ('unreviewed', 'approved', 'rejected')),
                reviewed_by VARCHAR,
                reviewed_at TIMESTAMP,
                version INTEGER NOT NULL DEFAULT 0,
                created_at TIMESTAMP NOT NULL,
                created_by VARCHAR
            )""",
            "CREATE UNIQUE INDEX images_project_sha ON images (project_id, sha256)",
            "CREATE SEQUENCE box_ids START 1",
            """CREATE TABLE boxes (
                id BIGINT PRIMARY KEY DEFAULT nextval('box_ids'),
                image_id BIGINT NOT NULL,
                class_idx INTEGER NOT NULL,
                x1 DOUBLE NOT NULL,
                y1 DOUBLE NOT NULL,
                x2 DOUBLE NOT NULL,
                y2 DOUBLE NOT NULL,
                confidence DOUBLE,
                source VARCHAR NOT NULL CHECK (source IN ('human', 'model', 'import')),
                model_id INTEGER,
                job_id INTEGER,
                created_by VARCHAR,
                created_at TIMESTAMP NOT NULL
            )""",
            # Point lookups of one image's boxes (the editor) at 1M boxes: see bench/store.py.
            "CREATE INDEX boxes_image ON boxes (image_id)",
            "CREATE SEQUENCE model_ids START 1",
            """CREATE TABLE models (
                id INTEGER PRIMARY KEY DEFAULT nextval('model_ids'),
                project_id INTEGER NOT NULL,
                name VARCHAR NOT NULL,
                file VARCHAR NOT NULL,
                sha256 VARCHAR NOT NULL,
                size_bytes BIGINT NOT NULL,
                task VARCHAR NOT NULL DEFAULT 'detect',
                class_names JSON NOT NULL,
                source VARCHAR NOT NULL CHECK (source IN ('uploaded', 'trained', 'demo')),
                parent_id INTEGER,
                job_id INTEGER,
                params JSON,
                metrics JSON,
                created_at TIMESTAMP NOT NULL,
                created_by VARCHAR
            )""",
            "CREATE SEQUENCE job_ids START 1",
            """CREATE TABLE jobs (
                id INTEGER PRIMARY KEY DEFAULT nextval('job_ids'),
                project_id INTEGER,
                kind VARCHAR NOT NULL,
                params JSON NOT NULL,
                status VARCHAR NOT NULL CHECK (status IN
                    ('queued', 'running', 'succeeded', 'failed', 'cancelled', 'interrupted')),
                progress DOUBLE NOT NULL DEFAULT 0,
                done BIGINT NOT NULL DEFAULT 0,
                total BIGINT,
                counters JSON,
                error VARCHAR,
                log VARCHAR NOT NULL DEFAULT '',
                worker VARCHAR,
                task_id VARCHAR,
                created_at TIMESTAMP NOT NULL,
                created_by VARCHAR,
                started_at TIMESTAMP,
                finished_at TIMESTAMP,
                heartbeat_at TIMESTAMP
            )""",
            "CREATE SEQUENCE upload_ids START 1",
            """CREATE TABLE uploads (
                id INTEGER PRIMARY KEY DEFAULT nextval('upload_ids'),
                project_id INTEGER NOT NULL,
                dataset_id INTEGER NOT NULL,
                source VARCHAR NOT NULL,
                added INTEGER NOT NULL,
                duplicates INTEGER NOT NULL,
                skipped INTEGER NOT NULL,
                report JSON NOT NULL,
                created_at TIMESTAMP NOT NULL,
                created_by VARCHAR
            )""",
        ],
    ),
]

MIGRATIONS.append((
    2,
    "jobs: attempts, per-image completion; images: human edit marker",
    [
        # Set when a person saves an image's boxes: with status 'approved' it makes the image untouchable
        # by jobs ("human work is sacred").
        "ALTER TABLE images ADD COLUMN edited_by VARCHAR",
        "ALTER TABLE images ADD COLUMN edited_at TIMESTAMP",
        "ALTER TABLE jobs ADD COLUMN attempt INTEGER DEFAULT 0",
        "ALTER TABLE jobs ADD COLUMN model_id INTEGER",
        # One row per image a job has finished (with or without boxes): what a resume skips.
        """CREATE TABLE job_images (
            job_id INTEGER NOT NULL,
            image_id BIGINT NOT NULL,
            attempt INTEGER NOT NULL,
            boxes INTEGER NOT NULL,
            status VARCHAR NOT NULL  -- 'done', 'protected' (a person got there first), 'error'
        )""",
    ],
))

MIGRATIONS.append((
    3,
    "exports: a history of what was exported, with its options and counts",
    [
        "CREATE SEQUENCE export_ids START 1",
        """CREATE TABLE exports (
            id INTEGER PRIMARY KEY DEFAULT nextval('export_ids'),
            project_id INTEGER NOT NULL,
            format VARCHAR NOT NULL,
            options JSON NOT NULL,
            summary JSON NOT NULL,
            file VARCHAR NOT NULL,
            size_bytes BIGINT NOT NULL,
            created_at TIMESTAMP NOT NULL,
            created_by VARCHAR
        )""",
    ],
))

MIGRATIONS.append((
    4,
    "training: per-project split ratios, the images each training job used, model evaluations",
    [
        # The split manager's settings: ratios (fractions summing to 1) and the seed of the hash order.
        """CREATE TABLE split_config (
            project_id INTEGER PRIMARY KEY,
            train DOUBLE NOT NULL,
            val DOUBLE NOT NULL,
            test DOUBLE NOT NULL,
            seed INTEGER NOT NULL,
            updated_at TIMESTAMP NOT NULL,
            updated_by VARCHAR
        )""",
        # The exact training data of a job (with the box-set hash in the model's params): reproducible.
        """CREATE TABLE training_images (
            job_id INTEGER NOT NULL,
            image_id BIGINT NOT NULL,
            split VARCHAR NOT NULL
        )""",
        "CREATE SEQUENCE evaluation_ids START 1",
        # A model's metrics on a project's approved val images at one moment (snapshot says which data).
        """CREATE TABLE evaluations (
            id INTEGER PRIMARY KEY DEFAULT nextval('evaluation_ids'),
            project_id INTEGER NOT NULL,
            model_id INTEGER NOT NULL,
            job_id INTEGER,
            metrics JSON NOT NULL,
            snapshot JSON NOT NULL,
            created_at TIMESTAMP NOT NULL,
            created_by VARCHAR
        )""",
    ],
))

JOB_COLUMNS = (
    "id, project_id, kind, params, status, progress, done, total, counters, error, log, worker, task_id, "
    "created_at, created_by, started_at, finished_at, heartbeat_at, attempt, model_id"
)
MODEL_COLUMNS = (
    "id, project_id, name, file, sha256, size_bytes, task, class_names, source, parent_id, job_id, params, "
    "metrics, created_at, created_by"
)

IMAGE_COLUMNS = (
    "id, project_id, dataset_id, rel_path, sha256, file, thumb, width, height, format, size_bytes, "
    "split, status, reviewed_by, reviewed_at, created_at"
)

_SMALL_INSERT = 64  # rows; up to this many, one VALUES statement beats a pandas frame
# Column kinds for bulk inserts through a pandas frame (executemany is ~40x slower in DuckDB).
_KINDS = {"str": "object", "int": "Int64", "float": "Float64", "ts": "datetime64[us]"}
# The boxes table as every bulk insert writes it (rows in this column order).
BOX_KINDS = {"image_id": "int", "class_idx": "int", "x1": "float", "y1": "float", "x2": "float", "y2": "float",
             "confidence": "float", "source": "str", "model_id": "int", "job_id": "int", "created_by": "str",
             "created_at": "ts"}


def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def _lock_holder_pid(message: str) -> int | None:
    m = re.search(r"PID (\d+)", message)
    return int(m.group(1)) if m else None


class Store:
    """Owns the DuckDB file. Construct with ``Store.open(path)``; ``path=None`` is an in-memory store."""

    def __init__(self, con: duckdb.DuckDBPyConnection, path: Path | None):
        self._con = con
        self.path = path
        self._write_lock = threading.RLock()

    # --- lifecycle ---------------------------------------------------------------------------------
    @classmethod
    def open(cls, path: Path | str | None) -> "Store":
        target = ":memory:" if path is None else str(path)
        if path is not None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        try:
            con = duckdb.connect(target)
        except duckdb.IOException as e:
            if "lock" not in str(e).lower():
                raise
            pid = _lock_holder_pid(str(e))
            who = f"process {pid}" if pid else "another process"
            raise StoreBusy(
                f"The metadata database {target} is in use by {who} (normally the running app). "
                "Only one process may open it: use the running app (its UI or API), or stop it first.",
                pid=pid,
            ) from None
        store = cls(con, None if path is None else Path(path))
        store.migrate()
        return store

    def close(self) -> None:
        with self._write_lock:
            self._con.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- plumbing ----------------------------------------------------------------------------------
    @contextmanager
    def _read(self) -> Iterator[duckdb.DuckDBPyConnection]:
        cur = self._con.cursor()
        try:
            yield cur
        finally:
            cur.close()

    @contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """The one write path: BEGIN .. COMMIT on a private cursor, ROLLBACK on any exception."""
        with self._write_lock:
            cur = self._con.cursor()
            try:
                cur.execute("BEGIN TRANSACTION")
                try:
                    yield cur
                except BaseException:
                    cur.execute("ROLLBACK")
                    raise
                cur.execute("COMMIT")
            finally:
                cur.close()

    def _all(self, sql: str, params: Sequence = ()) -> list[tuple]:
        with self._read() as cur:
            return cur.execute(sql, list(params)).fetchall()

    def _one(self, sql: str, params: Sequence = ()) -> tuple | None:
        with self._read() as cur:
            return cur.execute(sql, list(params)).fetchone()

    @staticmethod
    def _bulk_insert(cur, table: str, columns: dict[str, str], rows: list[tuple], returning: str = "id") -> list:
        """Insert many rows at once through a registered pandas frame; returns the ``returning`` column.
        A few rows (an editor save) go as one multi-row VALUES statement: building a frame costs ~10 ms."""
        if not rows:
            return []
        if len(rows) <= _SMALL_INSERT:
            names = ", ".join(columns)
            one = "(" + ", ".join("?" * len(columns)) + ")"
            out = cur.execute(f"INSERT INTO {table} ({names}) VALUES {', '.join([one] * len(rows))} "
                              f"RETURNING {returning}", [v for r in rows for v in r]).fetchall()
            return [r[0] for r in out]
        import pandas as pd

        names = list(columns)
        data = {name: [r[i] for r in rows] for i, name in enumerate(names)}
        frame = pd.DataFrame({n: pd.Series(data[n], dtype=_KINDS[columns[n]]) for n in names})
        view = f"_bulk_{table}"
        cur.register(view, frame)
        try:
            cols = ", ".join(names)
            out = cur.execute(f"INSERT INTO {table} ({cols}) SELECT {cols} FROM {view} RETURNING {returning}").fetchall()
        finally:
            cur.unregister(view)
        return [r[0] for r in out]

    # --- migrations --------------------------------------------------------------------------------
    def migrate(self) -> int:
        with self.transaction() as cur:
            cur.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations "
                "(version INTEGER PRIMARY KEY, description VARCHAR, applied_at TIMESTAMP)"
            )
        current = self.schema_version()
        for version, description, statements in MIGRATIONS:
            if version <= current:
                continue
            with self.transaction() as cur:
                for sql in statements:
                    cur.execute(sql)
                cur.execute("INSERT INTO schema_migrations VALUES (?, ?, ?)", [version, description, utcnow()])
        return self.schema_version()

    def schema_version(self) -> int:
        row = self._one("SELECT coalesce(max(version), 0) FROM schema_migrations")
        return int(row[0])

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

    def get_project(self, project_id: int) -> Project:
        row = self._one("SELECT id, name, description, created_at FROM projects WHERE id = ?", [project_id])
        if row is None:
            raise NotFound(f"No project with id {project_id}")
        classes = self._all("SELECT idx, name FROM classes WHERE project_id = ? ORDER BY idx", [project_id])
        return self._project_row_to_obj(row, classes)

    def find_project(self, name: str) -> Project | None:
        row = self._one("SELECT id FROM projects WHERE lower(name) = lower(?)", [name.strip()])
        return None if row is None else self.get_project(int(row[0]))

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
            cur.execute("DELETE FROM boxes WHERE image_id IN (SELECT id FROM images WHERE project_id = ?)", [project_id])
            cur.execute("DELETE FROM job_images WHERE job_id IN (SELECT id FROM jobs WHERE project_id = ?)", [project_id])
            cur.execute("DELETE FROM training_images WHERE job_id IN (SELECT id FROM jobs WHERE project_id = ?)",
                        [project_id])
            for table in ("images", "classes", "datasets", "uploads", "models", "jobs", "exports", "split_config",
                          "evaluations"):
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

    # --- images ------------------------------------------------------------------------------------
    def image_shas(self, project_id: int, only: Sequence[str] | None = None) -> dict[str, str]:
        """sha256 -> "dataset/rel_path" for the images of a project (all, or those among ``only``)."""
        sql = ("SELECT i.sha256, d.name || '/' || i.rel_path FROM images i JOIN datasets d ON d.id = i.dataset_id "
               "WHERE i.project_id = ?")
        params: list = [project_id]
        if only is not None:
            sql += " AND i.sha256 IN (SELECT unnest(?::VARCHAR[]))"
            params.append(list(only))
        return dict(self._all(sql, params))

    def dataset_paths(self, dataset_id: int) -> set[str]:
        return {r[0] for r in self._all("SELECT rel_path FROM images WHERE dataset_id = ?", [dataset_id])}

    def add_images(
        self,
        project_id: int,
        dataset_name: str,
        rows: list[dict],
        upload: dict,
        user: str | None = None,
    ) -> list[int]:
        """Register images (and the upload's report) in ONE transaction, creating the dataset if needed.

        ``rows``: dicts with rel_path, sha256, file, thumb, width, height, format, size_bytes.
        """
        now = utcnow()
        with self.transaction() as cur:
            # fetchall, not fetchone: an unfinished result on the cursor blocks register() in _bulk_insert.
            found = next(iter(cur.execute(
                "SELECT id FROM datasets WHERE project_id = ? AND lower(name) = lower(?)", [project_id, dataset_name]
            ).fetchall()), None)
            if found:
                dataset_id = int(found[0])
            else:
                ((dataset_id,),) = cur.execute(
                    "INSERT INTO datasets (project_id, name, created_at, created_by) VALUES (?, ?, ?, ?) RETURNING id",
                    [project_id, dataset_name, now, user],
                ).fetchall()
            ids = self._bulk_insert(
                cur,
                "images",
                {
                    "project_id": "int", "dataset_id": "int", "rel_path": "str", "sha256": "str", "file": "str",
                    "thumb": "str", "width": "int", "height": "int", "format": "str", "size_bytes": "int",
                    "created_at": "ts", "created_by": "str",
                },
                [
                    (project_id, dataset_id, r["rel_path"], r["sha256"], r["file"], r["thumb"], r["width"],
                     r["height"], r["format"], r["size_bytes"], now, user)
                    for r in rows
                ],
            )
            cur.execute(
                "INSERT INTO uploads (project_id, dataset_id, source, added, duplicates, skipped, report, "
                "created_at, created_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [project_id, dataset_id, upload["source"], upload["added"], upload["duplicates"],
                 upload["skipped"], json.dumps(upload), now, user],
            )
        return [int(i) for i in ids]

    def _image_filter(self, project_id: int, dataset_id: int | None, status: str | None) -> tuple[str, list]:
        where, params = ["i.project_id = ?"], [project_id]
        if dataset_id is not None:
            where.append("i.dataset_id = ?")
            params.append(dataset_id)
        if status is not None:
            where.append("i.status = ?")
            params.append(status)
        return " AND ".join(where), params

    def list_images(
        self, project_id: int, dataset_id: int | None = None, status: str | None = None,
        offset: int = 0, limit: int = 60,
    ) -> list[ImageRecord]:
        where, params = self._image_filter(project_id, dataset_id, status)
        cols = ", ".join(f"i.{c.strip()}" for c in IMAGE_COLUMNS.split(","))
        # Pick the page's ids first, then fetch only those rows: 3-7x faster at 100k rows (bench/store.py).
        rows = self._all(
            f"WITH page AS (SELECT i.id FROM images i WHERE {where} ORDER BY i.id LIMIT ? OFFSET ?) "
            f"SELECT {cols}, d.name FROM page JOIN images i ON i.id = page.id "
            "JOIN datasets d ON d.id = i.dataset_id ORDER BY i.id",
            params + [int(limit), int(offset)],
        )
        return [self._image(r) for r in rows]

    def count_images(self, project_id: int, dataset_id: int | None = None, status: str | None = None) -> int:
        where, params = self._image_filter(project_id, dataset_id, status)
        return int(self._one(f"SELECT count(*) FROM images i WHERE {where}", params)[0])

    def image_status_counts(self, project_id: int) -> dict[str, int]:
        rows = self._all("SELECT status, count(*) FROM images WHERE project_id = ? GROUP BY status", [project_id])
        return {s: int(n) for s, n in rows}

    def get_image(self, image_id: int) -> ImageRecord:
        cols = ", ".join(f"i.{c.strip()}" for c in IMAGE_COLUMNS.split(","))
        row = self._one(
            f"SELECT {cols}, d.name FROM images i JOIN datasets d ON d.id = i.dataset_id WHERE i.id = ?", [image_id]
        )
        if row is None:
            raise NotFound(f"No image with id {image_id}")
        return self._image(row)

    def get_images(self, image_ids: Sequence[int]) -> dict[int, ImageRecord]:
        """Several images at once, by id (ids that do not exist are absent)."""
        ids = [int(i) for i in image_ids]
        if not ids:
            return {}
        cols = ", ".join(f"i.{c.strip()}" for c in IMAGE_COLUMNS.split(","))
        rows = self._all(f"SELECT {cols}, d.name FROM images i JOIN datasets d ON d.id = i.dataset_id "
                         "WHERE i.id IN (SELECT unnest(?::BIGINT[]))", [ids])
        return {int(r[0]): self._image(r) for r in rows}

    @staticmethod
    def _image(r: tuple) -> ImageRecord:
        return ImageRecord(
            id=int(r[0]), project_id=int(r[1]), dataset_id=int(r[2]), rel_path=r[3], sha256=r[4], file=r[5],
            thumb=r[6], width=int(r[7]), height=int(r[8]), format=r[9], size_bytes=int(r[10]), split=r[11],
            status=r[12], reviewed_by=r[13], reviewed_at=r[14], created_at=r[15], dataset=r[16],
        )

    def set_review_status(self, image_ids: Sequence[int], status: str, user: str | None,
                          drop_machine_below: float | None = None) -> int:
        """Set the review state of images (who and when); returns how many changed. With
        ``drop_machine_below``, machine boxes under that confidence are deleted in the same transaction
        (approving with low-confidence predictions thrown away)."""
        if status not in ("unreviewed", "approved", "rejected"):
            raise UserError(f"review status must be unreviewed, approved or rejected, got {status!r}")
        reset = status == "unreviewed"
        ids = [int(i) for i in image_ids]
        with self.transaction() as cur:
            if drop_machine_below is not None:
                dropped = cur.execute(
                    "DELETE FROM boxes WHERE source = 'model' AND confidence < ? "
                    "AND image_id IN (SELECT unnest(?::BIGINT[])) RETURNING image_id",
                    [float(drop_machine_below), ids]).fetchall()
                if dropped:
                    cur.execute("UPDATE images SET version = version + 1 WHERE id IN (SELECT unnest(?::BIGINT[]))",
                                [sorted({int(r[0]) for r in dropped})])
            return len(cur.execute(
                "UPDATE images SET status = ?, reviewed_by = ?, reviewed_at = ? "
                "WHERE id IN (SELECT unnest(?::BIGINT[])) RETURNING id",
                [status, None if reset else user, None if reset else utcnow(), ids],
            ).fetchall())

    # --- review (the editor) ----------------------------------------------------------------------
    def editor_state(self, image_id: int) -> dict:
        """What the editor needs besides the image row: version and who last saved / reviewed it, when."""
        row = self._one("SELECT version, edited_by, edited_at, reviewed_by, reviewed_at, status FROM images "
                        "WHERE id = ?", [image_id])
        if row is None:
            raise NotFound(f"image {image_id} does not exist")
        return dict(zip(("version", "edited_by", "edited_at", "reviewed_by", "reviewed_at", "status"), row))

    def save_image_boxes(self, image_id: int, boxes: Sequence[Box], expected_version: int, user: str | None) -> int:
        """Replace ALL boxes of one image with ``boxes`` (as given: provenance included), if the image is still
        at ``expected_version``; returns the new version. A newer save by anyone (a person in another tab, a
        job, an import) raises Conflict naming who and when, and nothing is written."""
        now = utcnow()
        with self.transaction() as cur:
            row = cur.execute("SELECT version, edited_by, edited_at FROM images WHERE id = ?", [image_id]).fetchone()
            if row is None:
                raise NotFound(f"image {image_id} does not exist")
            version, by, at = row
            if int(version) != int(expected_version):
                who = f"by {by} at {at:%H:%M:%S}" if by and at else "by an auto-annotation job or an import"
                raise Conflict(
                    f"Image {image_id} was changed {who} after you opened it (version {version}, yours "
                    f"{expected_version}). Your boxes were NOT saved and are still in the editor: reload the "
                    "image to see the other change, then redo yours.")
            cur.execute("DELETE FROM boxes WHERE image_id = ?", [image_id])
            self._bulk_insert(cur, "boxes", BOX_KINDS, [
                (image_id, b.class_idx, b.x1, b.y1, b.x2, b.y2, b.confidence, b.source, b.model_id, b.job_id,
                 b.created_by, b.created_at or now) for b in boxes])
            cur.execute("UPDATE images SET version = version + 1, edited_by = ?, edited_at = ? WHERE id = ?",
                        [user, now, image_id])
        return int(version) + 1

    SORTS = ("upload", "uncertain")

    def review_queue(self, project_id: int, *, status: str | None = None, dataset_id: int | None = None,
                     class_idx: int | None = None, no_boxes: bool = False, below_conf: float | None = None,
                     sort: str = "upload"):
        """The ids of the images a reviewer goes through, in order (a numpy int64 array).

        Filters combine with AND: review status, dataset, "has a box of class", "has no box at all",
        "has a machine box below this confidence". ``sort="uncertain"``: the image whose least confident
        machine box is lowest first; images without machine boxes last; then upload order."""
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

    def uploads(self, project_id: int, limit: int = 20) -> list[dict]:
        rows = self._all(
            "SELECT u.id, d.name, u.source, u.added, u.duplicates, u.skipped, u.created_at, u.created_by "
            "FROM uploads u JOIN datasets d ON d.id = u.dataset_id WHERE u.project_id = ? ORDER BY u.id DESC LIMIT ?",
            [project_id, limit],
        )
        keys = ("id", "dataset", "source", "added", "duplicates", "skipped", "created_at", "created_by")
        return [dict(zip(keys, r)) for r in rows]

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
        return [self._image(r) for r in rows], boxes

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
                             user: str | None) -> dict[str, int]:
        """(image id, boxes, split) from an import, in ONE transaction: replaces earlier imported boxes,
        fills the split only where none is stored, optionally approves. Images a person approved or
        edited are left alone and counted as protected."""
        ids = [int(i) for i, _, _ in items]
        counts = {"images": 0, "boxes": 0, "protected": 0, "approved": 0}
        if not ids:
            return counts
        now = utcnow()
        with self.transaction() as cur:
            protected = self._protected(cur, ids)
            writable = [i for i in ids if i not in protected]
            if writable:
                cur.execute("DELETE FROM boxes WHERE source = 'import' AND image_id IN (SELECT unnest(?::BIGINT[]))",
                            [writable])
                cur.execute("UPDATE images SET version = version + 1 WHERE id IN (SELECT unnest(?::BIGINT[]))",
                            [writable])
            rows = []
            for image_id, boxes, split in items:
                if image_id in protected:
                    continue
                rows += [(image_id, b.class_idx, b.x1, b.y1, b.x2, b.y2, None, "import", None, None, user, now)
                         for b in boxes]
                if split:
                    cur.execute("UPDATE images SET split = ? WHERE id = ? AND split IS NULL", [split, image_id])
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

    # --- boxes -------------------------------------------------------------------------------------
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

    # --- models ------------------------------------------------------------------------------------
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

    @staticmethod
    def _model(r: tuple) -> ModelRecord:
        return ModelRecord(
            id=int(r[0]), project_id=int(r[1]), name=r[2], file=r[3], sha256=r[4], size_bytes=int(r[5]), task=r[6],
            class_names=tuple(json.loads(r[7])), source=r[8], parent_id=r[9], job_id=r[10],
            params=json.loads(r[11] or "{}"), metrics=json.loads(r[12] or "{}"), created_at=r[13], created_by=r[14],
        )

    def list_models(self, project_id: int) -> list[ModelRecord]:
        rows = self._all(f"SELECT {MODEL_COLUMNS} FROM models WHERE project_id = ? ORDER BY id", [project_id])
        return [self._model(r) for r in rows]

    def get_model(self, model_id: int) -> ModelRecord:
        row = self._one(f"SELECT {MODEL_COLUMNS} FROM models WHERE id = ?", [model_id])
        if row is None:
            raise NotFound(f"No model with id {model_id}")
        return self._model(row)

    # --- jobs --------------------------------------------------------------------------------------
    def create_job(self, project_id: int | None, kind: str, params: dict, total: int, model_id: int | None = None,
                   user: str | None = None) -> int:
        with self.transaction() as cur:
            ((jid,),) = cur.execute(
                "INSERT INTO jobs (project_id, kind, params, status, total, counters, created_at, created_by, "
                "attempt, model_id) VALUES (?, ?, ?, 'queued', ?, '{}', ?, ?, 0, ?) RETURNING id",
                [project_id, kind, json.dumps(params), total, utcnow(), user, model_id],
            ).fetchall()
        return int(jid)

    @staticmethod
    def _job(r: tuple) -> Job:
        return Job(
            id=int(r[0]), project_id=r[1], kind=r[2], params=json.loads(r[3] or "{}"), status=r[4],
            progress=float(r[5] or 0), done=int(r[6] or 0), total=r[7], counters=json.loads(r[8] or "{}"),
            error=r[9], log=r[10] or "", worker=r[11], task_id=r[12], created_at=r[13], created_by=r[14],
            started_at=r[15], finished_at=r[16], heartbeat_at=r[17], attempt=int(r[18] or 0), model_id=r[19],
        )

    def get_job(self, job_id: int) -> Job:
        row = self._one(f"SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?", [job_id])
        if row is None:
            raise NotFound(f"No job with id {job_id}")
        return self._job(row)

    def list_jobs(self, project_id: int | None = None, statuses: Sequence[str] | None = None,
                  limit: int = 50) -> list[Job]:
        where, params = ["true"], []
        if project_id is not None:
            where.append("project_id = ?")
            params.append(project_id)
        if statuses:
            where.append("status IN (SELECT unnest(?::VARCHAR[]))")
            params.append(list(statuses))
        rows = self._all(
            f"SELECT {JOB_COLUMNS} FROM jobs WHERE {' AND '.join(where)} ORDER BY id DESC LIMIT ?", params + [limit]
        )
        return [self._job(r) for r in rows]

    _JOB_FIELDS = {"status", "progress", "done", "total", "counters", "error", "worker", "task_id", "started_at",
                   "finished_at", "heartbeat_at", "attempt", "params"}

    def update_job(self, job_id: int, log: str | None = None, expect_status: Sequence[str] | None = None,
                   **fields) -> bool:
        """Update a job's fields (and append to its log). With ``expect_status`` only if the job is in one
        of those states; returns whether a row changed."""
        unknown = set(fields) - self._JOB_FIELDS
        if unknown:
            raise ValueError(f"unknown job fields: {sorted(unknown)}")
        sets, params = [], []
        for k, v in fields.items():
            sets.append(f"{k} = ?")
            params.append(json.dumps(v) if k in ("counters", "params") else v)
        if log:
            sets.append("log = right(log || ?, 200000)")
            params.append(log if log.endswith("\n") else log + "\n")
        if not sets:
            return False
        sql = f"UPDATE jobs SET {', '.join(sets)} WHERE id = ?"
        params.append(job_id)
        if expect_status:
            sql += " AND status IN (SELECT unnest(?::VARCHAR[]))"
            params.append(list(expect_status))
        with self.transaction() as cur:
            return bool(cur.execute(sql + " RETURNING id", params).fetchall())

    # --- auto-annotation ---------------------------------------------------------------------------
    def images_for_annotation(self, project_id: int, dataset_ids: Sequence[int] | None, statuses: Sequence[str],
                              exclude_job: int | None = None) -> list[tuple[int, str, int, int]]:
        """(id, file, width, height) of images no person has saved or approved, in the given review states,
        optionally minus those a job already finished."""
        where = ["i.project_id = ?", "i.edited_at IS NULL", "i.status IN (SELECT unnest(?::VARCHAR[]))"]
        params: list = [project_id, [s for s in statuses if s != "approved"]]
        if dataset_ids:
            where.append("i.dataset_id IN (SELECT unnest(?::INTEGER[]))")
            params.append(list(dataset_ids))
        if exclude_job is not None:
            where.append("i.id NOT IN (SELECT image_id FROM job_images WHERE job_id = ?)")
            params.append(exclude_job)
        rows = self._all(
            f"SELECT i.id, i.file, i.width, i.height FROM images i WHERE {' AND '.join(where)} ORDER BY i.id", params
        )
        return [(int(a), b, int(c), int(d)) for a, b, c, d in rows]

    def job_image_count(self, job_id: int) -> int:
        return int(self._one("SELECT count(*) FROM job_images WHERE job_id = ?", [job_id])[0])

    @staticmethod
    def _protected(cur, image_ids: Sequence[int]) -> set[int]:
        """Images a person saved or approved: no job and no import may change their boxes."""
        return {int(r[0]) for r in cur.execute(
            "SELECT id FROM images WHERE id IN (SELECT unnest(?::BIGINT[])) "
            "AND (edited_at IS NOT NULL OR status = 'approved')", [list(image_ids)]).fetchall()}

    def save_predictions(self, job_id: int, attempt: int, model_id: int | None,
                         items: Sequence[tuple[int, Sequence[Box]]], failed: Sequence[int] = (),
                         job_counters: dict | None = None) -> dict[str, int]:
        """Replace the machine boxes of each image with a job's predictions, in ONE transaction.

        Images a person has saved or approved (checked here, at commit time) are left alone and counted as
        protected; human and imported boxes are never touched. Every image is recorded in job_images.
        """
        counts = {"images": 0, "boxes": 0, "protected": 0, "errors": len(failed)}
        ids = [int(i) for i, _ in items]
        now = utcnow()
        with self.transaction() as cur:
            protected = self._protected(cur, ids)
            writable = [i for i in ids if i not in protected]
            if writable:
                cur.execute(
                    "DELETE FROM boxes WHERE source = 'model' AND image_id IN (SELECT unnest(?::BIGINT[]))", [writable]
                )
                # An editor that opened one of these images before gets a conflict instead of erasing them.
                cur.execute("UPDATE images SET version = version + 1 WHERE id IN (SELECT unnest(?::BIGINT[]))",
                            [writable])
            rows, done = [], []
            for image_id, boxes in items:
                if image_id in protected:
                    done.append((job_id, image_id, attempt, 0, "protected"))
                    continue
                for b in boxes:
                    rows.append((image_id, b.class_idx, b.x1, b.y1, b.x2, b.y2, b.confidence, "model", model_id,
                                 job_id, None, now))
                done.append((job_id, image_id, attempt, len(boxes), "done"))
            done += [(job_id, int(i), attempt, 0, "error") for i in failed]
            self._bulk_insert(
                cur, "boxes",
                BOX_KINDS,
                rows,
            )
            self._bulk_insert(
                cur, "job_images",
                {"job_id": "int", "image_id": "int", "attempt": "int", "boxes": "int", "status": "str"},
                done, returning="image_id",
            )
            counts.update(images=len(writable), boxes=len(rows), protected=len(protected))
            if job_counters is not None:  # the job's bookkeeping commits with its boxes, or not at all
                merged = dict(job_counters)
                for k, v in counts.items():
                    merged[k] = merged.get(k, 0) + v
                cur.execute("UPDATE jobs SET counters = ? WHERE id = ?", [json.dumps(merged), job_id])
                counts = merged
        return counts

    # --- training: splits, training data, evaluations ------------------------------------------------
    def split_config(self, project_id: int) -> dict | None:
        row = self._one("SELECT train, val, test, seed FROM split_config WHERE project_id = ?", [project_id])
        return None if row is None else {"train": row[0], "val": row[1], "test": row[2], "seed": int(row[3])}

    def set_split_config(self, project_id: int, train: float, val: float, test: float, seed: int,
                         user: str | None) -> None:
        with self.transaction() as cur:
            cur.execute("DELETE FROM split_config WHERE project_id = ?", [project_id])
            cur.execute("INSERT INTO split_config VALUES (?, ?, ?, ?, ?, ?, ?)",
                        [project_id, train, val, test, int(seed), utcnow(), user])

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
                return len(cur.execute(
                    "UPDATE images SET split = u.split FROM _split_updates u WHERE images.id = u.id "
                    f"AND images.project_id = ?{guard} RETURNING images.id", [project_id]).fetchall())
            finally:
                cur.unregister("_split_updates")

    def bulk_set_split(self, project_id: int, split: str, image_ids: Sequence[int] | None = None,
                       dataset_id: int | None = None, status: str | None = None) -> int:
        """Move the project's images (all, some ids, one dataset and/or one review state) to ``split``."""
        where, params = self._image_filter(project_id, dataset_id, status)
        if image_ids is not None:
            where += " AND i.id IN (SELECT unnest(?::BIGINT[]))"
            params.append([int(i) for i in image_ids])
        with self.transaction() as cur:
            return len(cur.execute(f"UPDATE images AS i SET split = ? WHERE {where} RETURNING id",
                                   [split] + params).fetchall())

    def split_summary(self, project_id: int) -> list[tuple[str | None, str, int, int]]:
        """(split, review status, images, boxes) for the whole project."""
        rows = self._all(
            "SELECT i.split, i.status, count(*), coalesce(sum(b.n), 0) FROM images i "
            "LEFT JOIN (SELECT image_id, count(*) AS n FROM boxes GROUP BY image_id) b ON b.image_id = i.id "
            "WHERE i.project_id = ? GROUP BY i.split, i.status ORDER BY i.split, i.status", [project_id])
        return [(s, st, int(n), int(nb)) for s, st, n, nb in rows]

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
        return None if row is None else self._model(row)

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
