"""Can the app keep up with many fast workers? A large project, one job over all of it, a fake instant model.

    python bench/scale.py [--images 100000] [--workers 4] [--boxes 3] [--keep]

Builds a project of --images image ROWS (pointing at 20 real generated JPEGs, as bench/editor.py does; not
timed), then starts one auto-annotation job over every image with --workers worker processes on the data
folder's SQLite queue. Each worker is the real `annotator worker` (jobs.worker.run_worker: shards, prefetch
pipeline, chunks, heartbeats) with two things replaced so that the APP is what is measured: the model answers
at once with --boxes boxes per image, and reading an image returns a small constant array (no JPEG decode).
So the workers produce results far faster than 4 GPUs would, and the figure is how fast the app side (the
queue, the monitor, DuckDB: one transaction per chunk, human work protected) commits them.

Prints images/s committed (first result in DuckDB -> the job succeeded with every image in), the chunks and
the monitor's transactions, and the DuckDB row counts checked against the job. The issue's target: >= 2,000
images/s of results committed. Asserts nothing; the last line is `RESULT {json}`.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (add_image_rows, emit_result, machine, set_data_dir, table, temp_workdir,  # noqa: E402
                    use_repo_package)

TARGET_IPS = 2000.0
CLASSES = ["circle", "square", "triangle"]  # the demo model's, so the class mapping is the identity


# --- the worker processes: the real worker with an instant model and no decoding -------------------------------
def fake_worker(boxes: int) -> None:
    import numpy as np

    import jobs.annotate as annotate
    from annotator.settings import Settings
    from jobs.worker import run_worker

    class Arr:
        def __init__(self, a):
            self.a = a

        def cpu(self):
            return self

        def numpy(self):
            return self.a

    class Boxes:
        def __init__(self, rows):
            a = np.asarray(rows, dtype=np.float32).reshape(-1, 6)
            self.xyxy, self.conf, self.cls = Arr(a[:, :4]), Arr(a[:, 4]), Arr(a[:, 5])

        def __len__(self):
            return len(self.xyxy.a)

    class Result:
        def __init__(self, rows):
            self.boxes = Boxes(rows)

    # inside the 64x48 array the reader returns (boxes are clamped to the decoded image)
    rows = [[1 + (k * 7) % 40, 1 + (k * 5) % 30, 20 + (k * 7) % 40, 15 + (k * 5) % 30, 0.5 + 0.1 * (k % 5),
             k % len(CLASSES)] for k in range(boxes)]

    class Model:
        def predict(self, arrays, **opts):
            return [Result(rows) for _ in arrays]

    small = np.zeros((48, 64, 3), np.uint8)

    import cv2

    cv2.imread = lambda path, flags=1: small  # what the runner's reader calls: no decoding
    annotate.run_annotation.__defaults__ = (lambda path: Model(),)  # its model_loader
    import jobs.tasks  # noqa: F401 - registered by make_huey; the runner module is patched above

    run_worker(Settings.from_env())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=100_000)
    ap.add_argument("--workers", type=int, default=4, help="worker processes (fake instant model)")
    ap.add_argument("--boxes", type=int, default=3, help="boxes the fake model finds on each image")
    ap.add_argument("--real", type=int, default=20, help="real generated JPEGs the image rows point at")
    ap.add_argument("--monitor-interval", type=float, default=0.5, help="the app's default")
    ap.add_argument("--timeout", type=float, default=1800.0)
    ap.add_argument("--tmp", default=None)
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)  # a fake worker process (internal)
    args = ap.parse_args(argv)
    if args.worker:
        use_repo_package()
        fake_worker(args.boxes)
        return 0

    with temp_workdir("annotator-bench-scale-", keep=args.keep, parent=args.tmp) as work:
        data_dir = set_data_dir(work / "data")
        use_repo_package()
        from annotator.demo import scenes
        from annotator.launch import start_jobs
        from annotator.services import Services
        from annotator.settings import Settings

        settings = Settings.from_env({**os.environ, "ANNOTATOR_DEMO": "0"})
        services = Services.open(settings)
        store = services.ctx.store
        procs: list[subprocess.Popen] = []
        monitor = None
        try:
            t = time.perf_counter()
            project = services.projects.create_project("scale-bench", CLASSES)
            folder = work / "scenes"
            folder.mkdir()
            for k in range(args.real):
                (folder / f"scene_{k:03d}.jpg").write_bytes(scenes.scene_jpeg(8_000_000 + k)[0])
            services.images.add_images(project, [folder], dataset="scenes", user="bench")
            real = store.list_images(project.id, offset=0, limit=args.real + 10)
            add_image_rows(store, project.id, real, args.images - len(real), "scale-bench")
            services.models.add_model(project, scenes.DEMO_MODEL_PATH, name="fake")
            build_s = time.perf_counter() - t
            print(f"built {args.images:,} image rows in {build_s:.0f} s", flush=True)

            env = {**os.environ, "ANNOTATOR_DATA_DIR": str(data_dir), "ANNOTATOR_DEVICE": "cpu"}
            for k in range(args.workers):
                procs.append(subprocess.Popen(
                    [sys.executable, __file__, "--worker", "--boxes", str(args.boxes)], env=env,
                    stdout=open(work / f"worker-{k}.log", "ab"), stderr=subprocess.STDOUT))
            monitor = start_jobs(services, local_worker=False, interval=args.monitor_interval)
            t = time.perf_counter()
            while len(services.jobs.live_workers()) < args.workers and time.perf_counter() - t < 120:
                time.sleep(0.2)
            print(f"{len(services.jobs.live_workers())} fake workers up after {time.perf_counter() - t:.1f} s", flush=True)

            t_start = time.perf_counter()
            job = services.annotation.start_annotation(project, "fake", imgsz=640, conf=0.25)
            enqueue_s = time.perf_counter() - t_start
            shards = len(store.job_shards(job.id, 0))
            print(f"job {job.id}: {job.total:,} images in {shards} shards, queued in {enqueue_s:.1f} s", flush=True)
            first = None
            samples = []
            while time.perf_counter() - t_start < args.timeout:
                j = services.jobs.get_job(job.id)
                got = int(j.result.get("images", 0))
                now = time.perf_counter()
                if got and first is None:
                    first = (now, got)
                samples.append((now - t_start, got))
                if not j.active:
                    break
                time.sleep(0.5)
            end = time.perf_counter()
            job = services.jobs.get_job(job.id)
            boxes = store._one("SELECT count(*) FROM boxes WHERE job_id = ?", [job.id])[0]
            finished = store.job_image_count(job.id)
            chunks = sum(s.chunks_in for s in store.job_shards(job.id, 0))
        finally:
            if monitor is not None:
                monitor.stop()
            for p in procs:
                p.terminate()
            for p in procs:
                try:
                    p.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    p.kill()
            services.close()

    images = int(job.result.get("images", 0))
    commit_s = (end - first[0]) if first else float("nan")
    committed_ips = (images - (first[1] if first else 0)) / commit_s if first and commit_s > 0 else float("nan")
    wall_ips = images / (end - t_start)
    print()
    print(f"one job over {args.images:,} images, {shards} shards, {args.workers} fake worker processes "
          f"({args.boxes} boxes per image, instant model, no decoding), monitor every {args.monitor_interval} s")
    print(table(["measurement", "value"], [
        ["job status", job.status],
        ["images committed (job result)", images],
        ["job_images rows / boxes rows", f"{finished} / {boxes}"],
        ["chunks committed (one transaction each)", chunks],
        ["queueing the job (shards + tasks) s", round(enqueue_s, 2)],
        ["Run -> job succeeded s", round(end - t_start, 1)],
        ["images/s committed (first result -> done)", round(committed_ips, 1)],
        ["images/s over the whole job", round(wall_ips, 1)],
    ]))
    if job.status != "succeeded":
        print(f"job {job.status}: {job.error}\n{job.log[-2000:]}")
    ok = job.status == "succeeded" and finished == args.images and boxes == args.images * args.boxes
    print(f"rows match the job: {'yes' if ok else 'NO'}; target >= {TARGET_IPS:.0f} images/s committed: "
          f"{'ok' if committed_ips >= TARGET_IPS else 'MISSED'}")
    emit_result({"bench": "scale", "images": args.images, "workers": args.workers, "boxes_per_image": args.boxes,
                 "shards": shards, "status": job.status, "images_committed": images, "job_images": finished,
                 "boxes": boxes, "chunks": chunks, "enqueue_s": round(enqueue_s, 3),
                 "job_s": round(end - t_start, 2), "committed_images_per_s": round(committed_ips, 1),
                 "wall_images_per_s": round(wall_ips, 1), "target_images_per_s": TARGET_IPS,
                 "rows_match": ok, "build_s": round(build_s, 1), "monitor_interval_s": args.monitor_interval,
                 "progress": samples[:: max(1, len(samples) // 40)], "machine": machine()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
