"""Auto-annotation throughput: our whole job (Run -> boxes in DuckDB) against ultralytics' own predict.

    python bench/auto_annotate.py [--n 200] [--model PATH] [--device cpu] [--reps 2] [--workers 2]

Writes N deterministic demo scenes (annotator.demo.scenes.scene_jpeg, 640x480) into one folder, then, in the same
run and at the same settings (the model's training imgsz unless --imgsz, conf 0.25, iou 0.7, max_det 300):

  raw   YOLO(model).predict(source=FOLDER, batch=b, stream=True, verbose=False), consuming the generator,
        for each of --raw-batches, best of --reps each after one warm-up call; the best batch size counts
  ours  Services.add_images(FOLDER) + add_model (not timed), a JobMonitor with its local worker (annotator.launch.start_jobs, started
        and announced before timing: "worker start" is printed apart), then start_annotation(...) until the
        job has succeeded AND every image's predictions are in DuckDB; best of --reps (each rep is a new job
        on the same project: re-running replaces the machine boxes)

and prints images/s of both and the ratio ours/raw (images/s; the issue's target: >= 1.0). Then, unless
--no-contended, both again while a second process burns one core for the whole measurement (what a training
beside auto-annotation does): targets ours/raw >= 1.0 there too, and contended ours >= 0.4 x quiet ours.
It also checks that the boxes the timed job stored in DuckDB (read right after it, before the next job
replaces them) match the raw predict's, image by image: count, class and corners within 1 px. Prints no
verdict, asserts nothing. With --workers N, the job again on N worker processes (the job split into shards they
share) against one worker. The last line is `RESULT {json}`.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import emit_result, machine, set_data_dir, table, temp_workdir, use_repo_package  # noqa: E402

TARGET_RATIO = 1.0
TARGET_CONTENDED_OF_QUIET = 0.4  # issue 14: contended ours >= 0.4 x quiet ours
FIRST_SEED = 3_000_000  # far from the demo model's training seeds and from check/test seeds


# --- images ------------------------------------------------------------------------------------------------
def _write_scenes(args: tuple[str, list[int]]) -> int:
    from annotator.demo import scenes

    folder, seeds = args
    return len(scenes.write_scenes(Path(folder), seeds))


def write_scenes(folder: Path, n: int, first_seed: int, workers: int) -> float:
    folder.mkdir(parents=True, exist_ok=True)
    seeds = list(range(first_seed, first_seed + n))
    parts = [(str(folder), seeds[i:i + 25]) for i in range(0, n, 25)]
    t = time.perf_counter()
    if workers > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            list(pool.map(_write_scenes, parts))
    else:
        for p in parts:
            _write_scenes(p)
    return time.perf_counter() - t


# --- helpers ----------------------------------------------------------------------------------------------
def _epoch(dt: datetime | None) -> float | None:
    """Job timestamps are naive UTC datetimes."""
    return None if dt is None else dt.replace(tzinfo=timezone.utc).timestamp()


def _load() -> float:
    return os.getloadavg()[0]


def _cpu_self() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _cpu_pid(pid: int | None) -> float | None:
    """user+sys CPU seconds of a live process (Linux /proc), None where unknown."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, TypeError):
        return None


def predict_opts(imgsz: int, conf: float, iou: float, max_det: int, device: str) -> dict:
    """The options jobs/annotate.py passes to model.predict, so both contenders run the same settings."""
    opts = dict(imgsz=imgsz, conf=conf, iou=iou, max_det=max_det, device=device, verbose=False)
    if device not in ("cpu", "mps"):
        opts["quantize"] = 16  # what the worker does on CUDA (FP16)
    return opts


