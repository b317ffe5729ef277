"""YOLO (ultralytics) detection format: ``images/<split>/x.jpg`` + ``labels/<split>/x.txt`` + ``data.yaml``.

A label line is ``cls xc yc w h`` normalized to [0, 1], six decimals; an image without boxes (a negative)
gets an empty label file.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path, PurePosixPath
from typing import Callable, Sequence

import yaml

import numpy as np

from annotator.formats import (BoxTable, DirSink, ExportImage, ExportSummary, LabelRecord, PlacedBoxes,
                               ReadResult, ZipSink, as_sink, is_junk, place_boxes, sort_images, split_of,
                               stem, validate_images)
from annotator.geometry import clamp_xyxy, yolo_to_xyxy
from annotator.types import IMAGE_EXTENSIONS, SPLITS, Box


def _unit(v: float) -> float:
    return min(max(v, 0.0), 1.0) + 0.0


def boxes_to_lines(boxes: Sequence[Box], width: int, height: int) -> tuple[list[str], list[str]]:
    """Absolute xyxy boxes of one image -> YOLO label lines. Boxes are clamped to the image; those with zero
    area after clamping, or too small to show at six decimals, are dropped. Returns (lines, drop reasons)."""
    im = ExportImage(id=0, file_name="x.jpg", width=width, height=height, split="train", boxes=tuple(boxes))
    placed = place_boxes([im], BoxTable.from_images([im]), range(1 + max((b.class_idx for b in boxes), default=0)))
    lines, dropped = _lines(placed, [im])
    return [line.rstrip("\n") for line in lines], [r for _, r in placed.dropped + dropped]


def _lines(placed: PlacedBoxes, images: Sequence[ExportImage]) -> tuple[list[str], list[tuple[str, str]]]:
    """One ``cls xc yc w h`` line per placed box (the arithmetic of geometry.xyxy_to_yolo on arrays).
    Boxes too small to show at six decimals are dropped (their line is ''), with a reason."""
    pos = placed.image_pos
    w = np.fromiter((im.width for im in images), dtype=np.float64, count=len(images))[pos]
    h = np.fromiter((im.height for im in images), dtype=np.float64, count=len(images))[pos]
    x1, y1, x2, y2 = placed.xyxy.T
    cols = [np.clip(v, 0.0, 1.0) + 0.0 for v in ((x1 + x2) / 2 / w, (y1 + y2) / 2 / h, (x2 - x1) / w, (y2 - y1) / h)]
    lines = [f"{c} {a:.6f} {b:.6f} {d:.6f} {e:.6f}\n"
             for c, a, b, d, e in zip(placed.class_idx.tolist(), *(v.tolist() for v in cols))]
    dropped = []
    for r in np.nonzero((cols[2] < 1e-6) | (cols[3] < 1e-6))[0].tolist():
        _, _, _, bw, bh = lines[r].split()
        if bw == "0.000000" or bh == "0.000000":
            im = images[pos[r]]
            lines[r] = ""
            dropped.append((im.file_name, f"box (class {int(placed.class_idx[r])}) is too small to write in "
                                          f"{im.width}x{im.height}: {tuple(placed.xyxy[r].tolist())}"))
    return lines, dropped


def data_yaml(class_names: Sequence[str], splits: Sequence[str]) -> str:
    """The dataset YAML. No ``path`` key: ultralytics then resolves the split folders against the YAML's own
    folder (``path: .`` would resolve against the trainer's current directory)."""
    data: dict = {s: f"images/{s}" for s in SPLITS if s in splits}
    data["nc"] = len(class_names)
    data["names"] = {i: name for i, name in enumerate(class_names)}
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, default_flow_style=False)


