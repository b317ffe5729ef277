"""Backups: one tar holding a consistent database snapshot and every file that snapshot references, with a
manifest and a SHA-256 of every member; and the restore of such a tar into a data folder.

The snapshot is taken inside the app (the only process that opens DuckDB), under the store's write lock:
writers wait, readers go on. CHECKPOINT then a file copy takes 0.07 s at 100k images / 1M boxes, where
DuckDB's ``COPY FROM DATABASE`` into an attached file takes 2.2 s (both hold the lock throughout), so the
lock is held for the copy only. Project files are immutable once committed (content-addressed images,
thumbnails and models, written once by ``os.replace``; exports get a new name each time), so they are
read after the lock is released: exactly those the snapshot references, never files added since.

The tar (plain, uncompressed: images are compressed already), in this order:

    metadata.duckdb                 the snapshot
    projects/<id>/images/...        images, thumbnails, models and (unless left out) exports the rows name
    .demo-created                   the data folder's own state files (TOP_LEVEL), when they exist
    jobs/<id>/...                   finished jobs' results (curves, plots, args), without their dataset
                                    copy and weights (the trained model is in its project's models/)
    manifest.json                   format, app version, date, row counts, files, bytes, what was missing
    SHA256SUMS                      "<sha256>  <member>" for every member above (sha256sum -c reads it)

``restore`` extracts into a hidden folder inside the target, checks every member against SHA256SUMS and
the database against the manifest's counts, and only then moves the files into place: a damaged or
altered tar is refused naming the member, with nothing written where the app would see it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shutil
import tarfile
import time
from datetime import datetime, timezone
from pathlib import Path

from ..diskspace import require_space
from ..store import Store
from ..types import UserError
from .context import AppContext, require

FORMAT = 1
DB_MEMBER = "metadata.duckdb"
MANIFEST = "manifest.json"
SUMS = "SHA256SUMS"
CHUNK = 1 << 20
THUMB_GUESS = 32 << 10  # bytes per thumbnail, for the free-space estimate
BACKUP_NAME = re.compile(r"backup-\d{8}-\d{6}-[0-9a-f]{8}\.tar")
FINISHED = ("succeeded", "failed", "cancelled", "interrupted")
JOB_SKIP_DIRS = ("dataset",)
JOB_SKIP_SUFFIXES = (".pt", ".onnx", ".part")
# Files at the data folder's top level that a backup carries when they exist (state, not runtime): the
# Demo marker (deleting the Demo project stays final). A users file belongs here too once there is one.
TOP_LEVEL = (".demo-created", "users.txt")  # users.txt: the users file when it lives in the data folder
RESTORE_WORK = ".restore-"  # a restore's work folder inside its target; one left by a killed restore goes at start


class _Hashing:
    """A file object that hashes what tarfile reads from it."""

    def __init__(self, f):
        self.f, self.sha = f, hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        data = self.f.read(n)
        self.sha.update(data)
        return data


def _add_file(tar: tarfile.TarFile, path: Path, member: str, sums: dict[str, str]) -> int:
    with open(path, "rb") as f:
        st = os.fstat(f.fileno())
        info = tarfile.TarInfo(member)
        info.size, info.mtime, info.mode = st.st_size, int(st.st_mtime), 0o644
        reader = _Hashing(f)
        tar.addfile(info, reader)
    sums[member] = reader.sha.hexdigest()
    return info.size


def _add_bytes(tar: tarfile.TarFile, data: bytes, member: str, sums: dict[str, str] | None) -> None:
    import io

    info = tarfile.TarInfo(member)
    info.size, info.mtime, info.mode = len(data), int(time.time()), 0o644
    tar.addfile(info, io.BytesIO(data))
    if sums is not None:
        sums[member] = hashlib.sha256(data).hexdigest()


def _app_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("auto-annotator")
    except PackageNotFoundError:
        return "unknown"


def backup(ctx: AppContext, out: str | Path | None = None, exports: bool = True, user: str | None = None) -> dict:
    """Write a backup tar: to ``out`` (a path on this machine), else into the data folder's backups/ (the API
    hands it out as a download, then ``discard_backup`` removes it). ``exports``: include export zips.
    Refused with the figures when the target's disk has clearly too little room. Admins only: a backup holds
    every project and the users file."""
    require(ctx, user, "admin", "making a backup")
    s = ctx.settings
    t0 = time.perf_counter()
    s.backups_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc)
    name = f"backup-{stamp:%Y%m%d-%H%M%S}-{secrets.token_hex(4)}.tar"
    target = Path(out).expanduser().resolve() if out else s.backups_dir / name
    if target.is_dir():
        raise UserError(f"{target} is a folder: give the backup's file name (e.g. {target / name})")
    target.parent.mkdir(parents=True, exist_ok=True)
    snap_path = s.backups_dir / f"{name}.db.part"
    part = target.with_name(target.name + ".part")
    try:
        counts = ctx.store.snapshot_database(snap_path)
        snapshot_s = time.perf_counter() - t0
        snap = Store.open(snap_path)
        try:
            statuses = snap.job_statuses()
            require_space(target.parent, _estimate(snap, snap_path, exports), f"write the backup {target.name}")
            sums: dict[str, str] = {}
            missing: list[str] = []
            files = total = 0
            with tarfile.open(part, "w", format=tarfile.PAX_FORMAT) as tar:
                # the database first, once closed (its file final); then the files it names
                snap.close()
                snap = None
                total += _add_file(tar, snap_path, DB_MEMBER, sums)
                reopened = Store.open(snap_path)
                try:
                    for pid, kind, rel, _ in reopened.iter_referenced_files():
                        if kind == "exports" and not exports:
                            continue
                        member = f"projects/{pid}/{rel}"
                        try:
                            total += _add_file(tar, s.project_file(pid, rel), member, sums)
                            files += 1
                        except FileNotFoundError:
                            missing.append(member)
                finally:
                    reopened.close()
                for top in TOP_LEVEL:
                    if (s.data_dir / top).is_file():
                        total += _add_file(tar, s.data_dir / top, top, sums)
                        files += 1
                for jid in sorted(j for j, st in statuses.items() if st in FINISHED):
                    for path in _job_files(s.job_dir(jid)):
                        member = path.relative_to(s.data_dir).as_posix()
                        try:
                            total += _add_file(tar, path, member, sums)
                            files += 1
                        except OSError:
                            missing.append(member)
                manifest = {
                    "format": FORMAT, "app": "auto-annotator", "version": _app_version(),
                    "schema": ctx.store.schema_version(),
                    "created_at": stamp.isoformat(timespec="seconds"), "created_by": user,
                    "rows": counts, "files": files, "bytes": total, "exports": bool(exports),
                    "missing": missing[:100], "missing_count": len(missing),
                }
                _add_bytes(tar, json.dumps(manifest, indent=2).encode(), MANIFEST, sums)
                _add_bytes(tar, "".join(f"{h}  {m}\n" for m, h in sums.items()).encode(), SUMS, None)
        finally:
            if snap is not None:
                snap.close()
        os.replace(part, target)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    finally:
        for leftover in (snap_path, Path(f"{snap_path}.wal")):
            leftover.unlink(missing_ok=True)
    return {"file": str(target), "name": target.name, "size_bytes": target.stat().st_size,
            "members": len(sums) + 1, "rows": counts, "files": files, "missing": missing[:100],
            "missing_count": len(missing), "snapshot_seconds": round(snapshot_s, 3),
            "seconds": round(time.perf_counter() - t0, 3)}


def _estimate(snap: Store, snap_path: Path, exports: bool) -> int:
    total = snap_path.stat().st_size
    for _, kind, _, size in snap.iter_referenced_files():
        if kind == "thumbs":
            total += THUMB_GUESS
        elif kind != "exports" or exports:
            total += (size or 0) + 1024  # a tar header, rounded up
    return total


def _job_files(folder: Path):
    if not folder.is_dir():
        return
    for root, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not (Path(root) == folder and d in JOB_SKIP_DIRS))
        for n in sorted(names):
            path = Path(root) / n
            if not n.endswith(JOB_SKIP_SUFFIXES) and path.is_file() and not path.is_symlink():
                yield path


def discard_backup(ctx: AppContext, name: str, user: str | None = None) -> dict:
    """Remove a backup the API wrote into backups/ (once downloaded). Only a backup's own name is taken."""
    require(ctx, user, "admin", "removing a backup")
    if not BACKUP_NAME.fullmatch(name or ""):
        raise UserError(f"{name!r} is not the name of a backup (backup-YYYYmmdd-HHMMSS-xxxxxxxx.tar)")
    path = ctx.settings.backups_dir / name
    existed = path.is_file()
    path.unlink(missing_ok=True)
    return {"name": name, "removed": existed}


