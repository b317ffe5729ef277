"""Images: uploads (zip / folder / files into a dataset, all or nothing), listing, the gallery's thumbnails
with boxes drawn on, the upload history, and the Demo project on an empty data folder."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Sequence

from .. import ingest, pixels
from ..diskspace import require_space, sources_size
from ..names import clean_name
from ..overlay import draw_boxes
from ..types import Dataset, DuplicateFile, ImageRecord, IngestReport, Project, UserError
from .context import AppContext, as_system, dataset_id, project, require, review_state

CACHE_FILES = 5000  # gallery overlays kept; the oldest go first


@dataclass(frozen=True)
class ImagePage:
    images: list[ImageRecord]
    total: int
    page: int
    pages: int


def drop_stale_staging(ctx: AppContext) -> dict:
    """Only the app writes under projects/ while it holds the store, so any staging left is a crash's.

    A commit that died half-way (kill -9 between moving its files into images/ and thumbs/ and committing
    their rows) left its journal (``staging/<id>.commit``, the files it was placing): those files that no
    row references are removed first. This costs the size of the interrupted commits, not of the data
    folder. Returns what was removed: {"staging": folders, "files": files, "bytes": bytes}."""
    out = {"staging": 0, "files": 0, "bytes": 0}
    for staging in ctx.settings.projects_dir.glob("*/staging"):
        pdir = staging.parent
        for journal in staging.glob("*" + COMMIT_JOURNAL):
            try:
                rels = [str(r) for r in json.loads(journal.read_text())]
                project_id = int(pdir.name)
            except (OSError, ValueError, TypeError):  # written only part-way: nothing was moved yet
                continue
            kept = ctx.store.referenced_image_files(project_id, rels)
            for rel in rels:
                path = pdir / rel
                if rel in kept or not _inside(path, pdir) or path.is_symlink() or not path.is_file():
                    continue
                size = path.stat().st_size
                path.unlink(missing_ok=True)
                out["files"] += 1
                out["bytes"] += size
        shutil.rmtree(staging, ignore_errors=True)
        out["staging"] += 1
    return out


COMMIT_JOURNAL = ".commit"  # staging/<upload id>.commit: the files a commit is moving into place (JSON list)


def _inside(path: Path, folder: Path) -> bool:
    return path.resolve().is_relative_to(folder.resolve())


def _write_journal(path: Path, rels: list[str]) -> None:
    """The commit's intent, on disk before the first file moves (flushed: it must outlive a power cut)."""
    with open(path, "w", encoding="utf-8") as f:
        json.dump(rels, f)
        f.flush()
        os.fsync(f.fileno())


def named_sources(sources, nothing: str) -> list[tuple[Path, str]]:
    """Uploaded or imported sources -> (path, display name): a path is named by its file name, a
    ``(path, name)`` pair keeps its name. UserError ``nothing`` when there are none, or naming a missing one."""
    srcs = [(Path(s[0]), s[1]) if isinstance(s, tuple) else (Path(s), Path(s).name) for s in sources]
    if not srcs:
        raise UserError(nothing)
    for path, name in srcs:
        if not path.exists():
            raise UserError(f"{name}: no such file or folder")
    return srcs