def write_yolo(dest: Path | DirSink | ZipSink, images: Sequence[ExportImage], class_names: Sequence[str],
               copy: Callable[[Path, Path], None] | None = shutil.copyfile,
               boxes: BoxTable | None = None) -> ExportSummary:
    """Write a YOLO dataset to ``dest``: a folder (images placed with ``copy``; None = labels only) or a
    sink such as ZipSink. Every path written is relative to the dataset root. ``boxes`` holds the boxes of
    all images as columns; without it each image's own ``boxes`` are used. Input is validated before
    anything is written (ValueError naming the file at fault)."""
    sink = as_sink(dest, copy)
    validate_images(images, class_names, unique_across_splits=False, unique_stems=True,
                    check_sources=sink.takes_images)
    ordered = sort_images(images)
    placed = place_boxes(ordered, boxes if boxes is not None else BoxTable.from_images(ordered), class_names)
    lines, too_small = _lines(placed, ordered)
    summary = ExportSummary(per_class={n: 0 for n in class_names}, dropped=placed.dropped + too_small)
    written = np.fromiter((bool(line) for line in lines), dtype=bool, count=len(lines))
    for c, n in enumerate(np.bincount(placed.class_idx[written], minlength=len(class_names)).tolist()):
        summary.per_class[class_names[c]] = n
    bounds = placed.bounds.tolist()
    for k, im in enumerate(ordered):
        if im.source is not None and sink.takes_images:
            sink.file(f"images/{im.split}/{im.file_name}", im.source)
        text = "".join(lines[bounds[k]:bounds[k + 1]])
        sink.text(f"labels/{im.split}/{stem(im.file_name)}.txt", text)
        summary.images += 1
        summary.negatives += not text
        summary.per_split[im.split] = summary.per_split.get(im.split, 0) + 1
    summary.boxes = int(written.sum())
    sink.text("data.yaml", data_yaml(class_names, list(summary.per_split)))
    summary.files = sorted(sink.files)
    return summary


# ---- reader -----------------------------------------------------------------------------------------------

TOLERANCE = 1e-3  # normalized overshoot clamped silently; beyond it the row is reported and dropped
_NAME_FILES = ("data.yaml", "data.yml", "classes.txt")
_LAYOUT_DIRS = ("images", "labels", "train", "valid", "val", "test")


def _dataset_root(root: Path) -> Path:
    """``root`` or, when it has no data.yaml/classes.txt/layout folder of its own, the one folder below it
    that has (zips often hold one top folder)."""
    subdirs = sorted(p for p in root.iterdir() if p.is_dir() and not is_junk(PurePosixPath(p.name)))
    for test in (lambda d: any((d / n).is_file() for n in _NAME_FILES),
                 lambda d: any((d / n).is_dir() for n in _LAYOUT_DIRS)):
        if test(root):
            return root
        hits = [d for d in subdirs if test(d)]
        if len(hits) == 1:
            return hits[0]
    return root


def names_from_yaml(text: str) -> list[str]:
    """``names`` of a data.yaml as a list (dict index -> name or list); ``nc`` alone gives index strings.
    ValueError naming what is wrong."""
    data = yaml.safe_load(text)
    if not isinstance(data, dict):
        raise ValueError("is not a YAML mapping")
    names = data.get("names")
    if names is None:
        nc = data.get("nc")
        if isinstance(nc, int) and nc >= 0:
            return [str(i) for i in range(nc)]
        raise ValueError("has no 'names'")
    if isinstance(names, dict):
        try:
            by_index = {int(k): str(v) for k, v in names.items()}
        except (TypeError, ValueError):
            raise ValueError(f"'names' keys must be class indices, got {list(names)}") from None
        if sorted(by_index) != list(range(len(by_index))):
            raise ValueError(f"'names' indices must be 0..{len(by_index) - 1}, got {sorted(by_index)}")
        return [by_index[i] for i in range(len(by_index))]
    if isinstance(names, list):
        return [str(n) for n in names]
    raise ValueError(f"'names' must be a list or a mapping, got {type(names).__name__}")


