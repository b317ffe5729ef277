"""Use cases, free of any UI: the Gradio tabs, the CLI and the tests all call these.

Every method validates its input and raises ``UserError`` with a message naming the value at fault.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import posixpath
import shutil
import tempfile
import threading
import time
import unicodedata
import uuid
import zipfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Sequence

from . import geometry, ingest
from . import models as model_checks
from .review import ReviewMixin
from .settings import Settings
from .store import Store, utcnow
from .types import (
    Box,
    Dataset,
    DuplicateFile,
    ImageRecord,
    IngestReport,
    Job,
    ModelRecord,
    NotFound,
    Project,
    ProjectSummary,
    UserError,
)

MAX_NAME = 100
ACCEPTED_EXTENSIONS = frozenset(ingest.IMAGE_EXTENSIONS)  # for upload pickers


def _clean_name(value: str | None, what: str, forbid: str = "") -> str:
    name = unicodedata.normalize("NFC", (value or "").strip())
    if not name:
        raise UserError(f"{what} must not be empty")
    if len(name) > MAX_NAME:
        raise UserError(f"{what} {name[:30]!r}... is longer than {MAX_NAME} characters")
    if any(unicodedata.category(ch).startswith("C") for ch in name):
        raise UserError(f"{what} {name!r} contains control characters")
    bad = [ch for ch in forbid if ch in name]
    if bad:
        raise UserError(f"{what} {name!r} must not contain {' or '.join(repr(c) for c in bad)}")
    return name


def parse_class_names(text: str | Sequence[str]) -> list[str]:
    """One name per line (blank lines ignored), or a list. Refuses empty and duplicate names."""
    if isinstance(text, str):
        raw = [line for line in text.splitlines() if line.strip()]
    else:
        raw = list(text)
    names = []
    seen: dict[str, int] = {}
    for pos, item in enumerate(raw):
        if not str(item).strip():
            raise UserError(f"Class name at position {pos} is empty")
        name = _clean_name(str(item), f"Class name at position {pos}")
        key = name.lower()
        if key in seen:
            raise UserError(f"Class name {name!r} is listed twice (positions {seen[key]} and {pos})")
        seen[key] = pos
        names.append(name)
    return names


@dataclass(frozen=True)
class ClassRow:
    index: int
    name: str
    boxes: int


@dataclass(frozen=True)
class ProjectDetails:
    project: Project
    classes: list[ClassRow]
    datasets: list[Dataset]
    status_counts: dict[str, int]

    @property
    def num_images(self) -> int:
        return sum(self.status_counts.values())

    def as_dict(self) -> dict:
        p = self.project
        return {
            "id": p.id,
            "name": p.name,
            "description": p.description,
            "created_at": p.created_at.isoformat(timespec="seconds"),
            "classes": [{"index": c.index, "name": c.name, "boxes": c.boxes} for c in self.classes],
            "datasets": [{"name": d.name, "images": d.num_images} for d in self.datasets],
            "images": self.num_images,
            "status": dict(self.status_counts),
        }


@dataclass(frozen=True)
class ImagePage:
    images: list[ImageRecord]
    total: int
    page: int
    pages: int


class Services(ReviewMixin):
    def __init__(self, settings: Settings, store: Store):
        self.settings = settings
        self.store = store
        self._commit_lock = threading.Lock()
        self._huey = None

    @property
    def huey(self):
        """The job queue (built on first use: the UI starts without importing Huey's consumer)."""
        if self._huey is None:
            from jobs.queue import make_huey

            self._huey = make_huey(self.settings)
        return self._huey

    @classmethod
    def open(cls, settings: Settings) -> "Services":
        """Prepare the data folder, open (and migrate) the store, drop staging left by a crash."""
        settings.prepare()
        store = Store.open(settings.db_path)
        services = cls(settings, store)
        services._drop_stale_staging()
        return services

    def close(self) -> None:
        self.store.close()

    def _drop_stale_staging(self) -> None:
        # Only this process writes under projects/ while it holds the store, so any staging is stale.
        for staging in self.settings.projects_dir.glob("*/staging"):
            shutil.rmtree(staging, ignore_errors=True)

    # --- projects --------------------------------------------------------------------------------
    def project(self, ref: str | int | Project) -> Project:
        """A project by id, by name (case-insensitive), or passed through."""
        if isinstance(ref, Project):
            return ref
        if isinstance(ref, int):
            return self.store.get_project(ref)
        name = (ref or "").strip() if isinstance(ref, str) else ""
        if not name:
            raise UserError("Choose a project first")
        found = self.store.find_project(name)
        if found is not None:
            return found
        if name.isdigit():
            return self.store.get_project(int(name))
        names = ", ".join(p.name for p in self.store.list_projects()) or "none yet"
        raise NotFound(f"No project named {name!r} (projects: {names})")

    def create_project(
        self, name: str, classes: str | Sequence[str], description: str = "", user: str | None = None
    ) -> Project:
        name = _clean_name(name, "Project name")
        names = parse_class_names(classes)
        if not names:
            raise UserError("A project needs at least one class (one name per line; the order is the YOLO index)")
        pid = self.store.create_project(name, names, (description or "").strip(), user)
        return self.store.get_project(pid)

    def list_projects(self) -> list[ProjectSummary]:
        return self.store.list_projects()

    def project_names(self) -> dict[int, str]:
        return self.store.project_names()

    def project_details(self, ref) -> ProjectDetails:
        p = self.project(ref)
        counts = self.store.class_box_counts(p.id)
        return ProjectDetails(
            project=p,
            classes=[ClassRow(c.index, c.name, counts.get(c.index, 0)) for c in p.classes],
            datasets=self.store.list_datasets(p.id),
            status_counts=self.store.image_status_counts(p.id),
        )

    def delete_project(self, ref, confirm: str) -> str:
        p = self.project(ref)
        if (confirm or "").strip() != p.name:
            raise UserError(f"To delete project {p.name!r} and all its images and boxes, type its exact name to confirm")
        self.store.delete_project(p.id)
        shutil.rmtree(self.settings.project_dir(p.id), ignore_errors=True)
        return p.name

    # --- classes ---------------------------------------------------------------------------------
    def _class_index(self, p: Project, ref: int | str) -> int:
        """A class by exact name (case-insensitive) first, else by index."""
        key = str(ref).strip().lower()
        for c in p.classes:
            if c.name.lower() == key:
                return c.index
        if isinstance(ref, int) or key.lstrip("-").isdigit():
            idx = int(key)
            if not (0 <= idx < len(p.classes)):
                raise NotFound(f"Project {p.name!r} has no class index {idx} (0-{len(p.classes) - 1})")
            return idx
        raise NotFound(f"Project {p.name!r} has no class named {str(ref).strip()!r}")

    def rename_class(self, ref, class_ref: int | str, new_name: str) -> Project:
        p = self.project(ref)
        idx = self._class_index(p, class_ref)
        name = _clean_name(new_name, "New class name")
        self.store.rename_class(p.id, idx, name)
        return self.store.get_project(p.id)

    def add_classes(self, ref, names: str | Sequence[str]) -> Project:
        p = self.project(ref)
        new = parse_class_names(names)
        if not new:
            raise UserError("No class names given (one per line)")
        self.store.add_classes(p.id, new)
        return self.store.get_project(p.id)

    def delete_class(self, ref, class_ref: int | str, boxes: str = "refuse", move_to: int | str | None = None) -> dict:
        """Delete a class. Its boxes: ``refuse`` (default: error if any), ``delete``, or ``move`` to ``move_to``.

        Classes after it move down one index, and every box follows its class.
        """
        p = self.project(ref)
        idx = self._class_index(p, class_ref)
        if len(p.classes) == 1:
            raise UserError(f"Class {p.classes[0].name!r} is the project's only class and cannot be deleted")
        used = self.store.class_box_counts(p.id).get(idx, 0)
        name = p.classes[idx].name
        new_names = [c.name for c in p.classes if c.index != idx]
        box_map: dict[int, int | None] = {c.index: (c.index if c.index < idx else c.index - 1)
                                           for c in p.classes if c.index != idx}
        if boxes == "refuse":
            if used:
                raise UserError(
                    f"Class {idx} {name!r} is used by {used} box(es). Choose to move them to another class or "
                    "to delete them; nothing was changed."
                )
        elif boxes == "delete":
            box_map[idx] = None
        elif boxes == "move":
            if move_to is None or (isinstance(move_to, str) and not move_to.strip()):
                raise UserError(f"Choose the class that receives the boxes of {name!r}")
            target = self._class_index(p, move_to)
            if target == idx:
                raise UserError(f"Cannot move the boxes of {name!r} to the class being deleted")
            box_map[idx] = box_map[target]
        else:
            raise UserError(f"boxes must be 'refuse', 'delete' or 'move', got {boxes!r}")
        counts = self.store.remap_classes(p.id, new_names, box_map)
        return {"deleted_class": name, "index": idx, **counts, "shifted": len(p.classes) - 1 - idx}

    def reorder_classes(self, ref, new_order: str | Sequence[str]) -> dict:
        """Give the classes a new order (a permutation of the current names); boxes follow their class."""
        p = self.project(ref)
        wanted = parse_class_names(new_order)
        current = {c.name.lower(): c.index for c in p.classes}
        missing = [c.name for c in p.classes if c.name.lower() not in {w.lower() for w in wanted}]
        unknown = [w for w in wanted if w.lower() not in current]
        if missing or unknown:
            parts = []
            if missing:
                parts.append(f"missing: {', '.join(missing)}")
            if unknown:
                parts.append(f"not classes of this project: {', '.join(unknown)}")
            raise UserError("The new order must list every current class exactly once (" + "; ".join(parts) + ")")
        box_map = {current[w.lower()]: new for new, w in enumerate(wanted)}
        new_names = [p.classes[current[w.lower()]].name for w in wanted]
        counts = self.store.remap_classes(p.id, new_names, box_map)
        return {"order": new_names, **counts}

    # --- images ----------------------------------------------------------------------------------
    def add_images(
        self,
        ref,
        sources: Sequence[Path | str | tuple[Path | str, str]],
        dataset: str | None = None,
        user: str | None = None,
        progress: ingest.Progress | None = None,
    ) -> IngestReport:
        """Ingest zips, folders or image files into a dataset (created if new, appended to if it exists).

        Good files are added even when others are bad; duplicates and skips are reported with reasons.
        Rows for all added images are committed in one transaction, after their files are in place.
        """
        p = self.project(ref)
        srcs = [(Path(s[0]), s[1]) if isinstance(s, tuple) else (Path(s), Path(s).name) for s in sources]
        if not srcs:
            raise UserError("Nothing to upload: choose a .zip, a folder, or image files")
        for path, name in srcs:
            if not path.exists():
                raise UserError(f"{name}: no such file or folder")
        dataset_name = _clean_name(dataset or self._default_dataset_name(srcs), "Dataset name", forbid="/\\")
        existing = self.store.find_dataset(p.id, dataset_name)
        if existing:
            dataset_name = existing.name
        known = self.store.image_shas(p.id)
        taken = self.store.dataset_paths(existing.id) if existing else set()
        pdir = self.settings.project_dir(p.id)
        staging = pdir / "staging" / uuid.uuid4().hex
        t0 = time.perf_counter()
        try:
            prep = ingest.prepare_upload(
                srcs, staging, ingest.Limits.from_settings(self.settings), known, taken, progress,
                self.settings.ingest_threads,
            )
            report = IngestReport(project=p.name, dataset=dataset_name, duplicates=prep.duplicates,
                                  skipped=prep.skipped)
            if prep.images:
                self._commit_images(p, dataset_name, prep.images, report, [n for _, n in srcs], user, t0)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
            with contextlib.suppress(OSError):
                staging.parent.rmdir()  # only when no other upload is staging
        report.seconds = time.perf_counter() - t0
        if progress and not prep.images and not prep.duplicates and not prep.skipped:
            progress(0, 0, "")
        return report

    def _commit_images(self, p: Project, dataset_name: str, images, report: IngestReport, names, user, t0) -> None:
        """Move staged files into place and register them, all or nothing.

        Uploads run concurrently; their commits do not. Under the lock, images that another upload
        committed meanwhile become duplicates instead of failing the whole commit on the unique index.
        """
        pdir = self.settings.project_dir(p.id)
        with self._commit_lock:
            known = self.store.image_shas(p.id, only=[i.sha256 for i in images])
            fresh = []
            for img in images:
                if img.sha256 in known:
                    report.duplicates.append(DuplicateFile(img.rel_path, known[img.sha256]))
                else:
                    fresh.append(img)
            report.added = [i.rel_path for i in fresh]
            report.notes = [f"{i.rel_path}: {i.note}" for i in fresh if i.note]
            if not fresh:
                return
            report.seconds = time.perf_counter() - t0
            created: list[Path] = []
            rows = []
            folders: set[Path] = set()
            try:
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
                        "size_bytes": img.size_bytes,
                    })
                upload = {"source": ", ".join(names)[:500], **report.as_dict()}
                self.store.add_images(p.id, dataset_name, rows, upload, user)
            except BaseException:
                for path in created:  # leave nothing half-written behind
                    path.unlink(missing_ok=True)
                raise

    @staticmethod
    def _default_dataset_name(srcs: list[tuple[Path, str]]) -> str:
        if len(srcs) == 1 and (srcs[0][0].is_dir() or srcs[0][0].suffix.lower() == ".zip"):
            return Path(srcs[0][1]).stem or "upload"
        return "upload-" + datetime.now().strftime("%Y%m%d-%H%M%S")

    def _dataset_ids(self, p: Project, names: Sequence[str] | None) -> list[int]:
        return [self._dataset_id(p, name) for name in names or []]

    def _dataset_id(self, p: Project, name: str | None) -> int | None:
        """The id of the dataset named ``name`` (None for no name); NotFound naming it otherwise."""
        if not name:
            return None
        d = self.store.find_dataset(p.id, name)
        if d is None:
            raise NotFound(f"Project {p.name!r} has no dataset named {name!r}")
        return d.id

    def datasets(self, ref) -> list[Dataset]:
        return self.store.list_datasets(self.project(ref).id)

    def list_images(
        self, ref, dataset: str | None = None, status: str | None = None, page: int = 0, page_size: int = 60
    ) -> ImagePage:
        p = self.project(ref)
        dataset_id = self._dataset_id(p, dataset)
        if status and status not in ("unreviewed", "approved", "rejected"):
            raise UserError(f"status must be unreviewed, approved or rejected, got {status!r}")
        page_size = max(1, min(int(page_size), 500))
        total = self.store.count_images(p.id, dataset_id, status or None)
        pages = max(1, -(-total // page_size))
        page = max(0, min(int(page), pages - 1))
        images = self.store.list_images(p.id, dataset_id, status or None, page * page_size, page_size)
        return ImagePage(images, total, page, pages)

    def image_file(self, img: ImageRecord) -> Path:
        return self.settings.project_dir(img.project_id) / img.file

    def thumb_file(self, img: ImageRecord) -> Path:
        return self.settings.project_dir(img.project_id) / img.thumb

    def gallery_thumbs(self, images: Sequence[ImageRecord]) -> list[tuple[Path, int]]:
        """(thumbnail path, box count) per image; thumbnails of images with boxes get them drawn on,
        cached under tmp/overlays by the boxes' content (so a new job result makes a new picture)."""
        boxes = self.store.boxes_for_images([i.id for i in images])
        cache = self.settings.tmp_dir / "overlays"
        out = []
        for img in images:
            bs = boxes.get(img.id, [])
            if not bs:
                out.append((self.thumb_file(img), 0))
                continue
            key = hashlib.sha1(repr([(b.class_idx, b.xyxy) for b in bs]).encode()).hexdigest()[:16]
            path = cache / f"{img.id}-{key}.jpg"
            if not path.exists():
                cache.mkdir(parents=True, exist_ok=True)
                draw_boxes(self.thumb_file(img), bs, img.width, img.height, path)
                self._prune_cache(cache)
            out.append((path, len(bs)))
        return out

    @staticmethod
    def _prune_cache(cache: Path, keep: int = 5000) -> None:
        """Keep the ``keep`` newest .jpg files of a cache folder (gallery overlays, editor display copies)."""
        files = list(cache.glob("*.jpg"))
        if len(files) > keep:
            files.sort(key=lambda f: f.stat().st_mtime)
            for f in files[: len(files) - keep]:
                f.unlink(missing_ok=True)

    def uploads(self, ref, limit: int = 20) -> list[dict]:
        return self.store.uploads(self.project(ref).id, limit)

    # --- models ----------------------------------------------------------------------------------
    def add_model(self, ref, path: Path | str, name: str | None = None, user: str | None = None,
                  display_name: str | None = None, source: str = "uploaded") -> ModelRecord:
        """Validate an ultralytics detection checkpoint and register a copy in the project's registry.

        .pt files are pickles: loading one runs code. Only register weights you trust.
        """
        p = self.project(ref)
        path = Path(path)
        shown = display_name or path.name
        info = model_checks.inspect_checkpoint(path, display_name=shown)
        name = _clean_name(name or Path(shown).stem, "Model name")
        for m in self.store.list_models(p.id):
            if m.sha256 == info.sha256:
                raise UserError(f"{shown} is already registered in {p.name!r} as model {m.name!r}")
        rel = f"models/{info.sha256}.pt"
        dst = self.settings.project_dir(p.id) / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        tmp = dst.with_suffix(".part")
        shutil.copyfile(path, tmp)
        os.replace(tmp, dst)
        try:
            mid = self.store.add_model(
                p.id, name, rel, info.sha256, info.size_bytes, info.class_names, source, task=info.task,
                params=info.as_dict(), user=user,
            )
        except BaseException:
            if not any(m.sha256 == info.sha256 for m in self.store.list_models(p.id)):
                dst.unlink(missing_ok=True)
            raise
        return self.store.get_model(mid)

    def list_models(self, ref) -> list[ModelRecord]:
        return self.store.list_models(self.project(ref).id)

    def model(self, ref, model_ref: int | str | ModelRecord) -> ModelRecord:
        if isinstance(model_ref, ModelRecord):
            return model_ref
        p = self.project(ref)
        key = str(model_ref).strip()
        models = self.store.list_models(p.id)
        for m in models:
            if m.name.lower() == key.lower():
                return m
        if key.isdigit():
            for m in models:
                if m.id == int(key):
                    return m
        names = ", ".join(m.name for m in models) or "none registered yet"
        raise NotFound(f"Project {p.name!r} has no model {key!r} (models: {names})")

    def model_file(self, m: ModelRecord) -> Path:
        return self.settings.project_dir(m.project_id) / m.file

    def class_mapping(self, ref, model_ref, overrides: dict | None = None) -> dict[int, int | None]:
        """Model class index -> project class index (None = skip): by name, then the user's overrides."""
        p = self.project(ref)
        m = self.model(p, model_ref)
        mapping = model_checks.match_classes(m.class_names, p.class_names)
        if overrides:
            mapping = model_checks.apply_overrides(mapping, overrides, p.class_names, m.class_names)
        return mapping

    # --- jobs: auto-annotation -------------------------------------------------------------------------
    SCOPES = {"unreviewed": ("unreviewed",), "untouched": ("unreviewed", "rejected")}

    def start_annotation(
        self, ref, model_ref, datasets: Sequence[str] | None = None, conf: float = 0.25, iou: float = 0.7,
        imgsz: int | None = None, max_det: int = 300, device: str | None = None, batch: int = 0,
        scope: str = "unreviewed", overrides: dict | None = None, user: str | None = None,
    ) -> Job:
        """Queue an auto-annotation job. Images a person saved or approved are never touched; re-running
        replaces only the machine boxes of the others."""
        p = self.project(ref)
        m = self.model(p, model_ref)
        if scope not in self.SCOPES:
            raise UserError(f"scope must be one of {', '.join(self.SCOPES)}, got {scope!r}")
        if not (0.0 <= float(conf) <= 1.0):
            raise UserError(f"confidence threshold must be between 0 and 1, got {conf}")
        if not (0.0 < float(iou) <= 1.0):
            raise UserError(f"IoU threshold must be in (0, 1], got {iou}")
        imgsz = int(imgsz or m.params.get("imgsz") or 640)
        if not (32 <= imgsz <= 4096):
            raise UserError(f"image size must be between 32 and 4096, got {imgsz}")
        if int(max_det) < 1:
            raise UserError(f"max detections must be at least 1, got {max_det}")
        if int(batch) < 0:
            raise UserError(f"batch must be 0 (auto) or a positive number, got {batch}")
        device = (device or self.settings.device or "auto").strip()
        dataset_ids = self._dataset_ids(p, datasets)
        mapping = self.class_mapping(p, m, overrides)
        if all(v is None for v in mapping.values()):
            raise UserError(
                f"None of the model's classes ({', '.join(m.class_names)}) maps to a class of {p.name!r} "
                f"({', '.join(p.class_names)}); map at least one in the class mapping table"
            )
        images = self.store.images_for_annotation(p.id, dataset_ids, self.SCOPES[scope])
        if not images:
            raise UserError("No images to annotate: every image in scope has been saved or approved by a person, "
                            "or the project has no images yet")
        params = {
            "model": m.name, "model_file": m.file, "datasets": list(datasets or []), "dataset_ids": dataset_ids,
            "conf": float(conf), "iou": float(iou), "imgsz": imgsz, "max_det": int(max_det), "device": device,
            "batch": int(batch), "scope": scope,
            "mapping": {str(k): v for k, v in mapping.items()},
            "mapping_named": {m.class_names[k]: (p.class_names[v] if v is not None else None)
                              for k, v in mapping.items()},
        }
        job_id = self.store.create_job(p.id, "annotate", params, len(images), model_id=m.id, user=user)
        self._enqueue_annotation(job_id, 0, p.id, params, images)
        return self.store.get_job(job_id)

    def _enqueue_annotation(self, job_id: int, attempt: int, project_id: int, params: dict, images) -> None:
        from jobs.tasks import ANNOTATE

        pdir = self.settings.project_dir(project_id)
        payload = {
            "job_id": job_id, "attempt": attempt, "model_path": str(pdir / params["model_file"]),
            "model_name": params["model"],
            "images": [(i, str(pdir / f)) for i, f, _, _ in images],
            **{k: params[k] for k in ("conf", "iou", "imgsz", "max_det", "device", "batch")},
            "mapping": {int(k): v for k, v in params["mapping"].items()},
        }
        task = getattr(self.huey, ANNOTATE).s(payload)
        self.huey.enqueue(task)
        self.store.update_job(job_id, task_id=task.id, log=f"attempt {attempt}: queued {len(images)} image(s)")

    def job(self, job_id: int | str) -> Job:
        try:
            return self.store.get_job(int(job_id))
        except (TypeError, ValueError):
            raise UserError(f"job id must be a number, got {job_id!r}") from None

    def jobs(self, ref=None, limit: int = 30) -> list[Job]:
        pid = self.project(ref).id if ref not in (None, "") else None
        return self.store.list_jobs(pid, limit=limit)

    def cancel_job(self, job_id: int | str) -> Job:
        from jobs.channel import JobChannel

        job = self.job(job_id)
        if not job.active:
            raise UserError(f"Job {job.id} is already {job.status}; nothing to cancel")
        JobChannel(self.huey, job.id, job.attempt).request_cancel()
        if job.status == "queued":
            if job.task_id:
                self.huey.revoke_by_id(job.task_id)
            self.store.update_job(job.id, expect_status=("queued",), status="cancelled", finished_at=utcnow(),
                                  log="cancelled before it started")
        else:
            self.store.update_job(job.id, log="cancel requested: stopping after the current batch")
        return self.store.get_job(job.id)

    def resume_job(self, job_id: int | str, user: str | None = None) -> Job:
        """Run an interrupted / failed / cancelled auto-annotation again on the images it has not finished."""
        job = self.job(job_id)
        if job.kind != "annotate":
            raise UserError(f"Job {job.id} is a {job.kind} job; only auto-annotation can be resumed")
        if job.active or job.status == "succeeded":
            raise UserError(f"Job {job.id} is {job.status}; only interrupted, failed or cancelled jobs resume")
        params = job.params
        images = self.store.images_for_annotation(
            job.project_id, params.get("dataset_ids") or None, self.SCOPES[params["scope"]], exclude_job=job.id
        )
        attempt = job.attempt + 1
        done_before = self.store.job_image_count(job.id)
        counters = {**job.counters, "done_before": done_before, "chunks_in": 0, "logs_in": 0}
        counters.pop("live", None)
        self.store.update_job(
            job.id, status="queued", attempt=attempt, error=None, finished_at=None, counters=counters,
            done=done_before, total=done_before + len(images),
            progress=done_before / max(1, done_before + len(images)),
            log=f"resumed by {user or 'local'}: {len(images)} image(s) left, {done_before} already done",
        )
        if not images:
            self.store.update_job(job.id, status="succeeded", finished_at=utcnow(), progress=1.0,
                                  log="nothing left to do")
            return self.store.get_job(job.id)
        self._enqueue_annotation(job.id, attempt, job.project_id, params, images)
        return self.store.get_job(job.id)

    def system_info(self) -> dict:
        """torch / CUDA / GPUs / device for this process, and what every live worker reported."""
        from jobs.inference import system_info

        return {"app": system_info(self.settings.device), "workers": self.live_workers()}

    def live_workers(self) -> list[dict]:
        from jobs.worker import live_workers

        return live_workers(self.huey)

    # --- export ----------------------------------------------------------------------------------
    FORMATS = ("yolo", "coco")

    def export_dataset(
        self, ref, fmt: str, datasets: Sequence[str] | None = None, approved_only: bool = True,
        include_images: bool = True, val_ratio: float = 0.2, per_split: bool = False, with_scores: bool = False,
        user: str | None = None, progress=None,
    ) -> dict:
        """Write a YOLO or COCO export of the project into a zip under the project's exports/ folder.

        Images keep their stored split; unassigned ones get a deterministic split by content hash
        (``val_ratio``), reported in the summary. Rejected images are never exported; without
        ``approved_only``, unreviewed images that have no boxes are left out (not labelled yet).
        """
        import numpy as np

        from .formats import BoxTable, ExportImage, ZipSink
        from .formats.coco import write_coco
        from .formats.yolo import write_yolo

        p = self.project(ref)
        fmt = (fmt or "").strip().lower()
        if fmt not in self.FORMATS:
            raise UserError(f"format must be one of {', '.join(self.FORMATS)}, got {fmt!r}")
        if not (0.0 <= float(val_ratio) < 1.0):
            raise UserError(f"validation ratio must be in [0, 1), got {val_ratio}")
        dataset_ids = self._dataset_ids(p, datasets)
        statuses = ("approved",) if approved_only else ("approved", "unreviewed")
        images, cols = self.store.export_rows(p.id, dataset_ids, statuses)
        keep = cols["class_idx"] < len(p.classes)  # never happens: class deletes remap boxes; belt and braces
        table = BoxTable.from_columns(*(cols[k][keep] for k in
                                        ("image_id", "class_idx", "x1", "y1", "x2", "y2", "confidence")))
        with_boxes = set(np.unique(table.image_id).tolist())
        notes: list[str] = []
        unlabelled = [i for i in images if i.status == "unreviewed" and i.id not in with_boxes]
        if unlabelled:
            notes.append(f"{len(unlabelled)} unreviewed image(s) without boxes left out (not labelled yet)")
            images = [i for i in images if not (i.status == "unreviewed" and i.id not in with_boxes)]
        if not images:
            what = "approved images" if approved_only else "approved or labelled images"
            raise UserError(f"Nothing to export: project {p.name!r} has no {what} in the chosen datasets")
        splits, assigned = self._stored_splits(p, images, val_ratio)
        if assigned:
            notes.append(f"{assigned} image(s) had no stored split: assigned by the split manager (the project's "
                         f"ratios, else train/val {round(100 * (1 - val_ratio))}/{round(100 * val_ratio)}; "
                         "deterministic) and stored")
        # COCO without per-split files keeps every image in one folder: names unique across splits there.
        names = _unique_names(images, splits if fmt == "yolo" or per_split else {i.id: "" for i in images})
        pdir = self.settings.project_dir(p.id)
        records = [
            ExportImage(id=i.id, file_name=names[i.id], width=i.width, height=i.height, split=splits[i.id],
                        source=(pdir / i.file) if include_images else None)
            for i in images
        ]
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        out_dir = pdir / "exports"
        out_dir.mkdir(parents=True, exist_ok=True)
        zip_path = out_dir / f"{_slug(p.name)}-{fmt}-{stamp}.zip"
        options = {"format": fmt, "datasets": list(datasets or []), "approved_only": bool(approved_only),
                   "include_images": bool(include_images), "val_ratio": float(val_ratio),
                   "per_split": bool(per_split), "with_scores": bool(with_scores)}
        # Straight into the zip: labels from memory, images streamed from where they are stored; the
        # zip appears under its name only once complete.
        tmp_zip = zip_path.with_suffix(".part")
        try:
            with zipfile.ZipFile(tmp_zip, "w", allowZip64=True) as zf:
                sink = ZipSink(zf, on_file=(lambda done, name: progress(done, len(records), name)) if progress else None)
                if fmt == "yolo":
                    summary = write_yolo(sink, records, p.class_names, boxes=table)
                else:
                    summary = write_coco(sink, records, p.class_names, per_split=per_split, with_scores=with_scores,
                                         boxes=table)
            os.replace(tmp_zip, zip_path)
        except ValueError as e:  # the writers validate their input and name the file at fault
            tmp_zip.unlink(missing_ok=True)
            raise UserError(f"Export of {p.name!r} failed: {e}") from None
        except BaseException:
            tmp_zip.unlink(missing_ok=True)
            raise
        result = {
            "project": p.name, "format": fmt, "file": str(zip_path), "size_bytes": zip_path.stat().st_size,
            "images": summary.images, "boxes": summary.boxes, "negatives": summary.negatives,
            "per_class": summary.per_class, "per_split": summary.per_split,
            "dropped": [{"file": f, "reason": r} for f, r in summary.dropped], "notes": notes, "options": options,
        }
        self.store.add_export(p.id, fmt, options, {k: v for k, v in result.items() if k not in ("file", "options")},
                              str(zip_path.relative_to(pdir)), result["size_bytes"], user)
        return result

    # --- import of existing labels ------------------------------------------------------------------
    @contextlib.contextmanager
    def _label_root(self, sources):
        """Zips are extracted (safely) into a temp folder; a single folder is used as it is."""
        srcs = [(Path(s[0]), s[1]) if isinstance(s, tuple) else (Path(s), Path(s).name) for s in sources]
        if not srcs:
            raise UserError("Nothing to import: choose a .zip or a folder with images and labels")
        for path, name in srcs:
            if not path.exists():
                raise UserError(f"{name}: no such file or folder")
        if len(srcs) == 1 and srcs[0][0].is_dir():
            yield srcs[0][0], srcs[0][1], []
            return
        self.settings.tmp_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=self.settings.tmp_dir) as tmp:
            root, skipped = Path(tmp) / "import", []
            root.mkdir()
            limits = ingest.Limits.from_settings(self.settings)
            for path, name in srcs:
                if path.suffix.lower() == ".zip":
                    skipped += ingest.extract_archive(path, name, root, limits)
                elif path.is_file():
                    shutil.copyfile(path, root / Path(name).name)
                else:
                    raise UserError(f"{name}: import takes one folder, or zip/label/image files")
            yield root, Path(srcs[0][1]).stem or "import", skipped

    @staticmethod
    def _read_labels(root: Path, fmt: str):
        from .formats import ReadResult
        from .formats.coco import find_annotations, read_coco
        from .formats.yolo import read_yolo

        fmt = (fmt or "").strip().lower()
        if fmt == "yolo":
            return read_yolo(root, ingest.exif_size)
        if fmt != "coco":
            raise UserError(f"format must be yolo or coco, got {fmt!r}")
        files = find_annotations(root)
        if not files:
            raise UserError("No COCO annotations file found (annotations.json, instances_*.json or "
                            "_annotations.coco.json)")
        merged = ReadResult()
        for f in files:
            r = read_coco(f)
            for rec in r.records:  # file_name is relative to the JSON's folder, or an images/ folder beside it
                folders = [f.parent, f.parent / "images", f.parent.parent / "images"]
                if rec.split:
                    folders += [f.parent / "images" / rec.split, f.parent.parent / "images" / rec.split]
                inside = root.resolve()
                found = next((c for c in (d / rec.image for d in folders)
                              if c.resolve().is_relative_to(inside) and c.is_file()), None)  # never outside
                image = found.relative_to(root).as_posix() if found else rec.image
                merged.records.append(dataclasses.replace(rec, image=image))
            merged.problems += r.problems
            for n in r.class_names:
                if n not in merged.class_names:
                    merged.class_names.append(n)
        return merged

    def analyze_labels(self, ref, sources, fmt: str) -> dict:
        """What an import would bring: the source's classes and how they would map (by name)."""
        p = self.project(ref)
        with self._label_root(sources) as (root, _, skipped):
            result = self._read_labels(root, fmt)
        mapping = model_checks.match_classes(result.class_names, p.class_names)
        counts: dict[str, int] = {}
        for rec in result.records:
            for b in rec.boxes:
                counts[b[0]] = counts.get(b[0], 0) + 1
        return {
            "classes": [{"source": n, "boxes": counts.get(n, 0),
                         "project": p.class_names[mapping[i]] if mapping.get(i) is not None else None}
                        for i, n in enumerate(result.class_names)],
            "images": len(result.records), "problems": [{"file": f, "reason": r} for f, r in result.problems],
            "skipped": [{"name": x.name, "reason": x.reason} for x in skipped],
        }

    def import_labels(
        self, ref, sources, fmt: str, dataset: str | None = None, mapping: dict | None = None,
        add_new_classes: bool = False, approve: bool = False, user: str | None = None, progress=None,
    ) -> dict:
        """Bring a dataset labelled elsewhere into the project: its images (as an upload) and their boxes
        (source=import). Classes map by name (case-insensitive); ``mapping`` overrides rows (source name ->
        project class name, or None to drop); unmatched classes are added (``add_new_classes``) or dropped
        and counted. Images a person approved or edited keep their boxes."""
        p = self.project(ref)
        with self._label_root(sources) as (root, default_name, extract_skipped):
            result = self._read_labels(root, fmt)
            if not result.records:
                raise UserError(f"No labelled images found in the {fmt.upper()} import"
                                + (f" ({len(result.problems)} problem(s): {result.problems[0][1]})" if result.problems
                                   else ""))
            # Classes: by name, then the user's overrides, then (optionally) new classes for the rest.
            idx = model_checks.match_classes(result.class_names, p.class_names)
            if mapping:
                idx = model_checks.apply_overrides(idx, mapping, p.class_names, result.class_names)
            unmatched = [n for i, n in enumerate(result.class_names) if idx.get(i) is None
                         and not (mapping and (n in mapping or str(i) in mapping))]
            added_classes = []
            if add_new_classes and unmatched:
                self.store.add_classes(p.id, unmatched)
                added_classes = unmatched
                p = self.store.get_project(p.id)
                idx = model_checks.match_classes(result.class_names, p.class_names)
                if mapping:
                    idx = model_checks.apply_overrides(idx, mapping, p.class_names, result.class_names)
            by_name = {n: idx.get(i) for i, n in enumerate(result.class_names)}
            # Images: the ones in the import go through the normal upload path (dedup, EXIF, limits).
            has_images = any((root / r.image).is_file() for r in result.records)
            upload = None
            if has_images:
                upload = self.add_images(p, [(root, default_name)], dataset or default_name, user=user,
                                         progress=progress)
            shas = {}
            for rec in result.records:
                f = root / rec.image
                if f.is_file():
                    shas[rec.image] = hashlib.sha256(f.read_bytes()).hexdigest()
            ids_by_sha = self.store.image_ids_by_sha(p.id, list(shas.values()))
            by_base = None
            problems = [{"file": f, "reason": r} for f, r in result.problems]
            dropped: dict[str, int] = {}
            per_class: dict[str, int] = {}
            items = []
            for rec in result.records:
                image_id = ids_by_sha.get(shas.get(rec.image, ""))
                if image_id is None and rec.image not in shas:  # COCO: images already in the project, by name
                    by_base = by_base if by_base is not None else self.store.image_ids_by_basename(p.id)
                    found = by_base.get(rec.image.rsplit("/", 1)[-1].lower(), [])
                    if len(found) == 1:
                        image_id = found[0]
                    elif len(found) > 1:
                        problems.append({"file": rec.image, "reason": f"{len(found)} project images have this "
                                                                      "file name; labels not applied"})
                        continue
                if image_id is None:
                    problems.append({"file": rec.image, "reason": "no such image in the import or the project"})
                    continue
                img = self.store.get_image(image_id)
                size = (getattr(rec, "width", None), getattr(rec, "height", None))
                if None not in size and size != (img.width, img.height):  # e.g. a tool that ignored EXIF
                    problems.append({"file": rec.image, "reason": f"labels are for a {size[0]}x{size[1]} image, "
                                                                  f"the stored one is {img.width}x{img.height}"})
                    continue
                boxes = []
                for name, x1, y1, x2, y2 in rec.boxes:
                    target = by_name.get(name)
                    if target is None:
                        dropped[name] = dropped.get(name, 0) + 1
                        continue
                    x1, y1, x2, y2 = geometry.clamp_xyxy((x1, y1, x2, y2), img.width, img.height)
                    if x2 - x1 <= 0 or y2 - y1 <= 0:
                        problems.append({"file": rec.image, "reason": "a box lies outside the image; dropped"})
                        continue
                    boxes.append(Box(x1, y1, x2, y2, class_idx=int(target), source="import", created_by=user))
                    per_class[p.class_names[target]] = per_class.get(p.class_names[target], 0) + 1
                items.append((image_id, boxes, rec.split))
            saved = self.store.save_imported_labels(items, approve=approve, user=user)
        skipped = [{"name": x.name, "reason": x.reason} for x in extract_skipped]
        if upload is not None:
            skipped += [{"name": x.name, "reason": x.reason} for x in upload.skipped
                        if not x.name.lower().endswith(tuple(ingest.LABEL_EXTENSIONS))]
        return {
            "project": p.name, "format": fmt.lower(), "dataset": upload.dataset if upload else None,
            "images_added": len(upload.added) if upload else 0,
            "duplicates": len(upload.duplicates) if upload else 0,
            "labelled_images": saved["images"], "boxes": saved["boxes"], "per_class": per_class,
            "negatives": sum(1 for _, b, _ in items if not b), "protected": saved["protected"],
            "approved": saved["approved"], "added_classes": added_classes, "dropped_by_class": dropped,
            "problems": problems, "skipped": skipped,
        }

    def exports(self, ref, limit: int = 20) -> list[dict]:
        return self.store.exports(self.project(ref).id, limit)

    # --- demo ------------------------------------------------------------------------------------
    def ensure_demo(self, n_images: int = 24) -> Project | None:
        """On an empty data folder, create the Demo project: generated shape scenes and the demo model.

        Runs once per data folder (a marker file remembers it), so deleting the Demo project is final.
        """
        marker = self.settings.data_dir / ".demo-created"
        if marker.exists() or self.store.list_projects():
            return None
        from . import demo

        model_path = demo.DEMO_MODEL_PATH
        self.settings.tmp_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=self.settings.tmp_dir) as tmp:
            folder = Path(tmp) / "shapes"
            folder.mkdir()
            for i in range(n_images):
                data, _ = demo.scene_jpeg(10_000 + i)
                sub = "street" if i % 2 else "yard"
                (folder / sub).mkdir(exist_ok=True)
                (folder / sub / f"scene_{i:03d}.jpg").write_bytes(data)
            p = self.create_project(
                "Demo", list(demo.CLASSES),
                "Generated shape scenes and a small detector trained on them: press Run on the Auto-annotate tab.",
                user="demo",
            )
            self.add_images(p, [(folder, "shapes")], dataset="shapes", user="demo")
        if model_path.is_file():
            self.add_model(p, model_path, name="demo-shapes", user="demo", source="demo")
        marker.write_text("created\n")
        return self.store.get_project(p.id)

    # --- training, evaluation, splits (annotator/training.py) ----------------------------------------
    @property
    def training(self):
        if getattr(self, "_training", None) is None:
            from .training import Training

            self._training = Training(self)
        return self._training

    def train_model(self, ref, **options) -> Job:
        return self.training.start_training(ref, **options)

    def evaluate_model(self, ref, model_ref, **options) -> Job:
        return self.training.start_evaluation(ref, model_ref, **options)

    def compare_models(self, ref) -> dict:
        return self.training.compare_models(ref)

    def configure_splits(self, ref, train: float, val: float, test: float, seed: int = 0, reassign: bool = False,
                         user: str | None = None) -> dict:
        return self.training.configure_splits(ref, train, val, test, seed, reassign, user)

    def set_split(self, ref, split: str, **where) -> dict:
        return self.training.set_split(ref, split, **where)

    def split_summary(self, ref) -> dict:
        return self.training.split_summary(ref)

    def _stored_splits(self, p: Project, images: Sequence[ImageRecord], val_ratio: float) -> tuple[dict, int]:
        """Export: the stored split of each image; images without one are assigned by the split manager
        (the project's ratios, else train/val by ``val_ratio``) and stored. Returns (splits, assigned)."""
        missing = [i.id for i in images if not i.split]
        if missing:
            cfg = self.store.split_config(p.id)
            ratios = None if cfg else {"train": 1.0 - float(val_ratio), "val": float(val_ratio), "test": 0.0}
            self.training.assign_missing_splits(p, ratios)
        stored = {i: s for i, _, s in self.store.image_splits(p.id)}
        return {i.id: stored[i.id] for i in images}, len(missing)


