"""Use cases, free of any UI: the Gradio tabs, the CLI and the tests all call these.

Every method validates its input and raises ``UserError`` with a message naming the value at fault.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
import time
import unicodedata
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Sequence

from . import ingest
from .settings import Settings
from .store import Store
from .types import (
    Dataset,
    DuplicateFile,
    ImageRecord,
    IngestReport,
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


class Services:
    def __init__(self, settings: Settings, store: Store):
        self.settings = settings
        self.store = store
        self._commit_lock = threading.Lock()

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

    def datasets(self, ref) -> list[Dataset]:
        return self.store.list_datasets(self.project(ref).id)

    def list_images(
        self, ref, dataset: str | None = None, status: str | None = None, page: int = 0, page_size: int = 60
    ) -> ImagePage:
        p = self.project(ref)
        dataset_id = None
        if dataset:
            d = self.store.find_dataset(p.id, dataset)
            if d is None:
                raise NotFound(f"Project {p.name!r} has no dataset named {dataset!r}")
            dataset_id = d.id
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

    def uploads(self, ref, limit: int = 20) -> list[dict]:
        return self.store.uploads(self.project(ref).id, limit)
