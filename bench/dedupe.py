"""Near-duplicate detection: how well dhash finds copies, what hashing costs at ingest, how fast the query is.

    python bench/dedupe.py [--n 1000] [--hashes 100000] [--reps 3]    # ~2 min on 2 cores

(a) Quality. --n generated images, varied enough that unrelated ones are genuinely unrelated (a weak
    gradient, mid-frequency blotches, 4-30 random ellipses, boxes, polygons and lines of random sizes and
    colours, sensor noise, sometimes a blur; 512-1024 px wide, four aspect ratios), each with 6 copies:
    JPEG quality 40, resized to 50% and to 75%, brightness x1.15 and x0.85, and a 2% crop (2% of the width
    and height cut from the left and top, which shifts all content: harder than a centred crop). Originals
    and the other copies are JPEG q90. Every file goes through ingest's own ``decode_image`` and is hashed
    as ingest will: ``dhash`` of its thumbnail decoded back. Per threshold 2..10: the recall of each
    transform (original vs copy), the recall of all 21 pairs within a family, the false pairs (different
    families) and the precision, and what ``near_duplicate_groups`` makes of it (families kept whole,
    groups that mix families, the largest group). Two more rows at the default threshold: the thumbnail
    hashed in memory before its JPEG encoding, and decoded greyscale at 1/8 scale first (``draft("L",
    (32, 32))``, as ``services/review.py ensure_hashes`` reads a stored thumbnail), with how many bits
    each differs from the decoded-back hash of the same file.
(b) Cost at ingest. For 640x480 and 4000x3000 JPEGs: ``decode_image(data, Limits())`` against hashing its
    thumbnail three ways: ``dhash`` of the thumbnail image in memory, opening + decoding the thumbnail JPEG
    + ``dhash`` (decoded back), and the same with a greyscale DCT-scaled decode (``draft("L", (32, 32))``,
    drafted). Target: < 5% of decode_image.
(c) Query speed. --hashes uint64 hashes: random ones, 2,000 planted groups of 2-5 copies each within 1..d
    bits of their original (d the default distance), and 5,000 frames of a static camera: one hash in which
    12 "marginal" bits (neighbouring cells nearly equal, so sensor noise decides them) each flip with
    probability 0.15 per frame. ``near_duplicate_groups`` best of --reps (target < 1 s), checked: every
    planted group inside one found group, the static frames one group. Then, for the record,
    ``near_duplicate_pairs`` on the same hashes (it lists every pair: the static frames alone are ~12M),
    and two skewed inputs: 20,000 frames each 1-4 random bits from one hash, and the worst case, 20,000
    random hashes that share one whole block of the index.

Prints figures and asserts nothing; the last line is `RESULT {json}`.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import emit_result, machine, set_data_dir, table, temp_workdir, use_repo_package  # noqa: E402

TRANSFORMS = ("jpeg q40", "resize 50%", "resize 75%", "bright +15%", "bright -15%", "crop 2%")
THRESHOLDS = range(2, 11)
TARGET_PCT = 5.0
TARGET_QUERY_S = 1.0


# --- (a) generated images and their copies ---------------------------------------------------------------
def varied_image(seed: int, size: tuple[int, int] | None = None):
    """A deterministic image unlike the others: its structure comes from random shapes and blotches, not from
    a shared gradient (gradients dominate a difference hash and make unrelated images look alike)."""
    import numpy as np
    from PIL import Image, ImageDraw, ImageFilter

    rng = np.random.default_rng([7, seed])
    if size is None:
        w = int(rng.choice([512, 640, 800, 960, 1024]))
        size = (w, int(w * rng.choice([0.5625, 0.75, 1.0, 1.333])))
    w, h = size
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    c1 = rng.uniform(40, 215, 3)
    c2 = np.clip(c1 + rng.uniform(-60, 60, 3), 0, 255)
    angle = rng.uniform(0, 2 * np.pi)
    proj = xs * np.cos(angle) + ys * np.sin(angle)
    t = ((proj - proj.min()) / max(float(np.ptp(proj)), 1.0))[..., None]
    arr = c1 * (1 - t) + c2 * t
    cells = rng.uniform(0, 255, (int(rng.integers(3, 12)), int(rng.integers(3, 12)), 3)).astype(np.uint8)
    blotches = np.asarray(Image.fromarray(cells).resize((w, h), Image.Resampling.BICUBIC), np.float32)
    arr = arr + (blotches / 255 - 0.5) * 2 * rng.uniform(30, 90)
    im = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(im)
    for _ in range(int(rng.integers(4, 30))):
        s = rng.uniform(0.03, 0.5) * min(w, h)
        x, y = rng.uniform(-0.1 * w, w), rng.uniform(-0.1 * h, h)
        bw, bh = s * rng.uniform(0.4, 2.5), s * rng.uniform(0.4, 2.5)
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        kind = int(rng.integers(0, 4))
        if kind == 0:
            draw.ellipse([x, y, x + bw, y + bh], fill=colour)
        elif kind == 1:
            draw.rectangle([x, y, x + bw, y + bh], fill=colour)
        elif kind == 2:
            corners = [(x + rng.uniform(0, bw), y + rng.uniform(0, bh)) for _ in range(int(rng.integers(3, 7)))]
            draw.polygon(corners, fill=colour)
        else:
            draw.line([x, y, x + rng.uniform(-bw, bw), y + rng.uniform(-bh, bh)], fill=colour,
                      width=int(rng.integers(2, 20)))
    noise = rng.normal(0, rng.uniform(1, 12), (h, w, 1 if rng.random() < 0.5 else 3))
    im = Image.fromarray(np.clip(np.asarray(im, np.float32) + noise, 0, 255).astype(np.uint8))
    if rng.random() < 0.3:
        im = im.filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 3)))
    return im


def jpeg(im, quality: int = 90) -> bytes:
    out = io.BytesIO()
    im.save(out, "JPEG", quality=quality)
    return out.getvalue()


def copies(im) -> list[bytes]:
    """The 6 copies of ``im``, in TRANSFORMS order, as the files a user would upload."""
    from PIL import ImageEnhance

    w, h = im.size
    return [jpeg(im, 40), jpeg(im.resize((w // 2, h // 2))), jpeg(im.resize((w * 3 // 4, h * 3 // 4))),
            jpeg(ImageEnhance.Brightness(im).enhance(1.15)), jpeg(ImageEnhance.Brightness(im).enhance(0.85)),
            jpeg(im.crop((round(w * 0.02), round(h * 0.02), w, h)))]


PATHS = ("decoded back", "in memory", "drafted 32px")  # how a thumbnail is hashed; see thumb_hashes
_IN_MEMORY: list[int] = []


def _spy_on_thumbnails() -> None:
    """Hash every thumbnail ingest makes before it is encoded (runtime wrapper, as bench/ingest.py times
    phases; nothing in annotator/ changes). ``_make_thumb`` shrinks an RGB image in place, so the image it
    was given is the thumbnail once it returns (true of the RGB JPEGs generated here)."""
    from annotator import ingest
    from annotator.phash import dhash

    real = ingest._make_thumb
    if getattr(real, "bench_spy", False):
        return

    def spy(im, size, max_side=None):
        data = real(im, size, max_side)
        _IN_MEMORY.append(dhash(im))
        return data

    spy.bench_spy = True
    ingest._make_thumb = spy


def thumb_hashes(data: bytes) -> tuple[int, int, int]:
    """The dhash of ``data``'s ingest thumbnail three ways (PATHS): decoded back from its JPEG (what the
    task asked for), the image in memory before it is encoded (cheapest at ingest), and decoded the way
    ``services/review.py ensure_hashes`` reads a stored thumbnail today (JPEG draft to >= 32 px, grey)."""
    from PIL import Image

    from annotator.ingest import Limits, decode_image
    from annotator.phash import dhash

    _spy_on_thumbnails()
    _IN_MEMORY.clear()
    thumb = decode_image(data, Limits()).thumb
    with Image.open(io.BytesIO(thumb)) as t:
        back = dhash(t)
    with Image.open(io.BytesIO(thumb)) as t:
        t.draft("L", (32, 32))
        drafted = dhash(t)
    return back, _IN_MEMORY[-1], drafted


def family(seed: int) -> list[tuple[int, int, int]]:
    """The hashes (PATHS) of image ``seed`` and its 6 copies, original first."""
    im = varied_image(seed)
    return [thumb_hashes(d) for d in [jpeg(im)] + copies(im)]


def quality_rows(hashes, default: int) -> list[dict]:
    """Precision / recall per threshold of the (n, 7) family hashes (column 0: the originals)."""
    import numpy as np

    from annotator.phash import near_duplicate_groups, near_duplicate_pairs

    n = len(hashes)
    flat = hashes.ravel()
    fam = np.repeat(np.arange(n), 7)
    i, j, dist = near_duplicate_pairs(flat, max(THRESHOLDS))
    same = fam[i] == fam[j]
    to_copy = np.bitwise_count(hashes[:, :1] ^ hashes[:, 1:])
    rows = []
    for d in THRESHOLDS:
        found = dist <= d
        true, false = int((found & same).sum()), int((found & ~same).sum())
        groups = near_duplicate_groups(range(len(flat)), flat.tolist(), d)
        families = [set(fam[g].tolist()) for g in groups]
        whole = sum(1 for g in groups if len(g) == 7 and len(set(fam[g].tolist())) == 1)
        rows.append({"d": d, "per_transform": (to_copy <= d).mean(axis=0).tolist(),
                     "recall": float((to_copy <= d).mean()), "recall_family": true / (21 * n),
                     "false_pairs": false, "precision": true / max(true + false, 1),
                     "families_whole": whole / n, "mixed_groups": sum(1 for f in families if len(f) > 1),
                     "largest_group": max((len(g) for g in groups), default=0), "default": d == default})
    return rows


def run_quality(n: int, workers: int, default: int) -> dict:
    import numpy as np

    t = time.perf_counter()
    with ProcessPoolExecutor(max_workers=workers) as pool:
        results = np.array(list(pool.map(family, range(n), chunksize=8)), dtype=np.uint64)  # (n, 7, paths)
    seconds = time.perf_counter() - t
    rows = quality_rows(results[:, :, 0], default)
    others = {path: [r for r in quality_rows(results[:, :, k], default) if r["default"]][0]
              for k, path in enumerate(PATHS) if k}
    drift = {path: np.bitwise_count(results[:, :, k] ^ results[:, :, 0]).ravel() for k, path in enumerate(PATHS) if k}
    return {"rows": rows, "others": others, "generate_s": seconds,
            "drift": {p: (float(v.mean()), int(np.percentile(v, 99)), int(v.max())) for p, v in drift.items()}}


def print_quality(q: dict, n: int) -> None:
    def row(r, label=None):
        return ([label or (f"{r['d']} <- default" if r["default"] else r["d"])]
                + [f"{100 * v:.1f}" for v in r["per_transform"]]
                + [f"{100 * r['recall']:.2f}", f"{100 * r['recall_family']:.2f}", r["false_pairs"],
                   f"{100 * r['precision']:.2f}", f"{100 * r['families_whole']:.1f}", r["mixed_groups"],
                   r["largest_group"]])

    heads = (["max distance"] + [f"{t} %" for t in TRANSFORMS]
             + ["recall %", "family pairs %", "false pairs", "precision %", "families whole %", "mixed groups",
                "largest"])
    print(f"(a) near-duplicate detection: {n} generated images x 7 (original + 6 copies), "
          f"{7 * n} hashes, {21 * n} true pairs; generated and hashed in {q['generate_s']:.0f} s")
    print(table(heads, [row(r) for r in q["rows"]] + [row(r, f"{r['d']} {path}") for path, r in q["others"].items()]))
    print("recall: original vs copy; family pairs: all 21 pairs of a family; precision: found pairs within one "
          "family / all found pairs;\nfamilies whole: all 7 in one group; mixed groups: groups holding images "
          "of 2+ families. Rows 2..10 hash the thumbnail decoded back;\n'in memory': the thumbnail before "
          "its JPEG encoding; 'drafted 32px': as services/review.py ensure_hashes reads a stored one")
    print("bits between the decoded-back hash and the other paths, same file (mean / p99 / max): "
          + "; ".join(f"{p} {m:.2f} / {p99} / {mx}" for p, (m, p99, mx) in q["drift"].items()))


# --- (b) hashing cost at ingest --------------------------------------------------------------------------
def big_jpeg(seed: int, size: tuple[int, int]) -> bytes:
    """A camera-sized JPEG: a varied image scaled up, with fresh per-pixel noise so it does not compress
    like a smooth upscale."""
    import numpy as np
    from PIL import Image

    im = varied_image(seed, (size[0] // 4, size[1] // 4)).resize(size, Image.Resampling.BILINEAR)
    rng = np.random.default_rng(seed)
    arr = np.asarray(im, np.int16) + rng.integers(-6, 7, (size[1], size[0], 1), dtype=np.int16)
    return jpeg(Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)), 90)


def run_cost(count: int, big_count: int, reps: int) -> list[list]:
    from PIL import Image

    from annotator.ingest import Limits, decode_image
    from annotator.phash import dhash

    limits = Limits()
    rows = []
    for label, files in ((f"640x480 x{count}", [jpeg(varied_image(10_000 + k, (640, 480))) for k in range(count)]),
                         (f"4000x3000 x{big_count}", [big_jpeg(20_000 + k, (4000, 3000)) for k in range(big_count)])):
        thumbs = [decode_image(d, limits).thumb for d in files]
        decoded = []
        for th in thumbs:
            with Image.open(io.BytesIO(th)) as t:
                t.load()
                decoded.append(t.copy())

        def per_image(fn, items) -> float:
            best = float("inf")
            for _ in range(reps):
                t0 = time.perf_counter()
                for x in items:
                    fn(x)
                best = min(best, time.perf_counter() - t0)
            return best * 1000 / len(items)

        def drafted(th: bytes) -> int:
            with Image.open(io.BytesIO(th)) as t:
                t.draft("L", (32, 32))
                return dhash(t)

        decode_ms = per_image(lambda d: decode_image(d, limits), files)
        row = [label, f"{sum(map(len, files)) / len(files) / 1024:.0f}", decode_ms]
        for ms in (per_image(dhash, decoded), per_image(lambda th: dhash(Image.open(io.BytesIO(th))), thumbs),
                   per_image(drafted, thumbs)):
            row += [ms, f"{100 * ms / decode_ms:.2f}"]
        rows.append(row)
    return rows


# --- (c) the query at 100k hashes ------------------------------------------------------------------------
def query_hashes(total: int, d: int, seed: int = 0):
    """(hashes, planted groups as index lists, static-frame indices); see the module doc."""
    import numpy as np

    rng = np.random.default_rng(seed)
    one = np.uint64(1)

    def flipped(h, k: int):
        mask = np.uint64(sum(1 << int(b) for b in rng.choice(64, k, replace=False)))
        return h ^ mask

    planted, groups = [], []
    for _ in range(2000):
        base = rng.integers(0, 2 ** 64 - 1, dtype=np.uint64, endpoint=True)
        size = int(rng.integers(2, 6))
        groups.append(list(range(len(planted), len(planted) + size)))
        planted += [base] + [flipped(base, int(rng.integers(1, d + 1))) for _ in range(size - 1)]
    marginal = (one << rng.choice(64, 12, replace=False).astype(np.uint64))
    frames = rng.random((5000, 12)) < 0.15
    static = rng.integers(0, 2 ** 64 - 1, dtype=np.uint64, endpoint=True) ^ np.bitwise_or.reduce(
        np.where(frames, marginal, np.uint64(0)), axis=1)
    rest = rng.integers(0, 2 ** 64 - 1, total - len(planted) - len(static), dtype=np.uint64, endpoint=True)
    hashes = np.concatenate([np.array(planted, dtype=np.uint64), static, rest])
    static_idx = list(range(len(planted), len(planted) + len(static)))
    return hashes, groups, static_idx


def skewed(kind: str, seed: int = 1):
    """20,000 hashes: 'frames' 1-4 random bits from one hash each; 'worst' random, all sharing one block."""
    import numpy as np

    from annotator import phash

    rng = np.random.default_rng(seed)
    if kind == "frames":
        base = rng.integers(0, 2 ** 64 - 1, dtype=np.uint64, endpoint=True)
        flips = [sum(1 << int(b) for b in rng.choice(64, int(rng.integers(1, 5)), replace=False))
                 for _ in range(20_000)]
        return base ^ np.array(flips, dtype=np.uint64)
    # The worst case: the first block of the index plan (bits after phash's permutation) equal everywhere.
    blocks, _ = phash._plan(20_000, phash.DEFAULT_MAX_DISTANCE)
    shift, bits = blocks[0]
    permuted = rng.integers(0, 2 ** 64 - 1, 20_000, dtype=np.uint64, endpoint=True)
    mask = np.uint64(((1 << bits) - 1) << shift)
    permuted = (permuted & ~mask) | (np.uint64(0x5A5A5A5A5A5A5A5A) & mask)
    bits_of = np.unpackbits(permuted.astype("<u8").view(np.uint8).reshape(-1, 8), axis=1, bitorder="little")
    unpermuted = np.empty_like(bits_of)
    unpermuted[:, phash._PERMUTATION] = bits_of
    return np.ascontiguousarray(np.packbits(unpermuted, axis=1, bitorder="little")).view("<u8").ravel()


def run_query(total: int, reps: int) -> dict:
    import numpy as np

    from annotator import phash

    d = phash.DEFAULT_MAX_DISTANCE
    hashes, planted, static = query_hashes(total, d)
    ids = list(range(len(hashes)))
    as_ints = hashes.tolist()  # what the store hands over: Python ints
    runs, groups = [], []
    for _ in range(reps):
        t = time.perf_counter()
        groups = phash.near_duplicate_groups(ids, as_ints, d)
        runs.append(time.perf_counter() - t)
    where = {i: k for k, g in enumerate(groups) for i in g}
    planted_ok = sum(1 for g in planted if len({where.get(i, -1 - i) for i in g}) == 1)
    static_ok = len({where.get(i, -1 - i) for i in static}) == 1
    t = time.perf_counter()
    pi, _, _ = phash.near_duplicate_pairs(hashes, d)
    pairs_s = time.perf_counter() - t
    extra = {}
    for kind in ("frames", "worst"):
        h = skewed(kind)
        t = time.perf_counter()
        g = phash.near_duplicate_groups(range(len(h)), h.tolist(), d)
        extra[kind] = (time.perf_counter() - t, len(g), max((len(x) for x in g), default=0),
                       len(np.unique(h)))
    return {"d": d, "n": len(hashes), "distinct": len(np.unique(hashes)), "runs": runs, "groups": len(groups),
            "planted_ok": planted_ok, "planted": len(planted), "static_ok": static_ok,
            "static_distinct": len(np.unique(hashes[static])), "pairs": len(pi), "pairs_s": pairs_s,
            "plan": phash._plan(len(np.unique(hashes)), d), "extra": extra}


def run_app_query(hashes, reps: int, work: Path) -> dict:
    """(d) What the app runs: services.similar.duplicate_groups on a store holding len(hashes) image rows with
    these hashes plus 1,000 featureless ones (black video frames: 0-5 bits set), the cache cleared each time:
    the DuckDB read and near_groups (phash's index for the rich hashes, the information rule for the poor)."""
    import numpy as np

    from annotator.services import Services, similar
    from annotator.settings import Settings

    from common import add_image_rows

    svc = Services.open(Settings.from_env({"ANNOTATOR_DATA_DIR": str(work / "app"), "ANNOTATOR_DEMO": "0"}))
    try:
        p = svc.projects.create_project("Dedupe", ["thing"])
        src = work / "seed"
        src.mkdir()
        from PIL import Image

        Image.new("RGB", (64, 48), (90, 40, 10)).save(src / "seed.jpg")
        svc.images.add_images(p, [src], dataset="seed")
        real = svc.images.list_images(p).images
        rng = np.random.default_rng(5)
        flat = [int(sum(1 << int(b) for b in rng.choice(64, int(rng.integers(0, 6)), replace=False)))
                for _ in range(1000)]
        values = [int(h) for h in hashes.tolist()] + flat
        ids = add_image_rows(svc.ctx.store, p.id, real, len(values) - len(real), "dedupe")
        ids = [r.id for r in real] + ids
        svc.ctx.store.set_image_hashes(list(zip(ids, values)))
        runs, groups = [], []
        for _ in range(reps):
            similar._cache.clear()
            t = time.perf_counter()
            groups = svc.similar.duplicate_groups(p)
            runs.append(time.perf_counter() - t)
        flat_ids = set(ids[-1000:])
        mixed = sum(1 for g in groups if 0 < len(flat_ids.intersection(g)) < len(g))
        return {"n": len(values), "runs": runs, "groups": len(groups), "mixed_with_featureless": mixed}
    finally:
        svc.close()


def run_ingest_cost(count: int, reps: int, work: Path) -> dict:
    """(e) Hashing's share of a whole upload: add_images of ``count`` 640x480 JPEGs (new project each time) with
    ingest.thumb_hash as it is, and with it replaced by a constant; best of ``reps`` each, taking turns."""
    from annotator import ingest
    from annotator.services import Services
    from annotator.settings import Settings

    folder = work / "ingest-src"
    folder.mkdir()
    for k in range(count):
        (folder / f"img_{k:04d}.jpg").write_bytes(jpeg(varied_image(70_000 + k, (640, 480))))
    real_hash = ingest.thumb_hash
    times = {"with hash": [], "without": []}
    for rep in range(reps):
        for label in ("with hash", "without"):
            ingest.thumb_hash = real_hash if label == "with hash" else (lambda thumb: 0)
            svc = Services.open(Settings.from_env({"ANNOTATOR_DATA_DIR": str(work / f"ing-{rep}-{label.replace(' ', '-')}"),
                                                   "ANNOTATOR_DEMO": "0"}))
            try:
                p = svc.projects.create_project("Ingest", ["thing"])
                t = time.perf_counter()
                svc.images.add_images(p, [folder], dataset="d")
                times[label].append(time.perf_counter() - t)
            finally:
                svc.close()
    ingest.thumb_hash = real_hash
    w, wo = min(times["with hash"]), min(times["without"])
    return {"count": count, "with_s": w, "without_s": wo, "pct": 100.0 * (w - wo) / w}


# --- main ----------------------------------------------------------------------------------------------------
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1000, help="generated images for (a), each with 6 copies")
    ap.add_argument("--hashes", type=int, default=100_000, help="hashes for the query (c)")
    ap.add_argument("--reps", type=int, default=3, help="repetitions of each timing; the best is reported")
    ap.add_argument("--cost-n", type=int, default=40, help="640x480 JPEGs timed in (b)")
    ap.add_argument("--cost-big", type=int, default=6, help="4000x3000 JPEGs timed in (b)")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes generating (a)")
    ap.add_argument("--ingest-n", type=int, default=600, help="640x480 JPEGs uploaded in (e)")
    ap.add_argument("--skip-quality", action="store_true", help="skip (a), the slow part")
    ap.add_argument("--tmp", default=None, help="parent folder of the temp work folder (default: system temp)")
    ap.add_argument("--keep", action="store_true", help="keep the temp folder")
    args = ap.parse_args(argv)

    with temp_workdir("annotator-bench-dedupe-", keep=args.keep, parent=args.tmp) as work:
        set_data_dir(work / "data")  # before importing annotator; nothing is stored there
        use_repo_package()
        from annotator import phash

        load_before = os.getloadavg()[0]
        default = phash.DEFAULT_MAX_DISTANCE
        quality = None
        if not args.skip_quality:
            print(f"generating {args.n} images x 7 and hashing their thumbnails ({args.workers} processes) ...",
                  flush=True)
            quality = run_quality(args.n, args.workers, default)
        print("timing decode_image against dhash ...", flush=True)
        cost = run_cost(args.cost_n, args.cost_big, args.reps)
        print(f"timing the query at {args.hashes:,} hashes ...", flush=True)
        query = run_query(args.hashes, args.reps)
        print("timing the app's query (a store of 100k+ rows) ...", flush=True)
        app_q = run_app_query(query_hashes(args.hashes, default)[0], args.reps, work)
        print(f"timing whole uploads of {args.ingest_n} images with and without the hash ...", flush=True)
        ing = run_ingest_cost(args.ingest_n, args.reps, work)
        load_after = os.getloadavg()[0]

    print()
    print(f"machine cpus={os.cpu_count()}; load average {load_before:.1f} before, {load_after:.1f} after")
    if quality:
        print()
        print_quality(quality, args.n)
    print()
    print(f"(b) hashing cost per image at ingest, best of {args.reps} (target: < {TARGET_PCT:.0f}% of decode_image)")
    print(table(["images", "KB", "decode_image ms", "in memory: dhash ms", "%", "decoded back ms", "%",
                 "drafted 32px ms", "%"], cost))
    print("in memory: dhash of the thumbnail image before it is encoded; decoded back: open the thumbnail "
          "JPEG, decode it, dhash;\ndrafted 32px: the same with a greyscale DCT-scaled decode (as ensure_hashes "
          "reads a stored thumbnail); %: of decode_image")
    print()
    q = query
    best = min(q["runs"])
    print(f"(c) near_duplicate_groups at {q['n']:,} hashes ({q['distinct']:,} distinct), max distance {q['d']}, "
          f"best of {args.reps} (target: < {TARGET_QUERY_S:.0f} s)")
    blocks, radius = q["plan"] if q["plan"] else ([], None)
    print(table(["what", "value"], [
        ["best s", best], ["all runs s", " ".join(f"{r:.3f}" for r in q["runs"])],
        ["index", f"{len(blocks)} blocks of {'/'.join(str(b) for _, b in blocks)} bits, radius {radius}"
         if blocks else "brute force"],
        ["groups found", q["groups"]],
        ["planted groups inside one group", f"{q['planted_ok']} of {q['planted']}"],
        ["static frames one group", f"{'yes' if q['static_ok'] else 'NO'} ({q['static_distinct']} distinct hashes)"],
        ["near_duplicate_pairs s (info)", q["pairs_s"]], ["pairs listed (info)", q["pairs"]],
        ["20k frames, 1-4 random bits each: s", f"{q['extra']['frames'][0]:.3f} ({q['extra']['frames'][3]:,} distinct, "
         f"largest group {q['extra']['frames'][2]:,})"],
        ["worst case: 20k random hashes sharing one block: s",
         f"{q['extra']['worst'][0]:.3f} ({q['extra']['worst'][1]} groups)"],
    ]))

    print()
    print(f"(d) the app's query: services.similar.duplicate_groups on {app_q['n']:,} image rows (the hashes of (c) "
          f"and 1,000 featureless ones), best of {args.reps} (target: < {TARGET_QUERY_S:.0f} s)")
    print(table(["what", "value"], [
        ["best s", min(app_q["runs"])], ["all runs s", " ".join(f"{r:.3f}" for r in app_q["runs"])],
        ["groups", app_q["groups"]], ["groups mixing featureless and real pictures", app_q["mixed_with_featureless"]]]))
    print()
    print(f"(e) hashing's share of whole uploads: add_images of {ing['count']} 640x480 JPEGs, best of {args.reps} "
          f"(target: < {TARGET_PCT:.0f}%)")
    print(table(["with the hash s", "without s", "hashing %"], [[ing["with_s"], ing["without_s"], ing["pct"]]]))

    result = {"bench": "dedupe", "default_max_distance": default, "query_s": round(best, 4),
              "app_query_s": round(min(app_q["runs"]), 4), "ingest_hash_pct": round(ing["pct"], 2),
              "query_runs_s": [round(r, 4) for r in q["runs"]], "query_hashes": q["n"],
              "planted_found": q["planted_ok"], "static_one_group": q["static_ok"],
              "pairs_s": round(q["pairs_s"], 3), "frames_20k_s": round(q["extra"]["frames"][0], 3),
              "worst_20k_s": round(q["extra"]["worst"][0], 3),
              "hash_pct_of_decode": {r[0]: {"in_memory": float(r[4]), "decoded_back": float(r[6]),
                                            "drafted": float(r[8])} for r in cost},
              "loadavg_1m": [round(load_before, 2), round(load_after, 2)], "machine": machine()}
    if quality:
        at = [r for r in quality["rows"] if r["default"]][0]
        result.update({"n_images": args.n, "recall": round(at["recall"], 4),
                       "precision": round(at["precision"], 4), "false_pairs": at["false_pairs"],
                       "per_threshold": {r["d"]: [round(r["recall"], 4), round(r["precision"], 4)]
                                         for r in quality["rows"]},
                       "other_paths": {p: [round(r["recall"], 4), round(r["precision"], 4)]
                                       for p, r in quality["others"].items()}})
    emit_result(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
