"""Fine-tuning and evaluation, the app's half: validate a request, freeze the exact data (a
``ProjectSnapshot`` written as the job's manifest, the image ids per split, and a fingerprint of their
boxes), queue the job, and, when the worker's done marker arrives (the monitor calls ``TRAIN_KIND`` and
``EVALUATE_KIND``), register the trained model with its lineage, data, params and metrics, and the
evaluations. Also what the Train tab reads: models compared side by side, a job's curves and plots."""

from __future__ import annotations

import importlib.util
import logging
import re
import shutil
from pathlib import Path
from typing import Sequence

from jobs.protocol import EVALUATE, TRAIN, EvaluatePayload, TrainPayload

from .. import checkpoints, classmap
from ..diskspace import files_size, require_space
from ..sizing import epochs_for
from ..names import clean_name
from ..store import utcnow
from ..types import SPLITS, Job, ModelRecord, NotFound, Project, UserError
from . import snapshot
from .context import AppContext, as_system, dataset_ids, model, project, require
from .jobs import JobKind, enqueue, get_job
from .models import device_class, model_file, store_model_file, suggest_imgsz
from .splits import assign_missing_splits, val_warning

log = logging.getLogger(__name__)

# Fresh architectures (no weights needed: ultralytics builds them from its bundled yaml files).
ARCHITECTURES = ("yolov8n.yaml", "yolov8s.yaml", "yolov8m.yaml", "yolo11n.yaml", "yolo11s.yaml", "yolo11m.yaml")
OPTIMIZERS = ("auto", "SGD", "Adam", "AdamW", "NAdam", "RAdam", "RMSProp")
MAX_EPOCHS = 10_000
_DEVICE_RE = re.compile(r"^(auto|cpu|mps|\d+(,\d+)*|cuda:\d+)$")


def _bundled_architecture(name: str) -> bool:
    """Whether ultralytics ships ``name`` (a model yaml), found without importing ultralytics."""
    spec = importlib.util.find_spec("ultralytics")
    if spec is None or not spec.submodule_search_locations:
        return False
    root = Path(list(spec.submodule_search_locations)[0]) / "cfg" / "models"
    stem = Path(name).stem
    scaled = re.sub(r"(\d+)[nsmlx]$", r"\1", stem)  # yolov8n.yaml is yolov8.yaml at scale n
    return any(root.rglob(f"{stem}.yaml")) or (scaled != stem and any(root.rglob(f"{scaled}.yaml")))


def _base(ctx: AppContext, p: Project, base: str | None) -> tuple[ModelRecord | None, str]:
    """A registered model (by name or id) or a bundled architecture yaml (e.g. yolov8n.yaml)."""
    key = (base or "").strip()
    if not key:
        models = ctx.store.list_models(p.id)
        return (models[-1], models[-1].name) if models else (None, ARCHITECTURES[0])
    if key.lower().endswith((".yaml", ".yml")):
        if "/" in key or "\\" in key or not _bundled_architecture(key):
            raise UserError(f"base {key!r} is not an architecture ultralytics ships "
                            f"(e.g. {', '.join(ARCHITECTURES)}); or choose a registered model")
        return None, key
    try:
        m = model(ctx, p, key)
    except NotFound as e:
        raise UserError(f"{e}; or use a fresh architecture such as {ARCHITECTURES[0]}") from None
    return m, m.name


