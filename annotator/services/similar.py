"""Near-duplicates and the groups that must stay in one split.

Every image has a 64-bit hash of its thumbnail (``ingest.thumb_hash``; made at ingest, backfilled for older
images by ``backfill_hashes``, which the app runs once in the background at start). Two images whose hashes
differ in at most ``settings.near_duplicate_bits`` bits are near-duplicates (re-encoded, resized or
brightened copies, neighbouring video frames); near-duplicates are joined transitively into groups.

``split_groups`` is what the split manager keeps together: the near-duplicate groups, plus the frames of one
video segment (``SEGMENT_S`` seconds of one video), because frames a second apart are the same scene even
when the camera moved enough to change their hash. A group on both sides of train/val would let the model
be validated on what it trained on.
"""

from __future__ import annotations

import logging
import threading
from typing import Sequence

import numpy as np

from ..ingest import thumb_hash
from ..phash import near_duplicate_groups
from ..types import Project, UserError
from .context import AppContext, project

log = logging.getLogger(__name__)

SEGMENT_S = 30.0  # a video's frames within one such window share a split
BACKFILL_BATCH = 2000

_cache: dict[tuple, object] = {}  # (what, data folder, project id, revision, bits) -> result; a revision bump invalidates
_cache_lock = threading.Lock()


def ensure_hashes(ctx: AppContext, p: Project, limit: int = 100_000) -> int:
    """Compute the near-duplicate hash (ingest.thumb_hash) of the project's images that have none yet (those
    uploaded before hashes were made at ingest), from their thumbnails, and store it; returns how many. An
    unreadable thumbnail leaves that image without one (it counts as novel) and is said in the log."""
    todo = ctx.store.images_without_hash(p.id, limit)
    pairs = []
    for image_id, thumb in todo:
        try:
            pairs.append((image_id, thumb_hash(ctx.settings.project_file(p.id, thumb))))
        except (OSError, ValueError) as e:
            log.warning("no hash for image %s (thumbnail %s): %s", image_id, thumb, e)
    ctx.store.set_image_hashes(pairs)
    return len(pairs)


def backfill_hashes(ctx: AppContext, batch: int = BACKFILL_BATCH) -> int:
    """Hash every image of every project that has no hash yet (uploaded before ingest made them), in
    batches; returns how many were hashed. Safe to run beside the app: each batch is one short write."""
    total = 0
    for p in ctx.store.list_projects():
        while True:
            n = ensure_hashes(ctx, ctx.store.get_project(p.id), batch)
            total += n
            if n < batch:  # done, or only unreadable thumbnails are left (they stay without a hash)
                break
    if total:
        log.info("near-duplicate hashes computed for %d older image(s)", total)
    return total


def start_backfill(ctx: AppContext) -> threading.Thread:
    """``backfill_hashes`` on a background thread (the app's start must not wait for it)."""

    def run():
        try:
            backfill_hashes(ctx)
        except Exception:  # noqa: BLE001 - a missing hash only makes an image count as novel; never kill the app
            log.exception("backfilling near-duplicate hashes failed")

    t = threading.Thread(target=run, name="hash-backfill", daemon=True)
    t.start()
    return t


def _bits(ctx: AppContext, max_bits: int | None) -> int:
    bits = ctx.settings.near_duplicate_bits if max_bits is None else max_bits
    try:
        bits = int(bits)
    except (TypeError, ValueError):
        raise UserError(f"near-duplicate distance must be a whole number of bits, got {max_bits!r}") from None
    if not 0 <= bits <= 12:
        raise UserError(f"near-duplicate distance must be between 0 and 12 bits (of 64), got {bits}")
    return bits


def _cached(key: tuple, compute):
    with _cache_lock:
        if key in _cache:
            return _cache[key]
    value = compute()
    with _cache_lock:
        if len(_cache) > 64:
            _cache.clear()
        _cache[key] = value
    return value


def duplicate_groups(ctx: AppContext, ref, max_bits: int | None = None) -> list[list[int]]:
    """The project's near-duplicate groups (image ids, 2 or more each), smallest id first (see near_groups)."""
    p = project(ctx, ref)
    bits = _bits(ctx, max_bits)

    def compute():
        ids, hashes = ctx.store.project_hashes(p.id)
        return near_groups(ids, hashes, bits)

    return _cached(("groups", str(ctx.settings.data_dir), p.id, ctx.store.project_revision(p.id), bits), compute)


def _information(h: np.ndarray) -> np.ndarray:
    """How much a hash says: its set bits or its unset ones, whichever are fewer. A featureless picture (a
    black frame, a blank wall, a faint gradient) has a hash of almost no set bits (or almost all)."""
    pc = np.bitwise_count(h).astype(np.int64)
    return np.minimum(pc, 64 - pc)


