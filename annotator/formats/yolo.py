"""YOLO (ultralytics) detection format: ``images/<split>/x.jpg`` + ``labels/<split>/x.txt`` + ``data.yaml``.

A label line is ``cls xc yc w h`` normalized to [0, 1], six decimals; an image without boxes (a negative)
gets an empty label file.
"""

from __future__ import annotations

import shutil
from pathlib import Path, PurePosixPath
from typing import Callable, Sequence

import yaml

from annotator.formats import ExportImage, ExportSummary, clamp_boxes, sort_images, validate_images, write_text
from annotator.geometry import xyxy_to_yolo
from annotator.types import SPLITS, Box


def _unit(v: float) -> float:
    return min(max(v, 0.0), 1.0) + 0.0


def boxes_to_lines(boxes: Sequence[Box], width: int, height: int) -> tuple[list[str], list[str]]:
    """Absolute xyxy boxes -> YOLO label lines. Boxes are clamped to the image; those with zero area after
    clamping, or too small to show at six decimals, are dropped. Returns (lines, drop reasons)."""
    kept, reasons = clamp_boxes(boxes, width, height)
    lines: list[str] = []
    for box, xyxy in kept:
        xc, yc, w, h = (_unit(v) for v in xyxy_to_yolo(xyxy, width, height))
        if f"{w:.6f}" == "0.000000" or f"{h:.6f}" == "0.000000":
            reasons.append(f"box (class {box.class_idx}) is too small to write in {width}x{height}: {xyxy}")
            continue
        lines.append(f"{box.class_idx} {xc:.6f} {yc:.6f} {w:.6f} {h:.6f}")
    return lines, reasons


def data_yaml(class_names: Sequence[str], splits: Sequence[str]) -> str:
    """The dataset YAML. No ``path`` key: ultralytics then resolves the split folders against the YAML's own
    folder (``path: .`` would resolve against the trainer's current directory)."""
    data: dict = {s: f"images/{s}" for s in SPLITS if s in splits}
    data["nc"] = len(class_names)
    data["names"] = {i: name for i, name in enumerate(class_names)}
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, default_flow_style=False)


def write_yolo(root: Path, images: Sequence[ExportImage], class_names: Sequence[str],
               copy: Callable[[Path, Path], None] | None = shutil.copyfile) -> ExportSummary:
    """Write a YOLO dataset under ``root``; every path written is relative to it. Input is validated before
    anything is written (ValueError naming the file at fault)."""
    root = Path(root)
    validate_images(images, class_names, unique_across_splits=False, unique_stems=True,
                    check_sources=copy is not None)
    summary = ExportSummary(per_class={n: 0 for n in class_names})
    files: list[str] = []
    for im in sort_images(images):
        lines, reasons = boxes_to_lines(im.boxes, im.width, im.height)
        summary.dropped.extend((im.file_name, r) for r in reasons)
        if im.source is not None and copy is not None:
            rel = f"images/{im.split}/{im.file_name}"
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            copy(Path(im.source), root / rel)
            files.append(rel)
        stem = PurePosixPath(im.file_name).stem
        write_text(root, f"labels/{im.split}/{stem}.txt", "".join(f"{line}\n" for line in lines), files)
        summary.images += 1
        summary.boxes += len(lines)
        summary.negatives += not lines
        summary.per_split[im.split] = summary.per_split.get(im.split, 0) + 1
        for line in lines:
            summary.per_class[class_names[int(line.split(" ", 1)[0])]] += 1
    write_text(root, "data.yaml", data_yaml(class_names, list(summary.per_split)), files)
    summary.files = sorted(files)
    return summary