def train_args(imgsz, epochs, batch, optimizer, lr0, patience, device) -> dict:
    """The training options as typed, checked; UserError naming the value at fault."""
    try:
        imgsz, epochs, patience = int(imgsz), int(epochs), int(patience)
    except (TypeError, ValueError):
        raise UserError(f"image size, epochs and patience must be whole numbers, got "
                        f"{imgsz!r}, {epochs!r}, {patience!r}") from None
    if not (32 <= imgsz <= 4096) or imgsz % 32:
        raise UserError(f"image size must be a multiple of 32 between 32 and 4096, got {imgsz}")
    if not (1 <= epochs <= MAX_EPOCHS):
        raise UserError(f"epochs must be between 1 and {MAX_EPOCHS}, got {epochs}")
    if patience < 0:
        raise UserError(f"patience must be 0 (no early stopping) or more epochs, got {patience}")
    raw = str(batch if batch is not None else "auto").strip().lower()
    if raw in ("", "auto", "0", "-1"):
        bs = -1
    else:
        try:
            bs = int(float(raw)) if float(raw).is_integer() else None
        except ValueError:
            bs = None
        if bs is None or bs < 1 or bs > 1024:
            raise UserError(f"batch must be 'auto' or a whole number from 1 to 1024, got {batch!r}")
    opt = {o.lower(): o for o in OPTIMIZERS}.get(str(optimizer or "auto").strip().lower())
    if opt is None:
        raise UserError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {optimizer!r}")
    lr = None
    if lr0 not in (None, "", 0, 0.0, "0"):
        try:
            lr = float(lr0)
        except (TypeError, ValueError):
            raise UserError(f"learning rate must be a number, got {lr0!r}") from None
        if not (0 < lr <= 1):
            raise UserError(f"learning rate must be in (0, 1], got {lr0!r}")
    if lr is not None and opt == "auto":
        raise UserError(f"optimizer 'auto' chooses its own learning rate: choose an optimizer (e.g. SGD or "
                        f"AdamW) to train with learning rate {lr0}, or leave the learning rate empty")
    dev = str(device or "auto").strip().lower()
    if not _DEVICE_RE.match(dev):
        raise UserError(f"device must be auto, cpu, mps, a GPU index (0, 1, ...) or cuda:N, got {device!r}")
    return {"imgsz": imgsz, "epochs": epochs, "batch": bs, "optimizer": opt, "lr0": lr,
            "patience": patience, "device": dev}


def _queue(ctx: AppContext, job_id: int, task_name: str, what: str, write, payload) -> None:
    """Write the job folder and queue the task; a job whose task never reached the queue fails with the
    reason, and leaves no job folder behind."""
    jdir = ctx.settings.job_dir(job_id)
    try:
        write(jdir)
        task = enqueue(ctx, task_name, payload)
    except BaseException as e:
        ctx.store.update_job(job_id, status="failed", error=f"could not queue the {what}: {e}", finished_at=utcnow())
        shutil.rmtree(jdir, ignore_errors=True)
        raise
    ctx.store.update_job(job_id, task_id=task.id)


def start_training(ctx: AppContext, ref, base: str | None = None, datasets: Sequence[str] | None = None,
                   approved_only: bool = True, imgsz: int | None = None, epochs: int | None = None,
                   batch: str | int = "auto", optimizer: str = "auto", lr0: float | None = None,
                   patience: int | None = None, device: str | None = None, name: str | None = None,
                   onnx_check: bool = True, workers: int | None = None, user: str | None = None,
                   replay: float = 0.0) -> Job:
    """Queue a fine-tuning job on the project's (approved) images and their stored splits.

    ``base``: a registered model (name or id), an architecture yaml such as ``yolov8n.yaml`` (trained
    from scratch), or empty for the newest registered model (else yolov8n.yaml). ``imgsz``, ``epochs`` and
    ``patience`` left empty come from the data (sizing.py: the boxes' sizes; image passes by device).
    ``replay`` (0-1): with ``datasets``, also the other datasets' val images and that share of their train
    images, against forgetting (the job scores the model on each dataset's val images).
    """
    return queue_training(ctx, ref, base, datasets, approved_only, imgsz, epochs, batch, optimizer, lr0, patience,
                          device, name, onnx_check, workers, user, replay=replay)