PALETTE = [(230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180), (70, 240, 240),
           (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128), (170, 110, 40), (128, 0, 0)]


def class_colour(idx: int) -> tuple[int, int, int]:
    return PALETTE[idx % len(PALETTE)]


def draw_boxes(thumb: Path, boxes, width: int, height: int, out: Path) -> None:
    """Draw boxes (image pixels) on a thumbnail, dashed for machine boxes, solid for human/imported."""
    from PIL import Image, ImageDraw

    with Image.open(thumb) as im:
        im = im.convert("RGB")
    sx, sy = im.width / width, im.height / height
    d = ImageDraw.Draw(im)
    line = max(2, round(min(im.size) / 90))
    for b in boxes:
        x1, y1, x2, y2 = b.x1 * sx, b.y1 * sy, b.x2 * sx, b.y2 * sy
        colour = class_colour(b.class_idx)
        d.rectangle([x1, y1, x2, y2], outline=(20, 20, 20), width=line + 2)  # contrast on any background
        if b.source == "model":
            sides = ((x1, y1), (x2, y1)), ((x2, y1), (x2, y2)), ((x2, y2), (x1, y2)), ((x1, y2), (x1, y1))
            for a, c in sides:
                _dashed(d, a, c, colour, line, dash=3.0 * line)
        else:
            d.rectangle([x1, y1, x2, y2], outline=colour, width=line)
    tmp = out.with_suffix(".part")
    im.save(tmp, "JPEG", quality=85)
    os.replace(tmp, out)


