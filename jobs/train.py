"""Training and evaluation in a worker: a manifest in, a YOLO dataset, an ultralytics run and metrics out.

Never opens DuckDB. The app wrote ``manifest.json`` into the job folder; here the shared YOLO writer
(annotator.formats.yolo.write_yolo) turns it into ``dataset/`` (images hard-linked, else copied), and
ultralytics trains into ``run/``. Every epoch's losses and metrics go to the app as a chunk; the app
registers the model when the done marker arrives.

Runs in the worker's own thread (the worker uses thread workers, so DataLoader worker processes work),
not in a further subprocess: the worker is already a process apart from the app, and a run pays no
second torch/ultralytics import. A crash that kills the worker is caught by the app's stale-job check.

- Cancel: checked between batches (ultralytics callbacks); ``trainer.stop = True`` ends the run after
  the current batch, which ultralytics then validates and saves, so best.pt/last.pt remain.
- CUDA out of memory (outside ultralytics' own first-epoch retry): the run starts again with half the
  batch, down to ``MIN_BATCH``, logged in the job.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

from .protocol import MANIFEST, JobChannel
from .runtime import WORKER_ID, free_gpu, is_oom, run_attempt, verify_model_file, worker_device

MIN_BATCH = 2  # the OOM fallback halves down to this
CPU_AUTO_BATCH = 16  # ultralytics' AutoBatch needs CUDA; on CPU 'auto' means its default batch
CANCEL_CHECK_S = 0.5
SPEED_IMAGES = 20  # images timed one by one for the speed benchmark (after one warm-up)
METRIC_KEYS = {"metrics/precision(B)": "precision", "metrics/recall(B)": "recall", "metrics/mAP50(B)": "mAP50",
               "metrics/mAP50-95(B)": "mAP50-95"}


@dataclass
class _State:
    stage: str = "writing dataset"
    epoch: int = 0  # epochs finished
    epochs: int = 0
    batch_i: int = 0
    batches: int = 0
    batch: int = 0
    device: str = "cpu"
    started: float = field(default_factory=time.time)
    epoch_started: float | None = None
    epoch_times: list = field(default_factory=list)
    cancelled: bool = False
    loop_over: bool = False
    last_cancel_check: float = 0.0
    scores: dict = field(default_factory=dict)  # mAP50 and mAP50-95 of the last finished epoch

    def snapshot(self) -> dict:
        frac = 0.0
        eta = None
        if self.epochs:
            within = self.batch_i / self.batches if self.batches else 0.0
            frac = min(1.0, (self.epoch + (within if self.stage == "training" else 0.0)) / self.epochs)
            if self.epoch_times:
                per = sum(self.epoch_times[-5:]) / len(self.epoch_times[-5:])
                eta = max(0.0, (self.epochs - self.epoch - within) * per)
            elif self.epoch_started and within > 0:
                eta = (time.time() - self.epoch_started) / within * (self.epochs - within)
        return {"stage": self.stage, "done": self.epoch, "total": self.epochs, "epoch": self.epoch,
                "epochs": self.epochs, "batch_i": self.batch_i, "batches": self.batches, "batch": self.batch,
                "device": self.device, "fraction": round(frac, 4), "eta_s": None if eta is None else round(eta, 1),
                "worker": WORKER_ID, **self.scores}


def _link_or_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)  # same filesystem: no bytes copied
    except OSError:
        shutil.copyfile(src, dst)


def write_dataset(job_dir: Path, splits: tuple[str, ...] | None = None) -> tuple[Path, dict]:
    """manifest.json -> dataset/ (the shared YOLO writer). Returns (data.yaml, summary)."""
    from annotator.diskspace import files_size, require_space
    from annotator.formats import ExportImage
    from annotator.formats.yolo import write_yolo
    from annotator.types import Box

    manifest = read_manifest(job_dir)
    records = [
        ExportImage(id=r["id"], file_name=r["file_name"], width=r["width"], height=r["height"], split=r["split"],
                    boxes=tuple(Box.from_dict(b) for b in r["boxes"]), source=Path(r["source"]))
        for r in manifest["images"] if splits is None or r["split"] in splits
    ]
    root = job_dir / "dataset"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True, exist_ok=True)
    first = next((r.source for r in records if r.source is not None and r.source.exists()), None)
    if first is not None and os.stat(first).st_dev != os.stat(root).st_dev:  # another disk: copies, not links
        require_space(root, files_size(r.source for r in records), f"copy {len(records)} images for training")
    summary = write_yolo(root, records, manifest["class_names"], copy=_link_or_copy)
    return root / "data.yaml", {"images": summary.images, "boxes": summary.boxes, "negatives": summary.negatives,
                                "per_split": summary.per_split, "dropped": len(summary.dropped)}


def nominal_batch(batch: int, train_images: int) -> int:
    """ultralytics' ``nbs``: it accumulates gradients over round(nbs / batch) batches per optimizer step
    (64 by default), so 60 training images in batches of 16 made ONE step per epoch. A fixed batch steps
    after every batch; an automatic one (GPU AutoBatch) after at most a quarter of the training set."""
    if batch >= 1:
        return int(batch)
    return max(1, min(64, train_images // 4))


def read_manifest(job_dir: Path) -> dict:
    """The job's input, written by the app (protocol.Manifest)."""
    if not (job_dir / MANIFEST).is_file():
        raise RuntimeError(f"this worker ({WORKER_ID}) does not see the app's data folder ({job_dir / MANIFEST} is "
                           "not here): training and evaluation run on a worker that has it (the app's own, or one "
                           "with the data folder mounted at the same path); only auto-annotation fetches its files")
    return json.loads((job_dir / MANIFEST).read_text())


