"""Near-duplicate search (annotator/phash.py) and group-aware splits (annotator/splits.py).

The search must be exact (compared with brute force, including dense clusters that take its skewed-bucket
path), must find real copies of generated images as ingest hashes them, and the splits must never put
two members of a group on both sides of train / val."""

from __future__ import annotations

import io
import random

import numpy as np
import pytest
from PIL import Image, ImageEnhance

from annotator import phash
from annotator.demo import scenes
from annotator.ingest import Limits, decode_image
from annotator.phash import DEFAULT_MAX_DISTANCE, dhash, near_duplicate_groups, near_duplicate_pairs
from annotator.splits import assign_splits, merge_groups, straddling

D = DEFAULT_MAX_DISTANCE
RATIOS = {"train": 0.8, "val": 0.2, "test": 0.0}


# --- helpers ---------------------------------------------------------------------------------------------------
def _flip(rng: np.random.Generator, h: int, k: int) -> int:
    """``h`` with ``k`` distinct random bits flipped: exactly ``k`` bits away."""
    for b in rng.choice(64, k, replace=False):
        h ^= 1 << int(b)
    return h


def _random(rng: np.random.Generator, n: int) -> list[int]:
    return [int(x) for x in rng.integers(0, 2 ** 64 - 1, n, dtype=np.uint64, endpoint=True)]


def _brute(hashes: list[int], d: int) -> set[tuple[int, int, int]]:
    h = np.array(hashes, dtype=np.uint64)
    dist = np.bitwise_count(h[:, None] ^ h[None, :])
    i, j = np.nonzero(np.triu(dist <= d, 1))
    return set(zip(i.tolist(), j.tolist(), dist[i, j].tolist()))


def _as_set(pairs) -> set[tuple[int, int, int]]:
    i, j, dist = pairs
    return set(zip(i.tolist(), j.tolist(), dist.tolist()))


def _components(n: int, edges) -> list[list[int]]:
    """Connected components (2+) of ``edges`` over 0..n-1, the plain way."""
    parent = list(range(n))

    def find(x):
        while parent[x] != x:
            x = parent[x]
        return x

    for a, b, _ in edges:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    comps: dict[int, list[int]] = {}
    for x in range(n):
        comps.setdefault(find(x), []).append(x)
    return sorted((c for c in comps.values() if len(c) > 1), key=lambda c: c[0])


# --- exactness -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("d", [3, 5, D])
def test_pairs_are_exact_against_brute_force(d):
    """Random hashes plus planted pairs at every distance 0..d+1: every pair within d found with its distance,
    none beyond it, by the index (forced) and by the automatic choice."""
    rng = np.random.default_rng(d)
    hashes = _random(rng, 1500)
    planted = []
    for k in range(d + 2):
        for _ in range(5):
            a = int(rng.integers(len(hashes)))
            hashes.append(_flip(rng, hashes[a], k))
            planted.append((a, len(hashes) - 1, k))
    want = _brute(hashes, d)
    for method in ("index", "auto", "brute"):
        got = near_duplicate_pairs(np.array(hashes, dtype=np.uint64), d, method=method)
        assert _as_set(got) == want, method
        assert len(got[0]) == len(want)  # each pair once
        assert np.all(got[0] < got[1]) and list(zip(got[0], got[1])) == sorted(zip(got[0], got[1]))
    for a, b, k in planted:
        assert ((a, b, k) in want) == (k <= d)


def test_dense_clusters_take_the_skewed_path_and_stay_exact(monkeypatch):
    """Hundreds of near-identical frames share buckets (the all-against-all path for large bucket pairs);
    with copies of them (identical hashes) and unrelated hashes around, pairs and groups equal brute force."""
    rng = np.random.default_rng(7)
    base_a, base_b = _random(rng, 2)
    frames = [_flip(rng, base_a, int(rng.integers(0, 4))) for _ in range(500)]
    frames += [_flip(rng, base_b, int(rng.integers(0, 6))) for _ in range(300)]
    hashes = _random(rng, 800) + frames + frames[:40]
    random.Random(1).shuffle(hashes)
    big = []
    real = phash._Scan._big_tile
    monkeypatch.setattr(phash._Scan, "_big_tile", lambda self, *a: (big.append(a[2]), real(self, *a)))
    want = _brute(hashes, D)
    assert _as_set(near_duplicate_pairs(hashes, D, method="index")) == want
    assert big, "the clusters should have produced large bucket pairs"
    ids = [1000 + 3 * k for k in range(len(hashes))]
    expected = [[ids[x] for x in c] for c in _components(len(hashes), want)]
    assert near_duplicate_groups(ids, hashes, D, method="index") == expected
    assert near_duplicate_groups(ids, hashes, D, method="brute") == expected


