"""What every use case works on: the settings, the store and the job queue (``AppContext``), and the
resolvers that turn what a person typed (a project name, a dataset name, a model name or id) into records,
with a ``NotFound`` naming the value and what exists instead."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

from ..settings import Settings
from ..store import Store
from ..types import REVIEW_STATES, ImageRecord, ModelRecord, NotFound, Project, UserError


@dataclass
class AppContext:
    settings: Settings
    store: Store
    # Uploads run concurrently; their commits do not (services/images.py). fsck holds it too, to tell a commit
    # under way from one that died (services/fsck.py).
    commit_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    # When this process took over the data folder: what fsck finds in flight and newer is work under way.
    started_at: float = field(default_factory=time.time, repr=False)
    _queue: Any = field(default=None, repr=False)

    @property
    def queue(self):
        """The Huey job queue, built on first use (the UI starts without importing Huey's consumer)."""
        if self._queue is None:
            from jobs.queue import make_huey

            self._queue = make_huey(self.settings)
        return self._queue

    def user(self, user: str | None) -> str:
        """Who is acting: the signed-in user, else "local" (the app runs without login)."""
        return user or "local"


def project(ctx: AppContext, ref: str | int | Project) -> Project:
    """A project by id, by name (case-insensitive), or passed through."""
    if isinstance(ref, Project):
        return ref
    if isinstance(ref, int):
        return ctx.store.get_project(ref)
    name = (ref or "").strip() if isinstance(ref, str) else ""
    if not name:
        raise UserError("Choose a project first")
    found = ctx.store.find_project(name)
    if found is not None:
        return found
    if name.isdigit():
        return ctx.store.get_project(int(name))
    names = ", ".join(p.name for p in ctx.store.list_projects()) or "none yet"
    raise NotFound(f"No project named {name!r} (projects: {names})")


def dataset_id(ctx: AppContext, p: Project, name: str | None) -> int | None:
    """The id of the dataset named ``name`` (None for no name); NotFound naming it otherwise."""
    if not name:
        return None
    d = ctx.store.find_dataset(p.id, name)
    if d is None:
        raise NotFound(f"Project {p.name!r} has no dataset named {name!r}")
    return d.id


def dataset_ids(ctx: AppContext, p: Project, names: Sequence[str] | None) -> list[int]:
    return [dataset_id(ctx, p, name) for name in names or []]


def model(ctx: AppContext, p: Project, ref: int | str | ModelRecord) -> ModelRecord:
    """A registered model of ``p`` by name (case-insensitive) or id, or passed through."""
    if isinstance(ref, ModelRecord):
        return ref
    key = str(ref).strip()
    models = ctx.store.list_models(p.id)
    for m in models:
        if m.name.lower() == key.lower():
            return m
    if key.isdigit():
        for m in models:
            if m.id == int(key):
                return m
    names = ", ".join(m.name for m in models) or "none registered yet"
    raise NotFound(f"Project {p.name!r} has no model {key!r} (models: {names})")


def image_in(ctx: AppContext, p: Project, image_id) -> ImageRecord:
    """Image ``image_id`` of project ``p``; NotFound when it belongs to another project."""
    try:
        img = ctx.store.get_image(int(image_id))
    except (TypeError, ValueError):
        raise UserError(f"image id must be a number, got {image_id!r}") from None
    if img.project_id != p.id:
        raise NotFound(f"Image {image_id} is not in project {p.name!r}")
    return img


def review_state(status: str | None, allow_all: bool = False) -> str | None:
    """A review-state filter as typed: "" (or "all" where allowed) is None; else one of REVIEW_STATES."""
    value = (status or "").strip().lower() or None
    if value == "all" and allow_all:
        return None
    if value is not None and value not in REVIEW_STATES:
        states = [*REVIEW_STATES, *(["all"] if allow_all else [])]
        raise UserError(f"status must be {', '.join(states[:-1])} or {states[-1]}, got {status!r}")
    return value