def queue_training(ctx: AppContext, ref, base=None, datasets=None, approved_only=True, imgsz=None, epochs=None,
                   batch="auto", optimizer="auto", lr0=None, patience=None, device=None, name=None, onnx_check=True,
                   workers=None, user=None, round_of: int | None = None, replay: float = 0.0) -> Job:
    """start_training, plus ``round_of``: a keep-learning round begun at that many approvals (services/loop.py).
    ``replay`` (0-1, with ``datasets``): mix in the other datasets' approved val images and that share of
    their train images (snapshot.with_replay), so a round on new data does not forget the old."""
    require(ctx, user, "admin", "starting a training")
    p = project(ctx, ref)
    parent, base_name = _base(ctx, p, base)
    imgsz_reason = "as chosen"
    if imgsz in (None, "", 0):
        advice = suggest_imgsz(ctx, p, parent, device)
        imgsz, imgsz_reason = advice["imgsz"], advice["reason"]
    auto_epochs, auto_patience = epochs in (None, "", 0), patience in (None, "")
    args = train_args(imgsz, 1 if auto_epochs else epochs, batch, optimizer, lr0, 0 if auto_patience else patience,
                      device or ctx.settings.device or "auto")
    if name:
        name = clean_name(name, "Model name")
        if any(m.name.lower() == name.lower() for m in ctx.store.list_models(p.id)):
            raise UserError(f"A model named {name!r} is already registered in {p.name!r}")
    ds_ids = dataset_ids(ctx, p, datasets)
    assign_missing_splits(ctx, p)  # a training freezes its splits: they are stored
    snap, _ = snapshot.labelled(ctx, p, ds_ids, approved_only)
    try:
        replay = float(replay or 0.0)
    except (TypeError, ValueError):
        raise UserError(f"replay must be a share between 0 and 1, got {replay!r}") from None
    if not 0.0 <= replay <= 1.0:
        raise UserError(f"replay must be a share between 0 and 1, got {replay}")
    replayed = None
    if replay and ds_ids:
        snap, replayed = snapshot.with_replay(ctx, p, snap, ds_ids, replay, approved_only)
    images = snap.images
    what = "approved images" if approved_only else "approved or labelled images"
    where = f" in dataset(s) {', '.join(datasets)}" if datasets else ""
    if not images:
        raise UserError(f"Nothing to train on: project {p.name!r} has no {what}{where}. Review and approve "
                        "images first (or untick 'approved images only').")
    per_split = {s: sum(1 for i in images if snap.splits[i.id] == s) for s in SPLITS}
    if snap.num_boxes == 0:
        raise UserError(f"The {len(images)} {what}{where} of {p.name!r} have no boxes: training needs at "
                        "least one labelled object.")
    for split in ("train", "val"):
        if per_split[split] == 0:
            raise UserError(
                f"The {split} split has none of the {len(images)} {what}{where} (train {per_split['train']}, "
                f"val {per_split['val']}, test {per_split['test']}): change the split ratios or move "
                f"images to {split} in the split manager.")
    if auto_epochs or auto_patience:  # from the data: enough optimizer steps for this many images
        e, pat = epochs_for(per_split["train"], device_class(ctx, device))
        args["epochs"] = e if auto_epochs else args["epochs"]
        args["patience"] = min(pat, args["epochs"]) if auto_patience else args["patience"]
    # The worker links the images (same disk) and writes labels, two checkpoints per run and plots.
    weights = files_size([model_file(ctx, parent)]) if parent else 50 * 1024 * 1024
    require_space(ctx.settings.data_dir, 2 * weights + 1024 * len(images) + 32 * 1024 * 1024,
                  f"train on {len(images)} images of {p.name!r}")
    val_note = val_warning(per_split["val"], len(images))
    fp = snapshot.data_fingerprint(snap)
    same_classes = parent is not None and list(parent.class_names) == p.class_names
    params = {
        **args, "base": base_name, "base_kind": "model" if parent else "architecture",
        "datasets": list(datasets or []), "approved_only": bool(approved_only), "name": name,
        "onnx_check": bool(onnx_check), "snapshot": fp, "imgsz_reason": imgsz_reason, "val_warning": val_note,
        "round": round_of, "replay": replay, "replayed": replayed,
    }
    job_id = ctx.store.create_job(p.id, "train", params, args["epochs"], model_id=parent.id if parent else None,
                                  user=user)
    payload: TrainPayload = {
        "job_id": job_id, "attempt": 0, "job_dir": str(ctx.settings.job_dir(job_id)), "class_names": p.class_names,
        "base": ({"kind": "model", "path": str(model_file(ctx, parent)), "name": parent.name}
                 if parent else {"kind": "arch", "name": base_name}),
        "parent_eval": bool(same_classes), "onnx": bool(onnx_check),
        # The base is scored at the new model's size: scored at its own, the comparison would credit the
        # training with what the image size alone does.
        "parent_imgsz": int(args["imgsz"]),
        "train": {**args, "workers": 2 if workers is None else int(workers), "seed": 0},
    }

    def write(jdir: Path) -> None:
        ctx.store.save_training_images(job_id, [(i.id, snap.splits[i.id]) for i in images])
        snapshot.write_manifest(ctx, jdir, snap, p.class_names)

    _queue(ctx, job_id, TRAIN, "training", write, payload)
    negatives = len(images) - len({int(i) for i in snap.boxes["image_id"]})
    ctx.store.update_job(job_id, log=(
        f"queued: {len(images)} image(s) (train {per_split['train']}, val {per_split['val']}, test "
        f"{per_split['test']}), {snap.num_boxes} box(es), {negatives} negative(s); "
        f"base {base_name} ({'the newest registered model' if base in (None, '') and parent else 'as chosen'}); "
        f"{args['epochs']} epoch(s){' (from the data)' if auto_epochs else ''} at imgsz "
        f"{imgsz_reason if imgsz_reason != 'as chosen' else args['imgsz']}"
        + (f"; replay: {replayed['train']} train and {replayed['val']} val image(s) of the other datasets"
           if replayed is not None else "")
        + ("; replay: nothing to add (the training uses every dataset)" if replay and not ds_ids else "")
        + (f"\nwarning: {val_note}" if val_note else "")))
    return ctx.store.get_job(job_id)


