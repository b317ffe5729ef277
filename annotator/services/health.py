"""Dataset health: the numbers (annotator/health.py) of a project as it is now, for the Health view, the
API and ``annotator health PROJECT --json``."""

from __future__ import annotations

from ..health import compute_health
from ..types import UserError
from .context import AppContext, project
from .similar import duplicate_groups

SCOPES = ("approved", "all")


def health(ctx: AppContext, ref, scope: str = "approved") -> dict:
    """Counts per class and split, box size and aspect histograms, objects per image, images without
    boxes, tiny boxes, near-duplicates (and how many groups sit on both sides of train/val), class
    imbalance and train/val drift. ``scope``: "approved" (what the next training learns from) or "all"
    (every image and box, machine boxes included)."""
    p = project(ctx, ref)
    scope = (scope or "approved").strip().lower()
    if scope not in SCOPES:
        raise UserError(f"health scope must be one of {', '.join(SCOPES)}, got {scope!r}")
    images, boxes = ctx.store.health_rows(p.id, approved_only=scope == "approved")
    split_of = {int(i): s for i, s, *_ in images}
    groups = [g for g in duplicate_groups(ctx, p) if any(i in split_of for i in g)]
    straddling = sum(1 for g in groups if len({split_of.get(i) for i in g} & {"train", "val"}) > 1)
    out = compute_health(images, boxes, p.class_names, groups, straddling)
    return {"project": p.name, "scope": scope, **out}