def add_images(
    ctx: AppContext,
    ref,
    sources: Sequence[Path | str | tuple[Path | str, str]],
    dataset: str | None = None,
    user: str | None = None,
    progress: ingest.Progress | None = None,
    sampling: str | None = None,
    keep_video: bool = False,
) -> IngestReport:
    """Ingest zips, folders, image files and videos into a dataset (created if new, appended to if it exists).

    Good files are added even when others are bad; duplicates and skips are reported with reasons.
    Rows for all added images are committed in one transaction, after their files are in place.
    ``report.image_ids`` maps each upload path to its image id (added, or the stored copy of a duplicate).
    A video (also inside a zip) is sampled into frames by ``sampling`` ("fps:2", "every:10", "scene:0.2",
    "all", with ",max:N"; default ANNOTATOR_VIDEO_SAMPLING), each frame an image with its index and time;
    the video file is kept only with ``keep_video``.
    """
    require(ctx, user, "annotator", "uploading images")
    p = project(ctx, ref)
    samples = _sampling(ctx, sampling)
    srcs = named_sources(sources, "Nothing to upload: choose a .zip, a folder, image files or videos")
    dataset_name = clean_name(dataset or _default_dataset_name(srcs), "Dataset name", forbid="/\\")
    existing = ctx.store.find_dataset(p.id, dataset_name)
    if existing:
        dataset_name = existing.name
    known = ctx.store.image_shas(p.id)
    taken = ctx.store.dataset_paths(existing.id) if existing else set()
    staging = ctx.settings.staging_dir(p.id) / uuid.uuid4().hex
    require_space(ctx.settings.project_dir(p.id), sources_size(path for path, _ in srcs),
                  f"store {', '.join(n for _, n in srcs[:3])}{' ...' if len(srcs) > 3 else ''}")
    t0 = time.perf_counter()
    try:
        prep = ingest.prepare_upload(
            srcs, staging, ingest.Limits.from_settings(ctx.settings), known, taken, progress,
            ctx.settings.ingest_threads, samples, keep_video,
        )
        report = IngestReport(project=p.name, dataset=dataset_name, duplicates=prep.duplicates,
                              skipped=prep.skipped)
        if prep.images:
            _commit_images(ctx, p, dataset_name, prep.images, report, [n for _, n in srcs], user, t0,
                           prep.videos)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        with contextlib.suppress(OSError):
            staging.parent.rmdir()  # only when no other upload is staging
    if report.duplicates:
        stored = ctx.store.image_ids_by_sha(p.id, [d.sha256 for d in report.duplicates])
        report.image_ids.update({d.name: stored[d.sha256] for d in report.duplicates if d.sha256 in stored})
    if report.added:
        report.similar = _similar_report(ctx, p, report)
    report.seconds = time.perf_counter() - t0
    if progress and not prep.images and not prep.duplicates and not prep.skipped:
        progress(0, 0, "")
    return report


SIMILAR_LISTED = 200  # near-duplicates named in one upload's report (the gallery's filter shows them all)


def _similar_report(ctx: AppContext, p: Project, report: IngestReport) -> list[dict]:
    """The added images that have a near-duplicate in the project (another added one, or one stored before).
    Consecutive frames of a video are near-duplicates by nature and are not listed against each other."""
    from .similar import similar_to

    added = {report.image_ids[r]: r for r in report.added if r in report.image_ids}
    found = similar_to(ctx, p, list(added))
    if not found:
        return []
    recs = ctx.store.get_images([f["similar_id"] for f in found] + list(added))
    out = []
    for f in found:
        me, other = recs.get(f["image_id"]), recs.get(f["similar_id"])
        if me is None or other is None or (me.video_id is not None and me.video_id == other.video_id):
            continue
        out.append({"name": added[f["image_id"]], "similar_to": f"{other.dataset}/{other.rel_path}",
                    "distance": f["distance"]})
    return out[:SIMILAR_LISTED]


def _sampling(ctx: AppContext, text: str | None):
    """The video sampling asked for (default: the setting), or a UserError naming the bad value."""
    from ..video import Sampling

    text = (text or "").strip() or ctx.settings.video_sampling
    try:
        return Sampling.parse(text)
    except ValueError as e:
        raise UserError(f"video sampling: {e}") from None


def _video_row(v, file: str | None) -> dict:
    info = v.info
    return {"name": v.name, "sha256": v.sha256, "size_bytes": v.size_bytes, "width": info.width,
            "height": info.height, "fps": float(info.fps), "frames": int(info.frames),
            "duration_s": float(info.duration_s), "rotation": int(info.rotation), "codec": info.codec,
            "sampling": v.sampling, "read": v.read, "kept": v.kept, "stopped": v.stopped, "file": file}


def _video_report(v, added: int) -> dict:
    from ..video import format_time

    info = v.info
    return {"name": v.name, "sampling": v.sampling, "read": v.read, "kept": v.kept, "added": added,
            "duration": format_time(info.duration_s), "size": f"{info.width}x{info.height}",
            "fps": round(float(info.fps), 2), "rotation": int(info.rotation), "stopped": v.stopped}


