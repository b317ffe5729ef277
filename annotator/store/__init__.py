"""The metadata store: the ONLY package that imports duckdb or holds SQL.

One ``Store`` owns one DuckDB connection for the app process. Reads take a fresh cursor per call (safe
across Gradio's worker threads); writes go through ``transaction()``, which serialises writers in this
process and rolls back on any error. The schema is a list of numbered migrations applied on open.

DuckDB lets exactly one process hold the file read-write; a second one gets a lock error, which
``Store.open`` turns into ``StoreBusy`` naming the process that holds it.

The package: ``schema.py`` holds the migrations as data; ``rows.py`` the shared column lists and row
converters; one module per domain (projects, images, boxes, review, transfer, models, jobs, annotation,
splits, training, upkeep) holds a mixin of query methods that ``Store`` inherits, so every method stays
``store.<name>``. A mixin may use another's private helper through ``self`` (``_image_filter``,
``_protected``). This module is the mechanism only: open/close, cursors, the write path, bulk insert,
migrations.
"""

from __future__ import annotations

import re
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence

import duckdb

from ..types import StoreBusy
from .annotation import AnnotationMixin
from .boxes import BoxesMixin
from .images import ImagesMixin
from .jobs import JobsMixin
from .models import ModelsMixin
from .projects import ProjectsMixin
from .quality import QualityMixin
from .review import ReviewMixin
from .rows import _SMALL_INSERT, BOX_KINDS, IMAGE_COLUMNS, JOB_COLUMNS, MODEL_COLUMNS, utcnow
from .schema import MIGRATIONS
from .splits import SplitsMixin
from .training import TrainingMixin
from .transfer import TransferMixin
from .upkeep import UpkeepMixin

__all__ = ["Store", "StoreBusy", "MIGRATIONS", "BOX_KINDS", "IMAGE_COLUMNS", "JOB_COLUMNS", "MODEL_COLUMNS", "utcnow"]

# The query mixins, one per module; Store inherits them all (tests/test_store_package.py checks the split).
QUERY_MIXINS = (ProjectsMixin, ImagesMixin, BoxesMixin, ReviewMixin, TransferMixin, ModelsMixin, JobsMixin,
                AnnotationMixin, SplitsMixin, TrainingMixin, UpkeepMixin)

# Column kinds for bulk inserts through a pandas frame (executemany is ~40x slower in DuckDB).
_KINDS = {"str": "object", "int": "Int64", "float": "Float64", "ts": "datetime64[us]", "uint64": "UInt64"}


def _lock_holder_pid(message: str) -> int | None:
    m = re.search(r"PID (\d+)", message)
    return int(m.group(1)) if m else None


class Store(
    ProjectsMixin,
    QualityMixin,
    ImagesMixin,
    BoxesMixin,
    ReviewMixin,
    TransferMixin,
    ModelsMixin,
    JobsMixin,
    AnnotationMixin,
    SplitsMixin,
    TrainingMixin,
    UpkeepMixin,
):
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

    @staticmethod
    def _bump(cur, project_id: int | None = None, image_ids: Sequence[int] | None = None) -> int | None:
        """Advance the revision of the project (or of the projects of these images): its data changed.
        Returns the project's new revision when ``project_id`` is given."""
        revision = None
        if project_id is not None:
            row = cur.execute("UPDATE projects SET revision = revision + 1 WHERE id = ? RETURNING revision",
                              [project_id]).fetchone()
            revision = int(row[0]) if row else None
        if image_ids:
            cur.execute("UPDATE projects SET revision = revision + 1 WHERE id IN (SELECT DISTINCT project_id "
                        "FROM images WHERE id IN (SELECT unnest(?::BIGINT[])))", [[int(i) for i in image_ids]])
        return revision

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

    # --- diagnostics -------------------------------------------------------------------------------
    def explain(self, sql: str, params: Sequence = (), analyze: bool = False) -> str:
        """DuckDB's plan of one read query, as text (bench/store.py shows how lookups scan). ``analyze`` runs
        the query to report what it actually read: plain EXPLAIN shows a sequential scan even where DuckDB
        then uses an index."""
        if not sql.lstrip().lower().startswith(("select", "with")):
            raise ValueError("explain() takes a read query (SELECT or WITH)")
        prefix = "EXPLAIN ANALYZE " if analyze else "EXPLAIN "
        return "\n".join(str(c) for row in self._all(prefix + sql, params) for c in row)

    def checkpoint(self) -> None:
        """Write the write-ahead log into the database file (its size on disk is then the data's)."""
        with self._write_lock:  # outside transaction(): CHECKPOINT cannot run inside one
            self._con.execute("CHECKPOINT")