def _dashed(d, a, b, colour, width, dash: float = 6.0) -> None:
    (x1, y1), (x2, y2) = a, b
    length = max(abs(x2 - x1), abs(y2 - y1))
    steps = max(1, int(length // dash))
    for k in range(0, steps, 2):
        t0, t1 = k / steps, min(1.0, (k + 1) / steps)
        d.line([(x1 + (x2 - x1) * t0, y1 + (y2 - y1) * t0), (x1 + (x2 - x1) * t1, y1 + (y2 - y1) * t1)],
               fill=colour, width=width)


def _slug(name: str) -> str:
    out = "".join(c if c.isalnum() or c in "-_" else "-" for c in name.strip())
    return out.strip("-") or "project"


def _unique_names(images: Sequence[ImageRecord], splits: dict[int, str]) -> dict[int, str]:
    """Exported file names, unique (by stem, case-insensitively) within each split: the base name when it
    is unique, else the dataset and folder path flattened with '__', else that plus the image id.
    The extension is the stored file's."""
    bases = {img.id: posixpath.splitext(posixpath.basename(img.rel_path))[0] + posixpath.splitext(img.file)[1]
             for img in images}

    def flat(img: ImageRecord) -> str:
        folders = [part for part in posixpath.dirname(img.rel_path).split("/") if part]
        return "__".join([img.dataset, *folders, bases[img.id]]).replace(" ", "_")

    def key(img: ImageRecord, name: str) -> tuple[str, str]:  # YOLO labels are named by stem: a.jpg ~ a.png
        return splits[img.id], posixpath.splitext(name)[0].lower()

    counts: dict[tuple[str, str], int] = {}
    for img in images:
        k = key(img, bases[img.id])
        counts[k] = counts.get(k, 0) + 1
    names = {img.id: bases[img.id] if counts[key(img, bases[img.id])] == 1 else flat(img) for img in images}
    seen: dict[tuple[str, str], int] = {}
    for img in images:
        k = key(img, names[img.id])
        seen[k] = seen.get(k, 0) + 1
        if seen[k] > 1:
            stem, ext = os.path.splitext(names[img.id])
            names[img.id] = f"{stem}__{img.id}{ext}"
    return names
