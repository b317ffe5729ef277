"""Train / val / test splits and the fingerprint of a set of labelled images: pure functions.

Every image gets a stored split, assigned by ``assign_splits`` and kept from then on (the split manager in
``services/splits.py`` stores them). ``fingerprint`` names exactly which data a training or an evaluation saw.
"""

from __future__ import annotations

import hashlib
import math
from typing import Sequence

from .types import SPLITS, UserError

DEFAULT_RATIOS = {"train": 0.8, "val": 0.2, "test": 0.0}
DEFAULT_SEED = 0


def parse_ratios(train: float, val: float, test: float) -> dict[str, float]:
    """Three non-negative numbers (percentages or fractions: they are normalised by their sum)."""
    values = {}
    for name, raw in (("train", train), ("val", val), ("test", test)):
        try:
            v = float(raw if raw not in (None, "") else 0)
        except (TypeError, ValueError):
            raise UserError(f"{name} ratio must be a number, got {raw!r}") from None
        if not math.isfinite(v) or v < 0:
            raise UserError(f"{name} ratio must be a non-negative number, got {raw!r}")
        values[name] = v
    total = sum(values.values())
    if total <= 0:
        raise UserError("split ratios must not all be 0 (e.g. 80/20/0)")
    return {k: v / total for k, v in values.items()}


def split_key(seed: int, sha256: str) -> str:
    """The seeded order of images: a hash of the seed and the image's content hash."""
    return hashlib.sha256(f"{int(seed)}:{sha256}".encode()).hexdigest()


def assign_splits(existing: dict[str, int], new: Sequence[tuple[int, str]], ratios: dict[str, float],
                  seed: int, groups: Sequence[Sequence[int]] | None = None,
                  stored: dict[int, str] | None = None) -> dict[int, str]:
    """Splits for images that have none, given the counts of those that have one.

    ``new`` is (image id, sha256). Images are taken in the seeded hash order and each goes to the split
    furthest below its share of the running total (largest deficit; ties in train, val, test order), so
    the counts follow the ratios exactly (within one image) even for a handful of images, and a 0 ratio
    is never used. Deterministic: the same images, stored splits, ratios and seed give the same answer,
    whatever the insertion order. Stable: stored splits are never changed; new images fill the deficits.

    ``groups``: lists of image ids that must share one split (near-duplicates, the frames of one video
    segment), so that no copy of a training image is validated on; overlapping groups are merged.
    ``stored``: {image id: split} of images that already have one. A group with a stored member sends its
    new members where its stored members are (their majority split if a hand-made move split them, ties
    in train, val, test order: stored splits are never changed); a group without one is placed as one
    unit, at the seeded place of its first member, where the deficit is largest counting its whole size,
    so the ratios hold within about one group. Images in no group are placed exactly as without groups.
    """
    counts = {s: int(existing.get(s, 0)) for s in SPLITS}
    total = sum(counts.values())
    keys = {int(image_id): (split_key(seed, sha), int(image_id)) for image_id, sha in new}
    out: dict[int, str] = {}
    units: list[list[int]] = []
    grouped: set[int] = set()
    for group in merge_groups(groups or []):
        fresh = [i for i in group if i in keys]
        if not fresh:
            continue
        grouped.update(fresh)
        pinned = _majority_split([(stored or {}).get(i) for i in group if i not in keys])
        if pinned is None:
            units.append(fresh)
            continue
        for i in fresh:  # joins its stored members, whatever the ratios say
            out[i] = pinned
        counts[pinned] += len(fresh)
        total += len(fresh)
    units += [[i] for i in keys if i not in grouped]
    allowed = [s for s in SPLITS if ratios.get(s, 0) > 0]
    for unit in sorted(units, key=lambda u: min(keys[i] for i in u)):
        total += len(unit)
        best = max(allowed, key=lambda s: (ratios[s] * total - counts[s], -SPLITS.index(s)))
        counts[best] += len(unit)
        for i in unit:
            out[i] = best
    return out


def _majority_split(splits: Sequence[str | None]) -> str | None:
    """The most common of the known ``splits`` (ties in train, val, test order); None when none is known."""
    known = [s for s in splits if s in SPLITS]
    if not known:
        return None
    return max(SPLITS, key=lambda s: (known.count(s), -SPLITS.index(s)))


def merge_groups(groups: Sequence[Sequence[int]]) -> list[list[int]]:
    """Groups that share an image merged into one (a union-find over image ids): each sorted, ordered by
    their smallest id. A near-duplicate group and a video segment that share a frame must share a split."""
    parent: dict[int, int] = {}

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for group in groups:
        ids = [int(i) for i in group]
        for i in ids:
            parent.setdefault(i, i)
        for i in ids[1:]:
            a, b = find(ids[0]), find(i)
            if a != b:
                parent[max(a, b)] = min(a, b)
    merged: dict[int, list[int]] = {}
    for i in parent:
        merged.setdefault(find(i), []).append(i)
    return sorted((sorted(g) for g in merged.values()), key=lambda g: g[0])


def straddling(groups: Sequence[Sequence[int]], splits: dict[int, str]) -> list[list[int]]:
    """The groups (overlapping ones merged) whose members with a split sit in more than one split: copies
    of one image trained on and evaluated on. For a warning, and for the tests."""
    return [g for g in merge_groups(groups) if len({splits[i] for i in g if splits.get(i) is not None}) > 1]


def fingerprint(items: Sequence[tuple[int, str, Sequence]]) -> dict:
    """The identity of a set of labelled images: (image id, split, boxes) -> counts and hashes.

    ``box_hash`` covers image ids, splits and every box (class and xyxy to 0.01 px), so two trainings on
    the same hash saw the same data; ``image_ids_hash`` covers the ids and splits only.
    """
    boxes_h, ids_h = hashlib.sha256(), hashlib.sha256()
    per_split: dict[str, int] = {}
    n_boxes = 0
    for image_id, split, boxes in sorted(items, key=lambda x: x[0]):
        ids_h.update(f"{image_id} {split}\n".encode())
        lines = sorted(f"{b.class_idx} {b.x1:.2f} {b.y1:.2f} {b.x2:.2f} {b.y2:.2f}" for b in boxes)
        boxes_h.update((f"{image_id} {split}: " + "; ".join(lines) + "\n").encode())
        per_split[split] = per_split.get(split, 0) + 1
        n_boxes += len(lines)
    return {"images": len(items), "boxes": n_boxes, "per_split": per_split,
            "box_hash": boxes_h.hexdigest(), "image_ids_hash": ids_h.hexdigest()}
