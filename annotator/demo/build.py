"""The maintainer's tool for the demo model: a YOLO dataset of shape scenes, training, and a check on fresh scenes.

The committed model ``annotator/assets/demo_shapes.pt`` (ultralytics YOLOv8n, trained from scratch, no
pretrained weights; classes 0 circle, 1 square, 2 triangle) was built on a 2-core CPU with::

    nice -n 10 python -m annotator.demo train --out annotator/assets/demo_shapes.pt \\
        --epochs 40 --imgsz 320 --n-train 160 --n-val 24 --batch 8 --seed 0

(these are also the defaults; the build ran with ``--workdir /tmp/demo_runs/a`` to keep the dataset and run
folder, which changes nothing else). It took 923 s wall (ultralytics: 40 epochs in 0.252 h), and the file is
6.2 MB (fp16, optimizer stripped). The dataset is written by the app's own YOLO writer
(``annotator.formats.yolo.write_yolo``), the label lines the model was trained on.

Run it at its training size, ``imgsz=320`` (stored in the checkpoint as ``train_args['imgsz']``, see
``model_imgsz()``). Training scenes use seeds ``seed .. seed + n_train + n_val - 1`` (0..183 for the
model above); ``check`` and the tests use fresh seeds from ``CHECK_SEED`` and ``TEST_SEED`` upwards::

    python -m annotator.demo check annotator/assets/demo_shapes.pt

gave recall 1.000, precision 1.000 (103/103 boxes, 30 scenes, conf 0.25, IoU 0.5); on 100 other scenes
(``--n 100 --first-seed 3000000``) recall 0.994, precision 0.970. One scene and its YOLO labels::

    python -m annotator.demo scene 7 /tmp/scene_7.jpg

torch and ultralytics are imported lazily, inside the functions that need them.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterable, Sequence

from PIL import Image

from ..formats import ExportImage
from ..formats.yolo import boxes_to_lines, write_yolo
from ..geometry import iou_xyxy
from ..settings import Settings
from ..types import Box
from .scenes import CHECK_SEED, CLASSES, DEFAULT_IMGSZ, DEMO_MODEL_PATH, scene_jpeg, write_scenes


# --- dataset ---------------------------------------------------------------------------------------------
def write_yolo_dataset(
    root: Path, n_train: int, n_val: int, seed: int = 0, width: int = 640, height: int = 480, quality: int = 90
) -> Path:
    """Write a YOLO dataset of scenes under ``root`` with the app's YOLO writer; returns its data.yaml.

    Train images use seeds ``seed .. seed+n_train-1``, val images the next ``n_val`` seeds; each is
    ``scene_<seed>.jpg`` with its exact boxes.
    """
    if n_train < 1 or n_val < 1:
        raise ValueError(f"need at least one train and one val image (got n_train={n_train}, n_val={n_val})")
    root = Path(root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    splits = {"train": range(seed, seed + n_train), "val": range(seed + n_train, seed + n_train + n_val)}
    with tempfile.TemporaryDirectory(prefix=".scenes-", dir=root) as tmp:  # moved into images/<split>/
        records: list[ExportImage] = []
        for split, seeds in splits.items():
            for name, boxes in write_scenes(Path(tmp), seeds, width, height, quality).items():
                records.append(ExportImage(id=len(records), file_name=name, width=width, height=height, split=split,
                                           boxes=tuple(boxes), source=Path(tmp) / name))
        summary = write_yolo(root, records, CLASSES, copy=shutil.move)
    if summary.dropped:  # scene boxes lie inside their image: never expected
        raise RuntimeError(f"the YOLO writer dropped scene boxes: {summary.dropped[:3]}")
    return root / "data.yaml"


# --- ultralytics (lazy) ------------------------------------------------------------------------------------
def _offline_ultralytics(data_dir: Path) -> None:
    """The app's offline setup (``Settings.prepare``: YOLO_OFFLINE, ultralytics' config folder and its fonts
    under ``data_dir``) before ultralytics' first import; once imported, its config folder is fixed and
    only the offline switches are set."""
    if "ultralytics" not in sys.modules:
        Settings.from_env({"ANNOTATOR_DATA_DIR": str(data_dir)}).prepare()
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_AUTOINSTALL", "False")


def _sanitize_checkpoint(path: Path, imgsz: int) -> None:
    """Drop the temp-folder paths ultralytics records in train_args; keep imgsz and the rest."""
    import torch

    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    args = dict(ckpt.get("train_args") or {})
    args.update(data="demo_shapes/data.yaml", project="demo", name="demo_shapes", save_dir="demo/demo_shapes")
    args["imgsz"] = int(imgsz)
    ckpt["train_args"] = args
    ckpt.pop("git", None)  # the builder's checkout (path, branch, commit): not the model's business
    tmp = path.with_suffix(".tmp")
    torch.save(ckpt, tmp)
    os.replace(tmp, path)


def train_demo_model(
    out: Path,
    epochs: int = 40,
    imgsz: int = DEFAULT_IMGSZ,
    n_train: int = 160,
    n_val: int = 24,
    seed: int = 0,
    workdir: Path | None = None,
    batch: int = 8,
) -> Path:
    """Train YOLOv8n from scratch on fresh scenes and copy its (optimizer-free, fp16) best.pt to ``out``."""
    out = Path(out).resolve()
    own_tmp = workdir is None
    work = Path(tempfile.mkdtemp(prefix="demo-train-")) if own_tmp else Path(workdir).resolve()
    try:
        work.mkdir(parents=True, exist_ok=True)
        _offline_ultralytics(work / "env")
        data_yaml = write_yolo_dataset(work / "dataset", n_train, n_val, seed)
        from ultralytics import YOLO

        model = YOLO("yolov8n.yaml")
        model.train(
            data=str(data_yaml),
            epochs=int(epochs),
            imgsz=int(imgsz),
            batch=int(batch),
            nbs=int(batch),  # one optimizer step per batch: ultralytics' default (64) leaves too few steps here
            seed=int(seed),
            deterministic=True,
            workers=2,
            device="cpu",
            plots=False,
            amp=False,
            pretrained=False,
            project=str(work / "runs"),
            name="demo_shapes",
            exist_ok=True,
            verbose=False,
        )
        best = work / "runs" / "demo_shapes" / "weights" / "best.pt"
        if not best.is_file():
            raise RuntimeError(f"training finished without {best}")
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(".partial")
        shutil.copyfile(best, tmp)
        _sanitize_checkpoint(tmp, imgsz)
        os.replace(tmp, out)
        return out
    finally:
        if own_tmp:
            shutil.rmtree(work, ignore_errors=True)


def model_imgsz(model) -> int:
    """The training image size stored in an ultralytics model's checkpoint (DEFAULT_IMGSZ if absent)."""
    args = (getattr(model, "ckpt", None) or {}).get("train_args") or {}
    size = args.get("imgsz") or getattr(model, "overrides", {}).get("imgsz") or DEFAULT_IMGSZ
    return int(size[0] if isinstance(size, (list, tuple)) else size)