def test_groups_chain_transitively_and_are_ordered():
    rng = np.random.default_rng(3)
    a = _random(rng, 1)[0]
    b = _flip(rng, a, D)  # a~b, b~c, but a and c are 2*D apart
    c = b
    while phash.hamming(a, c) <= D:
        c = _flip(rng, b, D)
    other, far = _random(rng, 2)
    got = near_duplicate_groups([50, 7, 30, 9, 4], [c, other, a, far, b], D)
    assert got == [[4, 30, 50]]
    assert near_duplicate_groups([50, 30], [c, a], D) == []  # without b they are unrelated
    two = near_duplicate_groups([8, 3, 20, 1], [other, a, _flip(rng, other, 1), b], D)
    assert two == [[1, 3], [8, 20]]  # sorted within, ordered by smallest id


def test_identical_hashes_group_and_unknown_hashes_are_ignored():
    h = 0x0123456789ABCDEF
    assert near_duplicate_groups([5, 6, 7, 8], [h, None, h, None], D) == [[5, 7]]
    assert near_duplicate_groups([1, 2], [h, None], D) == [] and near_duplicate_groups([], [], D) == []
    i, j, dist = near_duplicate_pairs([h, h, h], 0)
    assert list(zip(i, j, dist)) == [(0, 1, 0), (0, 2, 0), (1, 2, 0)]
    assert len(near_duplicate_pairs([], D)[0]) == 0
    top = 2 ** 64 - 1  # the full unsigned range
    assert near_duplicate_groups([1, 2], [top, top ^ 1], 1) == [[1, 2]]
    with pytest.raises(ValueError, match="ids but"):
        near_duplicate_groups([1, 2], [h], D)
    with pytest.raises(ValueError, match="max_distance"):
        near_duplicate_pairs([h], -1)


# --- real copies, hashed as ingest does ---------------------------------------------------------------------
def _jpeg(im: Image.Image, quality: int = 90) -> bytes:
    out = io.BytesIO()
    im.save(out, "JPEG", quality=quality)
    return out.getvalue()


def _ingest_hash(data: bytes) -> int:
    """dhash of the thumbnail ingest makes of ``data``, decoded back."""
    with Image.open(io.BytesIO(decode_image(data, Limits()).thumb)) as thumb:
        return dhash(thumb)