# --- (a) raw ultralytics -------------------------------------------------------------------------------------
def time_raw(model_path: Path, folder: Path, opts: dict, batches: list[int], reps: int) -> dict:
    """Best-of-reps seconds per batch size, after one warm-up; plus boxes per image of each batch size."""
    from ultralytics import YOLO

    t = time.perf_counter()
    model = YOLO(str(model_path), task="detect")
    load_s = time.perf_counter() - t
    files = sorted(str(p) for p in folder.iterdir())
    t = time.perf_counter()
    for _ in model.predict(source=files[:8], batch=1, stream=True, **opts):  # loads, fuses, warms up
        pass
    warmup_s = time.perf_counter() - t
    out: dict = {"load_s": load_s, "warmup_s": warmup_s, "by_batch": {}}
    for b in batches:
        runs, cpu, per_image = [], [], {}
        for _ in range(reps):
            per_image = {}
            c = _cpu_self()
            t = time.perf_counter()
            for r in model.predict(source=str(folder), batch=b, stream=True, **opts):
                per_image[Path(r.path).name] = _raw_boxes(r)
            runs.append(time.perf_counter() - t)
            cpu.append(_cpu_self() - c)
        out["by_batch"][b] = {"runs": runs, "best": min(runs), "cpu": cpu[runs.index(min(runs))],
                              "images": len(per_image),
                              "boxes": sum(map(len, per_image.values())), "per_image": per_image}
        print(f"  raw batch {b:>2}: best {min(runs):.2f} s ({len(per_image) / min(runs):.1f} images/s), "
              f"runs {' '.join(f'{x:.2f}' for x in runs)}, {sum(map(len, per_image.values()))} boxes", flush=True)
    return out


def time_raw_all_cores(model_path: Path, folder: Path, opts: dict, batch: int, reps: int) -> dict | None:
    """The raw predict again at ``batch`` with torch on every core (informational, not the issue's ratio).

    On CPU, ultralytics' select_device() sets torch.set_num_threads(min(8, cpu_count - 1)) when it builds its
    predictor: one thread on a 2-core machine. This row shows what the library would do with all of them.
    """
    import torch
    from ultralytics import YOLO

    cores = os.cpu_count() or 1
    if opts["device"] != "cpu" or torch.get_num_threads() >= cores:
        return None
    model = YOLO(str(model_path), task="detect")
    for _ in model.predict(source=str(folder), batch=batch, stream=True, **opts):  # builds the predictor
        break
    before = torch.get_num_threads()
    torch.set_num_threads(cores)
    try:
        runs, cpu = [], []
        for _ in range(reps):
            c = _cpu_self()
            t = time.perf_counter()
            for _ in model.predict(source=str(folder), batch=batch, stream=True, **opts):
                pass
            runs.append(time.perf_counter() - t)
            cpu.append(_cpu_self() - c)
    finally:
        torch.set_num_threads(before)
    print(f"  raw batch {batch:>2}, torch on all {cores} cores (default {before}): best {min(runs):.2f} s", flush=True)
    return {"runs": runs, "best": min(runs), "cpu": cpu[runs.index(min(runs))], "threads": cores,
            "default_threads": before, "batch": batch}


# --- (b) ours ------------------------------------------------------------------------------------------------
def wait_for_workers(services, timeout: float) -> float:
    t = time.perf_counter()
    while time.perf_counter() - t < timeout:
        if services.jobs.live_workers():
            return time.perf_counter() - t
        time.sleep(0.05)
    raise SystemExit(f"no worker announced itself within {timeout:.0f} s; see worker.log in the data folder "
                     "(run with --keep)")


def run_many_workers(services, project, model, args, opts: dict, data_dir: Path, worker_pid: int) -> dict:
    """The job again with args.workers worker processes: the app's local one and args.workers - 1 more
    (`python -m annotator worker`, same data folder and queue); best of args.reps."""
    env = {**os.environ, "ANNOTATOR_DATA_DIR": str(data_dir), "ANNOTATOR_DEVICE": args.device}
    extra = [subprocess.Popen([sys.executable, "-m", "annotator", "worker"], env=env,
                              cwd=str(Path(__file__).resolve().parents[1]),
                              stdout=open(data_dir / f"worker-extra-{k}.log", "ab"), stderr=subprocess.STDOUT)
             for k in range(args.workers - 1)]
    try:
        t = time.perf_counter()
        while len(services.jobs.live_workers()) < args.workers and time.perf_counter() - t < 120:
            time.sleep(0.1)
        print(f"{args.workers} workers announced after {time.perf_counter() - t:.1f} s; timing the job on them, "
              f"best of {args.reps} ...", flush=True)
        runs, shards = [], 0
        for rep in range(args.reps + 1):  # the first run loads the model in the new workers: not counted
            r = run_job(services, project, model, args.n, opts, args.batch, args.timeout, worker_pid)
            r["db"] = db_boxes(services, project, r["job_id"]) if r["status"] == "succeeded" else {}
            shards = len(services.ctx.store.job_shards(r["job_id"], 0))
            print(f"  {'warm-up' if rep == 0 else f'rep {rep - 1}'}: job {r['job_id']} {r['status']} in "
                  f"{r['seconds']:.2f} s ({shards} shards)", flush=True)
            if rep:
                runs.append(r)
        return {"runs": runs, "shards": shards}
    finally:
        for proc in extra:
            proc.terminate()
        for proc in extra:
            proc.wait(timeout=30)