def _commit_images(ctx: AppContext, p: Project, dataset_name: str, images, report: IngestReport, names, user,
                   t0, videos: dict | None = None) -> None:
    """Move staged files into place and register them, all or nothing.

    Uploads run concurrently; their commits do not. Under the lock, images that another upload
    committed meanwhile become duplicates instead of failing the whole commit on the unique index.
    """
    pdir = ctx.settings.project_dir(p.id)
    with ctx.commit_lock:
        known = ctx.store.image_shas(p.id, only=[i.sha256 for i in images])
        fresh = []
        for img in images:
            if img.sha256 in known:
                report.duplicates.append(DuplicateFile(img.rel_path, known[img.sha256], img.sha256))
            else:
                fresh.append(img)
        report.added = [i.rel_path for i in fresh]
        report.notes = [f"{i.rel_path}: {i.note}" for i in fresh if i.note]
        videos = videos or {}
        added_frames: dict[str, int] = {}
        for img in fresh:
            if img.video:
                added_frames[img.video] = added_frames.get(img.video, 0) + 1
        report.videos = [_video_report(v, added_frames.get(name, 0)) for name, v in videos.items()]
        report.notes += [f"{v.name}: {v.stopped}" for v in videos.values() if v.stopped]
        if not fresh:
            return
        report.seconds = time.perf_counter() - t0
        created: list[Path] = []
        rows = []
        folders: set[Path] = set()
        journal = ctx.settings.staging_dir(p.id) / f"{uuid.uuid4().hex}{COMMIT_JOURNAL}"
        journal.parent.mkdir(parents=True, exist_ok=True)
        video_files = {name: (v, f"videos/{v.sha256[:2]}/{v.sha256}{Path(name).suffix.lower()}")
                       for name, v in videos.items() if v.source is not None and added_frames.get(name)}
        _write_journal(journal, [rel for img in fresh for rel in ingest.stored_names(img.sha256, img.ext)]
                       + [rel for _, rel in video_files.values()])
        try:
            for v, rel in video_files.values():
                dst = pdir / rel
                dst.parent.mkdir(parents=True, exist_ok=True)
                if not dst.exists():
                    created.append(dst)
                    if v.ours:  # our copy out of a zip, in the staging folder
                        os.replace(v.source, dst)
                    else:  # the user's file: copied, never moved
                        shutil.copyfile(v.source, dst)
            for img in fresh:
                file, thumb = ingest.stored_names(img.sha256, img.ext)
                for src, rel in ((img.image_path, file), (img.thumb_path, thumb)):
                    dst = pdir / rel
                    if dst.parent not in folders:
                        dst.parent.mkdir(parents=True, exist_ok=True)
                        folders.add(dst.parent)
                    if not dst.exists():
                        created.append(dst)
                    os.replace(src, dst)
                rows.append({
                    "rel_path": img.rel_path, "sha256": img.sha256, "file": file, "thumb": thumb,
                    "width": img.width, "height": img.height, "format": img.format,
                    "size_bytes": img.size_bytes, "phash": img.phash, "video": img.video,
                    "frame_index": img.frame_index, "frame_time": img.frame_time,
                })
            upload = {"source": ", ".join(names)[:500], **report.as_dict()}
            video_rows = [_video_row(v, video_files[n][1] if n in video_files else None)
                          for n, v in videos.items() if added_frames.get(n)]
            ids = ctx.store.add_images(p.id, dataset_name, rows, upload, user, video_rows)
        except BaseException:
            for path in created:  # leave nothing half-written behind
                path.unlink(missing_ok=True)
            raise
        finally:
            journal.unlink(missing_ok=True)
    report.image_ids.update({img.rel_path: int(i) for img, i in zip(fresh, ids)})


def _default_dataset_name(srcs: list[tuple[Path, str]]) -> str:
    """A zip's, a folder's or a video's name when the upload is one of those; else the upload's time."""
    if len(srcs) == 1 and (srcs[0][0].is_dir() or srcs[0][0].suffix.lower() == ".zip" or ingest.is_video(srcs[0][1])):
        return Path(srcs[0][1]).stem or "upload"
    return "upload-" + datetime.now().strftime("%Y%m%d-%H%M%S")


def datasets(ctx: AppContext, ref) -> list[Dataset]:
    return ctx.store.list_datasets(project(ctx, ref).id)


