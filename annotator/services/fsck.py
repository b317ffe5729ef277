"""The data folder checked against the store (``annotator fsck``), and the sweep at every start.

What is checked, folder by folder (paths relative to the data folder):

- ``projects/<id>/images/``, ``thumbs/``: every file must be an image row's ``file`` / ``thumb``. Others are
  orphans (a commit killed between moving its files in and committing their rows): removed by repair,
  under the upload commit lock, after checking again that no row took them meanwhile. Rows whose image
  is missing, or whose size differs from the row's, are reported and LEFT: their boxes and reviews are a
  person's work, and nothing here can bring the pixels back (restore a backup). A missing thumbnail is
  made again from its image.
- ``projects/<id>/models/``: every ``.pt`` must be a model row's file; orphans removed. A model row whose
  file is missing is reported and left (jobs and trained models name it; register the .pt again).
- ``projects/<id>/exports/``: every file must be an export row's; orphans removed. An export whose zip was
  deleted (to free space) is a note, not a problem: the history keeps the row.
- ``projects/<id>/videos/``: videos an upload asked to keep; every file must be a video row's; orphans removed,
  a missing one reported (its frames are images and stay).
- ``projects/<id>/display/``: the editor's reduced copies, named ``<image sha256>-<side>.jpg``: a cache, so
  only copies of images the project no longer has are orphans.
- ``projects/<id>/staging/``, ``*.part`` files in models/, exports/, display/ and ``backups/``, and
  ``tmp/tmp*`` (import and demo temp folders), and a killed restore's ``.restore-*`` folder: work in flight. Left by an earlier run, they are
  leftovers (removed); made by this run, they are work under way (a note; never touched).
- ``projects/<id>`` with no project row (a project deletion killed half-way) and ``jobs/<id>`` with no job
  row (the folders of a deleted project's training jobs): orphan folders, removed whole.
- Anything else inside a project folder: a note ("unknown"), never removed.

Never looked into or removed: the data folder's own files (``metadata.duckdb`` and its WAL, ``queue.db``,
``app.json``, ``worker.log``, ``.demo-created``, a users file), ``config/`` (ultralytics and matplotlib
settings), ``tmp/gradio/`` (Gradio's uploads, which Gradio expires), ``tmp/overlays/`` (a bounded cache),
the folders of existing jobs, finished backups in ``backups/`` (they wait to be downloaded) and anything
outside the data folder; links are never followed.

An orphan in models/, exports/, display/, projects/ or jobs/ made by this run less than ``GRACE_S`` ago is
left (its row may be a moment away) and reported as under way.

``sweep`` runs at every start (``Services.open``): the interrupted commits' orphans (through their
journals, see ``images.drop_stale_staging``), staging folders, ``.part`` files and temp folders. Its cost
grows with the number of projects and exports, not with the number of images: it never lists images/.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path

from .. import ingest
from .backup import RESTORE_WORK
from .context import AppContext, require
from .images import drop_stale_staging

GRACE_S = 600.0
EXAMPLES = 5
PROJECT_AREAS = ("images", "thumbs", "models", "exports", "videos", "display", "staging")
KEEP_IN_TMP = ("gradio", "overlays")

# kind -> (problem or note, what it is, what repair does)
KINDS: dict[str, tuple[bool, str, str]] = {
    "orphan_images": (True, "image files no row references", "remove"),
    "orphan_thumbs": (True, "thumbnails no row references", "remove"),
    "orphan_models": (True, "model files no row references", "remove"),
    "orphan_exports": (True, "export files no row references", "remove"),
    "orphan_videos": (True, "kept video files no video row references", "remove"),
    "orphan_display": (True, "display copies of images the project no longer has", "remove"),
    "orphan_projects": (True, "project folders with no project row", "remove"),
    "orphan_jobs": (True, "job folders with no job row", "remove"),
    "leftover_staging": (True, "upload staging left by an earlier run", "remove"),
    "leftover_parts": (True, "half-written files (.part) left by an earlier run", "remove"),
    "leftover_tmp": (True, "temp folders left by an earlier run", "remove"),
    "missing_thumbs": (True, "image rows whose thumbnail is missing", "make again"),
    "missing_images": (True, "image rows whose file is missing (their boxes are kept)", "leave"),
    "damaged_images": (True, "image rows whose file has another size than stored", "leave"),
    "missing_models": (True, "model rows whose .pt is missing", "leave"),
    "missing_exports": (False, "export rows whose zip was deleted", "leave"),
    "missing_videos": (False, "kept videos whose file was deleted (their frames stay)", "leave"),
    "in_progress": (False, "work under way (made by this run)", "leave"),
    "unknown": (False, "unknown entries in project folders", "leave"),
    "backups": (False, "finished backups waiting in backups/", "leave"),
}


@dataclass
class _Finding:
    kind: str
    paths: list[Path] = field(default_factory=list)
    bytes: int = 0
    fixed: int = 0
    failed: list[str] = field(default_factory=list)
    ids: list[int] = field(default_factory=list)  # image ids of missing thumbs (to make them again)


class _Report:
    def __init__(self, ctx: AppContext):
        self.ctx = ctx
        self.root = ctx.settings.data_dir
        self.findings: dict[str, _Finding] = {}
        self.files = 0

    def add(self, kind: str, path: Path, size: int = 0, image_id: int | None = None) -> None:
        f = self.findings.setdefault(kind, _Finding(kind))
        f.paths.append(path)
        f.bytes += size
        if image_id is not None:
            f.ids.append(image_id)

    def rel(self, path: Path) -> str:
        try:
            return path.relative_to(self.root).as_posix()
        except ValueError:
            return str(path)

    def as_dict(self, repair: bool, seconds: float, checked: dict) -> dict:
        problems, notes, remaining = [], [], 0
        for kind, (is_problem, what, action) in KINDS.items():
            f = self.findings.get(kind)
            if f is None:
                continue
            row = {"kind": kind, "what": what, "count": len(f.paths), "bytes": f.bytes,
                   "examples": [self.rel(p) for p in f.paths[:EXAMPLES]]}
            if is_problem:
                left = len(f.paths) - f.fixed
                remaining += left
                if not repair:
                    row["action"] = f"would {action}" if action != "leave" else "left (needs a person)"
                elif action == "leave":
                    row["action"] = "left (needs a person)"
                else:
                    row["action"] = f"{action}: {f.fixed} done" + (f", {left} failed" if left else "")
                if f.failed:
                    row["failed"] = f.failed[:EXAMPLES]
                problems.append(row)
            else:
                notes.append(row)
        return {"data_dir": str(self.root), "repair": bool(repair), "clean": not problems,
                "remaining": remaining, "problems": problems, "notes": notes,
                "checked": {**checked, "files": self.files}, "seconds": round(seconds, 3)}


def _size(path: Path) -> int:
    try:
        st = path.lstat()
    except OSError:
        return 0
    if stat.S_ISDIR(st.st_mode):
        try:
            return sum(_size(Path(e.path)) for e in os.scandir(path))
        except OSError:
            return 0
    return st.st_size


def _walk_files(folder: Path):
    """(path, size) of every file under ``folder``, links included as files, never followed."""
    try:
        entries = list(os.scandir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return
    for e in entries:
        if e.is_dir(follow_symlinks=False):
            yield from _walk_files(Path(e.path))
            continue
        try:
            size = e.stat(follow_symlinks=False).st_size
        except FileNotFoundError:  # gone meanwhile (a cache pruned while the app runs)
            continue
        yield Path(e.path), size


def _mtime(path: Path) -> float:
    try:
        return path.lstat().st_mtime
    except OSError:
        return 0.0


def _this_run(ctx: AppContext, path: Path) -> bool:
    """Made (or last changed) since this process took the data folder over: work that may be under way."""
    return _mtime(path) >= ctx.started_at - 1.0


def _young(ctx: AppContext, path: Path) -> bool:
    return _this_run(ctx, path) and time.time() - _mtime(path) < GRACE_S


def _remove(root: Path, path: Path) -> None:
    """Remove a file or a folder strictly inside the data folder (at least two levels down), links as links."""
    parent = path.parent.resolve()
    if not parent.is_relative_to(root.resolve()) or parent == root.resolve():
        raise OSError(f"refusing to remove {path}: not inside the data folder's managed areas")
    if path.is_symlink() or not path.is_dir():
        path.unlink(missing_ok=True)
    else:
        try:
            shutil.rmtree(path)
        except FileNotFoundError:  # removed meanwhile (a project deletion finishing): gone is what we want
            pass


# --- the check ----------------------------------------------------------------------------------------------
def fsck(ctx: AppContext, repair: bool = False, user: str | None = None) -> dict:
    """Check the data folder against the store: files no row references, rows whose file is missing, work
    left by an earlier run. With ``repair``, remove the orphans and leftovers and make missing thumbnails
    again; rows whose file is missing are left (reported). ``remaining``: problems still there afterwards
    (all of them without ``repair``). Checking needs any role; repairing (it deletes files) an admin."""
    require(ctx, user, "admin" if repair else "viewer", "repairing the data folder" if repair else
            "checking the data folder")
    t0 = time.perf_counter()
    r = _Report(ctx)
    s, store = ctx.settings, ctx.store
    projects = set(store.project_ids())
    counts = {"projects": len(projects), "images": 0, "models": 0, "exports": 0}
    try:
        project_dirs = sorted(os.scandir(s.projects_dir), key=lambda e: e.name)
    except FileNotFoundError:
        project_dirs = []
    for entry in project_dirs:
        path = Path(entry.path)
        if not entry.name.isdigit() or not entry.is_dir(follow_symlinks=False):
            r.add("unknown", path, _size(path))
        elif int(entry.name) not in projects:
            r.add("in_progress" if _young(ctx, path) else "orphan_projects", path, _size(path))
    for pid in sorted(projects):
        got = _check_project(ctx, r, pid)
        for k in ("images", "models", "exports"):
            counts[k] += got[k]
    _check_jobs(ctx, r)
    _check_transient(ctx, r)
    if repair:
        _repair(ctx, r)
    return r.as_dict(repair, time.perf_counter() - t0, counts)


def _check_project(ctx: AppContext, r: _Report, pid: int) -> dict:
    pdir = ctx.settings.project_dir(pid)
    refs = ctx.store.project_files(pid)
    if pdir.is_dir():
        for e in os.scandir(pdir):
            if e.name not in PROJECT_AREAS:
                r.add("unknown", Path(e.path), _size(Path(e.path)))
    # images and thumbnails: an orphan is re-checked under the commit lock (a commit may be placing it)
    orphans: list[tuple[Path, str, int]] = []
    for area in ("images", "thumbs"):
        seen = set()
        for path, size in _walk_files(pdir / area):
            r.files += 1
            rel = path.relative_to(pdir).as_posix()
            ref = refs[area].get(rel)
            if ref is None:
                orphans.append((path, rel, size))
                continue
            seen.add(rel)
            if area == "images" and ref[1] != size:
                r.add("damaged_images", path, size)
        for rel, (iid, _) in refs[area].items():
            if rel not in seen:
                r.add("missing_images" if area == "images" else "missing_thumbs", pdir / rel,
                      image_id=None if area == "images" else iid)
    if orphans:
        with ctx.commit_lock:
            taken = ctx.store.referenced_image_files(pid, [rel for _, rel, _ in orphans])
        for path, rel, size in orphans:
            if rel not in taken:
                r.add("orphan_" + rel.split("/", 1)[0], path, size)
    # models, exports and kept videos: few files, each named by a row
    for area in ("models", "exports", "videos"):
        seen = set()
        for path, size in _walk_files(pdir / area):
            r.files += 1
            rel = path.relative_to(pdir).as_posix()
            if path.suffix == ".part":
                r.add("in_progress" if _this_run(ctx, path) else "leftover_parts", path, size)
            elif rel in refs[area]:
                seen.add(rel)
            else:
                r.add("in_progress" if _young(ctx, path) else f"orphan_{area}", path, size)
        for rel in refs[area]:
            if rel not in seen:
                r.add(f"missing_{area}", pdir / rel)
    # display copies: a cache of the project's images
    shas = {Path(rel).stem for rel in refs["images"]}
    for path, size in _walk_files(pdir / "display"):
        r.files += 1
        if path.suffix == ".part":
            r.add("in_progress" if _this_run(ctx, path) else "leftover_parts", path, size)
        elif path.stem.rpartition("-")[0] not in shas:
            r.add("in_progress" if _young(ctx, path) else "orphan_display", path, size)
    staging = ctx.settings.staging_dir(pid)
    if staging.exists():
        for e in os.scandir(staging):
            path = Path(e.path)
            r.add("in_progress" if _this_run(ctx, path) else "leftover_staging", path, _size(path))
    return {"images": len(refs["images"]), "models": len(refs["models"]), "exports": len(refs["exports"])}


def _check_jobs(ctx: AppContext, r: _Report) -> None:
    jobs_dir = ctx.settings.jobs_dir
    if not jobs_dir.is_dir():
        return
    ids = ctx.store.job_statuses()
    for e in os.scandir(jobs_dir):
        path = Path(e.path)
        if e.name.isdigit() and int(e.name) not in ids and e.is_dir(follow_symlinks=False):
            r.add("in_progress" if _young(ctx, path) else "orphan_jobs", path, _size(path))


def _check_transient(ctx: AppContext, r: _Report) -> None:
    tmp = ctx.settings.tmp_dir
    if tmp.is_dir():
        for e in os.scandir(tmp):
            path = Path(e.path)
            if e.name.startswith("tmp") and e.name not in KEEP_IN_TMP:
                r.add("in_progress" if _this_run(ctx, path) else "leftover_tmp", path, _size(path))
    backups = ctx.settings.backups_dir
    if backups.is_dir():
        for e in os.scandir(backups):
            path = Path(e.path)
            if path.suffix == ".part" or path.name.endswith(".part.wal"):
                r.add("in_progress" if _this_run(ctx, path) else "leftover_parts", path, _size(path))
            else:
                r.add("backups", path, _size(path))


def _repair(ctx: AppContext, r: _Report) -> None:
    root = ctx.settings.data_dir
    for kind, f in r.findings.items():
        is_problem, _, action = KINDS[kind]
        if not is_problem or action == "leave":
            continue
        if kind == "missing_thumbs":
            _remake_thumbs(ctx, f)
            continue
        with ctx.commit_lock if kind in ("orphan_images", "orphan_thumbs") else contextlib.nullcontext():
            if kind in ("orphan_images", "orphan_thumbs"):  # once more, now that removing is final
                keep = _still_referenced(ctx, f.paths)
            else:
                keep = set()
            for path in f.paths:
                if path in keep:
                    continue
                try:
                    _remove(root, path)
                    f.fixed += 1
                    if kind in ("orphan_images", "orphan_thumbs"):  # images/ab/ emptied: gone too
                        with contextlib.suppress(OSError):
                            path.parent.rmdir()
                except OSError as e:
                    f.failed.append(f"{r.rel(path)}: {e}")
        f.fixed += len(keep)  # a commit took them meanwhile: nothing to do


def _still_referenced(ctx: AppContext, paths: list[Path]) -> set[Path]:
    projects = ctx.settings.projects_dir
    by_project: dict[int, list[tuple[Path, str]]] = {}
    for p in paths:
        pid, rel = p.relative_to(projects).parts[0], "/".join(p.relative_to(projects).parts[1:])
        by_project.setdefault(int(pid), []).append((p, rel))
    keep = set()
    for pid, items in by_project.items():
        taken = ctx.store.referenced_image_files(pid, [rel for _, rel in items])
        keep |= {p for p, rel in items if rel in taken}
    return keep


def _remake_thumbs(ctx: AppContext, f: _Finding) -> None:
    limits = ingest.Limits.from_settings(ctx.settings)
    for path, iid in zip(f.paths, f.ids):
        try:
            img = ctx.store.get_image(iid)
            src = ctx.settings.project_file(img.project_id, img.file)
            thumb = ingest.decode_image(src.read_bytes(), limits).thumb
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.name + ".part")
            tmp.write_bytes(thumb)
            os.replace(tmp, path)
            f.fixed += 1
        except Exception as e:  # noqa: BLE001 - the image itself missing or unreadable: say which
            f.failed.append(f"image {iid}: {e}")


# --- at every start -----------------------------------------------------------------------------------------
def sweep(ctx: AppContext) -> dict:
    """What an earlier run left in flight, removed as the app (or the CLI) takes the data folder over:
    interrupted commits' orphans (from their journals) and staging, ``.part`` files, temp folders and a killed
    restore's work folder. Nothing
    runs yet, so all of it is stale. Cheap: it lists staging/, models/, exports/, display/, tmp/ and
    backups/, never images/ or thumbs/. Returns the counts and the seconds it took."""
    t0 = time.perf_counter()
    out = drop_stale_staging(ctx)
    out.update(parts=0, tmp=0)
    root = ctx.settings.data_dir
    folders = [ctx.settings.backups_dir]
    if ctx.settings.projects_dir.is_dir():
        for e in os.scandir(ctx.settings.projects_dir):
            if e.name.isdigit() and e.is_dir(follow_symlinks=False):
                folders += [Path(e.path) / a for a in ("models", "exports", "display")]
    for folder in folders:
        try:
            entries = list(os.scandir(folder))
        except (FileNotFoundError, NotADirectoryError):
            continue
        for e in entries:
            if (e.name.endswith(".part") or e.name.endswith(".part.wal")) and not e.is_dir(follow_symlinks=False):
                out["bytes"] += e.stat(follow_symlinks=False).st_size
                Path(e.path).unlink(missing_ok=True)
                out["parts"] += 1
    stale = [Path(e.path) for e in os.scandir(ctx.settings.tmp_dir)
             if e.name.startswith("tmp") and e.name not in KEEP_IN_TMP] if ctx.settings.tmp_dir.is_dir() else []
    stale += [Path(e.path) for e in os.scandir(root) if e.name.startswith(RESTORE_WORK)
              and e.is_dir(follow_symlinks=False)]
    for path in stale:
        try:
            if path.parent == root:  # a restore's work folder: the one thing removed at the top level
                shutil.rmtree(path)
            else:
                _remove(root, path)
            out["tmp"] += 1
        except OSError:
            pass
    out["seconds"] = round(time.perf_counter() - t0, 4)
    return out