# --- ultralytics (lazy) ------------------------------------------------------------------------------------
def multi_gpu(device: str) -> bool:
    """ "0,1": ultralytics trains with DDP, one process per GPU (BaseTrainer runs torch.distributed itself)."""
    return "," in str(device)


def first_device(device: str) -> str:
    """The device a single-device step (validation, the speed benchmark) uses: the first of "0,1"."""
    return str(device).split(",")[0].strip()


def ultralytics_train(base: dict, args: dict, callbacks: dict[str, Callable]) -> Any:
    """One ultralytics training run; returns the trainer. The seam the OOM test replaces."""
    from ultralytics import YOLO

    model = YOLO(verify_model_file(base["path"]) if base["kind"] == "model" else base["name"], task="detect")
    for event, fn in callbacks.items():
        model.add_callback(event, fn)
    model.train(**args)
    return model.trainer


def _round(v) -> float | None:
    return None if v is None else round(float(v), 5)


CONF_RANGE = (0.1, 0.9)  # a best-F1 threshold outside this rests on too few boxes to trust


def best_conf(metrics) -> float | None:
    """The confidence threshold at which this model's boxes on the val images have the best F1 (mean over
    classes, smoothed as ultralytics' own F1 curve is), kept within CONF_RANGE: the threshold that makes
    the fewest deletes plus draws for a reviewer. A short fine-tune's confidences run low: its best
    threshold is often about 0.4, not the usual 0.25 (measured on a shifted demo set: 1.03 edits per image
    at 0.25, 0.80 at 0.4)."""
    box = getattr(metrics, "box", None)
    curve, px = getattr(box, "f1_curve", None), getattr(box, "px", None)
    try:
        if curve is None or px is None or len(curve) == 0:
            return None
        from ultralytics.utils.metrics import smooth

        i = int(smooth(curve.mean(0), 0.1).argmax())
        return round(min(max(float(px[i]), CONF_RANGE[0]), CONF_RANGE[1]), 2)
    except Exception:  # noqa: BLE001 - a missing curve means no advice, never a failed job
        return None


def _det_metrics(metrics, names: list[str]) -> tuple[dict, list[dict]]:
    """ultralytics DetMetrics -> (overall, per class) with plain names; ``best_conf`` (see best_conf)."""
    rd = metrics.results_dict
    overall = {short: _round(rd.get(key)) for key, short in METRIC_KEYS.items()}
    overall["fitness"] = _round(getattr(metrics, "fitness", None))
    overall["best_conf"] = best_conf(metrics)
    rows = []
    nt = getattr(metrics, "nt_per_class", None)
    for i, c in enumerate(metrics.ap_class_index):
        p, r, ap50, ap = metrics.class_result(i)
        rows.append({"class": names[int(c)] if int(c) < len(names) else str(int(c)),
                     "instances": int(nt[int(c)]) if nt is not None and int(c) < len(nt) else None,
                     "precision": _round(p), "recall": _round(r), "mAP50": _round(ap50), "mAP50-95": _round(ap)})
    return overall, rows