def current_val_snapshot(ctx: AppContext, p: Project) -> dict:
    """The fingerprint of the project's approved val images now (what evaluations are compared against)."""
    snap, _ = snapshot.labelled(ctx, p, (), True, ("val",))
    return snapshot.data_fingerprint(snap)


def start_evaluation(ctx: AppContext, ref, model_ref, device: str | None = None, imgsz: int | None = None,
                     batch: int | None = None, user: str | None = None) -> Job:
    """Queue the validation of any registered model on the project's current approved val images."""
    require(ctx, user, "admin", "starting an evaluation")
    p = project(ctx, ref)
    if model_ref in (None, ""):
        raise UserError("Choose a model to evaluate")
    m = model(ctx, p, model_ref)
    imgsz = imgsz or m.params.get("imgsz") or 640
    args = train_args(imgsz, 1, batch or "auto", "auto", None, 0, device or ctx.settings.device or "auto")
    assign_missing_splits(ctx, p)
    snap, _ = snapshot.labelled(ctx, p, (), True, ("val",))
    if not snap.images:
        raise UserError(f"Project {p.name!r} has no approved images in the val split: approve some, or move "
                        "approved images to val in the split manager.")
    if not snap.num_boxes:
        raise UserError(f"The {len(snap.images)} approved val image(s) of {p.name!r} have no boxes to evaluate on.")
    mapping = classmap.match_classes(m.class_names, p.class_names)  # model idx -> project idx
    remap = {proj: mod for mod, proj in mapping.items() if proj is not None}  # project idx -> model idx
    if not remap:
        raise UserError(f"None of the model's classes ({', '.join(m.class_names)}) is a class of {p.name!r} "
                        f"({', '.join(p.class_names)}): nothing to compare")
    fp = snapshot.data_fingerprint(snap)
    unmatched = [p.class_names[i] for i in range(len(p.classes)) if i not in remap]
    params = {"model": m.name, "imgsz": args["imgsz"], "device": args["device"], "batch": args["batch"],
              "snapshot": fp, "unmatched_classes": unmatched,
              "mapping": {m.class_names[k]: p.class_names[v] for k, v in mapping.items() if v is not None}}
    job_id = ctx.store.create_job(p.id, "evaluate", params, 1, model_id=m.id, user=user)
    payload: EvaluatePayload = {
        "job_id": job_id, "attempt": 0, "job_dir": str(ctx.settings.job_dir(job_id)),
        "model_path": str(model_file(ctx, m)), "model_name": m.name, "class_names": list(m.class_names),
        **{k: args[k] for k in ("imgsz", "device", "batch")}}
    info: dict = {}

    def write(jdir: Path) -> None:
        info.update(snapshot.write_manifest(ctx, jdir, snap, m.class_names, remap=remap))

    _queue(ctx, job_id, EVALUATE, "evaluation", write, payload)
    note = (f"; {info['dropped_boxes']} box(es) of class(es) {', '.join(unmatched)} the model does not know "
            "are left out") if info["dropped_boxes"] else ""
    ctx.store.update_job(job_id, log=f"queued: {m.name} on {len(snap.images)} approved val image(s), "
                                     f"{fp['boxes']} box(es){note}")
    return ctx.store.get_job(job_id)


