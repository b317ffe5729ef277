"""What every use case works on: the settings, the store and the job queue (``AppContext``), and the
resolvers that turn what a person typed (a project name, a dataset name, a model name or id) into records,
with a ``NotFound`` naming the value and what exists instead."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Any, Sequence

from ..settings import Settings
from ..store import Store
from ..types import REVIEW_STATES, Forbidden, ImageRecord, ModelRecord, NotFound, Project, UserError
from ..users import Users, UsersFile, role_rank

log = logging.getLogger("annotator.audit")


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
    # Who may do what: the signed-in users' roles. None: the settings' users (the app); the CLI's local
    # backend passes an empty ``Users`` (it holds the database lock, i.e. the files: it acts as an admin).
    users: Users | None = field(default=None, repr=False)
    _live: UsersFile | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        s = self.settings
        if self.users is None and s.users.login_required:  # started with login: follow the users file
            fixed = [u for u in s.users if u.origin == "ANNOTATOR_AUTH"]
            self._live = UsersFile(s.users, s.users_path, fixed)

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

    @property
    def registry(self) -> Users:
        """The users and their roles as they are now (the users file is re-read when it changes)."""
        if self.users is not None:
            return self.users
        return self._live.current() if self._live is not None else self.settings.users

    @property
    def users_source(self) -> Users | UsersFile:
        """What sign-in checks passwords against: ``.current()`` is the users as they are now."""
        if self.users is not None:
            return self.users
        return self._live if self._live is not None else self.settings.users

    def role(self, user: str | None) -> str | None:
        """The role of ``user``: admin for anyone when no login is configured; None for an unknown name."""
        return self.registry.role(self.user(user))


def as_system(ctx: AppContext) -> AppContext:
    """The context for the app's own writes (the Demo project at start): no role check applies."""
    return replace(ctx, users=Users())


def _a(role: str) -> str:
    return ("an " if role[0] in "aeiou" else "a ") + role


def require(ctx: AppContext, user: str | None, needed: str, doing: str) -> str:
    """Refuse (``Forbidden``) unless ``user``'s role is at least ``needed``; ``doing`` says what they tried
    ("deleting a project"). Returns who acts. Every write service function starts with it: the roles are
    enforced here, whatever the UI shows."""
    who = ctx.user(user)
    role = ctx.role(user)
    if role_rank(role) < role_rank(needed):
        told = f"{who} is {_a(role)}" if role else f"{who} is not a user of this app"
        log.warning("refused: %s by %s (%s): needs %s", doing, who, role or "unknown", needed)
        raise Forbidden(f"{doing[:1].upper()}{doing[1:]} needs the {needed} role; {told}", user=who, needed=needed,
                        role=role)
    return who


def audit(ctx: AppContext, who: str, what: str, *args) -> None:
    """One line in the app's log for a change the store keeps no author of (class edits, deletions)."""
    log.info("%s: " + what, who, *args)


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
    key = "" if ref is None else str(ref).strip()
    models = ctx.store.list_models(p.id)
    if not key:  # no model picked (an empty dropdown): say what to do, not "no model 'None'"
        names = ", ".join(m.name for m in models)
        raise UserError(f"Choose a model of {p.name!r}: {names}" if names else
                        f"Project {p.name!r} has no model yet: register a .pt on the Auto-annotate tab")
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
