"""Fine-tuning, evaluation and the split manager: use cases, free of any UI (``Services.training``).

The app side of the training and evaluation jobs. It validates a request, freezes the exact data (image
ids per split and a hash of their boxes), writes a manifest into the job folder and queues the job; the
worker (jobs/training.py) writes the YOLO dataset with the shared writer and trains. When the worker's
done marker arrives the JobMonitor calls ``finish_job`` here, which registers the trained model with its
lineage, data snapshot, params and metrics (the app is the only process that writes DuckDB).

Splits: every image gets a stored split, assigned by ``assign_splits`` (see there) and kept from then on.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import math
import os
import re
import shutil
from pathlib import Path
from typing import Sequence

from . import models as model_checks
from .types import SPLITS, Job, ModelRecord, NotFound, Project, UserError

DEFAULT_RATIOS = {"train": 0.8, "val": 0.2, "test": 0.0}
DEFAULT_SEED = 0
# Fresh architectures (no weights needed: ultralytics builds them from its bundled yaml files).
ARCHITECTURES = ("yolov8n.yaml", "yolov8s.yaml", "yolov8m.yaml", "yolo11n.yaml", "yolo11s.yaml", "yolo11m.yaml")
OPTIMIZERS = ("auto", "SGD", "Adam", "AdamW", "NAdam", "RAdam", "RMSProp")
MAX_EPOCHS = 10_000
_DEVICE_RE = re.compile(r"^(auto|cpu|mps|\d+(,\d+)*|cuda:\d+)$")


# --- splits: pure ----------------------------------------------------------------------------------------
def parse_ratios(train: float, val: float, test: float) -> dict[str, float]:
    """Three non-negative numbers (percentages or fractions: they are normalised by their sum)."""
    values = {}
    for name, raw in (("train", train), ("val", val), ("test", test)):
        try:
            v = float(raw if raw not in (None, "") else 0)
        except (TypeError, ValueError):
            raise UserError(f"{name} ratio must be a number, got {raw!r}") from None
        if not math.isfinite(v) or v < 0:
            raise UserError(f"{name} ratio must be a non-negative number, got {raw!r}")
        values[name] = v
    total = sum(values.values())
    if total <= 0:
        raise UserError("split ratios must not all be 0 (e.g. 80/20/0)")
    return {k: v / total for k, v in values.items()}


def split_key(seed: int, sha256: str) -> str:
    """The seeded order of images: a hash of the seed and the image's content hash."""
    return hashlib.sha256(f"{int(seed)}:{sha256}".encode()).hexdigest()


def assign_splits(existing: dict[str, int], new: Sequence[tuple[int, str]], ratios: dict[str, float],
                  seed: int) -> dict[int, str]:
    """Splits for images that have none, given the counts of those that have one.

    ``new`` is (image id, sha256). Images are taken in the seeded hash order and each goes to the split
    furthest below its share of the running total (largest deficit; ties in train, val, test order), so
    the counts follow the ratios exactly (within one image) even for a handful of images, and a 0 ratio
    is never used. Deterministic: the same images, stored splits, ratios and seed give the same answer,
    whatever the insertion order. Stable: stored splits are never changed; new images fill the deficits.
    """
    counts = {s: int(existing.get(s, 0)) for s in SPLITS}
    total = sum(counts.values())
    out: dict[int, str] = {}
    for image_id, sha in sorted(new, key=lambda x: (split_key(seed, x[1]), x[0])):
        total += 1
        best = max((s for s in SPLITS if ratios.get(s, 0) > 0),
                   key=lambda s: (ratios[s] * total - counts[s], -SPLITS.index(s)))
        counts[best] += 1
        out[int(image_id)] = best
    return out