def match_boxes(preds: Sequence[Box], truths: Sequence[Box], iou: float = 0.5) -> int:
    """Greedy matching (highest confidence first) of predicted boxes to true boxes by class and
    IoU >= ``iou``; returns the number of true positives."""
    free = list(truths)
    tp = 0
    for p in sorted(preds, key=lambda b: -(b.confidence or 0.0)):
        best, best_iou = None, iou
        for t in free:
            if t.class_idx == p.class_idx:
                v = iou_xyxy(p.xyxy, t.xyxy)
                if v >= best_iou:
                    best, best_iou = t, v
        if best is not None:
            free.remove(best)
            tp += 1
    return tp


def evaluate(
    model_path, seeds: Iterable[int], conf: float = 0.25, imgsz: int | None = None, iou: float = 0.5
) -> dict:
    """Recall and precision of a model on fresh scenes (decoded from JPEG, as the app would see them)."""
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_AUTOINSTALL", "False")
    from ultralytics import YOLO

    model = YOLO(str(model_path))
    size = int(imgsz) if imgsz else model_imgsz(model)
    n_gt = n_pred = tp = 0
    seeds = list(seeds)
    for s in seeds:
        data, truths = scene_jpeg(s)
        image = Image.open(io.BytesIO(data)).convert("RGB")
        result = model.predict(image, conf=conf, imgsz=size, device="cpu", verbose=False)[0]
        b = result.boxes
        preds = [
            Box(*map(float, xyxy), class_idx=int(c), confidence=float(p), source="model")
            for c, p, xyxy in zip(b.cls.tolist(), b.conf.tolist(), b.xyxy.tolist())
        ]
        n_gt += len(truths)
        n_pred += len(preds)
        tp += match_boxes(preds, truths, iou)
    return {
        "recall": tp / n_gt if n_gt else 1.0,
        "precision": tp / n_pred if n_pred else 1.0,
        "true_positives": tp,
        "ground_truth": n_gt,
        "predictions": n_pred,
        "images": len(seeds),
        "conf": conf,
        "iou": iou,
        "imgsz": size,
    }