def _read_names(base: Path, rel_base: str, problems: list[tuple[str, str]]) -> list[str] | None:
    for fname in _NAME_FILES:
        path = base / fname
        if not path.is_file():
            continue
        rel = f"{rel_base}{fname}"
        try:
            text = path.read_bytes().decode("utf-8-sig")
            if fname == "classes.txt":
                return [line.strip() for line in text.splitlines() if line.strip()]
            return names_from_yaml(text)
        except UnicodeDecodeError as e:
            problems.append((rel, f"unreadable (not UTF-8 text: {e.reason} at byte {e.start})"))
        except yaml.YAMLError as e:
            problems.append((rel, f"invalid YAML: {str(e).splitlines()[0]}"))
        except (OSError, ValueError) as e:
            problems.append((rel, str(e)))
    return None


def _layout_split(rel: PurePosixPath) -> str | None:
    """Split from the path inside the dataset root: ``images/<split>/..`` or ``<split>/images/..``."""
    parts = rel.parts[:-1]
    for i, part in enumerate(parts):
        if part in ("images", "labels"):
            after = split_of(parts[i + 1]) if i + 1 < len(parts) else None
            before = split_of(parts[i - 1]) if i > 0 else None
            return after or before
    return split_of(parts[0]) if parts else None


def _swap(rel: PurePosixPath, old: str, new: str) -> PurePosixPath:
    """The ultralytics pairing rule: the last ``old`` folder component becomes ``new`` (none: same folder)."""
    parts = list(rel.parent.parts)
    for i in range(len(parts) - 1, -1, -1):
        if parts[i] == old:
            parts[i] = new
            break
    return PurePosixPath(*parts) if parts else PurePosixPath(".")


def parse_label_lines(text: str, width: int, height: int, class_names: Sequence[str] | None,
                      ) -> tuple[list[Box], list[str]]:
    """Pure: YOLO label text -> (absolute boxes, source "import"; reasons "line N: ...").
    ``class_names`` None means the names are unknown (no range check)."""
    boxes: list[Box] = []
    reasons: list[str] = []
    for n, line in enumerate(text.splitlines(), start=1):
        cols = line.split()
        if not cols:
            continue
        if len(cols) >= 6:
            reasons.append(f"line {n}: {len(cols)} columns: polygon rows are not supported, use boxes")
            continue
        if len(cols) != 5:
            reasons.append(f"line {n}: {len(cols)} columns, expected 5 (class xc yc w h)")
            continue
        try:
            cls_f = float(cols[0])
            vals = [float(v) for v in cols[1:]]
        except ValueError:
            reasons.append(f"line {n}: non-numeric value in {line.strip()!r}")
            continue
        if not all(math.isfinite(v) for v in (cls_f, *vals)):
            reasons.append(f"line {n}: non-finite value in {line.strip()!r}")
            continue
        if cls_f != int(cls_f) or cls_f < 0:
            reasons.append(f"line {n}: class id {cols[0]!r} is not a non-negative integer")
            continue
        cls = int(cls_f)
        if class_names is not None and cls >= len(class_names):
            reasons.append(f"line {n}: class id {cls} is out of range ({len(class_names)} classes)")
            continue
        if not all(-TOLERANCE <= v <= 1.0 + TOLERANCE for v in vals):
            reasons.append(f"line {n}: coordinates outside [0, 1]: {' '.join(cols[1:])}")
            continue
        xc, yc, w, h = (_unit(v) for v in vals)
        x1, y1, x2, y2 = clamp_xyxy(yolo_to_xyxy((xc, yc, w, h), width, height), width, height)
        if x2 - x1 <= 0.0 or y2 - y1 <= 0.0:
            reasons.append(f"line {n}: zero-size box: {' '.join(cols[1:])}")
            continue
        boxes.append(Box(x1 + 0.0, y1 + 0.0, x2 + 0.0, y2 + 0.0, class_idx=cls, source="import"))
    return boxes, reasons