# --- restore -------------------------------------------------------------------------------------------------
def _member_ok(name: str) -> bool:
    parts = name.split("/")
    if name in (DB_MEMBER, MANIFEST, SUMS, *TOP_LEVEL):
        return True
    return (len(parts) >= 3 and parts[0] in ("projects", "jobs") and parts[1].isdigit()
            and all(p not in ("", ".", "..") for p in parts) and not name.startswith("/"))


def _app_running(data_dir: Path) -> int | None:
    try:
        pid = int(json.loads((data_dir / "app.json").read_text())["pid"])
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError, KeyError, TypeError):
        return None


def restore(archive: str | Path, data_dir: str | Path, force: bool = False) -> dict:
    """Restore a backup tar into ``data_dir``: refused when the folder is not empty (unless ``force``: the
    backup's files then replace theirs, the database included, and files the backup does not name stay:
    ``annotator fsck --repair`` removes those no row references), and always when an app runs on it.
    Every member is checked against SHA256SUMS, and the database's row counts against the manifest, before
    anything is moved into place."""
    archive, data_dir = Path(archive).expanduser(), Path(data_dir).expanduser().resolve()
    if not archive.is_file():
        raise UserError(f"{archive}: no such backup file")
    pid = _app_running(data_dir)
    if pid:
        raise UserError(f"An app (process {pid}) is running on {data_dir}: stop it before restoring into it")
    if data_dir.exists() and not data_dir.is_dir():
        raise UserError(f"{data_dir} is not a folder")
    if data_dir.exists() and any(data_dir.iterdir()) and not force:
        raise UserError(f"{data_dir} is not empty: restore into a new folder, or add --force to replace what the "
                        "backup holds there (other files stay)")
    data_dir.mkdir(parents=True, exist_ok=True)
    require_space(data_dir, archive.stat().st_size, f"restore {archive.name}")
    t0 = time.perf_counter()
    work = data_dir / f"{RESTORE_WORK}{secrets.token_hex(4)}"
    work.mkdir()
    try:
        got, sums_text, manifest_bytes = _extract(archive, work)
        if sums_text is None or manifest_bytes is None:
            raise UserError(f"{archive} is not a backup of this app (no {SUMS} or {MANIFEST})")
        listed = {}
        for line in sums_text.splitlines():
            digest, sep, member = line.partition("  ")
            if sep:
                listed[member] = digest
        for member, digest in got.items():
            if member not in listed:
                raise UserError(f"{archive}: member {member} is not in {SUMS}: the archive was changed; "
                                "nothing was restored")
            if listed[member] != digest:
                raise UserError(f"{archive}: member {member} does not match its SHA-256 in {SUMS}: the archive is "
                                "damaged or was changed; nothing was restored")
        absent = sorted(set(listed) - set(got))
        if absent:
            raise UserError(f"{archive}: member {absent[0]} is listed in {SUMS} but missing ({len(absent)} in all): "
                            "the archive is cut short; nothing was restored")
        manifest = json.loads(manifest_bytes)
        if int(manifest.get("format", 0)) > FORMAT:
            raise UserError(f"{archive} was written by a newer version ({manifest.get('version')}): update the app")
        check = Store.open(work / DB_MEMBER)
        try:
            rows = check.row_counts()
        finally:
            check.close()
        expected = manifest.get("rows", {})
        wrong = {k: (v, rows.get(k)) for k, v in expected.items() if rows.get(k) != v}
        if wrong:
            raise UserError(f"{archive}: the database does not hold the rows its manifest lists ({wrong}); nothing "
                            "was restored")
        # Everything checked: into place, the database first (so a cut here leaves rows with missing files,
        # which fsck reports, rather than files no row knows).
        for stale in (data_dir / DB_MEMBER, data_dir / f"{DB_MEMBER}.wal"):
            stale.unlink(missing_ok=True)
        order = [DB_MEMBER] + sorted(m for m in got if m not in (DB_MEMBER, MANIFEST))
        made: set[Path] = set()
        for member in order:
            dst = data_dir / member
            if dst.parent not in made:
                dst.parent.mkdir(parents=True, exist_ok=True)
                made.add(dst.parent)
            os.replace(work / member, dst)
            if member == "users.txt":
                os.chmod(dst, 0o600)  # password hashes: the app's user only, as `annotator users add` writes it
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {"data_dir": str(data_dir), "archive": str(archive), "created_at": manifest.get("created_at"),
            "version": manifest.get("version"), "rows": rows, "files": len(got) - 2,
            "missing_in_backup": manifest.get("missing_count", 0), "seconds": round(time.perf_counter() - t0, 3)}