def _plots(folder: Path, job_dir: Path) -> dict:
    wanted = {"confusion_matrix": "confusion_matrix.png", "confusion_matrix_normalized": "confusion_matrix_normalized.png",
              "pr_curve": "BoxPR_curve.png", "f1_curve": "BoxF1_curve.png", "results": "results.png"}
    return {k: str((folder / f).relative_to(job_dir)) for k, f in wanted.items() if (folder / f).is_file()}


def benchmark_speed(weights: Path, images: list[Path], imgsz: int, device: str) -> dict:
    """ms per image (preprocess / inference / postprocess) predicting one image at a time on ``device``."""
    from ultralytics import YOLO

    model = YOLO(str(weights), task="detect")
    if not images:
        return {}
    sums = {"preprocess": 0.0, "inference": 0.0, "postprocess": 0.0}
    timed = 0
    for n, path in enumerate([images[0]] + images[:SPEED_IMAGES]):  # the first call warms up
        r = model.predict(str(path), imgsz=imgsz, device=device, verbose=False)[0]
        if n:
            timed += 1
            for k in sums:
                sums[k] += float(r.speed.get(k) or 0.0)
    return {**{k: round(v / timed, 2) for k, v in sums.items()}, "images": timed, "device": device, "imgsz": imgsz}


def onnx_check(weights: Path, imgsz: int, out_dir: Path) -> dict:
    """Export to ONNX where that works offline; otherwise say why (never installs anything)."""
    missing = [m for m in ("onnx",) if importlib.util.find_spec(m) is None]
    if missing:
        return {"ok": False, "detail": f"ONNX export not checked: the {', '.join(missing)} package is not installed "
                                       "in the worker (pip install onnx; nothing is downloaded at run time)"}
    try:
        from ultralytics import YOLO

        t = time.perf_counter()
        path = YOLO(str(weights), task="detect").export(format="onnx", imgsz=imgsz, simplify=False, device="cpu",
                                                       verbose=False)
        import onnx

        onnx.checker.check_model(str(path))
        target = out_dir / "best.onnx"
        if Path(path) != target:
            shutil.move(str(path), target)
        return {"ok": True, "detail": f"ONNX export OK ({target.stat().st_size / 2**20:.1f} MB, "
                                      f"{time.perf_counter() - t:.1f} s)", "file": target.name}
    except Exception as e:  # noqa: BLE001 - report, never fail the training for it
        return {"ok": False, "detail": f"ONNX export failed: {type(e).__name__}: {str(e).splitlines()[0][:300]}"}


# --- training --------------------------------------------------------------------------------------------
def run_training(channel: JobChannel, payload: dict, train_fn: Callable = ultralytics_train) -> str:
    """One training attempt, reported through ``channel``. Returns the final status."""
    state = _State(epochs=int(payload["train"]["epochs"]), device=worker_device(payload["train"].get("device")))

    def body():
        status, result = _train(channel, payload, state, train_fn)
        return status, result, result.pop("error", None)

    return run_attempt(channel, state, body, cleanup=free_gpu)


def _callbacks(channel: JobChannel, state: _State) -> dict[str, Callable]:
    def check_cancel(trainer, force: bool = False):
        now = time.time()
        if state.cancelled or (not force and now - state.last_cancel_check < CANCEL_CHECK_S):
            return
        state.last_cancel_check = now
        if channel.cancel_requested():
            state.cancelled = True
            trainer.stop = True
            channel.log(f"cancel requested: stopping after this batch (epoch {trainer.epoch + 1}); the weights "
                        "are validated and saved first")

    def on_train_start(trainer):
        state.stage, state.batches, state.batch = "training", len(trainer.train_loader), int(trainer.batch_size)
        state.epochs = int(trainer.epochs)

    def on_train_epoch_start(trainer):
        state.batch_i, state.epoch_started = 0, time.time()
        state.batches = len(trainer.train_loader)
        state.batch = int(trainer.batch_size)

    def on_train_batch_end(trainer):
        state.batch_i += 1
        check_cancel(trainer)

    def on_train_epoch_end(trainer):
        state.stage = "validating"

    def on_fit_epoch_end(trainer):
        if state.loop_over:  # ultralytics' final validation of best.pt: not an epoch
            return
        check_cancel(trainer, force=True)
        metrics = dict(trainer.metrics or {})
        row = {"epoch": int(trainer.epoch) + 1}
        row.update({k: _round(v) for k, v in trainer.label_loss_items(trainer.tloss, prefix="train").items()})
        row.update({k: _round(v) for k, v in metrics.items() if k.startswith("val/")})
        row.update({short: _round(metrics.get(key)) for key, short in METRIC_KEYS.items()})
        row["lr"] = _round(next(iter((trainer.lr or {}).values()), None))
        took = time.time() - (state.epoch_started or time.time())
        row["seconds"] = round(took, 2)
        state.epoch_times.append(took)
        state.epoch = row["epoch"]
        state.scores = {"mAP50": row.get("mAP50"), "mAP50-95": row.get("mAP50-95")}
        state.batch_i = 0
        state.stage = "training"
        channel.send_chunk([row])
        channel.log(f"epoch {row['epoch']}/{state.epochs}: loss box {row.get('train/box_loss')} cls "
                    f"{row.get('train/cls_loss')} dfl {row.get('train/dfl_loss')} | P {row['precision']} "
                    f"R {row['recall']} mAP50 {row['mAP50']} mAP50-95 {row['mAP50-95']} ({took:.1f} s)")
        state.loop_over = bool(trainer.stop)
        if state.loop_over:
            state.stage = "final validation"

    return {"on_train_start": on_train_start, "on_train_epoch_start": on_train_epoch_start,
            "on_train_batch_end": on_train_batch_end, "on_train_epoch_end": on_train_epoch_end,
            "on_fit_epoch_end": on_fit_epoch_end}


