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

``near_duplicate_pairs`` / ``near_duplicate_groups``: which images are copies of one another (within
``DEFAULT_MAX_DISTANCE`` bits), exactly and fast at 100k images, so that copies can be kept in one split
(splits.py ``assign_splits(groups=...)``).
"""

from __future__ import annotations

import itertools
import math
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


# --- near-duplicate search ---------------------------------------------------------------------------------
#
# Which images are copies of each other (re-encoded, resized, brightened, slightly cropped): every pair of
# dhashes within ``max_distance`` bits, and the groups they chain into. Exact (no pair is missed) and fast
# at 100k hashes without comparing all 5e9 pairs, by the pigeonhole principle (multi-index hashing): cut the
# 64 bits into m blocks and two hashes within d bits differ in at most r bits in at least one block whenever
# d < m * (r + 1). So each block is bucketed by its value, and only hashes whose block values are within r
# bits of each other (the same bucket, or a bucket reached by flipping <= r bits of the key) are compared.
# bench/dedupe.py measures it.

DEFAULT_MAX_DISTANCE = 8  # the precision / recall knee measured by bench/dedupe.py: see near_duplicate_groups

_CHUNK = 1 << 20  # candidate pairs checked per numpy batch: bounds memory at ~50 MB whatever the input
_BIG_TILE = 1 << 13  # a bucket pair this large is processed alone, so groups can skip it when already joined
_MAX_BLOCK_BITS = 22  # a block's bucket table has 2**bits entries (16 MB of int32 at 22 bits)
# Costs for choosing a plan (seconds, measured on 2 cores, numpy 2.4): one bucket probe, one candidate pair
# checked, one pair compared by brute force, one bucket table entry allocated, one block's fixed overhead.
_COST_PROBE, _COST_CANDIDATE, _COST_BRUTE, _COST_TABLE, _COST_BLOCK = 4e-9, 4e-8, 5e-9, 1e-9, 5e-4
# Bits are permuted before blocking so that a block samples the whole picture (dhash bit 8*row + column):
# with contiguous blocks, a block is two rows of the 9x8 grid, and every image with a flat top (sky, a
# wall) would share one bucket. A permutation keeps Hamming distances.
_PERMUTATION = (np.arange(64) * 29) % 64


def _as_hashes(hashes) -> np.ndarray:
    return np.asarray(hashes, dtype=np.uint64).ravel()


def _n_within(bits: int, r: int) -> int:
    """How many keys of ``bits`` bits lie within ``r`` bit flips of one key (itself included)."""
    return sum(math.comb(bits, k) for k in range(min(r, bits) + 1))


def _plan(n: int, d: int, brute: bool = True) -> tuple[list[tuple[int, int]], int] | None:
    """The cheapest exact scheme for ``n`` distinct hashes at distance ``d``: ([(shift, bits)] per block,
    radius), or None for brute force (never when not ``brute``). The costs assume uniform hashes: skew is
    handled while scanning."""
    best, best_cost = None, (_COST_BRUTE * n * n / 2 if brute else math.inf)
    for m in range(-(-64 // _MAX_BLOCK_BITS), 17):
        r = -(-(d + 1) // m) - 1  # the smallest radius with d < m * (r + 1)
        widths = [64 // m + (1 if k < 64 % m else 0) for k in range(m)]
        cost = 0.0
        for bits in widths:
            near = _n_within(bits, r)
            keys = min(n, 2 ** bits)
            cost += (_COST_PROBE * keys * (near - 1) + _COST_CANDIDATE * n * n * near / 2 ** (bits + 1)
                     + _COST_TABLE * 2 ** bits + _COST_BLOCK)
        if cost < best_cost:
            shifts = np.cumsum([0] + widths[:-1])
            best, best_cost = ([(int(s), b) for s, b in zip(shifts, widths)], r), cost
    return best


def _permute_bits(u: np.ndarray) -> np.ndarray:
    bits = np.unpackbits(u.astype("<u8").view(np.uint8).reshape(-1, 8), axis=1, bitorder="little")
    packed = np.ascontiguousarray(np.packbits(bits[:, _PERMUTATION], axis=1, bitorder="little"))
    return packed.view("<u8").ravel().astype(np.uint64)


def _flips(bits: int, r: int) -> np.ndarray:
    """Every non-zero key of ``bits`` bits with at most ``r`` bits set: the probes of one bucket."""
    out = [0]
    for k in range(1, r + 1):
        out += [sum(1 << b for b in c) for c in itertools.combinations(range(bits), k)]
    return np.array(out[1:], dtype=np.int64)


def _expand(sa, ca, sb, cb) -> tuple[np.ndarray, np.ndarray]:
    """All (p, q) with p in [sa, sa+ca) and q in [sb, sb+cb), for arrays of such tiles at once."""
    sizes = ca * cb
    total = int(sizes.sum())
    tile = np.repeat(np.arange(len(sizes)), sizes)
    offset = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    width = cb[tile]
    return sa[tile] + offset // width, sb[tile] + offset % width


class _Forest:
    """Union-find over ``n`` items in numpy: ``root`` is kept fully compressed (root[x] is x's root)."""

    def __init__(self, n: int):
        self.root = np.arange(n, dtype=np.int64)

    def union(self, a: np.ndarray, b: np.ndarray) -> None:
        """Join the items of every edge (a[k], b[k]). Each round hooks the larger root under the smaller one
        (conflicting writes: one wins, the rest are retried next round), then compresses by pointer jumping."""
        while len(a):
            ra, rb = self.root[a], self.root[b]
            differ = ra != rb
            if not differ.any():
                return
            a, b, ra, rb = a[differ], b[differ], ra[differ], rb[differ]
            self.root[np.maximum(ra, rb)] = np.minimum(ra, rb)
            while True:
                up = self.root[self.root]
                if np.array_equal(up, self.root):
                    break
                self.root = up


class _Scan:
    """Every pair of the distinct hashes ``u`` within ``d`` bits, in batches of at most ``_CHUNK`` candidates.

    With a ``forest`` (groups), each batch is joined as it is found and a large bucket pair whose members
    are already all one group is skipped: a dense cluster (thousands of frames of a static camera, each a
    few bits from the others) is then paid for once, not once per block and probe. Without one (pairs),
    each pair is reported exactly once: by the first block in which it is within the radius."""

    def __init__(self, u: np.ndarray, d: int, plan, forest: _Forest | None = None):
        self.d, self.forest = d, forest
        self.blocks, self.r = plan
        self.p = _permute_bits(u)
        self.found: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

    def run(self) -> None:
        for k, (shift, bits) in enumerate(self.blocks):
            self._block(k, shift, bits)

    def _block(self, k: int, shift: int, bits: int) -> None:
        keys = ((self.p >> np.uint64(shift)) & np.uint64((1 << bits) - 1)).astype(np.int32)
        order = np.argsort(keys, kind="stable")
        ukeys, starts, counts = np.unique(keys[order], return_index=True, return_counts=True)
        many = np.flatnonzero(counts > 1)  # the same bucket: pairs within each bucket of 2+
        self._tiles(k, order, starts[many], counts[many], starts[many], counts[many], triangle=True)
        for a, b in self._neighbour_buckets(ukeys, bits):
            self._tiles(k, order, starts[a], counts[a], starts[b], counts[b], triangle=False)

    def _neighbour_buckets(self, ukeys: np.ndarray, bits: int):
        """Yield (a, b) arrays: the pairs of buckets whose keys are 1..r bits apart, each pair once (key a
        without the highest differing bit), one highest bit at a time to bound memory."""
        if self.r == 0:
            return
        table = np.full(1 << bits, -1, dtype=np.int32)
        table[ukeys] = np.arange(len(ukeys), dtype=np.int32)
        for top in range(bits):
            flips = (np.concatenate([[0], _flips(top, self.r - 1)]) | (1 << top)).astype(np.int32)
            clear = np.flatnonzero((ukeys & (1 << top)) == 0)
            cols = max(1, (1 << 22) // max(len(clear), 1))
            for c0 in range(0, len(flips), cols):
                hit = table[ukeys[clear][:, None] ^ flips[None, c0:c0 + cols]]
                rows, cs = np.nonzero(hit >= 0)
                if len(rows):
                    yield clear[rows], hit[rows, cs]

    def _tiles(self, k, order, sa, ca, sb, cb, triangle: bool) -> None:
        """Check the candidate pairs of these bucket pairs (positions in ``order``): small ones in batches
        of at most ``_CHUNK``, large ones alone (in row strips of at most ``_CHUNK`` pairs)."""
        sizes = ca.astype(np.int64) * cb
        big = sizes >= _BIG_TILE
        for i in np.flatnonzero(big):
            self._big_tile(k, order, int(sa[i]), int(ca[i]), int(sb[i]), int(cb[i]), triangle)
        small = np.flatnonzero(~big)
        if not len(small):
            return
        ends = np.cumsum(sizes[small])
        cuts = [0, *np.searchsorted(ends, np.arange(_CHUNK, int(ends[-1]), _CHUNK), side="right"), len(small)]
        for lo, hi in zip(cuts[:-1], cuts[1:]):
            if hi > lo:
                part = small[lo:hi]
                pa, pb = _expand(sa[part], ca[part], sb[part], cb[part])
                if triangle:  # a bucket with itself: each pair once
                    keep = pa < pb
                    pa, pb = pa[keep], pb[keep]
                self._check(k, order[pa], order[pb])

    def _big_tile(self, k, order, sa, ca, sb, cb, triangle: bool) -> None:
        """One large bucket pair (or bucket, ``triangle``), compared all against all in row strips of at most
        ``_CHUNK`` pairs; with groups, a strip whose members are already all one group is skipped."""
        rows, cols = order[sa:sa + ca], order[sb:sb + cb]
        strip = max(1, _CHUNK // cb)
        for r0 in range(0, ca, strip):
            c0 = r0 if triangle else 0  # a triangle's strip needs only the columns right of its first row
            x, y = rows[r0:r0 + strip], cols[c0:]
            if self.forest is not None:
                roots = np.concatenate([self.forest.root[x], self.forest.root[y]])
                if roots.min() == roots.max():
                    continue  # all one group already: nothing to learn here
            near = np.bitwise_count(self.p[x][:, None] ^ self.p[y][None, :]) <= self.d
            if triangle:
                near = np.triu(near, 1)  # column c of the strip is row c's own position: keep c > row
            i, j = np.nonzero(near)
            self._check(k, x[i], y[j])

    def _check(self, k, a, b) -> None:
        """Keep the candidate pairs (a, b) (indices of ``u``) within ``d`` bits that no earlier block
        reported; join them (groups) or store them (pairs)."""
        if self.forest is not None:
            differ = self.forest.root[a] != self.forest.root[b]
            a, b = a[differ], b[differ]
        x = self.p[a] ^ self.p[b]
        dist = np.bitwise_count(x)
        keep = dist <= self.d
        for shift, bits in self.blocks[:k]:  # within the radius in an earlier block: that block reported it
            keep &= np.bitwise_count((x >> np.uint64(shift)) & np.uint64((1 << bits) - 1)) > self.r
        a, b, dist = a[keep], b[keep], dist[keep]
        if self.forest is not None:
            self.forest.union(a, b)
        elif len(a):
            self.found.append((np.minimum(a, b), np.maximum(a, b), dist))


def _brute_pairs(u: np.ndarray, d: int):
    """Every pair (i < j) of ``u`` within ``d`` bits, comparing all of them in strips of bounded size."""
    n = len(u)
    rows = max(1, _CHUNK // max(n, 1))
    for r0 in range(0, n, rows):
        r1 = min(n, r0 + rows)
        dist = np.bitwise_count(u[r0:r1, None] ^ u[None, :])
        i, j = np.nonzero(dist <= d)
        i = i + r0
        keep = j > i
        yield i[keep], j[keep], dist[i[keep] - r0, j[keep]]


def _distinct_edges(u: np.ndarray, d: int, method: str, forest: _Forest | None) -> list:
    """Pairs of the distinct sorted hashes ``u`` within ``d``: joined into ``forest`` if given (and []
    returned), else returned as a list of (i, j, distance) arrays (i < j, each pair once)."""
    plan = None if method == "brute" else _plan(len(u), d, brute=method == "auto")
    if plan is not None:
        scan = _Scan(u, d, plan, forest)
        scan.run()
        return scan.found
    found = []
    for i, j, dist in _brute_pairs(u, d):
        if forest is not None:
            forest.union(i, j)
        else:
            found.append((i, j, dist))
    return found


def _check_distance(max_distance) -> int:
    d = int(max_distance)
    if d != max_distance or d < 0:
        raise ValueError(f"max_distance must be a whole number >= 0, got {max_distance!r}")
    return min(d, 64)


def near_duplicate_pairs(hashes: Sequence[int] | np.ndarray, max_distance: int = DEFAULT_MAX_DISTANCE, *,
                         method: str = "auto") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every pair of ``hashes`` (uint64 dhashes) within ``max_distance`` bits: (i, j, distance) arrays,
    i < j indices into ``hashes``, sorted by (i, j); distances as uint8. Exact: no pair is missed.

    Identical hashes are collapsed first and compared once (np.unique), then the distinct ones are searched
    by multi-index hashing (see ``_Scan``), or by brute force where that is cheaper (a few thousand
    hashes); ``method`` ("auto", "index", "brute") forces one, for tests and the bench.

    The result holds every pair, so its size is the cost floor: 5,000 frames of one static camera are
    12.5M pairs and take ~4 s to list (bench/dedupe.py). Where only the groups matter,
    ``near_duplicate_groups`` never lists them. Worst case otherwise as there."""
    if method not in ("auto", "index", "brute"):
        raise ValueError(f"method must be auto, index or brute, got {method!r}")
    d = _check_distance(max_distance)
    h = _as_hashes(hashes)
    u, inv = np.unique(h, return_inverse=True)
    members = np.argsort(inv, kind="stable")  # the indices of each distinct hash, in index order
    counts = np.bincount(inv, minlength=len(u))
    starts = np.cumsum(counts) - counts
    parts_i, parts_j, parts_d = [], [], []
    same = np.flatnonzero(counts > 1)  # identical hashes: all pairs among the copies, distance 0
    if len(same):
        pa, pb = _expand(starts[same], counts[same], starts[same], counts[same])
        keep = pa < pb
        parts_i.append(members[pa[keep]])
        parts_j.append(members[pb[keep]])
        parts_d.append(np.zeros(int(keep.sum()), dtype=np.uint8))
    for a, b, dist in _distinct_edges(u, d, method, None):
        pa, pb = _expand(starts[a], counts[a], starts[b], counts[b])  # every copy of a with every copy of b
        parts_i.append(members[pa])
        parts_j.append(members[pb])
        parts_d.append(np.repeat(dist.astype(np.uint8), counts[a] * counts[b]))
    if not parts_i:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.uint8)
    i, j, dist = np.concatenate(parts_i), np.concatenate(parts_j), np.concatenate(parts_d)
    i, j = np.minimum(i, j), np.maximum(i, j)
    order = np.lexsort((j, i))
    return i[order].astype(np.int64), j[order].astype(np.int64), dist[order]


def near_duplicate_groups(ids: Sequence[int], hashes: Sequence[int | None],
                          max_distance: int = DEFAULT_MAX_DISTANCE, *, method: str = "auto") -> list[list[int]]:
    """The groups of near-duplicate images: connected components of "within ``max_distance`` bits", so
    copies chain (A~B, B~C: one group even if A and C are further apart). Groups of 2+ only, each sorted
    by id, ordered by their smallest id; an image whose hash is None is in none.

    ``DEFAULT_MAX_DISTANCE`` (8), measured by bench/dedupe.py on 1,000 generated images with 6 copies each
    (JPEG q40, 50% and 75% size, brightness +-15%, a 2% crop) hashed from their ingest thumbnails: 8 finds
    99.45% of the copies (crops 97.7%, the rest >= 99.2%) and 32 false pairs among 24.5M unrelated ones
    (precision 99.85%); 6 finds 97.8% (crops 90.2%); from 9 on, false pairs chain unrelated families
    into larger groups (precision 99.4% at 9, 98.2% at 10; 16 and 27 mixed groups against 5 at 8).

    Cost: ~0.36 s at 100k hashes on 2 cores (2,000 planted groups and 5,000 static-camera frames among
    them). Identical hashes cost nothing (collapsed first), and a dense cluster of near-identical hashes is
    paid for about once (see ``_Scan``): 20,000 frames each 1-4 bits from one hash take ~0.6 s. Worst
    case: k distinct hashes that share one whole block of the index but are otherwise unrelated are
    compared all against all, k**2 / 2 checks at ~3.5 ns in strips of bounded memory (20,000: ~0.7 s;
    100,000: ~20 s, extrapolated): it slows down, it neither fails nor runs out of memory. dhashes of real
    images are unlikely to: a block takes its bits from all over the picture (``_PERMUTATION``)."""
    if method not in ("auto", "index", "brute"):
        raise ValueError(f"method must be auto, index or brute, got {method!r}")
    if len(ids) != len(hashes):
        raise ValueError(f"{len(ids)} ids but {len(hashes)} hashes")
    d = _check_distance(max_distance)
    known = [k for k, h in enumerate(hashes) if h is not None]
    if len(known) < 2:
        return []
    h = _as_hashes([hashes[k] for k in known])
    u, inv = np.unique(h, return_inverse=True)
    forest = _Forest(len(u))
    _distinct_edges(u, d, method, forest)
    label = forest.root[inv]
    key_ids = np.array([int(ids[k]) for k in known], dtype=np.int64)
    order = np.lexsort((key_ids, label))
    label, key_ids = label[order], key_ids[order]
    bounds = np.flatnonzero(np.r_[True, np.diff(label) != 0, True])
    starts, ends = bounds[:-1], bounds[1:]
    several = ends - starts > 1
    flat = key_ids.tolist()
    groups = [flat[a:b] for a, b in zip(starts[several].tolist(), ends[several].tolist())]
    groups.sort(key=lambda g: g[0])
    return groups


__all__ = ["dhash", "hamming", "informative_order", "near_duplicate_pairs", "near_duplicate_groups",
           "FAR_BITS", "DEFAULT_MAX_DISTANCE"]