# --- command line ----------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m annotator.demo", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="rebuild the demo model")
    t.add_argument("--out", type=Path, default=DEMO_MODEL_PATH)
    t.add_argument("--epochs", type=int, default=40)
    t.add_argument("--imgsz", type=int, default=DEFAULT_IMGSZ)
    t.add_argument("--n-train", type=int, default=160)
    t.add_argument("--n-val", type=int, default=24)
    t.add_argument("--batch", type=int, default=8)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--workdir", type=Path, default=None, help="keep the dataset and run here (default: temp)")
    c = sub.add_parser("check", help="recall/precision of a model on fresh scenes")
    c.add_argument("model", type=Path, nargs="?", default=DEMO_MODEL_PATH)
    c.add_argument("--n", type=int, default=30, help="number of scenes")
    c.add_argument("--first-seed", type=int, default=CHECK_SEED)
    c.add_argument("--conf", type=float, default=0.25)
    c.add_argument("--imgsz", type=int, default=None, help="default: the model's training imgsz")
    c.add_argument("--min-recall", type=float, default=None, help="exit 1 when recall is below this")
    s = sub.add_parser("scene", help="write one scene as JPEG plus its YOLO labels")
    s.add_argument("seed", type=int)
    s.add_argument("out", type=Path, help="JPEG path; labels go next to it as .txt")
    args = parser.parse_args(argv)

    if args.command == "scene":
        data, boxes = scene_jpeg(args.seed)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_bytes(data)
        lines, _ = boxes_to_lines(boxes, 640, 480)
        args.out.with_suffix(".txt").write_text("\n".join(lines) + "\n")
        print(f"{args.out}: {len(boxes)} shapes")
        return 0

    if args.command == "train":
        started = time.monotonic()
        path = train_demo_model(
            args.out, args.epochs, args.imgsz, args.n_train, args.n_val, args.seed, args.workdir, args.batch
        )
        print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB) in {time.monotonic() - started:.0f} s")
        return 0
    if not args.model.is_file():
        print(f"error: no model at {args.model}", file=sys.stderr)
        return 2
    env_dir = Path(tempfile.mkdtemp(prefix="demo-env-"))
    try:
        _offline_ultralytics(env_dir)
        started = time.monotonic()
        seeds = range(args.first_seed, args.first_seed + args.n)
        result = evaluate(args.model, seeds, conf=args.conf, imgsz=args.imgsz)
        result["seconds"] = round(time.monotonic() - started, 1)
        print(json.dumps(result, indent=2))
        if args.min_recall is not None and result["recall"] < args.min_recall:
            print(f"recall {result['recall']:.3f} < {args.min_recall}", file=sys.stderr)
            return 1
        return 0
    finally:
        shutil.rmtree(env_dir, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
