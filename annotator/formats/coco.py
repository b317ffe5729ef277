"""COCO detection format: one JSON with images, annotations (absolute ``[x, y, w, h]``) and categories.

Category ids are the class index + 1 (contiguous 1..n in class order); image and annotation ids are 1-based
in the deterministic image order (split train/val/test, then file name) and box order.
"""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path, PurePosixPath
from typing import Callable, Sequence

import numpy as np

from annotator.formats import (BoxTable, DirSink, ExportImage, ExportSummary, LabelRecord, ReadResult, ZipSink,
                               as_sink, is_junk, place_boxes, sort_images, split_of, validate_images)
from annotator.geometry import area_xyxy, clamp_xyxy, xywh_to_xyxy
from annotator.types import SPLITS, Box

INFO = {"description": "Auto Annotator export", "version": "1.0"}


def bboxes(xyxy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Clamped absolute xyxy rows -> (COCO ``[x, y, w, h]`` rows, areas), 3 decimals. Corners are rounded
    first, so x + w never passes the image edge."""
    r = np.round(xyxy, 3) + 0.0  # + 0.0: never -0.0
    wh = np.round(r[:, 2:] - r[:, :2], 3) + 0.0
    return np.column_stack([r[:, :2], wh]), np.round(wh[:, 0] * wh[:, 1], 3) + 0.0


def to_coco(images: Sequence[ExportImage], class_names: Sequence[str], with_scores: bool = False,
            boxes: BoxTable | None = None) -> tuple[dict, list[tuple[str, str]]]:
    """Pure: images -> (COCO dict, dropped [(file_name, reason)]). Boxes (``boxes``, or each image's own)
    are clamped to their image; zero-area ones are dropped. ``score`` is added only when ``with_scores``
    and the box has a confidence."""
    validate_images(images, class_names, unique_across_splits=False, unique_stems=False, check_sources=False)
    ordered = sort_images(images)
    placed = place_boxes(ordered, boxes if boxes is not None else BoxTable.from_images(ordered), class_names)
    dropped = list(placed.dropped)
    out_images = [{"id": k, "file_name": im.file_name, "width": im.width, "height": im.height}
                  for k, im in enumerate(ordered, start=1)]
    annotations: list[dict] = []
    bbox, area = bboxes(placed.xyxy)
    scores = placed.confidence.tolist() if with_scores else None
    for r, (pos, c, box, a) in enumerate(zip(placed.image_pos.tolist(), placed.class_idx.tolist(), bbox.tolist(),
                                             area.tolist())):
        if box[2] <= 0.0 or box[3] <= 0.0:
            dropped.append((ordered[pos].file_name,
                            f"box (class {c}) is too small to write: {tuple(placed.xyxy[r].tolist())}"))
            continue
        ann = {"id": len(annotations) + 1, "image_id": pos + 1, "category_id": c + 1, "bbox": box, "area": a,
               "iscrowd": 0, "segmentation": []}
        if scores is not None and not math.isnan(scores[r]):
            ann["score"] = scores[r]
        annotations.append(ann)
    categories = [{"id": i + 1, "name": n, "supercategory": "object"} for i, n in enumerate(class_names)]
    return ({"info": dict(INFO), "licenses": [], "images": out_images, "annotations": annotations,
             "categories": categories}, dropped)


def dumps(data: dict) -> str:
    return json.dumps(data, indent=None, separators=(",", ":"), ensure_ascii=False) + "\n"


def write_coco(dest: Path | DirSink | ZipSink, images: Sequence[ExportImage], class_names: Sequence[str],
               per_split: bool = False, with_scores: bool = False,
               copy: Callable[[Path, Path], None] | None = shutil.copyfile,
               boxes: BoxTable | None = None) -> ExportSummary:
    """Write a COCO dataset to ``dest``: a folder (images placed with ``copy``; None = labels only) or a
    sink such as ZipSink. ``boxes`` holds the boxes of all images as columns (else each image's own).

    per_split=False: ``images/<file_name>`` + ``annotations.json`` (file names must be unique across splits).
    per_split=True: ``images/<split>/<file_name>`` + ``annotations/instances_<split>.json`` per split with
    images, whose ``file_name`` is the bare name (like COCO's train2017 layout); ids restart at 1 per file.
    Input is validated before anything is written (ValueError naming the file at fault)."""
    sink = as_sink(dest, copy)
    validate_images(images, class_names, unique_across_splits=not per_split, unique_stems=False,
                    check_sources=sink.takes_images)
    summary = ExportSummary(per_class={n: 0 for n in class_names})
    ordered = sort_images(images)
    table = boxes if boxes is not None else BoxTable.from_images(ordered)
    groups = ([(s, [im for im in ordered if im.split == s]) for s in SPLITS] if per_split else [(None, ordered)])
    for split, group in groups:
        if split is not None and not group:
            continue
        data, dropped = to_coco(group, class_names, with_scores=with_scores, boxes=table)
        summary.dropped.extend(dropped)
        for im in group:
            if im.source is not None and sink.takes_images:
                sink.file(f"images/{im.split}/{im.file_name}" if per_split else f"images/{im.file_name}",
                          im.source)
            summary.per_split[im.split] = summary.per_split.get(im.split, 0) + 1
        with_boxes = {a["image_id"] for a in data["annotations"]}
        summary.images += len(data["images"])
        summary.negatives += len(data["images"]) - len(with_boxes)
        summary.boxes += len(data["annotations"])
        for a in data["annotations"]:
            summary.per_class[class_names[a["category_id"] - 1]] += 1
        sink.text(f"annotations/instances_{split}.json" if per_split else "annotations.json", dumps(data))
    summary.files = sorted(sink.files)
    return summary


# ---- reader -----------------------------------------------------------------------------------------------

_SPLIT_IN_NAME = re.compile(r"^instances_([A-Za-z]+)\d*\.json$")


def find_annotations(root: Path) -> list[Path]:
    """COCO annotation files under ``root`` (any depth), sorted: ``annotations.json``, ``instances_*.json``
    and Roboflow's ``_annotations.coco.json``."""
    root = Path(root)
    found = []
    for path in sorted(root.rglob("*.json")):
        rel = PurePosixPath(path.relative_to(root).as_posix())
        name = rel.name.lower()
        if is_junk(rel) or not path.is_file():
            continue
        if name in ("annotations.json", "_annotations.coco.json") or (
                name.startswith("instances_") and name.endswith(".json")):
            found.append(path)
    return found


def split_of_json(json_path: Path) -> str | None:
    """``instances_<split>[year].json`` or a ``<split>/`` parent folder ("valid" -> "val"), else None."""
    m = _SPLIT_IN_NAME.match(Path(json_path).name)
    if m and split_of(m.group(1)):
        return split_of(m.group(1))
    return split_of(Path(json_path).parent.name)


def _num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def from_coco(data, name: str, split: str | None) -> ReadResult:
    """Pure: a loaded COCO dict -> ReadResult. Classes are the categories in category-id order (ids of any
    base, sparse or not; a box's class index is its category's place in that order); Roboflow's unused placeholder category (supercategory "none", parent of the others)
    is left out. ``iscrowd`` boxes are kept like any other. Boxes are clamped to the image when its size is
    known. Every bad image/annotation is a problem naming ``name`` and its id; the rest is kept."""
    result = ReadResult()
    problems = result.problems
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        problems.append((name, "is not a COCO file: no 'images' list"))
        return result
    cats = data.get("categories", [])
    anns = data.get("annotations", [])
    if not isinstance(cats, list) or not isinstance(anns, list):
        problems.append((name, "'categories' and 'annotations' must be lists"))
        return result
    used = {a.get("category_id") for a in anns if isinstance(a, dict)}
    cat_names: dict[int, str] = {}
    for c in cats:
        if not (isinstance(c, dict) and isinstance(c.get("id"), int) and isinstance(c.get("name"), str)):
            problems.append((name, f"category {c!r} needs an integer 'id' and a string 'name'"))
        elif c["id"] in cat_names:
            problems.append((name, f"category id {c['id']} appears twice"))
        else:
            cat_names[c["id"]] = c["name"]
    for c in cats:  # Roboflow: {"id": 0, "name": "<project>", "supercategory": "none"} parents the real ones
        if (isinstance(c, dict) and c.get("supercategory") == "none" and c.get("id") in cat_names
                and c.get("id") not in used
                and any(isinstance(o, dict) and o.get("supercategory") == c.get("name") for o in cats)):
            del cat_names[c["id"]]
    result.class_names = [cat_names[i] for i in sorted(cat_names)]
    class_idx = {cat: i for i, cat in enumerate(sorted(cat_names))}  # category id -> index into class_names
    if len(set(result.class_names)) != len(result.class_names):
        problems.append((name, f"category names are not unique: {result.class_names}"))

    images: dict[int, dict] = {}
    order: list[int] = []
    for im in data["images"]:
        if not (isinstance(im, dict) and isinstance(im.get("id"), (int, str)) and isinstance(im.get("file_name"), str)
                and im["file_name"]):
            problems.append((name, f"image {im!r:.120} needs an 'id' and a 'file_name'"))
            continue
        if im["id"] in images:
            problems.append((name, f"image id {im['id']!r} appears twice ({im['file_name']})"))
            continue
        images[im["id"]] = im
        order.append(im["id"])
    boxes: dict[int, list[Box]] = {i: [] for i in order}
    for a in anns:
        if not isinstance(a, dict):
            problems.append((name, f"annotation {a!r:.120} is not an object"))
            continue
        aid = a.get("id")
        im = images.get(a.get("image_id"))
        if im is None:
            problems.append((name, f"annotation {aid}: unknown image_id {a.get('image_id')!r}"))
            continue
        where = f"annotation {aid} ({im['file_name']})"
        if a.get("category_id") not in cat_names:
            problems.append((name, f"{where}: unknown category_id {a.get('category_id')!r}"))
            continue
        bbox = a.get("bbox")
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(_num(v) for v in bbox)):
            problems.append((name, f"{where}: bbox must be 4 numbers [x, y, w, h], got {bbox!r}"))
            continue
        x, y, w, h = (float(v) for v in bbox)
        if w <= 0 or h <= 0:
            problems.append((name, f"{where}: bbox has zero or negative size: {bbox}"))
            continue
        xyxy = xywh_to_xyxy((x, y, w, h))
        iw, ih = im.get("width"), im.get("height")
        if _num(iw) and _num(ih) and iw > 0 and ih > 0:
            xyxy = clamp_xyxy(xyxy, iw, ih)
            if area_xyxy(xyxy) <= 0.0:
                problems.append((name, f"{where}: bbox lies outside the {iw}x{ih} image: {bbox}"))
                continue
        boxes[im["id"]].append(Box(*(v + 0.0 for v in xyxy), class_idx=class_idx[a["category_id"]], source="import"))
    for i in order:
        im = images[i]
        w, h = im.get("width"), im.get("height")
        result.records.append(LabelRecord(
            image=im["file_name"], split=split, boxes=tuple(boxes[i]),
            width=int(w) if _num(w) and w > 0 else None, height=int(h) if _num(h) and h > 0 else None))
    return result


def read_coco(json_path: Path, name: str | None = None) -> ReadResult:
    """Read one COCO detection JSON; split from ``instances_<split>.json`` or a ``<split>/`` folder.
    ``name`` is how problems name the file (default: the file's name). Never raises on bad data: an
    unreadable or invalid JSON gives a ReadResult with one problem."""
    json_path = Path(json_path)
    name = name or json_path.name
    try:
        data = json.loads(json_path.read_bytes().decode("utf-8-sig"))
    except UnicodeDecodeError as e:
        return ReadResult(problems=[(name, f"unreadable (not UTF-8 text: {e.reason} at byte {e.start})")])
    except json.JSONDecodeError as e:
        return ReadResult(problems=[(name, f"invalid JSON: {e.msg} at line {e.lineno} column {e.colno}")])
    except (OSError, RecursionError) as e:
        return ReadResult(problems=[(name, f"unreadable: {e}")])
    return from_coco(data, name, split_of_json(json_path))
