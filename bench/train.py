"""Fine-tuning: our whole training job against ultralytics' own YOLO(...).train on a hand-written dataset.

    python bench/train.py [--n 100] [--epochs 10] [--imgsz 160] [--batch 16] [--device cpu] [--reps 1]

Writes N deterministic demo scenes (annotator.demo.scenes.scene_jpeg, 640x480) with their exact boxes, split
80/20 by index, then, in the same run, with the same base (the demo model annotator/assets/demo_shapes.pt),
epochs, imgsz, batch, device, seed and ultralytics defaults (plots on):

  raw   a plain YOLO dataset (images/, labels/, data.yaml, written before timing by annotator.formats.yolo's
        writer) and YOLO(base).train(...), timed from the train call to its return (ultralytics' final
        validation of best.pt included)
  ours  the same images ingested into a project with the same boxes (approved) and the same splits, a
        JobMonitor with its local worker (warmed up by an evaluation job before timing), then
        Services.train_model(...) until the job has succeeded AND the model is registered in DuckDB.
        Ours does more than raw by design: dataset writing from the store, a speed benchmark of best.pt
        and the validation of the base model on the same val images (for the side-by-side table); the
        job reports each step's seconds, printed apart. ONNX check off.

Prints wall seconds of both, ratio ours/raw (target <= 1.05), the ratio without the extra evaluation
steps, and the final mAP of both (equal within noise). Asserts nothing. Last line: `RESULT {json}`.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import emit_result, machine, set_data_dir, table, temp_workdir, use_repo_package  # noqa: E402

TARGET_RATIO = 1.05
FIRST_SEED = 4_000_000  # far from the demo model's training seeds and from check/test seeds


def write_scenes(folder: Path, n: int) -> dict[str, list]:
    """scene_<i>.jpg files in ``folder``; returns file name -> its boxes (annotator.types.Box)."""
    from annotator.demo import scenes

    return scenes.write_scenes(folder, range(FIRST_SEED, FIRST_SEED + n), name="scene_{i:04d}.jpg")


def split_of(name: str) -> str:
    return "val" if int(name[6:10]) % 5 == 4 else "train"  # 80/20 by index


def raw_dataset(root: Path, folder: Path, truth: dict) -> Path:
    """The plain YOLO dataset ultralytics trains on (the scenes copied, their labels, data.yaml)."""
    from annotator.demo import scenes
    from annotator.formats import ExportImage
    from annotator.formats.yolo import write_yolo

    records = [ExportImage(id=i, file_name=name, width=640, height=480, split=split_of(name), boxes=tuple(boxes),
                           source=folder / name) for i, (name, boxes) in enumerate(sorted(truth.items()))]
    write_yolo(root, records, scenes.CLASSES)
    return root / "data.yaml"


def run_raw(data_yaml: Path, out: Path, base: Path, args) -> tuple[float, dict]:
    from ultralytics import YOLO

    model = YOLO(str(base), task="detect")
    t = time.perf_counter()
    model.train(data=str(data_yaml), epochs=args.epochs, imgsz=args.imgsz, batch=args.batch, device=args.device,
                workers=2, seed=0, project=str(out), name="raw", exist_ok=True, plots=True, verbose=False,
                patience=50)
    seconds = time.perf_counter() - t
    m = model.trainer.metrics
    return seconds, {"mAP50-95": round(float(m["metrics/mAP50-95(B)"]), 4), "mAP50": round(float(m["metrics/mAP50(B)"]), 4)}


def run_ours(services, p, args, rep: int) -> tuple[float, dict, dict]:
    t = time.perf_counter()
    job = services.training.start_training(p, base="demo-shapes", epochs=args.epochs, imgsz=args.imgsz, batch=args.batch,
                               device=args.device, onnx_check=False, name=f"bench-{rep}")
    while True:
        job = services.jobs.get_job(job.id)
        if not job.active:
            break
        time.sleep(0.05)
    seconds = time.perf_counter() - t
    if job.status != "succeeded":
        raise SystemExit(f"our job {job.id} {job.status}: {job.error}\n{job.log[-3000:]}")
    m = services.models.get_model(p, job.result["model_id"])
    return seconds, {"mAP50-95": round(m.metrics["mAP50-95"], 4), "mAP50": round(m.metrics["mAP50"], 4)}, \
        job.result.get("timings", {})


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--imgsz", type=int, default=160)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--reps", type=int, default=1)
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()

    with temp_workdir("bench-train-", keep=args.keep) as work:
        set_data_dir(work / "data")
        use_repo_package()
        from annotator.demo import scenes
        from annotator.launch import start_jobs
        from annotator.services import Services
        from annotator.settings import Settings

        settings = Settings.from_env()
        services = Services.open(settings)  # prepare(): offline ultralytics, config in the data folder
        truth = write_scenes(work / "scenes", args.n)
        data_yaml = raw_dataset(work / "raw-dataset", work / "scenes", truth)

        p = services.projects.create_project("Bench", list(scenes.CLASSES))
        services.images.add_images(p, [(work / "scenes", "scenes")], dataset="scenes")
        images = services.images.list_images(p, page_size=500).images
        services.ctx.store.insert_boxes([(im.id, b) for im in images for b in truth[im.rel_path]])
        services.ctx.store.set_review_status([i.id for i in images], "approved", "bench")
        for split in ("train", "val"):
            services.splits.set_split(p, split, image_ids=[i.id for i in images if split_of(i.rel_path) == split])
        services.models.add_model(p, scenes.DEMO_MODEL_PATH, name="demo-shapes")

        monitor = start_jobs(services, local_worker=True, interval=0.2)
        try:
            t = time.perf_counter()
            warm = services.training.start_evaluation(p, "demo-shapes", imgsz=args.imgsz, device=args.device)
            while services.jobs.get_job(warm.id).active:
                time.sleep(0.1)
            print(f"worker start + warm-up evaluation: {time.perf_counter() - t:.1f} s (not timed)")
            raw_runs, ours_runs = [], []
            for rep in range(args.reps):
                raw_runs.append(run_raw(data_yaml, work / "raw-runs", scenes.DEMO_MODEL_PATH, args))
                print(f"rep {rep}: raw {raw_runs[-1][0]:.1f} s", flush=True)
                ours_runs.append(run_ours(services, p, args, rep))
                print(f"rep {rep}: ours {ours_runs[-1][0]:.1f} s {ours_runs[-1][2]}", flush=True)
        finally:
            monitor.stop()
            services.close()

    raw_s, raw_m = min(raw_runs, key=lambda r: r[0])
    ours_s, ours_m, timings = min(ours_runs, key=lambda r: r[0])
    extras = timings.get("speed_s", 0.0) + timings.get("parent_eval_s", 0.0)
    ratio = ours_s / raw_s
    ratio_core = (ours_s - extras) / raw_s
    print()
    print(f"{args.n} scenes 640x480 (80/20), base demo_shapes.pt, {args.epochs} epochs, imgsz {args.imgsz}, "
          f"batch {args.batch}, device {args.device}, best of {args.reps}; {machine()}")
    print(table(["", "wall s", "mAP50-95", "mAP50"],
                [["raw YOLO.train", raw_s, raw_m["mAP50-95"], raw_m["mAP50"]],
                 ["ours (job -> model registered)", ours_s, ours_m["mAP50-95"], ours_m["mAP50"]]]))
    print(f"inside our job: dataset {timings.get('dataset_s')} s, ultralytics train {timings.get('train_s')} s, "
          f"speed benchmark {timings.get('speed_s')} s, base-model validation {timings.get('parent_eval_s')} s")
    print(f"ratio ours/raw: {ratio:.3f} (target <= {TARGET_RATIO}); without the speed benchmark and base-model "
          f"validation: {ratio_core:.3f}")
    print(f"mAP50-95 ours - raw: {ours_m['mAP50-95'] - raw_m['mAP50-95']:+.4f}")
    emit_result({"bench": "train", "n": args.n, "epochs": args.epochs, "imgsz": args.imgsz, "batch": args.batch,
                 "device": args.device, "raw_s": round(raw_s, 2), "ours_s": round(ours_s, 2), "ratio": round(ratio, 3),
                 "ratio_without_extras": round(ratio_core, 3), "target": TARGET_RATIO, "raw": raw_m, "ours": ours_m,
                 "timings": timings, "runs": {"raw": [round(r[0], 2) for r in raw_runs],
                                              "ours": [round(r[0], 2) for r in ours_runs]}, **machine()})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
