"""A cheap picture of an image: a 64-bit difference hash, and the "most informative" review order built on it.

``dhash``: the image shrunk to 9x8 grey pixels; bit k says whether a pixel is brighter than its right-hand
neighbour. Re-encoded, resized or slightly brightened copies of an image differ in a few bits (Hamming
distance <= ~6), unrelated images in about half (~32). It is computed from the image's thumbnail, so
it costs a small decode.

``informative_order``: the order in which reviewing teaches the next fine-tune the most. Each image scores
``UNCERTAINTY_WEIGHT`` x its uncertainty (1 - its least confident machine box; 0.5 when the model found
nothing, which may be a miss) plus the rest x its novelty (the Hamming distance to the nearest image already
approved or picked, over ``FAR_BITS``, at most 1). Picking greedily, each pick makes its near-duplicates
less novel, so a round of 50 approvals covers the data instead of 50 near-identical frames. Ties keep
upload order.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from PIL import Image

FAR_BITS = 24  # at this distance or more two images count as unrelated
UNCERTAINTY_WEIGHT = 0.5
GREEDY_PICKS = 1000  # the head of the queue is ordered greedily; the rest by score (a reviewer never gets there
# before the next round re-orders it)
MAX_REFERENCE = 5000  # approved images compared against (the newest), enough to see what is covered


def dhash(image: Image.Image) -> int:
    """The 64-bit difference hash of ``image`` (any mode, any size), as an unsigned int."""
    grey = image.convert("L").resize((9, 8), Image.Resampling.BILINEAR)
    px = np.asarray(grey, dtype=np.int16)
    bits = (px[:, 1:] > px[:, :-1]).flatten()
    return int(np.packbits(bits).view(">u8")[0])


def hamming(a: int, b: int) -> int:
    return int((int(a) ^ int(b)).bit_count())


def _distances(hashes: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """For each of ``hashes`` (uint64), the smallest Hamming distance to any of ``ref`` (64 when none)."""
    out = np.full(len(hashes), 64, dtype=np.int64)
    for start in range(0, len(ref), 256):  # bounded memory: len(hashes) x 256 at a time
        block = ref[start:start + 256]
        d = np.bitwise_count(hashes[:, None] ^ block[None, :]).min(axis=1)
        np.minimum(out, d, out=out)
    return out


def informative_order(ids: Sequence[int], min_conf: Sequence[float | None], hashes: Sequence[int | None],
                      approved: Sequence[int]) -> list[int]:
    """``ids`` (upload order) re-ordered most informative first (see the module doc). ``min_conf``: each
    image's least confident machine box (None: no machine box); ``hashes``: each image's dhash (None:
    unknown, counted as novel); ``approved``: the dhashes of the images already approved."""
    n = len(ids)
    if n == 0:
        return []
    conf = np.array([0.5 if c is None else float(c) for c in min_conf], dtype=np.float64)
    uncertainty = 1.0 - np.clip(conf, 0.0, 1.0)
    known = np.array([h is not None for h in hashes])
    hv = np.array([int(h) if h is not None else 0 for h in hashes], dtype=np.uint64)
    ref = np.array([int(h) for h in list(approved)[-MAX_REFERENCE:]], dtype=np.uint64)
    near = _distances(hv, ref) if len(ref) else np.full(n, 64, dtype=np.int64)
    near[~known] = 64

    def score(dist: np.ndarray) -> np.ndarray:
        return UNCERTAINTY_WEIGHT * uncertainty + (1 - UNCERTAINTY_WEIGHT) * np.minimum(dist / FAR_BITS, 1.0)

    order: list[int] = []
    left = np.ones(n, dtype=bool)
    for _ in range(min(n, GREEDY_PICKS)):
        s = np.where(left, score(near), -np.inf)
        k = int(np.argmax(s))  # the first of equals: upload order breaks ties
        order.append(k)
        left[k] = False
        if known[k]:
            np.minimum(near, np.where(known, np.bitwise_count(hv ^ hv[k]).astype(np.int64), 64), out=near)
    if left.any():
        rest = np.flatnonzero(left)
        s = score(near)[rest]
        order.extend(int(i) for i in rest[np.argsort(-s, kind="stable")])
    return [int(ids[i]) for i in order]


__all__ = ["dhash", "hamming", "informative_order", "FAR_BITS"]