def near_groups(ids: Sequence[int], hashes: Sequence[int | None], bits: int) -> list[list[int]]:
    """Near-duplicate groups: images joined (transitively) when their hashes differ in at most ``bits`` bits
    AND in no more bits than the poorer of the two hashes holds (``_information``). Without the second rule a
    black video frame (hash 0) would be "within 8 bits" of every smooth picture whose hash has 8 bits set, and
    would glue unrelated groups together. Rich hashes (the vast majority) go through phash's indexed search;
    each distinct poor one is compared with every hash."""
    known = [(int(i), int(h)) for i, h in zip(ids, hashes) if h is not None]
    if len(known) < 2:
        return []
    id_arr = np.array([i for i, _ in known], dtype=np.int64)
    h_arr = np.array([h for _, h in known], dtype=np.uint64)
    info = _information(h_arr)
    poor = info <= bits
    parent: dict[int, int] = {}

    def find(x: int) -> int:
        root = x
        while parent.get(root, root) != root:
            root = parent[root]
        while x != root:  # path compression
            parent[x], x = root, parent.get(x, x)
        return root

    def join(members) -> None:
        roots = {find(int(m)) for m in members}
        low = min(roots)
        for r in roots:
            parent[r] = low
        parent.setdefault(low, low)

    for g in near_duplicate_groups(id_arr[~poor].tolist(), h_arr[~poor].tolist(), bits):
        join(g)
    if poor.any():
        uniq, inverse = np.unique(h_arr[poor], return_inverse=True)
        poor_ids = id_arr[poor]
        for k, u in enumerate(uniq):
            u_info = int(_information(np.array([u], dtype=np.uint64))[0])
            allowed = np.minimum(np.minimum(info, u_info), bits)
            members = set(poor_ids[inverse == k].tolist()) | set(id_arr[np.bitwise_count(h_arr ^ u) <= allowed].tolist())
            if len(members) > 1:
                join(members)
    groups: dict[int, list[int]] = {}
    for i in parent:
        groups.setdefault(find(i), []).append(i)
    return sorted((sorted(g) for g in groups.values() if len(g) > 1), key=lambda g: g[0])


def video_segments(ctx: AppContext, p: Project) -> list[list[int]]:
    """The frames of each video, in windows of SEGMENT_S seconds (groups of 2 or more)."""
    rows = ctx.store.video_frames(p.id)  # (image id, video id, frame time)
    groups: dict[tuple, list[int]] = {}
    for image_id, video_id, t in rows:
        groups.setdefault((video_id, int((t or 0.0) // SEGMENT_S)), []).append(int(image_id))
    return [sorted(g) for g in groups.values() if len(g) > 1]


def split_groups(ctx: AppContext, p: Project) -> list[list[int]]:
    """What must share a split: near-duplicate groups and video segments (overlaps are merged by the caller)."""
    return duplicate_groups(ctx, p) + video_segments(ctx, p)


def similar_to(ctx: AppContext, p: Project, image_ids: Sequence[int], max_bits: int | None = None) -> list[dict]:
    """For each of ``image_ids`` with a near-duplicate elsewhere in the project (near_groups' rule): its nearest
    one. [{"image_id", "similar_id", "distance"}], by image id. The wanted images are compared with every hash
    (256 at a time): a static camera's thousands of near-identical frames cost no list of pairs."""
    bits = _bits(ctx, max_bits)
    wanted = {int(i) for i in image_ids}
    ids, hashes = ctx.store.project_hashes(p.id)
    known = [(int(i), int(h)) for i, h in zip(ids, hashes) if h is not None]
    mine = [(i, h) for i, h in known if i in wanted]
    if not mine or len(known) < 2:
        return []
    id_arr = np.array([i for i, _ in known], dtype=np.int64)
    h_arr = np.array([h for _, h in known], dtype=np.uint64)
    info = _information(h_arr)
    out = []
    for start in range(0, len(mine), 256):
        block = mine[start:start + 256]
        b_ids = np.array([i for i, _ in block], dtype=np.int64)
        b_h = np.array([h for _, h in block], dtype=np.uint64)
        dist = np.bitwise_count(b_h[:, None] ^ h_arr[None, :]).astype(np.int64)
        allowed = np.minimum(np.minimum(_information(b_h)[:, None], info[None, :]), bits)
        dist[(dist > allowed) | (b_ids[:, None] == id_arr[None, :])] = 99  # too far, or itself
        nearest = dist.argmin(axis=1)
        for row, k in enumerate(nearest.tolist()):
            if dist[row, k] <= bits:
                out.append({"image_id": int(b_ids[row]), "similar_id": int(id_arr[k]), "distance": int(dist[row, k])})
    return sorted(out, key=lambda x: x["image_id"])


def similar_ids(ctx: AppContext, ref, max_bits: int | None = None) -> list[int]:
    """The images that have a near-duplicate, group by group (the "Similar images" filter's order)."""
    return [i for g in duplicate_groups(ctx, ref, max_bits) for i in g]


def near_duplicates(ctx: AppContext, ref, max_bits: int | None = None, limit: int = 50) -> dict:
    """Counts and the largest groups (each image's id, "dataset/path" as ``name`` and split), for the API and
    the CLI. (Not ``path``: an API client takes a dict with a "path" for a file to download.)"""
    p = project(ctx, ref)
    groups = duplicate_groups(ctx, p, max_bits)
    shown = sorted(groups, key=lambda g: (-len(g), g[0]))[:limit]
    recs = ctx.store.get_images([i for g in shown for i in g])
    return {
        "project": p.name, "max_bits": _bits(ctx, max_bits), "groups": len(groups),
        "images": sum(len(g) for g in groups),
        "largest": [[{"id": i, "name": f"{recs[i].dataset}/{recs[i].rel_path}", "split": recs[i].split}
                     for i in g if i in recs] for g in shown],
    }