def run_job(services, project, model, n: int, opts: dict, batch: int, timeout: float, worker_pid: int | None) -> dict:
    """Start one job and wait until it succeeded and all n images' predictions are in DuckDB."""
    from jobs.protocol import JobChannel

    cpu_app, cpu_worker = _cpu_self(), _cpu_pid(worker_pid)
    t_wall = time.time()
    t = time.perf_counter()
    job = services.annotation.start_annotation(project, model, conf=opts["conf"], iou=opts["iou"], imgsz=opts["imgsz"],
                                    max_det=opts["max_det"], device=opts["device"], batch=batch,
                                    scope="unreviewed")
    # the job's shards, each on its own channel (a job from before shards: the job's channel)
    channels = [JobChannel(services.ctx.queue, job.id, job.attempt, sh.shard, sh.retry)
                for sh in services.ctx.store.job_shards(job.id, job.attempt)] or \
        [JobChannel(services.ctx.queue, job.id, job.attempt)]
    first_running = None  # the first progress report whose stage is 'running' (heartbeats: 1 s resolution)
    worker_done = False
    reported, finished_channels = set(), set()
    last_db = time.perf_counter()
    # Poll cheaply (a peek at the queue's key-value store, ~0.01 ms) while the worker runs, and DuckDB (~1.3 ms
    # CPU a call, taken from the cores the worker needs) only once the worker has said it is done.
    while time.perf_counter() - t < timeout:
        if first_running is None:
            p = channels[0].read_progress()
            if p and p.get("stage") == "running":
                first_running = p["ts"]
        # a channel's markers are cleared once the job has ended: a progress key seen and gone is done too
        for k, ch in enumerate(channels):
            if k not in finished_channels and (ch.read_done() is not None or
                                               (k in reported and ch.read_progress() is None)):
                finished_channels.add(k)
            elif k not in reported and ch.read_progress() is not None:
                reported.add(k)
        worker_done = worker_done or len(finished_channels) == len(channels)
        if worker_done or time.perf_counter() - last_db >= 1.0:  # also notices a job the monitor ended
            last_db = time.perf_counter()
            job = services.jobs.get_job(job.id)
            if job.status == "succeeded" and int(job.result.get("images", 0)) >= n:
                break
            if job.status in ("failed", "cancelled", "interrupted"):
                break
        time.sleep(0.02)
    seconds = time.perf_counter() - t
    job = services.jobs.get_job(job.id)
    cpu_app = _cpu_self() - cpu_app
    w = _cpu_pid(worker_pid)
    cpu_worker = None if w is None or cpu_worker is None else w - cpu_worker
    t_end = t_wall + seconds
    started, finished = _epoch(job.started_at), _epoch(job.finished_at)
    d = job.as_dict()
    return {
        "job_id": job.id,
        "status": job.status,
        "error": job.error,
        "seconds": seconds,
        "images": int(job.result.get("images", 0)),
        "boxes": int(job.result.get("boxes", 0)),
        "worker_ips": d.get("images_per_s"),
        "batch": job.live.get("batch"),
        # where the wall time went, from the job's own timestamps (worker clock = our clock: same host)
        "pickup_s": None if started is None else started - t_wall,
        "worker_s": None if started is None or finished is None else finished - started,
        "ingest_tail_s": None if finished is None else t_end - finished,
        "first_running_s": None if first_running is None or started is None else first_running - started,
        "cpu_app_s": cpu_app,  # this process: start_annotation, the monitor thread, our polling
        "cpu_worker_s": cpu_worker,
        "log": job.log,
    }


def _raw_boxes(result) -> list[tuple]:
    """One ultralytics result's boxes as sorted (class, x1, y1, x2, y2) in pixels."""
    b = result.boxes
    if b is None or len(b) == 0:
        return []
    return sorted((int(c), *map(float, xyxy)) for c, xyxy in zip(b.cls.tolist(), b.xyxy.tolist()))