def read_yolo(root: Path, image_size: Callable[[Path], tuple[int, int] | None]) -> ReadResult:
    """Read a YOLO detection dataset (ultralytics ``images/<split>`` + ``labels/<split>``, flat ``images`` +
    ``labels``, Roboflow ``<split>/images`` + ``<split>/labels``, or labels beside their images). Names come
    from data.yaml (list or index -> name), else classes.txt, else the indices as strings. The dataset may
    sit one folder down (a zip's top folder). ``image_size(path)`` gives the EXIF-corrected (width, height)
    and is called only for images with a non-empty label file. Never raises on bad data: every bad
    file/row is a problem (file path inside ``root``, reason with line number) and the rest is kept.
    Record and problem paths are posix, relative to ``root``."""
    root = Path(root)
    result = ReadResult()
    if not root.is_dir():
        result.problems.append((str(root), "is not a folder"))
        return result
    base = _dataset_root(root)
    prefix = base.relative_to(root).as_posix()
    prefix = "" if prefix == "." else prefix + "/"
    names = _read_names(base, prefix, result.problems)

    images: dict[tuple[str, str], list[PurePosixPath]] = {}  # (folder, lower stem) -> image paths
    labels: list[PurePosixPath] = []
    for path in sorted(base.rglob("*")):
        rel = PurePosixPath(path.relative_to(base).as_posix())
        if is_junk(rel) or not path.is_file():
            continue
        ext = rel.suffix.lower()
        if ext in IMAGE_EXTENSIONS and "labels" not in rel.parts[:-1]:
            images.setdefault((rel.parent.as_posix(), rel.stem.lower()), []).append(rel)
        elif ext == ".txt" and len(rel.parts) > 1:
            labels.append(rel)  # root-level .txt (classes.txt, README*.txt) are never labels

    parsed: dict[PurePosixPath, list[Box]] = {}
    sizes: dict[PurePosixPath, tuple[int, int]] = {}
    failed: set[PurePosixPath] = set()
    max_cls = -1
    for lab in labels:
        beside = "labels" not in lab.parts[:-1]
        key = (_swap(lab, "labels", "images").as_posix(), lab.stem.lower())
        matches = images.get(key, [])
        if beside and not matches:
            continue  # a stray .txt that is not in a labels folder: not ours to judge
        lab_name = prefix + lab.as_posix()
        if not matches:
            result.problems.append((lab_name, f"{lab_name} has no image"))
            continue
        try:
            text = (base / lab).read_bytes().decode("utf-8-sig")
        except UnicodeDecodeError as e:
            result.problems.append((lab_name, f"unreadable (not UTF-8 text: {e.reason} at byte {e.start})"))
            failed.update(matches)
            continue
        except OSError as e:
            result.problems.append((lab_name, f"unreadable: {e}"))
            failed.update(matches)
            continue
        if not text.strip():
            continue  # an empty label file: a negative
        for im in matches:
            try:
                size = image_size(base / im)
            except Exception as e:  # noqa: BLE001 - the caller's reader; any failure is a problem
                size = None
                why = f": {e}"
            else:
                why = ""
            if not size or size[0] <= 0 or size[1] <= 0:
                result.problems.append((prefix + im.as_posix(), f"cannot read the image size{why}; its labels "
                                        f"in {lab_name} are skipped"))
                failed.add(im)
                continue
            w, h = int(size[0]), int(size[1])
            boxes, reasons = parse_label_lines(text, w, h, names)
            result.problems.extend((lab_name, r) for r in reasons)
            parsed[im] = boxes
            sizes[im] = (w, h)
            max_cls = max([max_cls, *(b.class_idx for b in boxes)])

    result.class_names = names if names is not None else [str(i) for i in range(max_cls + 1)]
    for group in images.values():
        for im in group:
            if im in failed:
                continue
            wh = sizes.get(im)
            result.records.append(LabelRecord(
                image=prefix + im.as_posix(), split=_layout_split(im),
                boxes=tuple(parsed.get(im, ())),
                width=wh[0] if wh else None, height=wh[1] if wh else None))
    result.records.sort(key=lambda r: r.image)
    return result