def snapshot(items: Sequence[tuple[int, str, Sequence]]) -> dict:
    """The identity of a set of labelled images: (image id, split, boxes) -> counts and hashes.

    ``box_hash`` covers image ids, splits and every box (class and xyxy to 0.01 px), so two trainings on
    the same hash saw the same data; ``image_ids_hash`` covers the ids and splits only.
    """
    boxes_h, ids_h = hashlib.sha256(), hashlib.sha256()
    per_split: dict[str, int] = {}
    n_boxes = 0
    for image_id, split, boxes in sorted(items, key=lambda x: x[0]):
        ids_h.update(f"{image_id} {split}\n".encode())
        lines = sorted(f"{b.class_idx} {b.x1:.2f} {b.y1:.2f} {b.x2:.2f} {b.y2:.2f}" for b in boxes)
        boxes_h.update((f"{image_id} {split}: " + "; ".join(lines) + "\n").encode())
        per_split[split] = per_split.get(split, 0) + 1
        n_boxes += len(lines)
    return {"images": len(items), "boxes": n_boxes, "per_split": per_split,
            "box_hash": boxes_h.hexdigest(), "image_ids_hash": ids_h.hexdigest()}


def _bundled_architecture(name: str) -> bool:
    """Whether ultralytics ships ``name`` (a model yaml), found without importing ultralytics."""
    spec = importlib.util.find_spec("ultralytics")
    if spec is None or not spec.submodule_search_locations:
        return False
    root = Path(list(spec.submodule_search_locations)[0]) / "cfg" / "models"
    stem = Path(name).stem
    scaled = re.sub(r"(\d+)[nsmlx]$", r"\1", stem)  # yolov8n.yaml is yolov8.yaml at scale n
    return any(root.rglob(f"{stem}.yaml")) or (scaled != stem and any(root.rglob(f"{scaled}.yaml")))


def _metric(metrics: dict, key: str) -> float | None:
    v = metrics.get(key)
    return None if v is None else round(float(v), 5)


