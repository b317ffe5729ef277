"""A project's labelled data at one moment, as a ``ProjectSnapshot``: what an export writes and what a
training or evaluation job's manifest freezes (the worker reads only the manifest, never the store)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from jobs.protocol import MANIFEST, Manifest

from ..names import unique_export_names
from ..splits import fingerprint
from ..types import SPLITS, Box, Project, ProjectSnapshot
from .context import AppContext


def labelled(ctx: AppContext, p: Project, dataset_ids: Sequence[int] | None = None, approved_only: bool = True,
             splits: Sequence[str] = SPLITS, planned: dict[int, str] | None = None) -> tuple[ProjectSnapshot, int]:
    """Approved images (or, without ``approved_only``, also unreviewed ones that have boxes) in ``splits``,
    with their boxes, read in one consistent snapshot. An image without a stored split takes its split from
    ``planned`` (``split_assigned`` names those). Returns the snapshot and how many unreviewed images were
    left out for having no boxes (not labelled yet)."""
    statuses = ("approved",) if approved_only else ("approved", "unreviewed")
    images, cols = ctx.store.export_rows(p.id, list(dataset_ids or []), statuses)
    known = cols["class_idx"] < len(p.classes)  # never false: class deletes remap boxes; belt and braces
    with_boxes = set(np.unique(cols["image_id"]).tolist())
    unlabelled = sum(1 for i in images if i.status == "unreviewed" and i.id not in with_boxes)
    split_of = {i.id: i.split or (planned or {}).get(i.id) for i in images}
    images = [i for i in images if split_of[i.id] in splits and (i.status == "approved" or i.id in with_boxes)]
    keep = known & np.isin(cols["image_id"], np.fromiter((i.id for i in images), dtype=np.int64, count=len(images)))
    snap = ProjectSnapshot(
        class_names=tuple(p.class_names), images=tuple(images), boxes={k: v[keep] for k, v in cols.items()},
        splits={i.id: split_of[i.id] for i in images},
        split_assigned=frozenset(i.id for i in images if not i.split),
    )
    return snap, unlabelled


def with_replay(ctx: AppContext, p: Project, snap: ProjectSnapshot, dataset_ids: Sequence[int], share: float,
                approved_only: bool = True) -> tuple[ProjectSnapshot, dict]:
    """``snap`` (the chosen datasets) plus replay from the project's other datasets: all their approved val
    images (so the job scores what the model may forget) and ``share`` x the chosen train images' count of
    their train images, picked by a stable hash of the image's content (the same ones every round).
    Returns the new snapshot and what was added ({"train": n, "val": n})."""
    full, _ = labelled(ctx, p, None, approved_only)
    chosen, picked = {i.id for i in snap.images}, set(dataset_ids)
    others = [i for i in full.images if i.dataset_id not in picked and i.id not in chosen]
    n_train = sum(1 for i in snap.images if snap.splits[i.id] == "train")
    val = [i.id for i in others if full.splits[i.id] == "val"]
    pool = sorted((i for i in others if full.splits[i.id] == "train"), key=lambda i: (i.sha256, i.id))
    train = [i.id for i in pool[:int(round(max(0.0, share) * n_train))]]
    keep = chosen | set(val) | set(train)
    images = tuple(i for i in full.images if i.id in keep)
    mask = np.isin(np.asarray(full.boxes["image_id"]), np.fromiter(keep, dtype=np.int64, count=len(keep)))
    out = ProjectSnapshot(class_names=full.class_names, images=images,
                          boxes={k: np.asarray(v)[mask] for k, v in full.boxes.items()},
                          splits={i.id: full.splits[i.id] for i in images},
                          split_assigned=frozenset(i for i in full.split_assigned if i in keep))
    return out, {"train": len(train), "val": len(val)}


def write_manifest(ctx: AppContext, job_dir: Path, snap: ProjectSnapshot, class_names: Sequence[str],
                   remap: dict[int, int | None] | None = None) -> dict:
    """The worker's input (protocol.Manifest): every image with its stored file, split, unique file name and
    boxes (project classes, or the model's through ``remap``; a class ``remap`` sends to None is left out),
    and the fingerprint of its val images. Returns how many boxes were left out."""
    names = unique_export_names(snap.images, snap.splits)
    boxes = snap.boxes_by_image()
    project_id = snap.images[0].project_id if snap.images else None
    dataset_names = {d.id: d.name for d in ctx.store.list_datasets(project_id)} if project_id is not None else {}
    records, dropped = [], 0
    for img in snap.images:
        rows = []
        for b in boxes[img.id]:
            c = b.class_idx if remap is None else remap.get(b.class_idx)
            if c is None:
                dropped += 1
                continue
            rows.append(Box(b.x1, b.y1, b.x2, b.y2, class_idx=int(c)))
        records.append((img, rows))
    manifest: Manifest = {
        "class_names": list(class_names),
        "images": [{"id": img.id, "file_name": names[img.id], "width": img.width, "height": img.height,
                    "split": snap.splits[img.id], "source": str(ctx.settings.project_file(img.project_id, img.file)),
                    "boxes": [b.as_dict() for b in rows], "dataset": dataset_names.get(img.dataset_id, "")}
                   for img, rows in records],
        "val_fingerprint": fingerprint([(img.id, snap.splits[img.id], rows) for img, rows in records
                                        if snap.splits[img.id] == "val"]),
    }
    job_dir.mkdir(parents=True, exist_ok=True)
    tmp = job_dir / (MANIFEST + ".part")
    tmp.write_text(json.dumps(manifest))
    os.replace(tmp, job_dir / MANIFEST)
    return {"dropped_boxes": dropped}


def data_fingerprint(snap: ProjectSnapshot) -> dict:
    """``splits.fingerprint`` of a snapshot: which images, in which split, with exactly which boxes."""
    boxes = snap.boxes_by_image()
    return fingerprint([(i.id, snap.splits[i.id], boxes[i.id]) for i in snap.images])
