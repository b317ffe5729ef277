"""The embedded demo: seeded synthetic "shapes" scenes and a tiny YOLO detector trained on them.

Everything here is offline and deterministic. A scene is a textured, gradient background with 1-6 filled
circles, squares and triangles; its boxes are exact (taken from the drawn masks), so the demo can show
auto-annotation, review and fine-tuning without downloading a model or a dataset.

The committed model ``annotator/assets/demo_shapes.pt`` (ultralytics YOLOv8n, trained from scratch, no
pretrained weights; classes 0 circle, 1 square, 2 triangle) was built on a 2-core CPU with::

    nice -n 10 python -m annotator.demo train --out annotator/assets/demo_shapes.pt \\
        --epochs 40 --imgsz 320 --n-train 160 --n-val 24 --batch 8 --seed 0

(these are also the defaults; the build ran with ``--workdir /tmp/demo_runs/a`` to keep the dataset and run
folder, which changes nothing else). It took 923 s wall (ultralytics: 40 epochs in 0.252 h), and the file is
6.2 MB (fp16, optimizer stripped).

Run it at its training size, ``imgsz=320`` (stored in the checkpoint as ``train_args['imgsz']``, see
``model_imgsz()``). Training scenes use seeds ``seed .. seed + n_train + n_val - 1`` (0..183 for the
model above); ``check`` and the tests use fresh seeds from ``CHECK_SEED`` and ``TEST_SEED`` upwards::

    python -m annotator.demo check annotator/assets/demo_shapes.pt

gave recall 1.000, precision 1.000 (103/103 boxes, 30 scenes, conf 0.25, IoU 0.5); on 100 other scenes
(``--n 100 --first-seed 3000000``) recall 0.994, precision 0.970.

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
from typing import Iterable

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from .geometry import iou_xyxy, xyxy_to_yolo

CLASSES = ("circle", "square", "triangle")
ASSETS_DIR = Path(__file__).resolve().parent / "assets"
DEMO_MODEL_PATH = ASSETS_DIR / "demo_shapes.pt"
DEFAULT_IMGSZ = 320
CHECK_SEED = 1_000_000  # first seed of the `check` command's scenes: far from any training seed
TEST_SEED = 2_000_000  # first seed of tests/test_demo.py's scenes

MIN_SIZE, MAX_SIZE = 30, 160  # shape extent in pixels (longest side of its box)
MAX_SHAPES = 6
GAP = 3  # pixels kept free around every shape: shapes never touch or occlude each other
MAX_BOX_OVERLAP = 0.15  # boxes may overlap a little (a circle's corner region), shapes never

Box = tuple[int, float, float, float, float]  # (class_index, x1, y1, x2, y2), absolute pixels


# --- scenes ---------------------------------------------------------------------------------------------
def _rngs(seed: int) -> tuple[np.random.Generator, np.random.Generator]:
    """Independent streams for the background and the shapes, so ``background(seed)`` stands alone."""
    bg, shapes = np.random.SeedSequence(int(seed)).spawn(2)
    return np.random.default_rng(bg), np.random.default_rng(shapes)


def _background_array(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """float32 h x w x 3: a two-colour gradient, smooth blotches, fine texture and mild pixel noise."""
    c1, c2 = rng.uniform(40, 215, size=(2, 3))
    angle = rng.uniform(0, 2 * np.pi)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    proj = xs * np.cos(angle) + ys * np.sin(angle)
    t = (proj - proj.min()) / max(float(np.ptp(proj)), 1.0)
    arr = c1[None, None, :] * (1 - t[..., None]) + c2[None, None, :] * t[..., None]

    def upsampled(cells_y: int, cells_x: int, amplitude: float) -> np.ndarray:
        grid = rng.uniform(0, 255, size=(cells_y, cells_x, 3)).astype(np.uint8)
        big = Image.fromarray(grid, "RGB").resize((width, height), Image.BICUBIC)
        return (np.asarray(big, dtype=np.float32) / 255.0 - 0.5) * 2 * amplitude

    arr = arr + upsampled(int(rng.integers(3, 7)), int(rng.integers(4, 9)), rng.uniform(10, 35))
    arr = arr + upsampled(height // 12, width // 12, rng.uniform(3, 10))
    arr = arr + rng.normal(0, rng.uniform(2, 6), size=arr.shape)
    return np.clip(arr, 0, 255).astype(np.float32)


def background(seed: int, width: int = 640, height: int = 480) -> Image.Image:
    """The background of ``scene(seed, width, height)``: every pixel outside its shapes equals this."""
    bg_rng, _ = _rngs(seed)
    return Image.fromarray(np.round(_background_array(bg_rng, width, height)).astype(np.uint8), "RGB")


def _shape_mask(rng: np.random.Generator, cls: int, size: int) -> Image.Image:
    """An 'L' mask (255 = shape) whose tight bbox is the whole mask, longest side ``size``."""
    if cls == 0:  # circle
        mask = Image.new("L", (size, size), 0)
        ImageDraw.Draw(mask).ellipse((0, 0, size - 1, size - 1), fill=255)
        return mask
    if cls == 1:  # square (axis-aligned)
        return Image.new("L", (size, size), 255)
    # triangle: roughly equilateral, random rotation, vertices jittered by up to 12 degrees
    rot = rng.uniform(0, 2 * np.pi)
    angles = rot + np.array([0.0, 2 * np.pi / 3, 4 * np.pi / 3]) + rng.uniform(-0.2, 0.2, size=3)
    pts = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    pts -= pts.min(axis=0)
    pts *= (size - 1) / max(float(pts.max()), 1e-6)
    w, h = (int(np.ceil(v)) + 1 for v in pts.max(axis=0))
    mask = Image.new("L", (max(w, 1), max(h, 1)), 0)
    ImageDraw.Draw(mask).polygon([tuple(p) for p in pts.tolist()], fill=255)
    return mask.crop(mask.getbbox())


def _pick_colour(rng: np.random.Generator, under: np.ndarray) -> np.ndarray:
    """A random colour far (Euclidean >= 110) from the mean background colour ``under`` the shape."""
    mean = under.reshape(-1, 3).mean(axis=0)
    for _ in range(50):
        colour = rng.uniform(0, 255, size=3)
        if np.linalg.norm(colour - mean) >= 110:
            return colour
    return np.where(mean > 127, 20.0, 235.0)


def _box_overlap(a, b) -> float:
    """Intersection over the smaller box."""
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return iw * ih / smaller


def scene(seed: int, width: int = 640, height: int = 480) -> tuple[Image.Image, list[Box]]:
    """A deterministic RGB scene and its boxes ``(class_index, x1, y1, x2, y2)`` in absolute pixels.

    Boxes are tight: they are the bounding boxes of the drawn masks (pixel edges, so a shape covering
    columns 10..49 has x1=10, x2=50). Shapes never touch (a gap of ``GAP`` pixels); boxes may overlap
    slightly. Same seed and size, same image bytes.
    """
    if width < 2 * MIN_SIZE or height < 2 * MIN_SIZE:
        raise ValueError(f"scene size {width}x{height} is too small (at least {2 * MIN_SIZE} per side)")
    bg_rng, rng = _rngs(seed)
    arr = _background_array(bg_rng, width, height)
    occupied = Image.new("L", (width, height), 0)  # shapes grown by GAP pixels
    boxes: list[Box] = []
    max_size = min(MAX_SIZE, width - 2, height - 2)
    for _ in range(int(rng.integers(1, MAX_SHAPES + 1))):
        cls = int(rng.integers(0, len(CLASSES)))
        for _attempt in range(40):
            size = int(round(np.exp(rng.uniform(np.log(MIN_SIZE), np.log(max_size)))))
            mask = _shape_mask(rng, cls, size)
            mw, mh = mask.size
            x = int(rng.integers(1, width - mw))
            y = int(rng.integers(1, height - mh))
            box = (x, y, x + mw, y + mh)
            if any(_box_overlap(box, b[1:]) > MAX_BOX_OVERLAP for b in boxes):
                continue
            m = np.asarray(mask) > 127
            if (np.asarray(occupied.crop(box)) > 0)[m].any():
                continue
            break
        else:
            continue  # no room for this shape
        region = arr[y : y + mh, x : x + mw]
        colour = _pick_colour(rng, region[m])
        # mild shading across the shape and a little noise, so shapes are not flat stickers
        gy, gx = np.mgrid[0:mh, 0:mw].astype(np.float32)
        shade = (gx / max(mw, 1) - 0.5) * rng.uniform(-25, 25) + (gy / max(mh, 1) - 0.5) * rng.uniform(-25, 25)
        fill = colour[None, None, :] + shade[..., None] + rng.normal(0, 3, size=(mh, mw, 3))
        region[m] = np.clip(fill, 0, 255)[m]
        grown = Image.new("L", (mw + 2 * GAP, mh + 2 * GAP), 0)
        grown.paste(mask, (GAP, GAP))
        grown = grown.filter(ImageFilter.MaxFilter(2 * GAP + 1))
        occupied.paste(255, (x - GAP, y - GAP), grown)
        boxes.append((cls, float(box[0]), float(box[1]), float(box[2]), float(box[3])))
    image = Image.fromarray(np.round(arr).astype(np.uint8), "RGB")
    return image, boxes


def scene_jpeg(seed: int, width: int = 640, height: int = 480, quality: int = 90) -> tuple[bytes, list[Box]]:
    """``scene()`` encoded as JPEG bytes (deterministic for a given Pillow/libjpeg)."""
    image, boxes = scene(seed, width, height)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=int(quality))
    return out.getvalue(), boxes


# --- dataset ---------------------------------------------------------------------------------------------
def yolo_label_lines(boxes: Iterable[Box], width: int, height: int) -> list[str]:
    lines = []
    for cls, *xyxy in boxes:
        xc, yc, w, h = xyxy_to_yolo(tuple(xyxy), width, height)
        lines.append(f"{int(cls)} {xc:.6f} {yc:.6f} {w:.6f} {h:.6f}")
    return lines


def write_yolo_dataset(
    root: Path, n_train: int, n_val: int, seed: int = 0, width: int = 640, height: int = 480, quality: int = 90
) -> Path:
    """Write a YOLO dataset of scenes under ``root``; returns the path of its data.yaml.

    Train images use seeds ``seed .. seed+n_train-1``, val images the next ``n_val`` seeds.
    """
    if n_train < 1 or n_val < 1:
        raise ValueError(f"need at least one train and one val image (got n_train={n_train}, n_val={n_val})")
    root = Path(root).resolve()
    splits = {"train": range(seed, seed + n_train), "val": range(seed + n_train, seed + n_train + n_val)}
    for split, seeds in splits.items():
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "labels" / split).mkdir(parents=True, exist_ok=True)
        for s in seeds:
            data, boxes = scene_jpeg(s, width, height, quality)
            (root / "images" / split / f"scene_{s:07d}.jpg").write_bytes(data)
            text = "\n".join(yolo_label_lines(boxes, width, height))
            (root / "labels" / split / f"scene_{s:07d}.txt").write_text(text + "\n" if text else "")
    names = "".join(f"  {i}: {name}\n" for i, name in enumerate(CLASSES))
    yaml_path = root / "data.yaml"
    yaml_path.write_text(f"path: {root}\ntrain: images/train\nval: images/val\nnames:\n{names}")
    return yaml_path


# --- ultralytics (lazy) ------------------------------------------------------------------------------------
def _offline_ultralytics(workdir: Path) -> None:
    """Make ultralytics offline-safe before its first import; seed its fonts wherever its config lives."""
    if "ultralytics" not in sys.modules:
        from .settings import Settings

        Settings.from_env({"ANNOTATOR_DATA_DIR": str(workdir)}).prepare()
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_AUTOINSTALL", "False")
    from ultralytics.utils import USER_CONFIG_DIR

    import matplotlib

    font = Path(matplotlib.__file__).parent / "mpl-data" / "fonts" / "ttf" / "DejaVuSans.ttf"
    for name in ("Arial.ttf", "Arial.Unicode.ttf"):
        target = Path(USER_CONFIG_DIR) / name
        if not target.exists() and font.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(font, target)


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


def match_boxes(preds, truths, iou: float = 0.5) -> int:
    """Greedy matching (highest confidence first) of ``(cls, conf, x1, y1, x2, y2)`` predictions to
    ``(cls, x1, y1, x2, y2)`` truths by class and IoU >= ``iou``; returns the number of true positives."""
    free = list(truths)
    tp = 0
    for cls, _conf, *xyxy in sorted(preds, key=lambda p: -p[1]):
        best, best_iou = None, iou
        for t in free:
            if t[0] == cls:
                v = iou_xyxy(tuple(xyxy), tuple(t[1:]))
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
            (int(c), float(p), *map(float, xyxy))
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
        args.out.with_suffix(".txt").write_text("\n".join(yolo_label_lines(boxes, 640, 480)) + "\n")
        print(f"{args.out}: {len(boxes)} shapes")
        return 0

    env_dir = Path(tempfile.mkdtemp(prefix="demo-env-"))
    try:
        if args.command == "train":
            started = time.monotonic()
            if args.workdir is None:
                _offline_ultralytics(env_dir)
            path = train_demo_model(
                args.out, args.epochs, args.imgsz, args.n_train, args.n_val, args.seed, args.workdir, args.batch
            )
            print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB) in {time.monotonic() - started:.0f} s")
            return 0
        if not args.model.is_file():
            print(f"error: no model at {args.model}", file=sys.stderr)
            return 2
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