def db_boxes(services, project, job_id: int) -> dict[str, list[tuple]]:
    """The boxes (sorted (class, x1, y1, x2, y2)) per image (by file name) that DuckDB holds for ``job_id``,
    read back through the store. Read right after that job: the next job replaces them."""
    page = services.images.list_images(project, page_size=500)
    images = list(page.images)
    for p in range(1, page.pages):
        images += services.images.list_images(project, page=p, page_size=500).images
    boxes = services.ctx.store.boxes_for_images([i.id for i in images])
    return {Path(i.rel_path).name: sorted((b.class_idx, b.x1, b.y1, b.x2, b.y2) for b in boxes.get(i.id, [])
                                          if b.job_id == job_id) for i in images}


BOX_TOLERANCE_PX = 1.0  # the job clamps to the image and stores floats; raw keeps ultralytics' own


def _same(a: list[tuple], b: list[tuple]) -> bool:
    return len(a) == len(b) and all(x[0] == y[0] and all(abs(p - q) <= BOX_TOLERANCE_PX for p, q in zip(x[1:], y[1:]))
                                    for x, y in zip(a, b))


def compare(raw: dict[str, list], ours: dict[str, list]) -> dict:
    """Image by image: the same number of boxes, each with the same class and corners within 1 px."""
    names = set(raw) | set(ours)
    diff = [k for k in names if not _same(raw.get(k, []), ours.get(k, []))]
    return {"images_compared": len(names), "images_differing": len(diff),
            "raw_boxes": sum(map(len, raw.values())), "db_boxes": sum(map(len, ours.values())),
            "examples": {k: (len(raw.get(k, [])), len(ours.get(k, []))) for k in sorted(diff)[:5]}}


def burn_one_core() -> "subprocess.Popen":
    """A second process that keeps one core busy (what a training beside auto-annotation does)."""
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


def run_contended(services, project, model, model_path: Path, folder: Path, opts: dict, batch: int, args,
                  worker_pid: int | None) -> dict:
    """The raw predict (its best batch) and our job again, each best of --reps, while another process burns
    one core for the whole measurement."""
    burner = burn_one_core()
    try:
        time.sleep(1.0)
        print(f"contended (one core burnt by pid {burner.pid}): raw ultralytics, batch {batch} ...", flush=True)
        raw = time_raw(model_path, folder, opts, [batch], args.reps)["by_batch"][batch]
        print(f"contended: our job, best of {args.reps} ...", flush=True)
        runs = []
        for rep in range(args.reps):
            r = run_job(services, project, model, args.n, opts, args.batch, args.timeout, worker_pid)
            r["db"] = db_boxes(services, project, r["job_id"]) if r["status"] == "succeeded" else {}
            runs.append(r)
            print(f"  rep {rep}: job {r['job_id']} {r['status']} in {r['seconds']:.2f} s (pickup {_f(r['pickup_s'])}, "
                  f"worker {_f(r['worker_s'])}, tail {_f(r['ingest_tail_s'])} s; CPU s worker "
                  f"{_f(r['cpu_worker_s'])}, app {r['cpu_app_s']:.2f})", flush=True)
    finally:
        burner.kill()
        burner.wait()
    good = [r for r in runs if r["status"] == "succeeded" and r["images"] >= args.n]
    return {"raw": raw, "ours": min(good, key=lambda r: r["seconds"]) if good else None, "runs": runs}


