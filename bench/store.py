"""Metadata store at scale: gallery/listing queries at 100k image rows and 1M boxes, and the boxes_image index.

    python bench/store.py [--images 100000] [--boxes 1000000] [--reps 50]

Builds a DuckDB store (Store.open on a temp file) through the store's own bulk methods (Store.add_images,
Store.insert_boxes, in chunks), spread over a few projects and datasets, with one "main" project holding
most rows. Then times each read the app makes, p50/p95 over --reps calls: the gallery page
(Store.list_images and Services.list_images at the first, middle and last page), count_images with and without
filters, image_status_counts, boxes_for_image on random images, class_box_counts, list_projects, ...
Finally it measures boxes_for_image and a bulk insert with the ART index boxes_image, closes the store, drops
the index with duckdb's own connection (bench only: the Store has no index API), reopens the store and measures
both again; the lookup on a randomly ordered copy of boxes runs on that raw connection, the store closed.

The issue's target: a gallery/listing query at 100k image rows under 50 ms. Asserts nothing; the last line is
`RESULT {json}`.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import emit_result, machine, set_data_dir, table, temp_workdir, time_calls, use_repo_package  # noqa: E402

TARGET_MS = 50.0
PAGE = 60
CLASSES = ["person", "car", "bicycle", "dog", "cat", "truck", "bus", "bird", "traffic light", "stop sign"]


def plan_uploads(images: int, projects: int, datasets: int, main_share: float, chunk: int) -> list[tuple[int, int, int]]:
    """(project_no, dataset_no, count) uploads, round-robin across projects as a shared server would see them."""
    if projects == 1:
        per_project = [images]
    else:
        main = int(images * main_share)
        rest = images - main
        per_project = [main] + [rest // (projects - 1) + (1 if k < rest % (projects - 1) else 0)
                                for k in range(projects - 1)]
    queues = []
    for p, n in enumerate(per_project):
        q = []
        per_ds = [n // datasets + (1 if k < n % datasets else 0) for k in range(datasets)]
        for d, m in enumerate(per_ds):
            while m > 0:
                q.append((p, d, min(chunk or m, m)))
                m -= q[-1][2]
        queues.append(q)
    order = []
    while any(queues):
        for q in queues:
            if q:
                order.append(q.pop(0))
    return order


def image_rows(project_no: int, dataset_no: int, start: int, count: int, rng: random.Random) -> list[dict]:
    rows = []
    for k in range(start, start + count):
        sha = hashlib.sha256(f"{project_no}/{dataset_no}/{k}".encode()).hexdigest()
        rows.append({
            "rel_path": f"batch{k // 1000:03d}/IMG_{k:06d}.jpg", "sha256": sha,
            "file": f"images/{sha[:2]}/{sha}.jpg", "thumb": f"thumbs/{sha[:2]}/{sha}.jpg",
            "width": 640, "height": 480, "format": "JPEG", "size_bytes": rng.randint(50_000, 120_000),
        })
    return rows


def box_counts(n_images: int, n_boxes: int, seed: int) -> list[int]:
    """Boxes per image, Poisson-like around the mean, summing to exactly n_boxes."""
    import numpy as np

    rng = np.random.default_rng(seed)
    counts = rng.poisson(n_boxes / max(1, n_images), n_images).astype(np.int64)
    diff = n_boxes - int(counts.sum())
    while diff != 0:
        idx = rng.integers(0, n_images, abs(diff))
        if diff > 0:
            np.add.at(counts, idx, 1)
        else:
            take = idx[counts[idx] > 0]
            np.subtract.at(counts, take, 1)
            counts = np.maximum(counts, 0)
        diff = n_boxes - int(counts.sum())
    return counts.tolist()


def make_boxes(image_ids: list[int], rng: random.Random, Box) -> list[tuple[int, object]]:
    """(image_id, Box) pairs with random model boxes; coordinates drawn with numpy, Boxes built one by one."""
    import numpy as np

    n = len(image_ids)
    g = np.random.default_rng(rng.getrandbits(64))
    x1 = g.uniform(0, 600, n)
    y1 = g.uniform(0, 440, n)
    x2 = np.minimum(640.0, x1 + g.uniform(4, 200, n))
    y2 = np.minimum(480.0, y1 + g.uniform(4, 200, n))
    cls = g.integers(0, len(CLASSES), n)
    conf = np.round(g.uniform(0.25, 1.0, n), 4)
    return [
        (iid, Box(a, b, c, d, k, p, "model"))
        for iid, a, b, c, d, k, p in zip(image_ids, x1.tolist(), y1.tolist(), x2.tolist(), y2.tolist(),
                                         cls.tolist(), conf.tolist())
    ]


def insert_box_stream(store, image_ids: list[int], counts: list[int], chunk: int, shuffle: bool, seed: int, Box,
                      budget_s: float) -> dict:
    """Insert boxes through Store.insert_boxes in chunks; times Box construction and the insert separately."""
    rng = random.Random(seed)
    flat = [iid for iid, c in zip(image_ids, counts) for _ in range(c)]
    if shuffle:
        rng.shuffle(flat)
    build_s = insert_s = 0.0
    per_chunk = []
    done = 0
    t_all = time.perf_counter()
    for start in range(0, len(flat), chunk):
        t = time.perf_counter()
        rows = make_boxes(flat[start:start + chunk], rng, Box)
        build_s += time.perf_counter() - t
        t = time.perf_counter()
        store.insert_boxes(rows)
        dt = time.perf_counter() - t
        insert_s += dt
        per_chunk.append(dt)
        done += len(rows)
        if start == 0 and len(flat) > chunk:
            projected = (time.perf_counter() - t_all) * len(flat) / len(rows)
            print(f"  first chunk of {len(rows):,}: insert {dt:.2f} s; projected total {projected:.0f} s", flush=True)
        if time.perf_counter() - t_all > budget_s and done < len(flat):
            print(f"  STOPPED after {done:,} boxes: over the --box-budget of {budget_s:.0f} s", flush=True)
            break
    return {"boxes": done, "build_s": build_s, "insert_s": insert_s, "chunks_s": per_chunk,
            "total_s": time.perf_counter() - t_all}


LOOKUP_SQL = "SELECT id FROM {table} WHERE image_id = ? ORDER BY id"


def store_scan_type(store, image_id: int) -> str:
    """How the store's DuckDB reads boxes for one image, from EXPLAIN ANALYZE (Store.explain)."""
    return scan_type(store.explain(LOOKUP_SQL.format(table="boxes"), [image_id], analyze=True))


