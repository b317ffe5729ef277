"""The use cases, free of any UI: the Gradio tabs, the public API, the CLI and the tests all call these.

``Services.open(settings)`` prepares the data folder, opens the store and returns the facade: one attribute
per domain module, each of its public functions with the ``AppContext`` bound, so
``services.projects.create_project("Street", ["car"])`` calls ``projects.create_project(ctx, "Street", ["car"])``.
No logic lives here. Every function validates its input and raises ``UserError`` naming the value at fault.
"""

from __future__ import annotations

import functools
import inspect
from types import ModuleType

from .. import pixels
from ..settings import Settings
from ..store import Store
from ..users import Users
from . import (annotation, backup, fsck, health, images, jobs, loop, models, projects, quality, review, similar,
               snapshot, splits, training, transfer, users)
from .context import AppContext

DOMAINS = {"projects": projects, "images": images, "models": models, "annotation": annotation, "jobs": jobs,
           "review": review, "splits": splits, "training": training, "transfer": transfer, "snapshot": snapshot,
           "users": users, "loop": loop, "fsck": fsck, "backup": backup, "similar": similar, "health": health,
           "quality": quality}


class Domain:
    """One domain module with the context bound to its public functions (those whose first parameter is
    ``ctx``); its other public names (constants, types) pass through."""

    def __init__(self, module: ModuleType, ctx: AppContext):
        self._module = module
        for name, fn in vars(module).items():
            if (not name.startswith("_") and inspect.isfunction(fn) and fn.__module__ == module.__name__
                    and next(iter(inspect.signature(fn).parameters), None) == "ctx"):
                setattr(self, name, _bind(fn, ctx))

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._module, name)

    def __repr__(self) -> str:
        return f"<services.{self._module.__name__.rsplit('.', 1)[-1]}>"


def _bind(fn, ctx: AppContext):
    @functools.wraps(fn)
    def bound(*args, **kwargs):
        return fn(ctx, *args, **kwargs)

    sig = inspect.signature(fn)
    bound.__signature__ = sig.replace(parameters=list(sig.parameters.values())[1:])
    del bound.__wrapped__  # introspection sees the bound signature
    return bound


class Services:
    projects: Domain
    images: Domain
    models: Domain
    annotation: Domain
    jobs: Domain
    review: Domain
    splits: Domain
    training: Domain
    transfer: Domain
    snapshot: Domain
    loop: Domain
    users: Domain
    fsck: Domain
    backup: Domain
    similar: Domain
    health: Domain
    quality: Domain

    def __init__(self, ctx: AppContext):
        self.ctx = ctx
        for name, module in DOMAINS.items():
            setattr(self, name, Domain(module, ctx))

    @property
    def settings(self) -> Settings:
        return self.ctx.settings

    @classmethod
    def open(cls, settings: Settings, users: Users | None = None) -> "Services":
        """Prepare the data folder, open (and migrate) the store, and sweep what a crash left in flight
        (interrupted commits' files, staging, half-written files, temp folders: ``fsck.sweep``). ``users``:
        whose roles the services check (default: the settings' users; an empty ``Users``: everyone acting
        is an admin, as the CLI is when it holds the database itself)."""
        settings.prepare()
        pixels.configure(settings.decode_budget_mb << 20)
        services = cls(AppContext(settings, Store.open(settings.db_path), users=users))
        services.swept = services.fsck.sweep()
        return services

    def close(self) -> None:
        self.ctx.store.close()
