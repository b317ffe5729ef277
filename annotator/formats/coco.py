"""COCO detection format: one JSON with images, annotations (absolute ``[x, y, w, h]``) and categories.

Category ids are the class index + 1 (contiguous 1..n in class order); image and annotation ids are 1-based
in the deterministic image order (split train/val/test, then file name) and box order.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Callable, Sequence

from annotator.formats import ExportImage, ExportSummary, clamp_boxes, sort_images, validate_images, write_text
from annotator.geometry import xyxy_to_xywh
from annotator.types import SPLITS

INFO = {"description": "Auto Annotator export", "version": "1.0"}


def _r3(v: float) -> float:
    return round(v, 3) + 0.0  # + 0.0: never -0.0


def box_to_bbox(xyxy: tuple[float, float, float, float]) -> list[float]:
    """Clamped absolute xyxy -> COCO ``[x, y, w, h]``, corners rounded to 3 decimals first so that
    x + w never passes the image edge."""
    x, y, w, h = xyxy_to_xywh(tuple(_r3(v) for v in xyxy))
    return [x, y, _r3(w), _r3(h)]


def to_coco(images: Sequence[ExportImage], class_names: Sequence[str],
            with_scores: bool = False) -> tuple[dict, list[tuple[str, str]]]:
    """Pure: images -> (COCO dict, dropped [(file_name, reason)]). Boxes are clamped to their image; zero-area
    ones are dropped. ``score`` is added only when ``with_scores`` and the box has a confidence."""
    validate_images(images, class_names, unique_across_splits=False, unique_stems=False, check_sources=False)
    out_images: list[dict] = []
    annotations: list[dict] = []
    dropped: list[tuple[str, str]] = []
    for image_id, im in enumerate(sort_images(images), start=1):
        out_images.append({"id": image_id, "file_name": im.file_name, "width": im.width, "height": im.height})
        kept, reasons = clamp_boxes(im.boxes, im.width, im.height)
        dropped.extend((im.file_name, r) for r in reasons)
        for box, xyxy in kept:
            bbox = box_to_bbox(xyxy)
            if bbox[2] <= 0.0 or bbox[3] <= 0.0:
                dropped.append((im.file_name, f"box (class {box.class_idx}) is too small to write: {xyxy}"))
                continue
            ann = {
                "id": len(annotations) + 1, "image_id": image_id, "category_id": box.class_idx + 1,
                "bbox": bbox, "area": _r3(bbox[2] * bbox[3]), "iscrowd": 0, "segmentation": [],
            }
            if with_scores and box.confidence is not None:
                ann["score"] = float(box.confidence)
            annotations.append(ann)
    categories = [{"id": i + 1, "name": n, "supercategory": "object"} for i, n in enumerate(class_names)]
    return ({"info": dict(INFO), "licenses": [], "images": out_images, "annotations": annotations,
             "categories": categories}, dropped)


def dumps(data: dict) -> str:
    return json.dumps(data, indent=None, separators=(",", ":"), ensure_ascii=False) + "\n"


def write_coco(root: Path, images: Sequence[ExportImage], class_names: Sequence[str], per_split: bool = False,
               with_scores: bool = False, copy: Callable[[Path, Path], None] | None = shutil.copyfile
               ) -> ExportSummary:
    """Write a COCO dataset under ``root``.

    per_split=False: ``images/<file_name>`` + ``annotations.json`` (file names must be unique across splits).
    per_split=True: ``images/<split>/<file_name>`` + ``annotations/instances_<split>.json`` per split with
    images, whose ``file_name`` is the bare name (like COCO's train2017 layout); ids restart at 1 per file.
    Input is validated before anything is written (ValueError naming the file at fault)."""
    root = Path(root)
    validate_images(images, class_names, unique_across_splits=not per_split, unique_stems=False,
                    check_sources=copy is not None)
    summary = ExportSummary(per_class={n: 0 for n in class_names})
    files: list[str] = []
    ordered = sort_images(images)
    groups = ([(s, [im for im in ordered if im.split == s]) for s in SPLITS] if per_split else [(None, ordered)])
    for split, group in groups:
        if split is not None and not group:
            continue
        data, dropped = to_coco(group, class_names, with_scores=with_scores)
        summary.dropped.extend(dropped)
        for im in group:
            if im.source is not None and copy is not None:
                rel = f"images/{im.split}/{im.file_name}" if per_split else f"images/{im.file_name}"
                (root / rel).parent.mkdir(parents=True, exist_ok=True)
                copy(Path(im.source), root / rel)
                files.append(rel)
            summary.per_split[im.split] = summary.per_split.get(im.split, 0) + 1
        with_boxes = {a["image_id"] for a in data["annotations"]}
        summary.images += len(data["images"])
        summary.negatives += len(data["images"]) - len(with_boxes)
        summary.boxes += len(data["annotations"])
        for a in data["annotations"]:
            summary.per_class[class_names[a["category_id"] - 1]] += 1
        rel = f"annotations/instances_{split}.json" if per_split else "annotations.json"
        write_text(root, rel, dumps(data), files)
    summary.files = sorted(files)
    return summary