def test_copies_of_generated_images_are_found_and_unrelated_images_are_not():
    ids, hashes, source = [], [], {}
    for seed in (101, 202, 303, 404, 505, 606):
        im, _ = scenes.scene(seed)
        w, h = im.size
        files = [_jpeg(im), _jpeg(im, 40), _jpeg(im.resize((w // 2, h // 2))),
                 _jpeg(im.resize((w * 3 // 4, h * 3 // 4))), _jpeg(ImageEnhance.Brightness(im).enhance(1.15)),
                 _jpeg(ImageEnhance.Brightness(im).enhance(0.85)),
                 _jpeg(im.crop((round(w * 0.02), round(h * 0.02), w, h)))]
        for data in files:
            ids.append(len(ids))
            hashes.append(_ingest_hash(data))
            source[ids[-1]] = seed
    groups = near_duplicate_groups(ids, hashes, D)
    assert sorted(sorted({source[i] for i in g}) for g in groups) == [[s] for s in sorted(set(source.values()))]
    assert all(len(g) == 7 for g in groups), [[phash.hamming(hashes[g[0]], hashes[i]) for i in g] for g in groups]


# --- group-aware splits ---------------------------------------------------------------------------------------
def _images(n: int) -> list[tuple[int, str]]:
    return [(i, f"{i * 7919:064x}") for i in range(n)]


def _groups(seed: int = 0) -> list[list[int]]:
    """30 groups of 2-6 among 200 images; a few share an image with another group (merged by the split)."""
    rng = random.Random(seed)
    pool = list(range(200))
    rng.shuffle(pool)
    groups, at = [], 0
    for _ in range(25):
        size = rng.randint(2, 6)
        groups.append(pool[at:at + size])
        at += size
    for _ in range(5):  # overlapping: one member of an existing group and 1-3 fresh ones
        groups.append([rng.choice(groups[rng.randrange(25)])] + pool[at:at + rng.randint(1, 3)])
        at += len(groups[-1]) - 1
    return groups


def _counts(splits: dict[int, str]) -> dict[str, int]:
    return {s: list(splits.values()).count(s) for s in ("train", "val", "test")}


def test_no_group_straddles_and_the_ratios_still_hold():
    groups = _groups()
    largest = max(len(g) for g in merge_groups(groups))
    for ratios in (RATIOS, {"train": 0.6, "val": 0.2, "test": 0.2}):
        for seed in range(4):
            got = assign_splits({}, _images(200), ratios, seed, groups=groups)
            assert len(got) == 200 and straddling(groups, got) == []
            counts = _counts(got)
            assert all(abs(counts[s] - ratios[s] * 200) <= largest for s in counts), (counts, largest)
            assert straddling(groups, assign_splits({}, _images(200), ratios, seed)), "groups=None ignores them"


def test_group_splits_are_deterministic_whatever_the_order():
    groups = _groups(1)
    a = assign_splits({}, _images(200), RATIOS, 3, groups=groups)
    shuffled = [list(reversed(g)) for g in reversed(groups)]
    assert assign_splits({}, list(reversed(_images(200))), RATIOS, 3, groups=shuffled) == a
    assert assign_splits({}, _images(200), RATIOS, 4, groups=groups) != a  # another seed, another draw


def test_without_groups_nothing_changes():
    imgs = _images(120)
    plain = assign_splits({"train": 7, "val": 1}, imgs, RATIOS, 5)
    assert assign_splits({"train": 7, "val": 1}, imgs, RATIOS, 5, groups=None, stored=None) == plain
    assert assign_splits({"train": 7, "val": 1}, imgs, RATIOS, 5, groups=[]) == plain
    singles_and_strangers = [[3], [40], [9999, 10000]]  # one-image groups; groups of images not in `new`
    assert assign_splits({"train": 7, "val": 1}, imgs, RATIOS, 5, groups=singles_and_strangers) == plain


def test_stored_members_pull_new_members_into_their_split():
    new = _images(10)
    stored = {100: "val", 101: "train", 102: "val", 103: "val", 104: "train", 105: "train", 106: "val"}
    groups = [[0, 100], [1, 2, 101], [3, 102, 103, 104], [4, 105, 106], [5, 6]]
    got = assign_splits({"train": 3, "val": 4}, new, RATIOS, 0, groups=groups, stored=stored)
    assert got[0] == "val"  # its one stored member's split, though train lags far behind its 80%
    assert got[1] == got[2] == "train"
    assert got[3] == "val"  # stored members disagree (a hand move): the majority, stored ones untouched
    assert got[4] == "train"  # a tie: train, val, test order
    assert got[5] == got[6] and set(got) == set(range(10))
    # A new image joining a group whose members already sit in two splits leaves them as they are.
    assert straddling(groups, {**stored, **got}) == [[3, 102, 103, 104], [4, 105, 106]]


def test_straddling_merges_overlapping_groups():
    splits = {1: "train", 2: "train", 3: "val", 4: "val", 5: "test"}
    assert straddling([[1, 2], [3, 4]], splits) == []
    assert straddling([[1, 2], [2, 3], [4, 6]], splits) == [[1, 2, 3]]  # 6 has no split: not counted
    assert merge_groups([[5, 1], [9, 8], [1, 9]]) == [[1, 5, 8, 9]]