# --- the app side of a finished job (called by the JobMonitor) ----------------------------------------------
def ingest_epochs(ctx: AppContext, job: Job, chunk: dict, cursor: dict) -> None:
    """One row per finished epoch (the curves); a restart (the OOM fallback) starts the curves over."""
    rows = list(chunk.get("items", []))
    restarts = [k for k, row in enumerate(rows) if row.get("restart")]
    if restarts:
        rows = rows[restarts[-1] + 1:]
    ctx.store.save_epochs(job.id, [r for r in rows if "epoch" in r], cursor["chunks_in"], restart=bool(restarts))


def finish_training(ctx: AppContext, job: Job, done: dict) -> dict:
    """Register the trained model (once: idempotent) and its evaluations (and the base model's on the same
    val images). Returns the job's result: the worker's, with the registered model's id and name."""
    result = done.get("result") or {}
    if not result.get("best"):
        return result
    m = ctx.store.model_for_job(job.id) or _register(ctx, job, result)
    val_snap = result.get("val_snapshot") or {}
    if result.get("metrics"):
        ctx.store.add_evaluation(job.project_id, m.id, job.id, m.metrics, val_snap, job.created_by)
    parent = result.get("parent_metrics")
    if parent and job.model_id is not None:
        ctx.store.add_evaluation(job.project_id, job.model_id, job.id, parent, val_snap, job.created_by)
    out = {**result, "model_id": m.id, "model": m.name}
    if ctx.settings.check_after_training and not result.get("cancelled"):
        out["label_check"] = _check_labels(ctx, job, m)
    return out


def _check_labels(ctx: AppContext, job: Job, m: ModelRecord) -> int | None:
    """Queue a label check of the approved images with the model just trained (services/quality.py): its
    findings are the Annotate tab's "Likely label errors" queue. Returns the check's job id; a check that
    cannot start (nothing approved, no class in common) is only logged: the training itself succeeded."""
    from .quality import CHECK_KIND, start_label_check

    earlier = [j.id for j in ctx.store.list_jobs(job.project_id, limit=50) if j.kind == CHECK_KIND and j.model_id == m.id]
    if earlier:  # finish ran again (it is idempotent): the check was queued the first time
        return earlier[0]
    try:
        return start_label_check(as_system(ctx), job.project_id, m.id, user=job.created_by).id
    except UserError as e:
        log.info("no label check after training job %s: %s", job.id, e)
        return None