def _extract(archive: Path, work: Path) -> tuple[dict[str, str], str | None, bytes | None]:
    """Every member into ``work`` (regular files with safe names only), hashed on the way."""
    got: dict[str, str] = {}
    sums_text = manifest = None
    made: set[Path] = set()
    try:
        with tarfile.open(archive, "r|") as tar:
            for info in tar:
                name = info.name
                if not info.isfile() or not _member_ok(name):
                    raise UserError(f"{archive}: member {name!r} is not a file a backup holds; nothing was restored")
                src = tar.extractfile(info)
                if name == SUMS:
                    sums_text = src.read().decode("utf-8")
                    continue
                if name in got:
                    raise UserError(f"{archive}: member {name} appears twice; nothing was restored")
                dst = work / name
                if dst.parent not in made:
                    dst.parent.mkdir(parents=True, exist_ok=True)
                    made.add(dst.parent)
                sha = hashlib.sha256()
                with open(dst, "wb") as f:
                    while chunk := src.read(CHUNK):
                        sha.update(chunk)
                        f.write(chunk)
                got[name] = sha.hexdigest()
                if name == MANIFEST:
                    manifest = dst.read_bytes()
    except tarfile.TarError as e:
        raise UserError(f"{archive} is not a readable tar ({e}); nothing was restored") from None
    return got, sums_text, manifest