class Training:
    """Use cases of the Train tab, the CLI's train/evaluate and the JobMonitor's model registration."""

    def __init__(self, services):
        self.services = services
        self.store = services.store
        self.settings = services.settings

    # --- split manager ---------------------------------------------------------------------------------
    def split_config(self, ref) -> dict:
        p = self.services.project(ref)
        return self.store.split_config(p.id) or {**DEFAULT_RATIOS, "seed": DEFAULT_SEED}

    def assign_missing_splits(self, p: Project, ratios: dict[str, float] | None = None,
                              seed: int | None = None) -> int:
        """Give every image of the project without a split one (stored); returns how many."""
        missing = self.store.images_without_split(p.id)
        if not missing:
            return 0
        cfg = self.split_config(p)
        ratios = ratios or {s: cfg[s] for s in SPLITS}
        counts = {s: n for s, n in self.store.split_counts(p.id).items() if s is not None}
        chosen = assign_splits(counts, missing, ratios, cfg["seed"] if seed is None else seed)
        return self.store.set_splits(p.id, list(chosen.items()), only_unassigned=True)

    def configure_splits(self, ref, train: float, val: float, test: float, seed: int = DEFAULT_SEED,
                         reassign: bool = False, user: str | None = None) -> dict:
        """Store the project's split ratios and seed, then assign every image without a split. With
        ``reassign`` every image of the project is assigned afresh (stored splits are dropped first)."""
        p = self.services.project(ref)
        ratios = parse_ratios(train, val, test)
        try:
            seed = int(seed)
        except (TypeError, ValueError):
            raise UserError(f"seed must be a whole number, got {seed!r}") from None
        self.store.set_split_config(p.id, ratios["train"], ratios["val"], ratios["test"], seed, user)
        if reassign:
            everything = [(i, sha) for i, sha, _ in self.store.image_splits(p.id)]
            chosen = assign_splits({}, everything, ratios, seed)
            self.store.set_splits(p.id, list(chosen.items()), only_unassigned=False)
            assigned = len(chosen)
        else:
            assigned = self.assign_missing_splits(p, ratios, seed)
        return {**self.split_summary(p), "assigned": assigned}

    def set_split(self, ref, split: str, image_ids: Sequence[int] | None = None, dataset: str | None = None,
                  status: str | None = None) -> dict:
        """Bulk edit: move images (given ids, a dataset, a review state, or all of them) to ``split``."""
        p = self.services.project(ref)
        split = (split or "").strip().lower()
        if split not in SPLITS:
            raise UserError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
        if status not in (None, "", "unreviewed", "approved", "rejected"):
            raise UserError(f"status must be unreviewed, approved or rejected, got {status!r}")
        dataset_id = self.services._dataset_id(p, dataset)
        ids = None
        if image_ids is not None:
            try:
                ids = [int(i) for i in image_ids]
            except (TypeError, ValueError):
                raise UserError(f"image ids must be numbers, got {list(image_ids)[:5]!r}") from None
            known = {i for i, _, _ in self.store.image_splits(p.id)}
            foreign = [i for i in ids if i not in known]
            if foreign:
                raise NotFound(f"Project {p.name!r} has no image(s) with id {', '.join(map(str, foreign[:10]))}")
        moved = self.store.bulk_set_split(p.id, split, ids, dataset_id, status or None)
        return {**self.split_summary(p), "moved": moved}

    def split_summary(self, ref) -> dict:
        """Images and boxes per split and review state, plus the stored ratios."""
        p = self.services.project(ref)
        rows = self.store.split_summary(p.id)
        table: dict[str, dict] = {}
        for split, status, n, nb in rows:
            key = split or "unassigned"
            t = table.setdefault(key, {"images": 0, "approved": 0, "unreviewed": 0, "rejected": 0,
                                       "approved_boxes": 0})
            t["images"] += n
            t[status] += n
            if status == "approved":
                t["approved_boxes"] += nb
        return {"project": p.name, "config": self.split_config(p), "splits": table}

    # --- the data of a run -------------------------------------------------------------------------------
    def _labelled(self, p: Project, dataset_ids: Sequence[int], approved_only: bool, splits: Sequence[str]):
        """(images, boxes by id): approved images (or also unreviewed ones that have boxes) in ``splits``."""
        statuses = ("approved",) if approved_only else ("approved", "unreviewed")
        rows, _ = self.store.export_rows(p.id, dataset_ids, statuses)
        images = [i for i in rows if i.split in splits]
        boxes = self.store.boxes_for_images([i.id for i in images])
        images = [i for i in images if i.status == "approved" or boxes.get(i.id)]
        n = len(p.classes)
        return images, {i.id: [b for b in boxes.get(i.id, []) if b.class_idx < n] for i in images}

    def _write_manifest(self, job_dir: Path, p: Project, images, boxes, class_names: Sequence[str],
                        remap: dict[int, int | None] | None = None) -> dict:
        """The worker's input: every image with its stored file, split, unique file name and boxes."""
        from .services import _unique_names

        names = _unique_names(images, {i.id: i.split for i in images})
        pdir = self.settings.project_dir(p.id)
        records, dropped = [], 0
        for img in images:
            rows = []
            for b in boxes.get(img.id, []):
                c = b.class_idx if remap is None else remap.get(b.class_idx)
                if c is None:
                    dropped += 1
                    continue
                rows.append([int(c), b.x1, b.y1, b.x2, b.y2])
            records.append({"id": img.id, "file_name": names[img.id], "width": img.width, "height": img.height,
                            "split": img.split, "source": str(pdir / img.file), "boxes": rows})
        job_dir.mkdir(parents=True, exist_ok=True)
        manifest = {"class_names": list(class_names), "images": records}
        tmp = job_dir / "manifest.json.part"
        tmp.write_text(json.dumps(manifest))
        os.replace(tmp, job_dir / "manifest.json")
        return {"dropped_boxes": dropped}

    def _enqueue(self, task_name: str, payload: dict):
        task = getattr(self.services.huey, task_name).s(payload)
        self.services.huey.enqueue(task)
        return task

    def _queue_failed(self, job_id: int, jdir: Path, what: str, error: BaseException) -> None:
        """A job row whose task never reached the queue: failed, with the reason, and no job folder left."""
        self.store.update_job(job_id, status="failed", error=f"could not queue the {what}: {error}",
                              finished_at=_now())
        shutil.rmtree(jdir, ignore_errors=True)

    def job_dir(self, job_id: int) -> Path:
        return self.settings.jobs_dir / str(int(job_id))

    # --- training ------------------------------------------------------------------------------------------
    def _base(self, p: Project, base: str | None) -> tuple[ModelRecord | None, str]:
        """A registered model (by name or id) or a bundled architecture yaml (e.g. yolov8n.yaml)."""
        key = (base or "").strip()
        if not key:
            models = self.store.list_models(p.id)
            return (models[-1], models[-1].name) if models else (None, ARCHITECTURES[0])
        if key.lower().endswith((".yaml", ".yml")):
            if "/" in key or "\\" in key or not _bundled_architecture(key):
                raise UserError(f"base {key!r} is not an architecture ultralytics ships "
                                f"(e.g. {', '.join(ARCHITECTURES)}); or choose a registered model")
            return None, key
        try:
            m = self.services.model(p, key)
        except NotFound as e:
            raise UserError(f"{e}; or use a fresh architecture such as {ARCHITECTURES[0]}") from None
        return m, m.name

    @staticmethod
    def _train_args(imgsz, epochs, batch, optimizer, lr0, patience, device) -> dict:
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

    def start_training(self, ref, base: str | None = None, datasets: Sequence[str] | None = None,
                       approved_only: bool = True, imgsz: int | None = None, epochs: int = 50,
                       batch: str | int = "auto", optimizer: str = "auto", lr0: float | None = None,
                       patience: int = 50, device: str | None = None, name: str | None = None,
                       onnx_check: bool = True, workers: int | None = None, user: str | None = None) -> Job:
        """Queue a fine-tuning job on the project's (approved) images and their stored splits.

        ``base``: a registered model (name or id), an architecture yaml such as ``yolov8n.yaml`` (trained
        from scratch), or empty for the newest registered model (else yolov8n.yaml).
        """
        from jobs.tasks import TRAIN

        p = self.services.project(ref)
        parent, base_name = self._base(p, base)
        if imgsz in (None, "", 0):
            imgsz = (parent.params.get("imgsz") if parent else None) or 640
        args = self._train_args(imgsz, epochs, batch, optimizer, lr0, patience,
                                device or self.settings.device or "auto")
        if name:
            from .services import _clean_name

            name = _clean_name(name, "Model name")
            if any(m.name.lower() == name.lower() for m in self.store.list_models(p.id)):
                raise UserError(f"A model named {name!r} is already registered in {p.name!r}")
        dataset_ids = self.services._dataset_ids(p, datasets)
        self.assign_missing_splits(p)
        images, boxes = self._labelled(p, dataset_ids, approved_only, SPLITS)
        what = "approved images" if approved_only else "approved or labelled images"
        where = f" in dataset(s) {', '.join(datasets)}" if datasets else ""
        if not images:
            raise UserError(f"Nothing to train on: project {p.name!r} has no {what}{where}. Review and approve "
                            "images first (or untick 'approved images only').")
        per_split = {s: sum(1 for i in images if i.split == s) for s in SPLITS}
        n_boxes = sum(len(b) for b in boxes.values())
        if n_boxes == 0:
            raise UserError(f"The {len(images)} {what}{where} of {p.name!r} have no boxes: training needs at "
                            "least one labelled object.")
        for split in ("train", "val"):
            if per_split[split] == 0:
                raise UserError(
                    f"The {split} split has none of the {len(images)} {what}{where} (train {per_split['train']}, "
                    f"val {per_split['val']}, test {per_split['test']}): change the split ratios or move "
                    f"images to {split} in the split manager.")
        snap = snapshot([(i.id, i.split, boxes[i.id]) for i in images])
        same_classes = parent is not None and list(parent.class_names) == p.class_names
        params = {
            **args, "base": base_name, "base_kind": "model" if parent else "architecture",
            "datasets": list(datasets or []), "approved_only": bool(approved_only), "name": name,
            "onnx_check": bool(onnx_check), "snapshot": snap,
        }
        job_id = self.store.create_job(p.id, "train", params, args["epochs"], model_id=parent.id if parent else None,
                                       user=user)
        jdir = self.job_dir(job_id)
        try:
            self.store.save_training_images(job_id, [(i.id, i.split) for i in images])
            self._write_manifest(jdir, p, images, boxes, p.class_names)
            payload = {
                "job_id": job_id, "attempt": 0, "job_dir": str(jdir), "class_names": p.class_names,
                "base": ({"kind": "model", "path": str(self.services.model_file(parent)), "name": parent.name}
                         if parent else {"kind": "arch", "name": base_name}),
                "parent_eval": bool(same_classes), "onnx": bool(onnx_check),
                "parent_imgsz": int((parent.params.get("imgsz") if parent else None) or args["imgsz"]),
                "train": {**args, "workers": 2 if workers is None else int(workers), "seed": 0},
            }
            task = self._enqueue(TRAIN, payload)
        except BaseException as e:
            self._queue_failed(job_id, jdir, "training", e)
            raise
        self.store.update_job(job_id, task_id=task.id, log=(
            f"queued: {len(images)} image(s) (train {per_split['train']}, val {per_split['val']}, test "
            f"{per_split['test']}), {n_boxes} box(es), {sum(1 for b in boxes.values() if not b)} negative(s); "
            f"base {base_name}; {args['epochs']} epoch(s) at imgsz {args['imgsz']}"))
        return self.store.get_job(job_id)

    # --- evaluation -----------------------------------------------------------------------------------------
    def current_val_snapshot(self, p: Project) -> dict:
        images, boxes = self._labelled(p, [], True, ("val",))
        return snapshot([(i.id, i.split, boxes[i.id]) for i in images])

    def start_evaluation(self, ref, model_ref, device: str | None = None, imgsz: int | None = None,
                         batch: int | None = None, user: str | None = None) -> Job:
        """Queue the validation of any registered model on the project's current approved val images."""
        from jobs.tasks import EVALUATE

        p = self.services.project(ref)
        if model_ref in (None, ""):
            raise UserError("Choose a model to evaluate")
        m = self.services.model(p, model_ref)
        imgsz = imgsz or m.params.get("imgsz") or 640
        args = self._train_args(imgsz, 1, batch or "auto", "auto", None, 0, device or self.settings.device or "auto")
        self.assign_missing_splits(p)
        images, boxes = self._labelled(p, [], True, ("val",))
        if not images:
            raise UserError(f"Project {p.name!r} has no approved images in the val split: approve some, or move "
                            "approved images to val in the split manager.")
        if not any(boxes.values()):
            raise UserError(f"The {len(images)} approved val image(s) of {p.name!r} have no boxes to evaluate on.")
        mapping = model_checks.match_classes(m.class_names, p.class_names)  # model idx -> project idx
        remap = {proj: mod for mod, proj in mapping.items() if proj is not None}  # project idx -> model idx
        if not remap:
            raise UserError(f"None of the model's classes ({', '.join(m.class_names)}) is a class of {p.name!r} "
                            f"({', '.join(p.class_names)}): nothing to compare")
        snap = snapshot([(i.id, i.split, boxes[i.id]) for i in images])
        unmatched = [p.class_names[i] for i in range(len(p.classes)) if i not in remap]
        params = {"model": m.name, "imgsz": args["imgsz"], "device": args["device"], "batch": args["batch"],
                  "snapshot": snap, "unmatched_classes": unmatched,
                  "mapping": {m.class_names[k]: p.class_names[v] for k, v in mapping.items() if v is not None}}
        job_id = self.store.create_job(p.id, "evaluate", params, 1, model_id=m.id, user=user)
        jdir = self.job_dir(job_id)
        try:
            info = self._write_manifest(jdir, p, images, boxes, m.class_names, remap=remap)
            payload = {"job_id": job_id, "attempt": 0, "job_dir": str(jdir), "model_path": str(self.services.model_file(m)),
                       "model_name": m.name, "class_names": list(m.class_names),
                       **{k: args[k] for k in ("imgsz", "device", "batch")}}
            task = self._enqueue(EVALUATE, payload)
        except BaseException as e:
            self._queue_failed(job_id, jdir, "evaluation", e)
            raise
        note = (f"; {info['dropped_boxes']} box(es) of class(es) {', '.join(unmatched)} the model does not know "
                "are left out") if info["dropped_boxes"] else ""
        self.store.update_job(job_id, task_id=task.id,
                              log=f"queued: {m.name} on {len(images)} approved val image(s), {snap['boxes']} box(es){note}")
        return self.store.get_job(job_id)

    # --- the app side of a finished job (called by the JobMonitor) --------------------------------------------
    def finish_job(self, job: Job, done: dict) -> dict:
        """Turn a train/evaluate job's done marker into rows: the trained model, evaluations. Returns what
        the job's counters gain. Idempotent (a model registered for this job is not registered twice)."""
        result = done.get("result") or {}
        if job.kind == "evaluate":
            if done.get("status") != "succeeded" or not result.get("metrics"):
                return {}
            metrics = self._project_metrics(job, result)
            self.store.add_evaluation(job.project_id, job.model_id, job.id, metrics, job.params["snapshot"],
                                      job.created_by)
            return {"result": {**result, "metrics": metrics}}
        if job.kind != "train" or not result.get("best"):
            return {"result": result} if result else {}
        m = self.store.model_for_job(job.id) or self._register(job, result)
        snap = job.params.get("snapshot", {})
        val_snap = result.get("val_snapshot") or {}
        if result.get("metrics"):
            self.store.add_evaluation(job.project_id, m.id, job.id, m.metrics, val_snap, job.created_by)
        parent = result.get("parent_metrics")
        if parent and job.model_id is not None:
            self.store.add_evaluation(job.project_id, job.model_id, job.id, parent, val_snap, job.created_by)
        return {"result": result, "model_id": m.id, "model": m.name, "snapshot": snap}

    def _project_metrics(self, job: Job, result: dict) -> dict:
        """An evaluation's per-class rows are named by the model's classes: name them as the project does."""
        mapping = job.params.get("mapping") or {}
        metrics = dict(result["metrics"])
        metrics["per_class"] = [{**row, "class": mapping.get(row["class"], row["class"])}
                                for row in metrics.get("per_class", [])]
        if job.params.get("unmatched_classes"):
            metrics["not_evaluated"] = job.params["unmatched_classes"]
        return metrics

    def _register(self, job: Job, result: dict) -> ModelRecord:
        p = self.store.get_project(job.project_id)
        best = self.job_dir(job.id) / result["best"]
        info = model_checks.inspect_checkpoint(best, display_name=f"best.pt of training job {job.id}")
        rel = f"models/{info.sha256}.pt"
        dst = self.settings.project_dir(p.id) / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        if not dst.exists():
            tmp = dst.with_suffix(".part")
            shutil.copyfile(best, tmp)
            os.replace(tmp, dst)
        taken = {m.name.lower() for m in self.store.list_models(p.id)}
        name = job.params.get("name") or f"{Path(job.params.get('base') or 'model').stem}-ft{job.id}"
        base_name, k = name, 2
        while name.lower() in taken:
            name, k = f"{base_name}-{k}", k + 1
        params = {**info.as_dict(), "imgsz": job.params.get("imgsz") or info.imgsz,
                  "train": {k: job.params.get(k) for k in ("base", "base_kind", "epochs", "imgsz", "optimizer",
                                                           "lr0", "patience", "device", "datasets",
                                                           "approved_only")},
                  "batch_used": result.get("batch"), "snapshot": job.params.get("snapshot"),
                  "files": {k: result.get(k) for k in ("best", "results_csv", "args")}}
        metrics = {**(result.get("metrics") or {}), "per_class": result.get("per_class", []),
                   "speed": result.get("speed"), "onnx": result.get("onnx"), "epochs_done": result.get("epochs_done"),
                   "best_epoch": result.get("best_epoch"), "cancelled": bool(result.get("cancelled")),
                   "train_seconds": result.get("train_seconds")}
        mid = self.store.add_model(p.id, name, rel, info.sha256, info.size_bytes, info.class_names, "trained",
                                   task=info.task, parent_id=job.model_id, job_id=job.id, params=params,
                                   metrics=metrics, user=job.created_by)
        return self.store.get_model(mid)

    # --- reading --------------------------------------------------------------------------------------------
    def compare_models(self, ref) -> dict:
        """Every registered model with its newest evaluation (on which data), side by side."""
        p = self.services.project(ref)
        models = self.store.list_models(p.id)
        evals = self.store.latest_evaluations(p.id)
        current = self.current_val_snapshot(p)
        by_id = {m.id: m for m in models}
        rows = []
        for m in models:
            ev = evals.get(m.id)
            met = ev["metrics"] if ev else {}
            snap = ev["snapshot"] if ev else {}
            per_class = {r["class"]: r.get("mAP50-95") for r in met.get("per_class", [])}
            speed = (m.metrics.get("speed") or {}) if m.source == "trained" else (met.get("speed") or {})
            rows.append({
                "id": m.id, "name": m.name, "source": m.source,
                "parent": by_id[m.parent_id].name if m.parent_id in by_id else None, "job_id": m.job_id,
                "imgsz": m.params.get("imgsz"), "mAP50-95": met.get("mAP50-95"), "mAP50": met.get("mAP50"),
                "precision": met.get("precision"), "recall": met.get("recall"), "per_class": per_class,
                "speed_ms": speed or None, "evaluated": bool(ev),
                "val_images": snap.get("images"), "val_box_hash": (snap.get("box_hash") or "")[:12] or None,
                "on_current_val": bool(ev) and snap.get("box_hash") == current["box_hash"],
                "evaluated_at": ev["created_at"].isoformat(timespec="seconds") if ev else None,
                "onnx": (m.metrics.get("onnx") or {}).get("detail") if m.source == "trained" else None,
            })
        return {"project": p.name, "classes": p.class_names, "current_val": current, "models": rows}

    def latest_job(self, ref, kinds: Sequence[str] = ("train",)) -> Job | None:
        p = self.services.project(ref)
        for j in self.store.list_jobs(p.id, limit=200):
            if j.kind in kinds:
                return j
        return None

    def training_view(self, job_id: int) -> dict:
        """What the Train tab shows for a job: live state, per-epoch rows, result, plot files."""
        job = self.services.job(job_id)
        if job.kind not in ("train", "evaluate"):
            raise UserError(f"Job {job.id} is a {job.kind} job, not a training or an evaluation")
        c = job.counters
        result = c.get("result") or {}
        jdir = self.job_dir(job.id)
        plots = {k: str(jdir / v) for k, v in (result.get("plots") or {}).items() if (jdir / v).is_file()}
        return {"job": job.as_dict(), "epochs": c.get("epochs", []), "live": c.get("live", {}),
                "result": result, "plots": plots, "model_id": c.get("model_id"), "model": c.get("model")}


def _now():
    from .store import utcnow

    return utcnow()
