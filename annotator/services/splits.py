"""The split manager: the project's ratios and seed, a stored split for every image (assigned by
``splits.assign_splits`` and kept), bulk moves, and the per-split summary."""

from __future__ import annotations

from typing import Sequence

from ..splits import DEFAULT_RATIOS, DEFAULT_SEED, assign_splits, parse_ratios, straddling
from ..types import SPLITS, NotFound, Project, UserError
from .context import AppContext, audit, dataset_id, project, require, review_state
from .similar import split_groups


def split_config(ctx: AppContext, ref) -> dict:
    p = project(ctx, ref)
    return ctx.store.split_config(p.id) or {**DEFAULT_RATIOS, "seed": DEFAULT_SEED}


def planned_splits(ctx: AppContext, p: Project, ratios: dict[str, float] | None = None,
                   seed: int | None = None) -> dict[int, str]:
    """The split each image without one WOULD get (the project's ratios and seed unless given); nothing
    is stored. Assigning them later gives the same answer, as long as no split changed meanwhile."""
    missing = ctx.store.images_without_split(p.id)
    if not missing:
        return {}
    cfg = split_config(ctx, p)
    ratios = ratios or {s: cfg[s] for s in SPLITS}
    counts = {s: n for s, n in ctx.store.split_counts(p.id).items() if s is not None}
    # Near-duplicates and a video's segments go where their stored members are, or together.
    stored = {i: s for i, _, s in ctx.store.image_splits(p.id) if s is not None}
    return assign_splits(counts, missing, ratios, cfg["seed"] if seed is None else seed,
                         groups=split_groups(ctx, p), stored=stored)


def assign_missing_splits(ctx: AppContext, p: Project, ratios: dict[str, float] | None = None,
                          seed: int | None = None) -> int:
    """Give every image of the project without a split one (stored); returns how many."""
    chosen = planned_splits(ctx, p, ratios, seed)
    if not chosen:
        return 0
    return ctx.store.set_splits(p.id, list(chosen.items()), only_unassigned=True)


def configure_splits(ctx: AppContext, ref, train: float, val: float, test: float, seed: int = DEFAULT_SEED,
                     reassign: bool = False, user: str | None = None) -> dict:
    """Store the project's split ratios and seed, then assign every image without a split. With
    ``reassign`` every image of the project is assigned afresh (stored splits are dropped first)."""
    require(ctx, user, "admin", "configuring splits")
    p = project(ctx, ref)
    ratios = parse_ratios(train, val, test)
    try:
        seed = int(seed)
    except (TypeError, ValueError):
        raise UserError(f"seed must be a whole number, got {seed!r}") from None
    ctx.store.set_split_config(p.id, ratios["train"], ratios["val"], ratios["test"], seed, user)
    if reassign:
        everything = [(i, sha) for i, sha, _ in ctx.store.image_splits(p.id)]
        chosen = assign_splits({}, everything, ratios, seed, groups=split_groups(ctx, p), stored={})
        ctx.store.set_splits(p.id, list(chosen.items()), only_unassigned=False)
        assigned = len(chosen)
    else:
        assigned = assign_missing_splits(ctx, p, ratios, seed)
    return {**split_summary(ctx, p), "assigned": assigned}


def set_split(ctx: AppContext, ref, split: str, image_ids: Sequence[int] | None = None, dataset: str | None = None,
              status: str | None = None, user: str | None = None) -> dict:
    """Bulk edit: move images (given ids, a dataset, a review state, or all of them) to ``split``."""
    who = require(ctx, user, "admin", "moving images between splits")
    p = project(ctx, ref)
    split = (split or "").strip().lower()
    if split not in SPLITS:
        raise UserError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    status = review_state(status)
    ds = dataset_id(ctx, p, dataset)
    ids = None
    if image_ids is not None:
        try:
            ids = [int(i) for i in image_ids]
        except (TypeError, ValueError):
            raise UserError(f"image ids must be numbers, got {list(image_ids)[:5]!r}") from None
        known = {i for i, _, _ in ctx.store.image_splits(p.id)}
        foreign = [i for i in ids if i not in known]
        if foreign:
            raise NotFound(f"Project {p.name!r} has no image(s) with id {', '.join(map(str, foreign[:10]))}")
    moved = ctx.store.bulk_set_split(p.id, split, ids, ds, status)
    audit(ctx, who, "moved %d image(s) of project %r to %s", moved, p.name, split)
    return {**split_summary(ctx, p), "moved": moved}


VAL_MIN_IMAGES = 8  # fewer validation images than this: the metrics are noise, and the app says so


def val_warning(val_images: int, total: int) -> str | None:
    """A warning when the validation split is too small for its metrics to mean much, else None."""
    if val_images >= VAL_MIN_IMAGES and val_images >= 0.1 * total:
        return None
    return (f"the validation metrics (and the model comparison) rest on {val_images} image(s) of {total}: "
            f"approve more images or give val at least {max(VAL_MIN_IMAGES, -(-total // 10))} "
            "(the split manager moves images) before trusting them")


def split_summary(ctx: AppContext, ref) -> dict:
    """Images and boxes per split and review state, plus the stored ratios; ``warning`` when the approved
    val images are too few for the metrics to mean much (val_warning)."""
    p = project(ctx, ref)
    rows = ctx.store.split_summary(p.id)
    table: dict[str, dict] = {}
    for split, status, n, nb in rows:
        key = split or "unassigned"
        t = table.setdefault(key, {"images": 0, "approved": 0, "unreviewed": 0, "rejected": 0,
                                   "approved_boxes": 0})
        t["images"] += n
        t[status] += n
        if status == "approved":
            t["approved_boxes"] += nb
    approved = sum(t["approved"] for t in table.values())
    val = table.get("val", {}).get("approved", 0)
    warning = val_warning(val, approved) if approved else None
    across = straddling(split_groups(ctx, p), {i: s for i, _, s in ctx.store.image_splits(p.id) if s is not None})
    if across:
        moved = (f"{len(across)} group(s) of near-duplicates or video frames sit in more than one split (moved by "
                 f"hand?), e.g. images {', '.join(map(str, across[0][:5]))}: val scores count copies of training "
                 "images. Reassign the splits, or move each group to one split")
        warning = f"{warning}; {moved}" if warning else moved
    return {"project": p.name, "config": split_config(ctx, p), "splits": table, "warning": warning,
            "straddling": len(across)}