def finish_evaluation(ctx: AppContext, job: Job, done: dict) -> dict:
    """Record the evaluation, its per-class rows named by the project's classes."""
    result = done.get("result") or {}
    if done.get("status") != "succeeded" or not result.get("metrics"):
        return {}
    mapping = job.params.get("mapping") or {}
    metrics = dict(result["metrics"])
    metrics["per_class"] = [{**row, "class": mapping.get(row["class"], row["class"])}
                            for row in metrics.get("per_class", [])]
    if job.params.get("unmatched_classes"):
        metrics["not_evaluated"] = job.params["unmatched_classes"]
    ctx.store.add_evaluation(job.project_id, job.model_id, job.id, metrics, job.params["snapshot"], job.created_by)
    return {**result, "metrics": metrics}


def _register(ctx: AppContext, job: Job, result: dict) -> ModelRecord:
    p = ctx.store.get_project(job.project_id)
    best = ctx.settings.job_dir(job.id) / result["best"]
    info = checkpoints.inspect_checkpoint(best, display_name=f"best.pt of training job {job.id}",
                                          trust_all=ctx.settings.trust_all_checkpoints)
    rel = store_model_file(ctx, p, best, info.sha256)
    taken = {m.name.lower() for m in ctx.store.list_models(p.id)}
    name = job.params.get("name") or f"{Path(job.params.get('base') or 'model').stem}-ft{job.id}"
    base_name, k = name, 2
    while name.lower() in taken:
        name, k = f"{base_name}-{k}", k + 1
    params = {**info.as_dict(), "imgsz": job.params.get("imgsz") or info.imgsz,
              "train": {k: job.params.get(k) for k in ("base", "base_kind", "epochs", "imgsz", "optimizer",
                                                       "lr0", "patience", "device", "datasets", "approved_only")},
              "batch_used": result.get("batch"), "snapshot": job.params.get("snapshot"),
              "files": {k: result.get(k) for k in ("best", "results_csv", "args")}}
    metrics = {**(result.get("metrics") or {}), "per_class": result.get("per_class", []),
               "speed": result.get("speed"), "onnx": result.get("onnx"), "epochs_done": result.get("epochs_done"),
               "best_epoch": result.get("best_epoch"), "cancelled": bool(result.get("cancelled")),
               "train_seconds": result.get("train_seconds"), "per_dataset": result.get("per_dataset") or []}
    mid = ctx.store.add_model(p.id, name, rel, info.sha256, info.size_bytes, info.class_names, "trained",
                              task=info.task, parent_id=job.model_id, job_id=job.id, params=params,
                              metrics=metrics, user=job.created_by)
    return ctx.store.get_model(mid)


TRAIN_KIND = JobKind(
    kind="train", ingest=ingest_epochs, finish=finish_training,
    live_keys=("stage", "eta_s", "batch", "device", "epoch", "epochs", "batch_i", "batches", "mAP50", "mAP50-95"),
    stale_hint="Weights saved up to its last finished epoch stay in the job folder (run/weights); start the "
               "training again.",
)
EVALUATE_KIND = JobKind(kind="evaluate", ingest=ingest_epochs, finish=finish_evaluation,
                        live_keys=("stage", "eta_s", "batch", "device"), stale_hint="Start the evaluation again.")


