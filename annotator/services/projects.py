"""Projects and their class table: create, list, describe, delete; rename, add, delete (with an explicit
remap of the boxes) and reorder classes."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from typing import Sequence

from ..names import clean_name, parse_class_names
from ..types import Dataset, NotFound, Project, ProjectSummary, UserError
from .context import AppContext, audit, project, require


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


def get_project(ctx: AppContext, ref: str | int | Project) -> Project:
    """A project by id or name (case-insensitive); NotFound lists the projects there are."""
    return project(ctx, ref)


def create_project(ctx: AppContext, name: str, classes: str | Sequence[str], description: str = "",
                   user: str | None = None) -> Project:
    who = require(ctx, user, "admin", "creating a project")
    name = clean_name(name, "Project name")
    names = parse_class_names(classes)
    if not names:
        raise UserError("A project needs at least one class (one name per line; the order is the YOLO index)")
    pid = ctx.store.create_project(name, names, (description or "").strip(), user)
    audit(ctx, who, "created project %r (id %d)", name, pid)
    return ctx.store.get_project(pid)


def list_projects(ctx: AppContext) -> list[ProjectSummary]:
    return ctx.store.list_projects()


def project_names(ctx: AppContext) -> dict[int, str]:
    return ctx.store.project_names()


def project_details(ctx: AppContext, ref) -> ProjectDetails:
    p = project(ctx, ref)
    counts = ctx.store.class_box_counts(p.id)
    return ProjectDetails(
        project=p,
        classes=[ClassRow(c.index, c.name, counts.get(c.index, 0)) for c in p.classes],
        datasets=ctx.store.list_datasets(p.id),
        status_counts=ctx.store.image_status_counts(p.id),
    )


def delete_project(ctx: AppContext, ref, confirm: str, user: str | None = None) -> str:
    who = require(ctx, user, "admin", "deleting a project")
    p = project(ctx, ref)
    if (confirm or "").strip() != p.name:
        raise UserError(f"To delete project {p.name!r} and all its images and boxes, type its exact name to confirm")
    ctx.store.delete_project(p.id)
    shutil.rmtree(ctx.settings.project_dir(p.id), ignore_errors=True)
    audit(ctx, who, "deleted project %r (id %d)", p.name, p.id)
    return p.name


# --- classes -------------------------------------------------------------------------------------------
def class_index(p: Project, ref: int | str) -> int:
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


def rename_class(ctx: AppContext, ref, class_ref: int | str, new_name: str, user: str | None = None) -> Project:
    who = require(ctx, user, "admin", "renaming a class")
    p = project(ctx, ref)
    idx = class_index(p, class_ref)
    name = clean_name(new_name, "New class name")
    ctx.store.rename_class(p.id, idx, name)
    audit(ctx, who, "renamed class %d %r of project %r to %r", idx, p.classes[idx].name, p.name, name)
    return ctx.store.get_project(p.id)


def add_classes(ctx: AppContext, ref, names: str | Sequence[str], user: str | None = None) -> Project:
    who = require(ctx, user, "admin", "adding classes")
    p = project(ctx, ref)
    new = parse_class_names(names)
    if not new:
        raise UserError("No class names given (one per line)")
    ctx.store.add_classes(p.id, new)
    audit(ctx, who, "added classes %s to project %r", ", ".join(new), p.name)
    return ctx.store.get_project(p.id)


def delete_class(ctx: AppContext, ref, class_ref: int | str, boxes: str = "refuse",
                 move_to: int | str | None = None, user: str | None = None) -> dict:
    """Delete a class. Its boxes: ``refuse`` (default: error if any), ``delete``, or ``move`` to ``move_to``.

    Classes after it move down one index, and every box follows its class.
    """
    who = require(ctx, user, "admin", "deleting a class")
    p = project(ctx, ref)
    idx = class_index(p, class_ref)
    if len(p.classes) == 1:
        raise UserError(f"Class {p.classes[0].name!r} is the project's only class and cannot be deleted")
    used = ctx.store.class_box_counts(p.id).get(idx, 0)
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
        target = class_index(p, move_to)
        if target == idx:
            raise UserError(f"Cannot move the boxes of {name!r} to the class being deleted")
        box_map[idx] = box_map[target]
    else:
        raise UserError(f"boxes must be 'refuse', 'delete' or 'move', got {boxes!r}")
    counts = ctx.store.remap_classes(p.id, new_names, box_map)
    audit(ctx, who, "deleted class %d %r of project %r (its boxes: %s)", idx, name, p.name, boxes)
    return {"deleted_class": name, "index": idx, **counts, "shifted": len(p.classes) - 1 - idx}


def reorder_classes(ctx: AppContext, ref, new_order: str | Sequence[str], user: str | None = None) -> dict:
    """Give the classes a new order (a permutation of the current names); boxes follow their class."""
    who = require(ctx, user, "admin", "reordering classes")
    p = project(ctx, ref)
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
    counts = ctx.store.remap_classes(p.id, new_names, box_map)
    audit(ctx, who, "reordered the classes of project %r: %s", p.name, ", ".join(new_names))
    return {"order": new_names, **counts}
