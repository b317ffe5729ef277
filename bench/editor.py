"""The review editor at scale: load_image / save_image and the review queue on 100k images and 1M boxes.

    python bench/editor.py [--images 100000] [--boxes 1000000] [--reps 200]

Builds one project through the store's bulk methods (not timed): --real (20) generated demo scenes uploaded
with Services.add_images, the other image ROWS pointing at those stored files (as bench/export.py does), and
--boxes boxes spread over them (80% machine boxes with a confidence, 20% a person's). Then it launches the
app (annotator.launch.start, no worker) on that data folder and times, p50/p95 over --reps random images:

- service layer: Services.load_image, Services.save_image (the loaded boxes with one moved: a real edit, so
  a delete + insert + version bump per save);
- over HTTP: the same two through gradio_client on localhost (api_name /load_image, /save_image), next to
  the HTTP floor: gradio_client calling a trivial endpoint (/list_projects) of the same app; then the same
  as plain POSTs to /gradio_api/run/<api_name> (what a script without gradio_client does);
- the review queue: Services.review_queue_ids(status unreviewed) in upload order and "most uncertain
  first" (the whole ordered id list of 100k images).

The issue's targets: p95 under 150 ms over HTTP and under 20 ms in the service layer; the uncertain-first
queue under 100 ms. Asserts nothing; the last line is `RESULT {json}`.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (add_image_rows, app_settings, emit_result, machine, set_data_dir, table,  # noqa: E402
                    temp_workdir, time_calls, use_repo_package)

HTTP_MS, SERVICE_MS, QUEUE_MS = 150.0, 20.0, 100.0
CLASSES = ["person", "car", "bicycle", "dog", "cat", "truck", "bus", "bird", "traffic light", "stop sign"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=100_000)
    ap.add_argument("--boxes", type=int, default=1_000_000)
    ap.add_argument("--real", type=int, default=20, help="real generated JPEGs the image rows point at")
    ap.add_argument("--reps", type=int, default=200, help="timed calls per measurement (default 200)")
    ap.add_argument("--queue-reps", type=int, default=30)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tmp", default=None, help="parent folder of the temp work folder")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args(argv)

    with temp_workdir("annotator-bench-editor-", keep=args.keep, parent=args.tmp) as work:
        set_data_dir(work / "data")
        use_repo_package()
        from annotator.demo.scenes import scene_jpeg
        from annotator.launch import start
        from annotator.types import Box

        settings = app_settings(work / "data")
        app = start(settings, block=False, quiet=True)
        svc, store = app.services, app.services.ctx.store
        rng = random.Random(args.seed)
        try:
            # --- build (not timed) -------------------------------------------------------------------
            t = time.perf_counter()
            project = svc.projects.create_project("editor-bench", CLASSES)
            scenes = work / "scenes"
            scenes.mkdir()
            for k in range(args.real):
                (scenes / f"scene_{k:03d}.jpg").write_bytes(scene_jpeg(7_000_000 + k)[0])
            svc.images.add_images(project, [scenes], dataset="scenes", user="bench")
            real = store.list_images(project.id, offset=0, limit=args.real + 10)
            ids = [r.id for r in real] + add_image_rows(store, project.id, real, args.images - len(real), "editor-bench")
            for start_at in range(0, args.boxes, 100_000):
                pairs = []
                for _ in range(min(100_000, args.boxes - start_at)):
                    iid = ids[rng.randrange(len(ids))]
                    x1, y1 = rng.uniform(0, 500), rng.uniform(0, 380)
                    x2, y2 = x1 + rng.uniform(5, 140), y1 + rng.uniform(5, 100)
                    if rng.random() < 0.8:
                        pairs.append((iid, Box(x1, y1, x2, y2, rng.randrange(len(CLASSES)),
                                               confidence=rng.uniform(0.05, 1.0), source="model", job_id=1)))
                    else:
                        pairs.append((iid, Box(x1, y1, x2, y2, rng.randrange(len(CLASSES)), source="human",
                                               created_by="bench")))
                store.insert_boxes(pairs)
            build_s = time.perf_counter() - t
            print(f"built {len(ids):,} images and {args.boxes:,} boxes in {build_s:.0f} s; app at {app.url}",
                  flush=True)

            picks = rng.sample(ids, min(len(ids), args.reps + 10))  # distinct: each is edited once per phase

            def edit(loaded: dict) -> list[dict]:
                boxes = [dict(b) for b in loaded["boxes"]]
                if boxes:
                    boxes[0] = {**boxes[0], "x1": boxes[0]["x1"] + 1.0, "x2": boxes[0]["x2"] + 1.0}
                else:
                    boxes.append({"class_idx": 0, "x1": 10.0, "y1": 10.0, "x2": 40.0, "y2": 40.0})
                return boxes

            # --- service layer -----------------------------------------------------------------------
            loaded_cache: dict[int, dict] = {}

            def svc_load(i: int):
                loaded_cache[i] = svc.review.load_image(project, picks[i])

            def svc_save(i: int):
                loaded = loaded_cache.pop(i, None) or svc.review.load_image(project, picks[i])
                svc.review.save_image(project, picks[i], edit(loaded), loaded["version"], user="bench")

            results = {}
            print("timing the service layer ...", flush=True)
            results["service load_image"] = time_calls(svc_load, args.reps)
            for i in range(args.reps + 2):  # loads outside the timed save calls
                loaded_cache[i] = svc.review.load_image(project, picks[i])
            results["service save_image"] = time_calls(svc_save, args.reps)

            # --- HTTP --------------------------------------------------------------------------------
            from gradio_client import Client

            client = Client(app.url, verbose=False)
            http_loaded: dict[int, dict] = {}

            def http_load(i: int):
                http_loaded[i] = client.predict(project=project.name, image_id=picks[i], api_name="/load_image")

            def http_save(i: int):
                loaded = http_loaded.pop(i, None) or client.predict(project=project.name, image_id=picks[i],
                                                                    api_name="/load_image")
                client.predict(project=project.name, image_id=picks[i], boxes=edit(loaded), version=loaded["version"],
                               api_name="/save_image")

            print("timing over HTTP (gradio_client) ...", flush=True)
            results["http floor: /list_projects"] = time_calls(lambda i: client.predict(api_name="/list_projects"),
                                                               args.reps)
            results["http load_image"] = time_calls(http_load, args.reps)
            for i in range(args.reps + 2):
                http_loaded[i] = client.predict(project=project.name, image_id=picks[i], api_name="/load_image")
            results["http save_image"] = time_calls(http_save, args.reps)
            client.close()

            # The same endpoints as plain HTTP POSTs (/gradio_api/run/<api_name>, no client library).
            import httpx

            raw_loaded: dict[int, dict] = {}
            with httpx.Client(timeout=30) as http:
                def post(name: str, data: list):
                    r = http.post(f"{app.url}/gradio_api/run/{name}", json={"data": data})
                    r.raise_for_status()
                    return r.json()["data"][0]

                def raw_load(i: int):
                    raw_loaded[i] = post("load_image", [project.name, picks[i]])

                def raw_save(i: int):
                    loaded = raw_loaded.pop(i, None) or post("load_image", [project.name, picks[i]])
                    post("save_image", [project.name, picks[i], edit(loaded), loaded["version"]])  # parameter order

                print("timing plain HTTP POSTs ...", flush=True)
                results["raw http floor: /list_projects"] = time_calls(lambda i: post("list_projects", []), args.reps)
                results["raw http load_image"] = time_calls(raw_load, args.reps)
                for i in range(args.reps + 2):
                    raw_loaded[i] = post("load_image", [project.name, picks[i]])
                results["raw http save_image"] = time_calls(raw_save, args.reps)

            # --- queue -------------------------------------------------------------------------------
            print("timing the review queue ...", flush=True)
            n_queue = {}
            for sort in ("upload", "uncertain"):
                n_queue[sort] = len(svc.review.review_queue_ids(project, status="unreviewed", sort=sort))
                results[f"queue {sort} ({n_queue[sort]:,} ids)"] = time_calls(
                    lambda i, sort=sort: svc.review.review_queue_ids(project, status="unreviewed", sort=sort),
                    args.queue_reps)
        finally:
            app.close()

    targets = {"service load_image": SERVICE_MS, "service save_image": SERVICE_MS, "http load_image": HTTP_MS,
               "http save_image": HTTP_MS, "raw http load_image": HTTP_MS, "raw http save_image": HTTP_MS}
    rows = []
    for name, r in results.items():
        target = targets.get(name) or (QUEUE_MS if name.startswith("queue uncertain") else None)
        verdict = "" if target is None else (f"p95 < {target:.0f}: " + ("ok" if r["p95_ms"] < target else "OVER"))
        rows.append([name, r["p50_ms"], r["p95_ms"], r["max_ms"], verdict])
    print()
    print(f"{len(ids):,} images, {args.boxes:,} boxes; {args.reps} calls each; machine cpus={machine()['cpus']}")
    print(table(["measurement", "p50 ms", "p95 ms", "max ms", "target"], rows))
    floor = results["http floor: /list_projects"]["p50_ms"]
    raw_floor = results["raw http floor: /list_projects"]["p50_ms"]
    print(f"\nHTTP overhead: load_image p50 is {results['http load_image']['p50_ms'] / floor:.2f}x a trivial "
          f"gradio_client call ({floor:.1f} ms) on the same app; as a plain POST "
          f"{results['raw http load_image']['p50_ms'] / raw_floor:.2f}x a trivial POST ({raw_floor:.1f} ms)")
    emit_result({"bench": "editor", "images": len(ids), "boxes": args.boxes, "reps": args.reps,
                 "results": results, "targets": {"http_p95_ms": HTTP_MS, "service_p95_ms": SERVICE_MS,
                                                 "queue_uncertain_p95_ms": QUEUE_MS},
                 "build_s": round(build_s, 1), "machine": machine()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