# --- reading ------------------------------------------------------------------------------------------------
def compare_models(ctx: AppContext, ref) -> dict:
    """Every registered model with its newest evaluation (on which data), side by side."""
    p = project(ctx, ref)
    models = ctx.store.list_models(p.id)
    evals = ctx.store.latest_evaluations(p.id)
    current = current_val_snapshot(ctx, p)
    by_id = {m.id: m for m in models}
    rows = []
    for m in models:
        ev = evals.get(m.id)
        met = ev["metrics"] if ev else {}
        snap = ev["snapshot"] if ev else {}
        per_class = {r["class"]: r.get("mAP50-95") for r in met.get("per_class", [])}
        speed = (m.metrics.get("speed") or {}) if m.source == "trained" else (met.get("speed") or {})
        scores = per_dataset(m)
        rows.append({
            "id": m.id, "name": m.name, "source": m.source,
            "parent": by_id[m.parent_id].name if m.parent_id in by_id else None, "job_id": m.job_id,
            "imgsz": m.params.get("imgsz"), "evaluated_imgsz": met.get("imgsz") or m.params.get("imgsz"),
            "mAP50-95": met.get("mAP50-95"), "mAP50": met.get("mAP50"),
            "precision": met.get("precision"), "recall": met.get("recall"), "per_class": per_class,
            "speed_ms": speed or None, "evaluated": bool(ev),
            "val_images": snap.get("images"), "val_box_hash": (snap.get("box_hash") or "")[:12] or None,
            "on_current_val": bool(ev) and snap.get("box_hash") == current["box_hash"],
            "evaluated_at": ev["created_at"].isoformat(timespec="seconds") if ev else None,
            "onnx": (m.metrics.get("onnx") or {}).get("detail") if m.source == "trained" else None,
            "per_dataset": scores, "worse_on": [d["dataset"] for d in scores
                                                if d["change"] is not None and d["change"] < -FORGET_TOLERANCE],
        })
    # A trained model against its parent, when both were scored on the same val images (at the same size:
    # the training job scores the parent at the child's size): "better", "worse" or None (not comparable).
    by_row = {r["id"]: r for r in rows}
    for r in rows:
        parent = by_row.get(by_id[r["id"]].parent_id) if r["id"] in by_id else None
        r["vs_parent"] = None
        if parent and r["mAP50-95"] is not None and parent["mAP50-95"] is not None \
                and r["val_box_hash"] and r["val_box_hash"] == parent["val_box_hash"] \
                and r["evaluated_imgsz"] == parent["evaluated_imgsz"]:
            r["vs_parent"] = "better" if r["mAP50-95"] >= parent["mAP50-95"] else "worse"
    return {"project": p.name, "classes": p.class_names, "current_val": current, "models": rows,
            "architectures": list(ARCHITECTURES)}


FORGET_TOLERANCE = 0.01  # mAP50-95 a dataset may lose against the base before it counts as forgotten


def per_dataset(m: ModelRecord) -> list[dict]:
    """A trained model's score on each dataset's val images beside its base's (same images, same size), and
    the change: where a fine-tune forgot what its base knew."""
    out = []
    for r in (m.metrics or {}).get("per_dataset") or []:
        now = (r.get("model") or {}).get("mAP50-95")
        before = (r.get("parent") or {}).get("mAP50-95")
        out.append({"dataset": r.get("dataset"), "val_images": r.get("val_images"), "mAP50-95": now,
                    "base_mAP50-95": before,
                    "change": round(now - before, 5) if now is not None and before is not None else None})
    return out


def latest_job(ctx: AppContext, ref, kinds: Sequence[str] = ("train",)) -> Job | None:
    p = project(ctx, ref)
    for j in ctx.store.list_jobs(p.id, limit=200):
        if j.kind in kinds:
            return j
    return None


def training_view(ctx: AppContext, job_id: int) -> dict:
    """What the Train tab shows for a job: live state, per-epoch rows, result, plot files."""
    job = get_job(ctx, job_id)
    if job.kind not in ("train", "evaluate"):
        raise UserError(f"Job {job.id} is a {job.kind} job, not a training or an evaluation")
    result = job.result
    jdir = ctx.settings.job_dir(job.id)
    plots = {k: str(jdir / v) for k, v in (result.get("plots") or {}).items() if (jdir / v).is_file()}
    return {"job": job.as_dict(), "epochs": ctx.store.job_epochs(job.id), "live": job.live, "result": result,
            "plots": plots, "model_id": result.get("model_id"), "model": result.get("model")}
