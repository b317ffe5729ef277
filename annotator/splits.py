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
                  seed: int) -> dict[int, str]:
    """Splits for images that have none, given the counts of those that have one.

    ``new`` is (image id, sha256). Images are taken in the seeded hash order and each goes to the split
    furthest below its share of the running total (largest deficit; ties in train, val, test order), so
    the counts follow the ratios exactly (within one image) even for a handful of images, and a 0 ratio
    is never used. Deterministic: the same images, stored splits, ratios and seed give the same answer,
    whatever the insertion order. Stable: stored splits are never changed; new images fill the deficits.
    """
    counts = {s: int(existing.get(s, 0)) for s in SPLITS}
    total = sum(counts.values())
    out: dict[int, str] = {}
    for image_id, sha in sorted(new, key=lambda x: (split_key(seed, x[1]), x[0])):
        total += 1
        best = max((s for s in SPLITS if ratios.get(s, 0) > 0),
                   key=lambda s: (ratios[s] * total - counts[s], -SPLITS.index(s)))
        counts[best] += 1
        out[int(image_id)] = best
    return out


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
