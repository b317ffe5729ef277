"""The data folder's upkeep: which files the rows reference (for ``services/fsck.py``), row counts, and a
consistent copy of the whole database (for ``services/backup.py``)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Iterator, Sequence



class UpkeepMixin:
    """Referenced files, row counts, database snapshots.
    Mixed into ``Store``: uses its ``_all``, ``_read``, ``_write_lock`` and ``_con``.
    """

    def project_ids(self) -> list[int]:
        return [int(r[0]) for r in self._all("SELECT id FROM projects ORDER BY id")]

    def job_statuses(self) -> dict[int, str]:
        return {int(r[0]): r[1] for r in self._all("SELECT id, status FROM jobs")}

    def project_files(self, project_id: int) -> dict[str, dict[str, tuple[int, int | None]]]:
        """Every file a row of the project references, by kind: {"images": {rel: (image id, size)},
        "thumbs": {rel: (image id, None)}, "models": {rel: (model id, size)}, "exports": {rel: (export id, size)},
        "videos": {rel: (video id, size)}} (paths relative to the project folder; videos kept by their upload)."""
        out: dict[str, dict[str, tuple[int, int | None]]] = {"images": {}, "thumbs": {}, "models": {}, "exports": {},
                                                              "videos": {}}
        with self._read() as cur:
            cur.execute("SELECT id, file, thumb, size_bytes FROM images WHERE project_id = ?", [project_id])
            while rows := cur.fetchmany(10_000):
                for iid, file, thumb, size in rows:
                    out["images"][file] = (int(iid), int(size))
                    out["thumbs"][thumb] = (int(iid), None)
            for kind, table in (("models", "models"), ("exports", "exports"), ("videos", "videos")):
                for rid, file, size in cur.execute(f"SELECT id, file, size_bytes FROM {table} WHERE project_id = ? "
                                                   "AND file IS NOT NULL", [project_id]).fetchall():
                    out[kind][file] = (int(rid), int(size))
        return out

    def referenced_image_files(self, project_id: int, files: Sequence[str]) -> set[str]:
        """Those of ``files`` (project-relative) that an image row of the project references (file or thumb)."""
        files = list(files)
        if not files:
            return set()
        rows = self._all(
            "SELECT file FROM images WHERE project_id = ? AND file IN (SELECT unnest(?::VARCHAR[])) UNION "
            "SELECT thumb FROM images WHERE project_id = ? AND thumb IN (SELECT unnest(?::VARCHAR[]))",
            [project_id, files, project_id, files])
        return {r[0] for r in rows}

    def row_counts(self) -> dict[str, int]:
        """Rows per table, every table of the schema (those later migrations add included), by name."""
        tables = [r[0] for r in self._all("SELECT table_name FROM duckdb_tables() WHERE database_name = "
                                          "current_database() AND schema_name = 'main' ORDER BY table_name")]
        return {t: int(self._all(f'SELECT count(*) FROM "{t}"')[0][0]) for t in tables}

    def iter_referenced_files(self) -> Iterator[tuple[int, str, str, int | None]]:
        """(project id, kind, project-relative path, size or None) of every file a row references, in order."""
        sql = ("SELECT project_id, 'images', file, size_bytes FROM images UNION ALL "
               "SELECT project_id, 'thumbs', thumb, NULL FROM images UNION ALL "
               "SELECT project_id, 'models', file, size_bytes FROM models UNION ALL "
               "SELECT project_id, 'exports', file, size_bytes FROM exports UNION ALL "
               "SELECT project_id, 'videos', file, size_bytes FROM videos WHERE file IS NOT NULL ORDER BY 1, 2, 3")
        with self._read() as cur:
            cur.execute(sql)
            while rows := cur.fetchmany(10_000):
                for pid, kind, rel, size in rows:
                    yield int(pid), kind, rel, None if size is None else int(size)

    def snapshot_database(self, dest: Path) -> dict[str, int]:
        """A consistent copy of the database at ``dest``, with the row counts of that moment.

        Under the write lock (writers wait, readers go on): CHECKPOINT folds the write-ahead log into the
        file, which then does not change until the lock is released, so a plain file copy is the database
        as of that moment (a WAL left behind is copied too; DuckDB replays it on open). 40x faster than
        ``COPY FROM DATABASE`` (see services/backup.py)."""
        dest = Path(dest)
        if self.path is None:
            raise ValueError("an in-memory store has no file to snapshot")
        with self._write_lock:
            self._con.execute("CHECKPOINT")
            counts = self.row_counts()
            tmp = dest.with_name(dest.name + ".part")
            shutil.copyfile(self.path, tmp)
            wal = Path(str(self.path) + ".wal")
            if wal.exists():
                shutil.copyfile(wal, Path(str(dest) + ".wal"))
            os.replace(tmp, dest)
        return counts