def _train(channel: JobChannel, payload: dict, state: _State, train_fn: Callable) -> tuple[str, dict]:
    job_dir = Path(payload["job_dir"])
    names = list(payload["class_names"])
    t0 = time.perf_counter()
    data_yaml, written = write_dataset(job_dir)
    channel.log(f"worker {WORKER_ID}: dataset written ({written['images']} images, {written['boxes']} boxes, "
                f"{written['negatives']} negatives; {', '.join(f'{k} {v}' for k, v in written['per_split'].items())}) "
                f"in {time.perf_counter() - t0:.1f} s")
    if channel.cancel_requested():
        channel.log("cancelled before training started")
        return "cancelled", {}
    t = payload["train"]
    device = state.device
    batch = int(t["batch"])
    if batch < 1 and device in ("cpu", "mps"):
        batch = CPU_AUTO_BATCH
    args = {"data": str(data_yaml), "epochs": int(t["epochs"]), "imgsz": int(t["imgsz"]), "batch": batch,
            "optimizer": t.get("optimizer") or "auto", "patience": int(t.get("patience") or 0) or 10**6,
            "device": device, "workers": int(t.get("workers", 2)), "seed": int(t.get("seed", 0)),
            "project": str(job_dir), "name": "run", "exist_ok": True, "plots": True, "verbose": False}
    if t.get("lr0"):
        args["lr0"] = float(t["lr0"])
    args["nbs"] = nominal_batch(batch, int(written["per_split"].get("train", 0)))
    base = payload["base"]
    if base["kind"] == "arch":
        args["pretrained"] = False
    channel.log(f"training {base['name']} on {device}: {args['epochs']} epoch(s), imgsz {args['imgsz']}, batch "
                f"{'auto' if batch < 1 else batch} (an optimizer step every {args['nbs']} images), optimizer "
                f"{args['optimizer']}"
                + (f", lr0 {args['lr0']}" if 'lr0' in args else ""))
    t_train = time.perf_counter()
    while True:
        state.stage, state.epoch, state.loop_over, state.epoch_times = "starting", 0, False, []
        state.batch = args["batch"]
        try:
            trainer = train_fn(base, args, _callbacks(channel, state))
            break
        except Exception as e:  # noqa: BLE001
            if not is_oom(e):
                raise
            size = state.batch if state.batch and state.batch > 0 else args["batch"]
            if size < 1:  # AutoBatch picked nothing yet: start from ultralytics' default
                size = CPU_AUTO_BATCH
            if size <= MIN_BATCH:
                raise RuntimeError(f"CUDA out of memory even at batch {size}; use a smaller image size or model") \
                    from e
            args["batch"] = max(MIN_BATCH, size // 2)
            channel.log(f"CUDA out of memory at batch {size}: retrying with batch {args['batch']}")
            channel.send_chunk([{"restart": True, "batch": args["batch"]}])
            free_gpu()
    train_seconds = time.perf_counter() - t_train
    timings = {"dataset_s": round(t_train - t0, 2), "train_s": round(train_seconds, 2)}
    save_dir = Path(trainer.save_dir)
    best = save_dir / "weights" / "best.pt"
    if not best.is_file():
        status = "cancelled" if state.cancelled else "failed"
        return status, {"error": None if state.cancelled else "training ended without best.pt"}
    result: dict[str, Any] = {
        "best": str(best.relative_to(job_dir)), "results_csv": str((save_dir / "results.csv").relative_to(job_dir)),
        "args": str((save_dir / "args.yaml").relative_to(job_dir)), "batch": int(trainer.batch_size),
        "epochs_done": state.epoch, "cancelled": state.cancelled, "train_seconds": round(train_seconds, 2),
        "best_epoch": (getattr(trainer, "stopper", None) and trainer.stopper.best_epoch + 1) or None,
        "written": written, "timings": timings,
    }
    validator = getattr(trainer, "validator", None)
    vm = getattr(validator, "metrics", None)
    if vm is not None and getattr(vm, "ap_class_index", None) is not None:
        overall, per_class = _det_metrics(vm, names)
        result.update(metrics=overall, per_class=per_class,
                      val_speed={k: round(float(v), 2) for k, v in (vm.speed or {}).items()})
    elif multi_gpu(device):
        # ultralytics trained in its own DDP processes: this process's trainer holds no validation. Validate
        # best.pt here, on the first of the GPUs, so the model's metrics are there as after any training.
        state.stage = "validating"
        channel.log(f"multi-GPU run ({device}): validating best.pt on GPU {first_device(device)}")
        overall, per_class, speed, _ = _validate(best, data_yaml, names, args, job_dir, "run-val", plots=False)
        result.update(metrics=overall, per_class=per_class, val_speed=speed)
    result["plots"] = _plots(save_dir, job_dir)
    manifest = read_manifest(job_dir)
    val = [r for r in manifest["images"] if r["split"] == "val"]
    result["val_snapshot"] = manifest["val_fingerprint"]  # the app computed it when it froze the data
    state.stage = "benchmark"
    channel.log(f"best.pt from epoch {result['best_epoch']}: mAP50-95 {(result.get('metrics') or {}).get('mAP50-95')}; "
                f"timing inference")
    val_images = [job_dir / "dataset" / "images" / "val" / r["file_name"] for r in val]
    t1 = time.perf_counter()
    result["speed"] = benchmark_speed(best, val_images, int(args["imgsz"]), first_device(device))
    timings["speed_s"] = round(time.perf_counter() - t1, 2)
    channel.log(f"speed on {device}: {result['speed'].get('preprocess')} / {result['speed'].get('inference')} / "
                f"{result['speed'].get('postprocess')} ms per image (pre / inference / post)")
    if payload.get("onnx"):
        t1 = time.perf_counter()
        result["onnx"] = onnx_check(best, int(args["imgsz"]), save_dir / "weights")
        timings["onnx_s"] = round(time.perf_counter() - t1, 2)
        channel.log(result["onnx"]["detail"])
    else:
        result["onnx"] = {"ok": False, "detail": "ONNX export not requested"}
    if payload.get("parent_eval") and base["kind"] == "model":
        state.stage = "evaluating the base model"
        t1 = time.perf_counter()
        parent_args = {**args, "imgsz": int(payload.get("parent_imgsz") or args["imgsz"])}
        overall, per_class, speed, _ = _validate(Path(verify_model_file(base["path"])), data_yaml, names,
                                                 parent_args, job_dir, "base_val", plots=False)
        result["parent_metrics"] = {**overall, "per_class": per_class, "speed": speed, "imgsz": parent_args["imgsz"]}
        timings["parent_eval_s"] = round(time.perf_counter() - t1, 2)
        channel.log(f"base model {base['name']} on the same val images (imgsz {parent_args['imgsz']}): "
                    f"mAP50-95 {overall.get('mAP50-95')}")
    if not state.cancelled:
        t1 = time.perf_counter()
        state.stage = "scoring each dataset"
        result["per_dataset"] = per_dataset_scores(job_dir, manifest, best, base, payload, args, names, channel)
        if result["per_dataset"]:
            timings["per_dataset_s"] = round(time.perf_counter() - t1, 2)
    if state.cancelled:
        channel.log(f"cancelled after epoch {state.epoch}/{state.epochs}: best.pt kept and registered")
        return "cancelled", result
    channel.log(f"done: {state.epoch} epoch(s) in {train_seconds:.1f} s")
    return "succeeded", result


def per_dataset_scores(job_dir: Path, manifest: dict, best: Path, base: dict, payload: dict, args: dict,
                       names: list[str], channel: JobChannel) -> list[dict]:
    """With val images in two or more datasets: the new model (and its base, at the same size) scored on each
    dataset's val images alone, so a fine-tune that learnt one dataset and forgot another shows it (the
    overall score averages that away). One row per dataset: its name, val images, both scores."""
    by_ds: dict[str, list[str]] = {}
    for r in manifest["images"]:
        if r["split"] == "val":
            by_ds.setdefault(r.get("dataset") or "", []).append(r["file_name"])
    if len(by_ds) < 2:
        return []
    root = job_dir / "dataset"
    with_parent = bool(payload.get("parent_eval")) and base["kind"] == "model"
    parent_args = {**args, "imgsz": int(payload.get("parent_imgsz") or args["imgsz"])}
    rows = []
    for k, (ds, files) in enumerate(sorted(by_ds.items())):
        listing = root / f"val_dataset_{k}.txt"
        listing.write_text("".join(f"{root / 'images' / 'val' / f}\n" for f in files))
        yaml_path = root / f"val_dataset_{k}.yaml"
        yaml_path.write_text(yaml.safe_dump({"path": str(root), "train": str(listing), "val": str(listing),
                                              "names": {i: n for i, n in enumerate(names)}}))
        row = {"dataset": ds, "val_images": len(files)}
        row["model"], _, _, _ = _validate(best, yaml_path, names, args, job_dir, f"val_dataset_{k}", plots=False)
        if with_parent:
            row["parent"], _, _, _ = _validate(Path(verify_model_file(base["path"])), yaml_path, names, parent_args,
                                               job_dir, f"base_val_dataset_{k}", plots=False)
        rows.append(row)
        drop = (row.get("parent") or {}).get("mAP50-95")
        now = row["model"].get("mAP50-95")
        channel.log(f"dataset {ds!r} ({len(files)} val images): mAP50-95 {now}"
                    + (f" (base {drop})" if drop is not None else ""))
    return rows


def _validate(weights: Path, data_yaml: Path, names: list[str], args: dict, job_dir: Path, name: str,
              plots: bool = True) -> tuple[dict, list[dict], dict, dict]:
    from ultralytics import YOLO

    batch = args["batch"] if args["batch"] and args["batch"] > 0 else CPU_AUTO_BATCH
    metrics = YOLO(str(weights), task="detect").val(
        data=str(data_yaml), imgsz=int(args["imgsz"]), batch=batch, device=first_device(args["device"]),
        plots=plots, project=str(job_dir), name=name, exist_ok=True, verbose=False, workers=0)
    overall, per_class = _det_metrics(metrics, names)
    speed = {k: round(float(v), 2) for k, v in (metrics.speed or {}).items()}
    return overall, per_class, speed, _plots(Path(metrics.save_dir), job_dir)


# --- evaluation --------------------------------------------------------------------------------------------
def run_evaluation(channel: JobChannel, payload: dict) -> str:
    """Validate a model on the manifest's (val) images; per-class metrics and plots go back to the app."""
    state = _State(epochs=1, device=worker_device(payload.get("device")))

    def body():
        job_dir = Path(payload["job_dir"])
        data_yaml, written = write_dataset(job_dir, splits=("val",))
        # ultralytics wants a train entry in every data.yaml; validation only reads val.
        spec = yaml.safe_load(data_yaml.read_text())
        spec["train"] = spec["val"]
        data_yaml.write_text(yaml.safe_dump(spec, sort_keys=False, allow_unicode=True))
        state.stage = "validating"
        channel.log(f"worker {WORKER_ID}: validating {payload['model_name']} on {written['images']} val image(s), "
                    f"{written['boxes']} box(es), device {state.device}")
        args = {"imgsz": int(payload["imgsz"]), "batch": int(payload.get("batch") or -1), "device": state.device}
        overall, per_class, speed, plots = _validate(Path(verify_model_file(payload["model_path"])), data_yaml,
                                                     payload["class_names"],
                                                     args, job_dir, "val")
        state.epoch = 1
        channel.log(f"mAP50-95 {overall.get('mAP50-95')}, mAP50 {overall.get('mAP50')}, P {overall.get('precision')}, "
                    f"R {overall.get('recall')}")
        return "succeeded", {"metrics": {**overall, "per_class": per_class, "speed": speed}, "plots": plots,
                             "written": written}, None

    return run_attempt(channel, state, body, cleanup=free_gpu)