def _f(x, fmt="{:.2f}") -> str:
    return "n/a" if x is None else fmt.format(x)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=200, help="images (default 200, 640x480 demo scenes)")
    ap.add_argument("--model", type=Path, default=None,
                    help="ultralytics detection .pt (default: annotator/assets/demo_shapes.pt)")
    ap.add_argument("--imgsz", type=int, default=None, help="default: the model's training imgsz")
    ap.add_argument("--conf", type=float, default=0.25)
    ap.add_argument("--iou", type=float, default=0.7)
    ap.add_argument("--max-det", type=int, default=300)
    ap.add_argument("--device", default="cpu", help="'cpu' (default) or a CUDA device such as '0'")
    ap.add_argument("--raw-batches", default=None,
                    help="comma-separated batch sizes for the raw predict (default 1,4,8 on CPU, 1,4,8,16 on GPU)")
    ap.add_argument("--batch", type=int, default=0,
                    help="batch of our job (default 0: the app's auto, 1 on CPU and 16 on GPU)")
    ap.add_argument("--reps", type=int, default=2, help="repetitions of each contender; the best is reported")
    ap.add_argument("--monitor-interval", type=float, default=0.1,
                    help="JobMonitor tick in seconds (default 0.1; the app itself runs 0.5)")
    ap.add_argument("--no-all-cores", dest="all_cores", action="store_false",
                    help="skip the informational raw row with torch on every core (CPU only)")
    ap.add_argument("--no-contended", dest="contended", action="store_false",
                    help="skip the contended run (raw and ours again while another process burns one core)")
    ap.add_argument("--first-seed", type=int, default=FIRST_SEED, help="scenes use seeds first-seed .. +n-1")
    ap.add_argument("--gen-workers", type=int, default=os.cpu_count() or 1, help="processes generating scenes")
    ap.add_argument("--workers", type=int, default=1,
                    help="also time the job with this many worker processes (the local one + N-1 `annotator worker`"
                         " on the same data folder: the job is split into shards they share), against one")
    ap.add_argument("--timeout", type=float, default=900.0, help="give up on one job after this many seconds")
    ap.add_argument("--tmp", default=None, help="parent folder of the temp work folder (default: system temp)")
    ap.add_argument("--keep", action="store_true", help="keep the temp folder (images, data folder, worker.log)")
    args = ap.parse_args(argv)
    gpu = args.device not in ("cpu", "mps")
    batches = [int(b) for b in (args.raw_batches or ("1,4,8,16" if gpu else "1,4,8")).split(",") if b.strip()]

    with temp_workdir("annotator-bench-annotate-", keep=args.keep, parent=args.tmp) as work:
        data_dir = set_data_dir(work / "data")  # before importing annotator
        use_repo_package()
        from annotator.demo import scenes
        from annotator.launch import start_jobs
        from annotator.services import Services
        from annotator.settings import Settings

        settings = Settings.from_env()
        settings.prepare()  # offline-safe ultralytics, config under the temp data folder
        model_path = Path(args.model or scenes.DEMO_MODEL_PATH).resolve()
        if not model_path.is_file():
            print(f"error: no model at {model_path} (pass --model PATH)", file=sys.stderr)
            return 2

        folder = work / "scenes"
        print(f"writing {args.n} demo scenes 640x480 (seeds {args.first_seed}..) into {folder} ...", flush=True)
        gen_s = write_scenes(folder, args.n, args.first_seed, args.gen_workers)
        print(f"  {gen_s:.1f} s", flush=True)

        services = Services.open(settings)
        monitor = None
        try:
            project = services.projects.create_project("bench", list(scenes.CLASSES))
            t = time.perf_counter()
            report = services.images.add_images(project, [folder], dataset="scenes")
            add_s = time.perf_counter() - t
            model = services.models.add_model(project, model_path, name="bench-model")
            imgsz = int(args.imgsz or model.params.get("imgsz") or 640)
            opts = predict_opts(imgsz, args.conf, args.iou, args.max_det, args.device)
            print(f"  add_images: {len(report.added)} images in {add_s:.1f} s; model {model_path.name} "
                  f"(classes {', '.join(model.class_names)}), imgsz {imgsz}", flush=True)

            print(f"timing raw ultralytics predict over the folder, batches {batches}, best of {args.reps} ...",
                  flush=True)
            load_raw = [_load()]
            raw = time_raw(model_path, folder, opts, batches, args.reps)
            load_raw.append(_load())
            best_b = min(raw["by_batch"], key=lambda b: raw["by_batch"][b]["best"])
            raw_best = raw["by_batch"][best_b]
            all_cores = time_raw_all_cores(model_path, folder, opts, best_b, args.reps) if args.all_cores else None

            print("starting the job monitor and its local worker ...", flush=True)
            t = time.perf_counter()
            monitor = start_jobs(services, local_worker=True, interval=args.monitor_interval)
            worker_start_s = wait_for_workers(services, 120.0)
            print(f"  worker announced itself after {worker_start_s:.1f} s", flush=True)

            print(f"timing our job (Run -> boxes in DuckDB), best of {args.reps} ...", flush=True)
            load_ours = [_load()]
            runs = []
            for rep in range(args.reps):
                r = run_job(services, project, model, args.n, opts, args.batch, args.timeout, monitor.worker.pid)
                r["db"] = db_boxes(services, project, r["job_id"]) if r["status"] == "succeeded" else {}
                runs.append(r)
                print(f"  rep {rep}: job {r['job_id']} {r['status']} in {r['seconds']:.2f} s "
                      f"({r['images']} images, {r['boxes']} boxes; worker says {r['worker_ips']} images/s, "
                      f"batch {r['batch']}; CPU s worker {_f(r['cpu_worker_s'])}, app {r['cpu_app_s']:.2f})",
                      flush=True)
                if r["status"] != "succeeded":
                    print(f"  job failed: {r['error']}\n{r['log']}")
                    break
            load_ours.append(_load())
            good = [r for r in runs if r["status"] == "succeeded" and r["images"] >= args.n]
            best = min(good, key=lambda r: r["seconds"]) if good else runs[-1]
            db = best["db"]  # the timed job's own boxes, read before the next job replaced them
            contended = None
            if args.contended and good:
                contended = run_contended(services, project, model, model_path, folder, opts, best_b, args,
                                          monitor.worker.pid)
            many = run_many_workers(services, project, model, args, opts, data_dir, monitor.worker.pid) \
                if args.workers > 1 and good else None
        finally:
            if monitor is not None:
                monitor.stop()
            services.close()
            if args.keep:
                print(f"(worker log: {data_dir / 'worker.log'})")

    n = args.n
    raw_s = raw_best["best"]
    raw_ips = n / raw_s
    ours_s = best["seconds"]
    ours_ips = n / ours_s if good else float("nan")
    ratio = ours_ips / raw_ips
    cmp_raw = compare(raw_best["per_image"], db) if good else {}
    cmp_b1 = compare(raw["by_batch"][batches[0]]["per_image"], db) if good else {}

    print()
    print(f"Auto-annotation of {n} scenes 640x480, model {model_path.name}, imgsz {imgsz}, conf {args.conf}, "
          f"iou {args.iou}, max_det {args.max_det}, device {args.device}; machine cpus={os.cpu_count()}")
    print(f"1-minute load average: raw {load_raw[0]:.2f} -> {load_raw[1]:.2f}; ours {load_ours[0]:.2f} -> "
          f"{load_ours[1]:.2f}")
    rows = [[f"ultralytics predict(folder, batch={b})", v["best"], n / v["best"],
             " ".join(f"{x:.2f}" for x in v["runs"]), v["cpu"], v["boxes"], (n / v["best"]) / raw_ips]
            for b, v in raw["by_batch"].items()]
    ours_cpu = (best["cpu_worker_s"] or 0.0) + best["cpu_app_s"]
    if all_cores:
        threads = f"{all_cores['default_threads']}->{all_cores['threads']}"
        rows.append([f"  (info) same, batch={best_b}, torch threads {threads}",
                     all_cores["best"], n / all_cores["best"], " ".join(f"{x:.2f}" for x in all_cores["runs"]),
                     all_cores["cpu"], "", (n / all_cores["best"]) / raw_ips])
    rows.append([f"ours: Run -> DuckDB (batch {best['batch']})", ours_s, ours_ips,
                 " ".join(f"{r['seconds']:.2f}" for r in runs), ours_cpu, best["boxes"], ratio])
    print(table(["contender", "best s", "images/s", "all runs s", "CPU s", "boxes", "vs best raw"], rows))
    print(f"ratio ours/raw (images/s): {ratio:.2f}   (issue target: >= {TARGET_RATIO:.1f}; raw best is batch {best_b}"
          + (f"; ours / raw on all cores: {ours_ips / (n / all_cores['best']):.2f}" if all_cores else "") + ")")
    if all_cores:
        print(f"(ultralytics runs torch with {all_cores['default_threads']} thread(s) on CPU here: its select_device() "
              f"sets min(8, cpus - 1); the '(info)' row is the raw predict with all {all_cores['threads']}.)")
    print()
    print("where our best run's time went (job timestamps)")
    tail = best["ingest_tail_s"]
    print(table(
        ["phase", "s", "note"],
        [
            ["Run -> worker picks the task up", _f(best["pickup_s"]), "start_annotation + Huey poll delay"],
            ["worker: first progress -> done", _f(best["worker_s"]), "model (loaded in rep 0), predict, chunks"],
            ["worker done -> all boxes in DuckDB", _f(tail), f"monitor ticks every {args.monitor_interval:g} s"],
            ["worker's own images/s", _f(best["worker_ips"]), "from the first predicted batch on"],
            ["CPU s: worker process", _f(best["cpu_worker_s"]), "user+sys, all threads"],
            ["CPU s: app side (this process)", _f(best["cpu_app_s"]), "start_annotation, monitor, bench polling"],
            ["worker start (not timed)", _f(worker_start_s), "python -m annotator worker until announced"],
            ["first run (model load) s", _f(runs[0]["seconds"]), "rep 0, worker had no model loaded yet"],
            ["  first 'running' report after start", _f(runs[0]["first_running_s"]), "heartbeats: 1 s resolution"],
            ["raw: YOLO() load + warm-up s", f"{raw['load_s']:.2f} + {raw['warmup_s']:.2f}", "not timed"],
        ],
    ))
    print()
    if good:
        print(f"boxes: raw predict (batch {best_b}) {cmp_raw['raw_boxes']}, DuckDB for job {best['job_id']} "
              f"{cmp_raw['db_boxes']} (job counter {best['boxes']}); images whose boxes differ (count, class, or a corner by more than 1 px): "
              f"{cmp_raw['images_differing']} of {cmp_raw['images_compared']}"
              + (f"; vs raw batch {batches[0]}: {cmp_b1['images_differing']}" if best_b != batches[0] else ""))
        if cmp_raw["images_differing"]:
            print(f"  examples (raw, db): {cmp_raw['examples']}")
        if best["images"] != n:
            print(f"  WARNING: the job recorded {best['images']} images, expected {n}")
    else:
        print(f"WARNING: no successful job ({[r['status'] for r in runs]})")

    contended_out = None
    if contended is not None:
        c_raw_ips = n / contended["raw"]["best"]
        c_ours = contended["ours"]
        c_ours_ips = n / c_ours["seconds"] if c_ours else float("nan")
        c_cmp = compare(contended["raw"]["per_image"], c_ours["db"]) if c_ours else {}
        print()
        print("contended: the same, while another process burns one core for the whole measurement")
        print(table(["contender", "best s", "images/s", "all runs s", "vs quiet"],
                    [[f"ultralytics predict(folder, batch={best_b})", contended["raw"]["best"], c_raw_ips,
                      " ".join(f"{x:.2f}" for x in contended["raw"]["runs"]), c_raw_ips / raw_ips],
                     ["ours: Run -> DuckDB", c_ours["seconds"] if c_ours else float("nan"), c_ours_ips,
                      " ".join(f"{r['seconds']:.2f}" for r in contended["runs"]), c_ours_ips / ours_ips]]))
        print(f"ratio ours/raw: quiet {ratio:.2f}, contended {c_ours_ips / c_raw_ips:.2f} (target >= {TARGET_RATIO:.1f} "
              f"both); contended ours / quiet ours {c_ours_ips / ours_ips:.2f} (target >= {TARGET_CONTENDED_OF_QUIET})")
        if c_cmp:
            print(f"contended boxes: raw {c_cmp['raw_boxes']}, DuckDB for job {c_ours['job_id']} {c_cmp['db_boxes']}; "
                  f"images whose boxes differ: {c_cmp['images_differing']} of {c_cmp['images_compared']}")
        contended_out = {"raw_s": round(contended["raw"]["best"], 4), "raw_images_per_s": round(c_raw_ips, 2),
                         "ours_s": None if not c_ours else round(c_ours["seconds"], 4),
                         "ours_images_per_s": round(c_ours_ips, 2),
                         "ratio_ours_over_raw": round(c_ours_ips / c_raw_ips, 3),
                         "ours_contended_over_quiet": round(c_ours_ips / ours_ips, 3),
                         "target_contended_over_quiet": TARGET_CONTENDED_OF_QUIET,
                         "images_differing": c_cmp.get("images_differing")}

    many_out = None
    if many is not None:
        m_best = min((r for r in many["runs"] if r["status"] == "succeeded"), key=lambda r: r["seconds"], default=None)
        m_cmp = compare(raw_best["per_image"], m_best["db"]) if m_best else {}
        print()
        print(f"{args.workers} workers (the local one + {args.workers - 1} `annotator worker` process(es), same data "
              f"folder): the job in {many['shards']} shards")
        print(table(["contender", "best s", "images/s", "all runs s", "vs one worker"],
                    [["ours: one worker", ours_s, ours_ips, " ".join(f"{r['seconds']:.2f}" for r in runs), 1.0],
                     [f"ours: {args.workers} workers", m_best["seconds"] if m_best else float("nan"),
                      n / m_best["seconds"] if m_best else float("nan"),
                      " ".join(f"{r['seconds']:.2f}" for r in many["runs"]),
                      ours_s / m_best["seconds"] if m_best else float("nan")]]))
        if m_cmp:
            print(f"{args.workers}-worker boxes: DuckDB for job {m_best['job_id']} {m_cmp['db_boxes']}; images whose "
                  f"boxes differ from raw: {m_cmp['images_differing']} of {m_cmp['images_compared']}")
        many_out = {"workers": args.workers, "shards": many["shards"],
                    "best_s": None if not m_best else round(m_best["seconds"], 4),
                    "runs_s": [round(r["seconds"], 4) for r in many["runs"]],
                    "speedup_over_one_worker": None if not m_best else round(ours_s / m_best["seconds"], 3),
                    "images_differing": m_cmp.get("images_differing")}

    emit_result({
        "bench": "auto_annotate",
        "contended": contended_out,
        "many_workers": many_out,
        "n": n,
        "model": model_path.name,
        "imgsz": imgsz,
        "device": args.device,
        "conf": args.conf, "iou": args.iou, "max_det": args.max_det,
        "raw_best_batch": best_b,
        "raw_s": round(raw_s, 4),
        "raw_images_per_s": round(raw_ips, 2),
        "raw_by_batch": {str(b): {"best_s": round(v["best"], 4), "runs_s": [round(x, 4) for x in v["runs"]],
                                  "images_per_s": round(n / v["best"], 2), "boxes": v["boxes"],
                                  "cpu_s": round(v["cpu"], 3)}
                         for b, v in raw["by_batch"].items()},
        "raw_all_cores": None if not all_cores else {
            "batch": all_cores["batch"], "threads": all_cores["threads"],
            "default_threads": all_cores["default_threads"],
            "best_s": round(all_cores["best"], 4), "images_per_s": round(n / all_cores["best"], 2),
            "runs_s": [round(x, 4) for x in all_cores["runs"]], "cpu_s": round(all_cores["cpu"], 3),
            "ratio_ours_over_it": round(ours_ips / (n / all_cores["best"]), 3)},
        "raw_load_s": round(raw["load_s"], 3),
        "raw_warmup_s": round(raw["warmup_s"], 3),
        "ours_s": round(ours_s, 4),
        "ours_runs_s": [round(r["seconds"], 4) for r in runs],
        "ours_images_per_s": round(ours_ips, 2),
        "ours_batch": best["batch"],
        "ours_status": [r["status"] for r in runs],
        "ratio_ours_over_raw": round(ratio, 3),
        "target_ratio": TARGET_RATIO,
        "worker_images_per_s": best["worker_ips"],
        "ours_cpu_s": {"worker": None if best["cpu_worker_s"] is None else round(best["cpu_worker_s"], 3),
                       "app": round(best["cpu_app_s"], 3)},
        "worker_start_s": round(worker_start_s, 2),
        "phases_s": {k: (None if best[k] is None else round(best[k], 3))
                     for k in ("pickup_s", "worker_s", "ingest_tail_s")},
        "first_run_s": round(runs[0]["seconds"], 3),
        "boxes": {"raw": cmp_raw.get("raw_boxes"), "db": cmp_raw.get("db_boxes"), "job_counter": best["boxes"],
                  "images_differing": cmp_raw.get("images_differing"), "images": best["images"]},
        "monitor_interval_s": args.monitor_interval,
        "loadavg_1m": {"raw": [round(x, 2) for x in load_raw], "ours": [round(x, 2) for x in load_ours]},
        "generate_s": round(gen_s, 2),
        "add_images_s": round(add_s, 2),
        "machine": machine(),
    })
    return 0


if __name__ == "__main__":
    sys.exit(main())