def list_images(ctx: AppContext, ref, dataset: str | None = None, status: str | None = None, page: int = 0,
                page_size: int = 60, similar: bool = False) -> ImagePage:
    """A page of the project's images by id, optionally of one dataset / review state. ``similar``: only the
    images that have a near-duplicate, group after group (services/similar.py)."""
    p = project(ctx, ref)
    ds = dataset_id(ctx, p, dataset)
    status = review_state(status)
    page_size = max(1, min(int(page_size), 500))
    if similar:
        from .similar import similar_ids

        ids = similar_ids(ctx, p)
        if ds is not None or status is not None:  # the filters need the rows; else only the page's are read
            recs = ctx.store.get_images(ids)
            ids = [i for i in ids if i in recs and (ds is None or recs[i].dataset_id == ds)
                   and (status is None or recs[i].status == status)]
        total = len(ids)
        pages = max(1, -(-total // page_size))
        page = max(0, min(int(page), pages - 1))
        shown = ids[page * page_size:(page + 1) * page_size]
        recs = ctx.store.get_images(shown)
        return ImagePage([recs[i] for i in shown if i in recs], total, page, pages)
    total = ctx.store.count_images(p.id, ds, status)
    pages = max(1, -(-total // page_size))
    page = max(0, min(int(page), pages - 1))
    images = ctx.store.list_images(p.id, ds, status, page * page_size, page_size)
    return ImagePage(images, total, page, pages)


def image_file(ctx: AppContext, img: ImageRecord) -> Path:
    return ctx.settings.project_file(img.project_id, img.file)


def thumb_file(ctx: AppContext, img: ImageRecord) -> Path:
    return ctx.settings.project_file(img.project_id, img.thumb)


def gallery_thumbs(ctx: AppContext, images: Sequence[ImageRecord]) -> list[tuple[Path, int]]:
    """(thumbnail path, box count) per image; thumbnails of images with boxes get them drawn on,
    cached under tmp/overlays by the boxes' content (so a new job result makes a new picture)."""
    boxes = ctx.store.boxes_for_images([i.id for i in images])
    cache = ctx.settings.overlays_dir
    out = []
    for img in images:
        bs = boxes.get(img.id, [])
        if not bs:
            out.append((thumb_file(ctx, img), 0))
            continue
        key = hashlib.sha1(repr([(b.class_idx, b.xyxy) for b in bs]).encode()).hexdigest()[:16]
        path = cache / f"{img.id}-{key}.jpg"
        if not path.exists():
            cache.mkdir(parents=True, exist_ok=True)
            side = 2 * ctx.settings.thumb_size  # our own thumbnails: at most twice thumb_size (JPEG drafts)
            with pixels.DECODE.hold(pixels.decoded_bytes(side, side)):
                draw_boxes(thumb_file(ctx, img), bs, img.width, img.height, path)
            prune_cache(cache)
        out.append((path, len(bs)))
    return out


def prune_cache(cache: Path, keep: int = CACHE_FILES) -> None:
    """Keep the ``keep`` newest .jpg files of a cache folder (gallery overlays, editor display copies)."""
    files = list(cache.glob("*.jpg"))
    if len(files) > keep:
        files.sort(key=lambda f: f.stat().st_mtime)
        for f in files[: len(files) - keep]:
            f.unlink(missing_ok=True)


def uploads(ctx: AppContext, ref, limit: int = 20) -> list[dict]:
    return ctx.store.uploads(project(ctx, ref).id, limit)


def ensure_demo(ctx: AppContext, n_images: int = 24) -> Project | None:
    """On an empty data folder, create the Demo project: generated shape scenes and the demo model.

    Runs once per data folder (a marker file remembers it), so deleting the Demo project is final.
    """
    from ..demo import scenes  # the runtime half of the demo (scenes, model path)
    from .models import add_model
    from .projects import create_project

    ctx = as_system(ctx)  # the app's own write, whoever opened the page first
    marker = ctx.settings.demo_marker_path
    if marker.exists() or ctx.store.list_projects():
        return None
    ctx.settings.tmp_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=ctx.settings.tmp_dir) as tmp:
        folder = Path(tmp) / "shapes"
        folder.mkdir()
        for i in range(n_images):
            data, _ = scenes.scene_jpeg(10_000 + i)
            sub = "street" if i % 2 else "yard"
            (folder / sub).mkdir(exist_ok=True)
            (folder / sub / f"scene_{i:03d}.jpg").write_bytes(data)
        p = create_project(
            ctx, "Demo", list(scenes.CLASSES),
            "Generated shape scenes and a small detector trained on them: press Run on the Auto-annotate tab.",
            user="demo",
        )
        add_images(ctx, p, [(folder, "shapes")], dataset="shapes", user="demo")
    if scenes.DEMO_MODEL_PATH.is_file():
        add_model(ctx, p, scenes.DEMO_MODEL_PATH, name="demo-shapes", user="demo", source="demo")
    marker.write_text("created\n")
    return ctx.store.get_project(p.id)