def raw_scan_type(con, image_id: int, table: str) -> str:
    """The same on a raw duckdb connection."""
    plan = con.execute("EXPLAIN ANALYZE " + LOOKUP_SQL.format(table=table), [image_id]).fetchall()
    return scan_type("\n".join(str(c) for row in plan for c in row))


def raw_ddl(duckdb, path: Path, sql: str) -> float:
    """Seconds one DDL statement takes on the database file, on duckdb's own connection (the store closed)."""
    con = duckdb.connect(str(path))
    try:
        t = time.perf_counter()
        con.execute(sql)
        return time.perf_counter() - t
    finally:
        con.close()


def scan_type(text: str) -> str:
    """Scan type and row groups read, from EXPLAIN ANALYZE text (plain EXPLAIN always says Sequential Scan)."""
    kind = "?"
    groups = ""
    for line in text.splitlines():
        line = line.strip("│ ").strip()
        if line.startswith("Type:") and "Scan" in line and kind == "?":
            kind = line.split(":", 1)[1].strip().lower()
        if line.startswith("Row Groups Scanned:") and not groups:
            groups = ", row groups " + line.split(":", 1)[1].strip()
    return kind + groups


BOX_SQL = ("SELECT id, class_idx, x1, y1, x2, y2, confidence, source, model_id, job_id, created_by, created_at "
           "FROM {table} WHERE image_id = ? ORDER BY id")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=100_000, help="image rows in all (default 100000)")
    ap.add_argument("--boxes", type=int, default=1_000_000, help="box rows in all (default 1000000)")
    ap.add_argument("--projects", type=int, default=3)
    ap.add_argument("--datasets", type=int, default=4, help="datasets per project")
    ap.add_argument("--main-share", type=float, default=0.8, help="share of the images in the main project")
    ap.add_argument("--image-chunk", type=int, default=10_000,
                    help="images per Store.add_images call (one upload; later ones append to the dataset); "
                         "0 = one call per dataset")
    ap.add_argument("--box-chunk", type=int, default=100_000, help="boxes per Store.insert_boxes call")
    ap.add_argument("--shuffle-boxes", action="store_true",
                    help="insert boxes in random image order (default: image order, as inference jobs write them)")
    ap.add_argument("--box-budget", type=float, default=300.0, help="stop inserting boxes after this many seconds")
    ap.add_argument("--extra-boxes", type=int, default=50_000,
                    help="boxes inserted once with and once without the index, to time index maintenance")
    ap.add_argument("--no-scattered", dest="scattered", action="store_false",
                    help="skip the index test on a randomly ordered copy of boxes")
    ap.add_argument("--reps", type=int, default=50, help="timed calls per query (after 2 warm-up calls)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tmp", default=None, help="parent folder of the temp work folder (default: system temp)")
    ap.add_argument("--keep", action="store_true", help="keep the temp folder (database included)")
    args = ap.parse_args(argv)

    with temp_workdir("annotator-bench-store-", keep=args.keep, parent=args.tmp) as work:
        data_dir = set_data_dir(work / "data")  # before importing annotator
        use_repo_package()
        import duckdb

        from annotator.services import AppContext, Services
        from annotator.settings import Settings
        from annotator.store import Store
        from annotator.types import Box

        print(f"DuckDB {duckdb.__version__}; building {args.images:,} images / {args.boxes:,} boxes in "
              f"{args.projects} projects x {args.datasets} datasets ...", flush=True)
        settings = Settings.from_env()
        store = Store.open(settings.db_path)
        svc = Services(AppContext(settings, store))
        rng = random.Random(args.seed)
        try:
            # --- build ---------------------------------------------------------------------------------
            pids = [store.create_project(f"project-{p}", CLASSES, f"bench project {p}") for p in range(args.projects)]
            main_pid = pids[0]
            uploads = plan_uploads(args.images, args.projects, args.datasets, args.main_share, args.image_chunk)
            next_k: dict[tuple[int, int], int] = {}
            image_ids: list[int] = []
            t = time.perf_counter()
            for p, d, count in uploads:
                start = next_k.get((p, d), 0)
                rows = image_rows(p, d, start, count, rng)
                next_k[(p, d)] = start + count
                upload = {"source": f"bench-{p}-{d}.zip", "added": count, "duplicates": 0, "skipped": 0}
                image_ids += store.add_images(pids[p], f"dataset-{d}", rows, upload, "bench")
            images_s = time.perf_counter() - t
            print(f"  images: {len(image_ids):,} in {images_s:.1f} s ({len(image_ids) / images_s:,.0f} rows/s, "
                  f"{len(uploads)} Store.add_images calls)", flush=True)

            # Review states: the store has no bulk review method, so set them here (bench-only SQL).
            t = time.perf_counter()
            with store.transaction() as cur:
                cur.execute("UPDATE images SET status = 'approved', reviewed_by = 'bench', reviewed_at = now() "
                            "WHERE id % 10 < 3")
                cur.execute("UPDATE images SET status = 'rejected', reviewed_by = 'bench', reviewed_at = now() "
                            "WHERE id % 20 = 9")
            status_s = time.perf_counter() - t

            counts = box_counts(len(image_ids), args.boxes, args.seed)
            print(f"  boxes: inserting {args.boxes:,} through Store.insert_boxes in chunks of {args.box_chunk:,} "
                  f"({'shuffled' if args.shuffle_boxes else 'image'} order) ...", flush=True)
            ins = insert_box_stream(store, image_ids, counts, args.box_chunk, args.shuffle_boxes, args.seed, Box,
                                    args.box_budget)
            print(f"  boxes: {ins['boxes']:,} in {ins['total_s']:.1f} s (Box objects {ins['build_s']:.1f} s, "
                  f"insert_boxes {ins['insert_s']:.1f} s = {ins['boxes'] / max(ins['insert_s'], 1e-9):,.0f} rows/s)",
                  flush=True)
            store.checkpoint()
            db_mb = settings.db_path.stat().st_size / 1e6

            # --- queries -------------------------------------------------------------------------------
            main_total = store.count_images(main_pid)
            last_off = (main_total - 1) // PAGE * PAGE
            mid_off = (main_total // 2) // PAGE * PAGE
            datasets = store.list_datasets(main_pid)
            ds = datasets[len(datasets) // 2]
            ds_total = store.count_images(main_pid, ds.id)
            ds_last = (ds_total - 1) // PAGE * PAGE
            approved = store.count_images(main_pid, status="approved")
            appr_last = (approved - 1) // PAGE * PAGE
            pages = -(-main_total // PAGE)
            qrng = random.Random(args.seed + 1)
            probe_ids = [qrng.choice(image_ids) for _ in range(args.reps + 10)]
            main_project = store.get_project(main_pid)
            R = args.reps

            def check(fn, expect=None):
                out = fn()
                if expect is not None and len(out) != expect:
                    print(f"  WARNING: expected {expect} rows, got {len(out)}")
                return fn

            queries: list[tuple[str, object, int]] = [
                ("Store.list_images page 1", check(lambda: store.list_images(main_pid, offset=0, limit=PAGE), PAGE), R),
                ("Store.list_images middle page",
                 check(lambda: store.list_images(main_pid, offset=mid_off, limit=PAGE), PAGE), R),
                ("Store.list_images last page", lambda: store.list_images(main_pid, offset=last_off, limit=PAGE), R),
                ("Store.list_images dataset, last page",
                 lambda: store.list_images(main_pid, ds.id, offset=ds_last, limit=PAGE), R),
                ("Store.list_images approved, last page",
                 lambda: store.list_images(main_pid, status="approved", offset=appr_last, limit=PAGE), R),
                ("Services.list_images page 1 (count+page)", lambda: svc.images.list_images(main_project, page=0), R),
                ("Services.list_images middle page", lambda: svc.images.list_images(main_project, page=pages // 2), R),
                ("Services.list_images last page", lambda: svc.images.list_images(main_project, page=pages - 1), R),
                ("Services.list_images by name, dataset+status",
                 lambda: svc.images.list_images(main_project.name, dataset=ds.name, status="approved", page=1), R),
                ("count_images", lambda: store.count_images(main_pid), R),
                ("count_images dataset", lambda: store.count_images(main_pid, ds.id), R),
                ("count_images status", lambda: store.count_images(main_pid, status="approved"), R),
                ("count_images dataset+status", lambda: store.count_images(main_pid, ds.id, "approved"), R),
                ("image_status_counts", lambda: store.image_status_counts(main_pid), R),
                ("list_datasets", lambda: store.list_datasets(main_pid), R),
                ("class_box_counts", lambda: store.class_box_counts(main_pid), R),
                ("list_projects", lambda: store.list_projects(), R),
                ("Services.project_details", lambda: svc.projects.project_details(main_project), R),
                ("image_shas (ingest dedup)", lambda: store.image_shas(main_pid), max(5, R // 5)),
            ]
            results: dict[str, dict] = {}
            print(f"  timing {len(queries)} queries x {R} calls ...", flush=True)
            for name, fn, reps in queries:
                results[name] = time_calls(lambda i, fn=fn: fn(), reps)
            results["boxes_for_image (random image)"] = time_calls(
                lambda i: store.boxes_for_image(probe_ids[i % len(probe_ids)]), R)
            plan_with = store_scan_type(store, probe_ids[0])
            mean_boxes = sum(len(store.boxes_for_image(i)) for i in probe_ids[:20]) / 20

            # --- the boxes_image index -----------------------------------------------------------------
            extra_ids = [qrng.choice(image_ids) for _ in range(args.extra_boxes)]
            t = time.perf_counter()
            store.insert_boxes(make_boxes(extra_ids, rng, Box))
            extra_with = time.perf_counter() - t
            # The Store has no index API: drop and re-create the index with duckdb's own connection while the
            # store is closed, and reopen the store (from the same file) to measure it without the index.
            store.close()
            drop_s = raw_ddl(duckdb, settings.db_path, "DROP INDEX IF EXISTS boxes_image")
            store = Store.open(settings.db_path)
            no_idx = time_calls(lambda i: store.boxes_for_image(probe_ids[i % len(probe_ids)]), R)
            plan_without = store_scan_type(store, probe_ids[0])
            t = time.perf_counter()
            store.insert_boxes(make_boxes(extra_ids, rng, Box))
            extra_without = time.perf_counter() - t
            store.close()
            create_s = raw_ddl(duckdb, settings.db_path, "CREATE INDEX boxes_image ON boxes (image_id)")
            store = Store.open(settings.db_path)
            with_again = time_calls(lambda i: store.boxes_for_image(probe_ids[i % len(probe_ids)]), R)
        finally:
            store.close()

        # --- the raw library on its own connection, the store closed ---------------------------------------
        con = duckdb.connect(str(settings.db_path))
        try:
            total_boxes = con.execute("SELECT count(*) FROM boxes").fetchone()[0]
            # Same lookup on a copy of boxes in random row order (bench-only table): what zone maps cannot
            # prune, e.g. boxes re-saved by people long after their images' inference job.
            shuffled = {}
            if args.scattered:
                t = time.perf_counter()
                con.execute("CREATE TABLE bench_boxes_scattered AS SELECT * FROM boxes ORDER BY hash(id)")
                copy_s = time.perf_counter() - t

                def lookup(i):
                    cur = con.cursor()
                    try:
                        cur.execute(BOX_SQL.format(table="bench_boxes_scattered"), [probe_ids[i % len(probe_ids)]])
                        return cur.fetchall()
                    finally:
                        cur.close()

                shuffled["without"] = time_calls(lookup, R)
                shuffled["without_plan"] = raw_scan_type(con, probe_ids[0], "bench_boxes_scattered")
                t = time.perf_counter()
                con.execute("CREATE INDEX bench_scattered_image ON bench_boxes_scattered (image_id)")
                shuffled["create_index_s"] = time.perf_counter() - t
                shuffled["with"] = time_calls(lookup, R)
                shuffled["with_plan"] = raw_scan_type(con, probe_ids[0], "bench_boxes_scattered")
                shuffled["copy_s"] = copy_s
                con.execute("DROP TABLE bench_boxes_scattered")
        finally:
            con.close()
        _ = data_dir

    # --- report -----------------------------------------------------------------------------------------
    n_img, n_box = len(image_ids), ins["boxes"]
    print()
    print(f"DuckDB {duckdb.__version__}; {n_img:,} images ({main_total:,} in the main project, {len(datasets)} datasets; "
          f"{approved:,} approved), {n_box:,} boxes; db file {db_mb:.0f} MB; machine cpus={os.cpu_count()}, "
          f"load average {os.getloadavg()[0]:.1f}")
    print(table(
        ["build step", "rows", "s", "rows/s"],
        [
            ["Store.add_images", n_img, images_s, n_img / images_s],
            ["review states (bench SQL UPDATE)", n_img, status_s, n_img / status_s],
            ["Box objects (types.Box; bench data)", n_box, ins["build_s"], n_box / max(ins["build_s"], 1e-9)],
            ["Store.insert_boxes (with boxes_image)", n_box, ins["insert_s"], n_box / max(ins["insert_s"], 1e-9)],
            ["  first chunk", min(args.box_chunk, n_box), ins["chunks_s"][0],
             min(args.box_chunk, n_box) / ins["chunks_s"][0]],
            ["  last chunk", n_box - (len(ins["chunks_s"]) - 1) * args.box_chunk, ins["chunks_s"][-1],
             (n_box - (len(ins["chunks_s"]) - 1) * args.box_chunk) / ins["chunks_s"][-1]],
        ],
    ))
    print()
    print(f"queries, ms over {R} calls (page size {PAGE}; middle page offset {mid_off:,}, last {last_off:,}); "
          f"target for gallery/listing: < {TARGET_MS:.0f} ms")
    rows = []
    for name, r in results.items():
        gallery = name.startswith(("Store.list_images", "Services.list_images"))
        rows.append([name, r["p50_ms"], r["p95_ms"], r["max_ms"],
                     ("ok" if r["p95_ms"] < TARGET_MS else "OVER") if gallery else ""])
    print(table(["query", "p50", "p95", "max", "p95 vs 50 ms"], rows))
    print()
    print(f"boxes_image index (ART on boxes(image_id)); {total_boxes:,} boxes at the end, "
          f"~{mean_boxes:.1f} boxes per probed image, boxes inserted in "
          f"{'shuffled' if args.shuffle_boxes else 'image'} order")
    b = results["boxes_for_image (random image)"]
    print(table(
        ["", "plan", "boxes_for_image p50", "p95", f"insert {args.extra_boxes:,} boxes s"],
        [
            ["with index", plan_with, b["p50_ms"], b["p95_ms"], extra_with],
            ["without index", plan_without, no_idx["p50_ms"], no_idx["p95_ms"], extra_without],
            ["index re-created", "", with_again["p50_ms"], with_again["p95_ms"], ""],
        ],
    ))
    print(f"DROP INDEX {drop_s * 1000:.0f} ms; CREATE INDEX boxes_image on {total_boxes:,} rows {create_s:.2f} s")
    if shuffled:
        print()
        print("the same boxes_for_image SQL on a copy of boxes in random row order (bench table; fetchall only)")
        print(table(
            ["", "plan", "p50", "p95"],
            [
                ["without index", shuffled["without_plan"], shuffled["without"]["p50_ms"], shuffled["without"]["p95_ms"]],
                ["with index", shuffled["with_plan"], shuffled["with"]["p50_ms"], shuffled["with"]["p95_ms"]],
            ],
        ))

    emit_result({
        "bench": "store",
        "duckdb": duckdb.__version__,
        "images": n_img,
        "boxes": n_box,
        "boxes_requested": args.boxes,
        "main_project_images": main_total,
        "db_mb": round(db_mb, 1),
        "build_s": {"add_images": round(images_s, 3), "box_objects": round(ins["build_s"], 3),
                    "insert_boxes": round(ins["insert_s"], 3), "insert_boxes_total": round(ins["total_s"], 3)},
        "queries_ms": results,
        "target_ms": TARGET_MS,
        "gallery_p95_max_ms": max(r["p95_ms"] for k, r in results.items()
                                  if k.startswith(("Store.list_images", "Services.list_images"))),
        "index": {
            "with": {"plan": plan_with, **b, "insert_extra_s": round(extra_with, 4)},
            "without": {"plan": plan_without, **no_idx, "insert_extra_s": round(extra_without, 4)},
            "recreated": with_again,
            "extra_boxes": args.extra_boxes,
            "drop_s": round(drop_s, 4),
            "create_s": round(create_s, 4),
            "box_order": "shuffled" if args.shuffle_boxes else "image",
            "scattered_copy": shuffled,
        },
        "machine": machine(),
    })
    return 0


if __name__ == "__main__":
    sys.exit(main())
