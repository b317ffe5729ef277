"""Datasets in and out: export a project as a YOLO or COCO zip (reading, never writing, its state), and
import images labelled elsewhere (YOLO or COCO layouts) as an upload plus their boxes."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import tempfile
import zipfile
from datetime import datetime
from pathlib import Path
from typing import Sequence

from .. import classmap, ingest
from ..geometry import clamp_xyxy, has_area
from ..names import slug, unique_export_names
from ..types import IMAGE_EXTENSIONS, LABEL_EXTENSIONS, Box, UserError
from . import snapshot
from .context import AppContext, dataset_ids, project, require
from .images import add_images, named_sources
from .splits import planned_splits

FORMATS = ("yolo", "coco")


def export_dataset(
    ctx: AppContext, ref, fmt: str, datasets: Sequence[str] | None = None, approved_only: bool = True,
    include_images: bool = True, val_ratio: float = 0.2, per_split: bool = False, with_scores: bool = False,
    user: str | None = None, progress=None,
) -> dict:
    """Write a YOLO or COCO export of the project into a zip under the project's exports/ folder.

    Images keep their stored split. Images without one get the split the split manager would give them
    (the project's ratios, else train/val by ``val_ratio``; deterministic) for this export only: nothing is
    stored, and the summary lists them (``split_assigned``). Rejected images are never exported; without
    ``approved_only``, unreviewed images that have no boxes are left out (not labelled yet).
    """
    require(ctx, user, "annotator", "exporting a dataset")
    from ..diskspace import files_size, require_space
    from ..formats import BoxTable, ExportImage, ZipSink
    from ..formats.coco import write_coco
    from ..formats.yolo import write_yolo

    p = project(ctx, ref)
    fmt = (fmt or "").strip().lower()
    if fmt not in FORMATS:
        raise UserError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if not (0.0 <= float(val_ratio) < 1.0):
        raise UserError(f"validation ratio must be in [0, 1), got {val_ratio}")
    ds_ids = dataset_ids(ctx, p, datasets)
    ratios = None if ctx.store.split_config(p.id) else {"train": 1.0 - float(val_ratio), "val": float(val_ratio),
                                                         "test": 0.0}
    snap, unlabelled = snapshot.labelled(ctx, p, ds_ids, approved_only, planned=planned_splits(ctx, p, ratios))
    images, splits = list(snap.images), snap.splits
    notes: list[str] = []
    if unlabelled:
        notes.append(f"{unlabelled} unreviewed image(s) without boxes left out (not labelled yet)")
    if not images:
        what = "approved images" if approved_only else "approved or labelled images"
        raise UserError(f"Nothing to export: project {p.name!r} has no {what} in the chosen datasets")
    assigned = sorted(f"{i.dataset}/{i.rel_path}" for i in images if i.id in snap.split_assigned)
    if assigned:
        notes.append(f"{len(assigned)} image(s) had no stored split: this export gives them the split the split "
                     f"manager would (the project's ratios, else train/val {round(100 * (1 - val_ratio))}/"
                     f"{round(100 * val_ratio)}; deterministic). Nothing was stored: assign splits on the Train "
                     "tab to keep them.")
    table = BoxTable.from_columns(*(snap.boxes[k] for k in
                                    ("image_id", "class_idx", "x1", "y1", "x2", "y2", "confidence")))
    # COCO without per-split files keeps every image in one folder: names unique across splits there.
    names = unique_export_names(images, splits if fmt == "yolo" or per_split else {i.id: "" for i in images})
    records = [
        ExportImage(id=i.id, file_name=names[i.id], width=i.width, height=i.height, split=splits[i.id],
                    source=ctx.settings.project_file(p.id, i.file) if include_images else None)
        for i in images
    ]
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    out_dir = ctx.settings.exports_dir(p.id)
    payload = (files_size(r.source for r in records) if include_images else 0) + 1024 * len(records) \
        + 200 * len(table)
    require_space(out_dir, payload, f"export {len(records)} images of {p.name!r}")
    out_dir.mkdir(parents=True, exist_ok=True)
    zip_path = out_dir / f"{slug(p.name)}-{fmt}-{stamp}.zip"
    options = {"format": fmt, "datasets": list(datasets or []), "approved_only": bool(approved_only),
               "include_images": bool(include_images), "val_ratio": float(val_ratio),
               "per_split": bool(per_split), "with_scores": bool(with_scores)}
    # Straight into the zip: labels from memory, images streamed from where they are stored; the
    # zip appears under its name only once complete.
    tmp_zip = zip_path.with_suffix(".part")
    try:
        with zipfile.ZipFile(tmp_zip, "w", allowZip64=True) as zf:
            sink = ZipSink(zf, on_file=(lambda done, name: progress(done, len(records), name)) if progress else None)
            if fmt == "yolo":
                summary = write_yolo(sink, records, p.class_names, boxes=table)
            else:
                summary = write_coco(sink, records, p.class_names, per_split=per_split, with_scores=with_scores,
                                     boxes=table)
        os.replace(tmp_zip, zip_path)
    except ValueError as e:  # the writers validate their input and name the file at fault
        tmp_zip.unlink(missing_ok=True)
        raise UserError(f"Export of {p.name!r} failed: {e}") from None
    except BaseException:
        tmp_zip.unlink(missing_ok=True)
        raise
    result = {
        "project": p.name, "format": fmt, "file": str(zip_path), "size_bytes": zip_path.stat().st_size,
        "images": summary.images, "boxes": summary.boxes, "negatives": summary.negatives,
        "per_class": summary.per_class, "per_split": summary.per_split,
        "dropped": [{"file": f, "reason": r} for f, r in summary.dropped], "notes": notes, "options": options,
        "split_assigned": assigned,
    }
    stored = {k: v for k, v in result.items() if k not in ("file", "options", "split_assigned")}
    ctx.store.add_export(p.id, fmt, options, {**stored, "split_assigned": len(assigned)},
                         str(zip_path.relative_to(ctx.settings.project_dir(p.id))), result["size_bytes"], user)
    return result


def exports(ctx: AppContext, ref, limit: int = 20) -> list[dict]:
    return ctx.store.exports(project(ctx, ref).id, limit)


# --- import of existing labels --------------------------------------------------------------------------
@contextlib.contextmanager
def _label_root(ctx: AppContext, sources):
    """Zips are extracted (safely) into a temp folder; a single folder is used as it is."""
    srcs = named_sources(sources, "Nothing to import: choose a .zip or a folder with images and labels")
    if len(srcs) == 1 and srcs[0][0].is_dir():
        yield srcs[0][0], srcs[0][1], []
        return
    ctx.settings.tmp_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=ctx.settings.tmp_dir) as tmp:
        root, skipped = Path(tmp) / "import", []
        root.mkdir()
        limits = ingest.Limits.from_settings(ctx.settings)
        for path, name in srcs:
            if path.suffix.lower() == ".zip":
                skipped += ingest.extract_archive(path, name, root, limits)
            elif path.is_file():
                shutil.copyfile(path, root / Path(name).name)
            else:
                raise UserError(f"{name}: import takes one folder, or zip/label/image files")
        yield root, Path(srcs[0][1]).stem or "import", skipped


def _read_labels(root: Path, fmt: str, image_size=ingest.exif_size):
    from ..formats import ReadResult
    from ..formats.coco import find_annotations, read_coco
    from ..formats.yolo import read_yolo

    fmt = (fmt or "").strip().lower()
    if fmt == "yolo":
        return read_yolo(root, image_size)
    if fmt != "coco":
        raise UserError(f"format must be yolo or coco, got {fmt!r}")
    files = find_annotations(root)
    if not files:
        raise UserError("No COCO annotations file found (annotations.json, instances_*.json or "
                        "_annotations.coco.json)")
    merged = ReadResult()
    for f in files:
        r = read_coco(f)
        for n in r.class_names:  # classes merge by name: this file's class index -> the merged one
            if n not in merged.class_names:
                merged.class_names.append(n)
        to_merged = [merged.class_names.index(n) for n in r.class_names]
        for rec in r.records:  # file_name is relative to the JSON's folder, or an images/ folder beside it
            folders = [f.parent, f.parent / "images", f.parent.parent / "images"]
            if rec.split:
                folders += [f.parent / "images" / rec.split, f.parent.parent / "images" / rec.split]
            inside = root.resolve()
            found = next((c for c in (d / rec.image for d in folders)
                          if c.resolve().is_relative_to(inside) and c.is_file()), None)  # never outside
            image = found.relative_to(root).as_posix() if found else rec.image
            boxes = tuple(dataclasses.replace(b, class_idx=to_merged[b.class_idx]) for b in rec.boxes)
            merged.records.append(dataclasses.replace(rec, image=image, boxes=boxes))
        merged.problems += r.problems
    return merged


def _class_targets(p, source_names, mapping: dict | None) -> dict[int, int | None]:
    idx = classmap.match_classes(source_names, p.class_names)
    if mapping:
        idx = classmap.apply_overrides(idx, mapping, p.class_names, source_names)
    return idx


def analyze_labels(ctx: AppContext, ref, sources, fmt: str, user: str | None = None) -> dict:
    """What an import would bring: the source's classes and how they would map (by name)."""
    require(ctx, user, "annotator", "analysing labels to import")
    p = project(ctx, ref)
    with _label_root(ctx, sources) as (root, _, skipped):
        result = _read_labels(root, fmt)
    mapping = classmap.match_classes(result.class_names, p.class_names)
    counts: dict[int, int] = {}
    for rec in result.records:
        for b in rec.boxes:
            counts[b.class_idx] = counts.get(b.class_idx, 0) + 1
    return {
        "classes": [{"source": n, "boxes": counts.get(i, 0),
                     "project": p.class_names[mapping[i]] if mapping.get(i) is not None else None}
                    for i, n in enumerate(result.class_names)],
        "images": len(result.records), "problems": [{"file": f, "reason": r} for f, r in result.problems],
        "skipped": [{"name": x.name, "reason": x.reason} for x in skipped],
    }


def import_labels(
    ctx: AppContext, ref, sources, fmt: str, dataset: str | None = None, mapping: dict | None = None,
    add_new_classes: bool = False, approve: bool = False, replace: bool = False, user: str | None = None,
    progress=None,
) -> dict:
    """Bring a dataset labelled elsewhere into the project: its images (as an upload) and their boxes
    (source=import). Classes map by name (case-insensitive); ``mapping`` overrides rows (source name ->
    project class name, or None to drop); unmatched classes are added (``add_new_classes``) or dropped
    and counted. The imported boxes replace the machine's boxes of the images they label (counted in
    ``replaced_machine``). Images a person approved or edited keep their boxes (``protected``), unless
    ``replace``: then the import's labels replace theirs too (``replaced_protected``).

    Each image file is read once, by the upload: its image id and EXIF-corrected size come back with the
    upload's report, and the label readers take the size from there."""
    if add_new_classes or replace:  # changing the class table, or overwriting people's work in bulk
        require(ctx, user, "admin", "importing labels with new classes" if add_new_classes
                else "importing labels that replace people's boxes")
    require(ctx, user, "annotator", "importing labels")
    p = project(ctx, ref)
    with _label_root(ctx, sources) as (root, default_name, extract_skipped):
        # COCO names its images (sizes included); a YOLO dataset is every image under its root, and its
        # reader needs the sizes, which the upload reads.
        result = _read_labels(root, fmt) if fmt.strip().lower() == "coco" else None
        if result is not None:
            has_images = any((root / r.image).is_file() for r in result.records)
        else:
            has_images = any(f.suffix.lower() in IMAGE_EXTENSIONS for f in root.rglob("*") if f.is_file())
        upload = add_images(ctx, p, [(root, default_name)], dataset or default_name, user=user,
                            progress=progress) if has_images else None
        ids = upload.image_ids if upload else {}
        stored = ctx.store.get_images(list(ids.values()))

        def image_size(path: Path):
            img = stored.get(ids.get(path.relative_to(root).as_posix(), -1))
            return (img.width, img.height) if img else ingest.exif_size(path)

        if result is None:
            result = _read_labels(root, fmt, image_size)
        if not result.records:
            raise UserError(f"No labelled images found in the {fmt.upper()} import"
                            + (f" ({len(result.problems)} problem(s): {result.problems[0][1]})" if result.problems
                               else ""))
        # Classes: by name, then the user's overrides, then (optionally) new classes for the rest.
        idx = _class_targets(p, result.class_names, mapping)
        unmatched = [n for i, n in enumerate(result.class_names) if idx.get(i) is None
                     and not (mapping and (n in mapping or str(i) in mapping))]
        added_classes = []
        if add_new_classes and unmatched:
            ctx.store.add_classes(p.id, unmatched)
            added_classes = unmatched
            p = ctx.store.get_project(p.id)
            idx = _class_targets(p, result.class_names, mapping)
        # COCO may label images already in the project: found by file name when not in the import.
        named = [rec for rec in result.records if not (root / rec.image).is_file()]
        by_base = ctx.store.image_ids_by_basename(p.id) if named else {}
        problems = [{"file": f, "reason": r} for f, r in result.problems]
        targets: dict[str, int] = {}
        for rec in result.records:
            image_id = ids.get(rec.image)
            if image_id is None and not (root / rec.image).is_file():
                found = by_base.get(rec.image.rsplit("/", 1)[-1].lower(), [])
                if len(found) > 1:
                    problems.append({"file": rec.image, "reason": f"{len(found)} project images have this "
                                                                  "file name; labels not applied"})
                    continue
                image_id = found[0] if found else None
            if image_id is None:
                problems.append({"file": rec.image, "reason": "no such image in the import or the project"})
                continue
            targets[rec.image] = image_id
        stored.update(ctx.store.get_images([i for i in targets.values() if i not in stored]))
        dropped: dict[str, int] = {}
        per_class: dict[str, int] = {}
        items = []
        for rec in result.records:
            if rec.image not in targets:
                continue
            img = stored[targets[rec.image]]
            size = (getattr(rec, "width", None), getattr(rec, "height", None))
            if None not in size and size != (img.width, img.height):  # e.g. a tool that ignored EXIF
                problems.append({"file": rec.image, "reason": f"labels are for a {size[0]}x{size[1]} image, "
                                                              f"the stored one is {img.width}x{img.height}"})
                continue
            boxes = []
            for b in rec.boxes:
                target = idx.get(b.class_idx)
                if target is None:
                    name = result.class_names[b.class_idx]
                    dropped[name] = dropped.get(name, 0) + 1
                    continue
                xyxy = clamp_xyxy(b.xyxy, img.width, img.height)
                if not has_area(xyxy):
                    problems.append({"file": rec.image, "reason": "a box lies outside the image; dropped"})
                    continue
                boxes.append(Box(*xyxy, class_idx=int(target), source="import", created_by=user))
                per_class[p.class_names[target]] = per_class.get(p.class_names[target], 0) + 1
            items.append((img.id, boxes, rec.split))
        saved = ctx.store.save_imported_labels(items, approve=approve, user=user, replace=bool(replace))
    skipped = [{"name": x.name, "reason": x.reason} for x in extract_skipped]
    if upload is not None:
        skipped += [{"name": x.name, "reason": x.reason} for x in upload.skipped
                    if not x.name.lower().endswith(tuple(LABEL_EXTENSIONS))]
    return {
        "project": p.name, "format": fmt.lower(), "dataset": upload.dataset if upload else None,
        "images_added": len(upload.added) if upload else 0,
        "duplicates": len(upload.duplicates) if upload else 0,
        "labelled_images": saved["images"], "boxes": saved["boxes"], "per_class": per_class,
        "negatives": sum(1 for _, b, _ in items if not b), "protected": saved["protected"],
        "replaced_machine": saved["replaced_machine"], "replaced_protected": saved["replaced_protected"],
        "approved": saved["approved"], "added_classes": added_classes, "dropped_by_class": dropped,
        "problems": problems, "skipped": skipped,
    }
