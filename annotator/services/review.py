"""Review and correction, the use cases behind the Annotate tab: load an image with its boxes and version,
save a person's boxes (untouched stored boxes keep their provenance), approve / reject, the review queue
and its filmstrip, copying boxes from another image, and the review statistics.

A box travels as ``Box.as_dict()``: a stored box's ``id`` with unchanged class and corners IS that box
(source, confidence, job and exact float corners kept); any other box is a person's."""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import uuid
from datetime import datetime
from pathlib import Path
from typing import Sequence

from PIL import Image

from .. import pixels
from ..classmap import label_to_class
from ..edits import count_edits
from ..geometry import clamp_xyxy, has_area
from ..overlay import class_colours as overlay_colours
from ..phash import MAX_REFERENCE, informative_order
from ..types import REVIEW_STATES, Box, ImageRecord, Project, UserError
from . import loop
from .context import AppContext, audit, dataset_id, image_in, project, require, review_state
from .images import image_file, prune_cache
from .similar import ensure_hashes

log = logging.getLogger(__name__)

DISPLAY_CACHE_FILES = 3000  # per project; the oldest display copies go first


def load_image(ctx: AppContext, ref, image_id) -> dict:
    """An image for the editor: where its file is, its size and review state, its version (for the
    conflict check on save) and every box with its provenance."""
    p = project(ctx, ref)
    img = image_in(ctx, p, image_id)
    st = ctx.store.editor_state(img.id)
    return {
        "id": img.id, "project": p.name, "file": str(image_file(ctx, img)), "rel_path": img.rel_path,
        "dataset": img.dataset, "width": img.width, "height": img.height, "split": img.split,
        "frame": img.frame_label, "video_id": img.video_id,
        "status": st["status"], "version": int(st["version"]),
        "reviewed_by": st["reviewed_by"], "reviewed_at": _iso(st["reviewed_at"]),
        "edited_by": st["edited_by"], "edited_at": _iso(st["edited_at"]),
        "changed_by": st["changed_by"], "changed_at": _iso(st["changed_at"]),
        "classes": p.class_names,
        "boxes": [b.as_dict() for b in ctx.store.boxes_for_image(img.id)],
        "findings": ctx.store.label_errors(p.id, "open", img.id),  # likely label errors (services/quality.py)
        "display": display_image(ctx, img),
    }


def display_image(ctx: AppContext, img: ImageRecord) -> dict:
    """What the editor shows: the stored file, or, for an image larger than ``editor_max_side``, a JPEG
    copy at most that size (made once, kept in the project's display/ folder), with its size. Boxes
    stay in stored-image pixels: the editor scales the picture, never the boxes.

    A JPEG is decoded straight at 1/2, 1/4 or 1/8 of its size (libjpeg's DCT scaling, several times
    faster than decoding it whole and resizing); the copy takes the largest of those sizes within the
    limit when that keeps at least half of it (a 4000x3000 photo and a 2560 limit: 2000x1500 in ~80 ms
    instead of 2560x1920 in ~560 ms), otherwise exactly the limit."""
    src = image_file(ctx, img)
    limit = int(ctx.settings.editor_max_side or 0)
    side = max(img.width, img.height)
    if not limit or side <= limit:
        return {"file": str(src), "width": img.width, "height": img.height}
    ratio = limit / side
    w, h = max(1, round(img.width * ratio)), max(1, round(img.height * ratio))
    if (img.format or "").upper() in ("JPEG", "JPG"):
        k = next(k for k in (2, 4, 8, 0) if not k or -(-side // k) <= limit)
        if k and -(-side // k) >= limit / 2:  # libjpeg's scaled size: rounded up
            w, h = -(-img.width // k), -(-img.height // k)
    folder = ctx.settings.display_dir(img.project_id)
    out = folder / f"{Path(img.file).stem}-{max(w, h)}.jpg"
    if not out.exists():
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{out.stem}.{uuid.uuid4().hex}.part"
        try:
            _make_display_copy(src, (w, h), tmp)
            os.replace(tmp, out)
        finally:
            tmp.unlink(missing_ok=True)
        prune_cache(folder, keep=DISPLAY_CACHE_FILES)
    return {"file": str(out), "width": w, "height": h}


# Modes Image.reduce works on: shrink first, convert the small result (a palette or 16-bit image is converted
# at full size, a second full copy, and is charged twice).
_REDUCIBLE = ("L", "LA", "RGB", "RGBA", "RGBX", "CMYK", "I", "F")


def _make_display_copy(src: Path, size: tuple[int, int], dest: Path) -> None:
    """Write ``src`` as an RGB JPEG of exactly ``size``. A JPEG decodes at the DCT scale nearest above
    ``size``; any other format decodes whole, so the decoded pixels are held against the process's budget
    (pixels.DECODE: concurrent opens of huge PNGs queue instead of adding up) and dropped as soon as an
    integer reduce has made them small."""
    from PIL import Image

    from ..ingest import _pil_open

    w, h = size
    full = _pil_open()(src)
    try:
        full.draft("RGB", (w, h))  # JPEG: decode at the DCT scale nearest above (w, h); others: nothing
        cost = pixels.decoded_bytes(*full.size) * (1 if full.mode in _REDUCIBLE else 2)
        with pixels.DECODE.hold(cost):
            full.load()
            k = min(full.width // w, full.height // h)
            im = full.reduce(k) if k > 1 and full.mode in _REDUCIBLE else full
            if im.mode != "RGB":
                im = im.convert("RGB")
            if im.size != (w, h):
                im = im.resize((w, h), Image.Resampling.LANCZOS)
            if im is not full:
                full.close()  # the full-size pixels go now, inside the budget
            im.save(dest, "JPEG", quality=90)
    finally:
        full.close()


def warm_display(ctx: AppContext, image_id: int) -> None:
    """Make an image's display copy ahead of time (the editor's next image), ignoring any problem: the
    real load reports it."""
    try:
        display_image(ctx, ctx.store.get_image(int(image_id)))
    except Exception:  # noqa: BLE001 - a prefetch only
        pass


def save_image(ctx: AppContext, ref, image_id, boxes: Sequence[dict], version, user: str | None = None) -> dict:
    """Replace an image's boxes with ``boxes`` (dicts: ``class`` name or ``class_idx``, corners, and the
    ``id`` of a stored box it is). A box whose class and corners equal those of the stored box of its id
    keeps that box's provenance (each stored box once); any other is a person's. Corners are clamped to
    the image; boxes with no area are dropped and reported. Fails with Conflict (who or which job, when),
    writing nothing, if anything changed the image since ``version``. ``stored``: the boxes as stored
    now, in the order given (ids included), so a caller needs no second read; ``revision``: the project's
    revision this save moved it to (a live view that sees it knows the change is its own)."""
    require(ctx, user, "annotator", "saving boxes")
    p = project(ctx, ref)
    img = image_in(ctx, p, image_id)
    try:
        version = int(version)
    except (TypeError, ValueError):
        raise UserError(f"version must be a number (from load_image), got {version!r}") from None
    stored = {b.id: b for b in ctx.store.boxes_for_image(img.id)}
    tracks = {i: b.track_id for i, b in stored.items() if b.track_id is not None}
    out: list[Box] = []
    dropped: list[str] = []
    kept = 0
    for n, d in enumerate(boxes or []):
        if not isinstance(d, dict):
            raise UserError(f"box {n} must be an object with class and x1, y1, x2, y2; got {d!r}")
        cls = _box_class(p, d, n)
        try:
            xyxy = [float(d[k]) for k in ("x1", "y1", "x2", "y2")]
        except (KeyError, TypeError, ValueError):
            raise UserError(f"box {n} needs numeric x1, y1, x2, y2; got {d!r}") from None
        if not all(math.isfinite(v) for v in xyxy):
            raise UserError(f"box {n} has corners that are not finite numbers: {xyxy}")
        x1, y1, x2, y2 = clamp_xyxy(xyxy, img.width, img.height)
        if not has_area((x1, y1, x2, y2)):
            dropped.append(f"box {n} ({p.class_names[cls]}) has no area inside the {img.width}x{img.height} image")
            continue
        old = stored.get(d.get("id")) if d.get("id") is not None else None
        if old is not None and old.class_idx == cls and all(
                abs(a - b) < 1e-6 for a, b in zip((x1, y1, x2, y2), old.xyxy)):
            out.append(old)  # untouched: provenance, confidence and exact corners kept
            del stored[old.id]  # a second copy of the same box is a person's
            kept += 1
            continue
        # A tracked box a person corrected is still that object: it keeps its track id (see delete_track).
        track = tracks.get(d.get("id")) if isinstance(d.get("id"), int) else None
        out.append(Box(x1=x1 + 0.0, y1=y1 + 0.0, x2=x2 + 0.0, y2=y2 + 0.0, class_idx=cls, source="human",
                       created_by=user or "local", track_id=track))
    new_version, ids, revision = ctx.store.save_image_boxes(img.id, out, version, user or "local", return_ids=True)
    if ids is None:  # many new boxes: read them back
        saved = ctx.store.boxes_for_image(img.id)
    else:
        saved = [dataclasses.replace(b, id=i) for b, i in zip(out, ids)]
    return {"id": img.id, "version": new_version, "boxes": len(out), "kept": kept, "human": len(out) - kept,
            "dropped": dropped, "stored": [b.as_dict() for b in saved], "revision": revision}


def _box_class(p: Project, d: dict, n: int) -> int:
    if d.get("class_idx") is not None and d.get("class") is None:
        try:
            cls = int(d["class_idx"])
        except (TypeError, ValueError):
            raise UserError(f"box {n}: class_idx must be a number, got {d['class_idx']!r}") from None
        if not 0 <= cls < len(p.class_names):
            raise UserError(f"box {n}: class index {cls} is not in {p.name!r} (0..{len(p.class_names) - 1})")
        return cls
    return label_to_class(str(d.get("class") or ""), p.class_names)


def delete_track(ctx: AppContext, ref, image_id, job_id, track_id, user: str | None = None) -> dict:
    """Delete a track (a job's track id: auto-annotation with tracking) in the FOLLOWING frames of this
    image's video: each later frame's machine box of that job and track. This frame's box is the caller's to
    delete (the editor saves its own image). Frames a person saved or approved are left alone and counted
    (``protected``); each changed frame counts as edited by ``user``. Returns deleted boxes and frames."""
    who = require(ctx, user, "annotator", "deleting a track")
    p = project(ctx, ref)
    img = image_in(ctx, p, image_id)
    try:
        job_id, track_id = int(job_id), int(track_id)
    except (TypeError, ValueError):
        raise UserError(f"a track is a job id and a track id (numbers), got {job_id!r} and {track_id!r}") from None
    if img.video_id is None:
        raise UserError(f"Image {img.id} ({img.rel_path}) is not a video's frame: it has no following frames")
    out = ctx.store.delete_track_after(img.id, job_id, track_id, who)
    audit(ctx, who, "deleted track %d of job %d after frame %s of video %d: %d box(es) on %d frame(s)", track_id,
          job_id, img.frame_index, img.video_id, out["deleted"], out["images"])
    return {**out, "track_id": track_id}


def set_review_status(ctx: AppContext, ref, image_ids, status: str, user: str | None = None,
                      drop_machine_below: float | None = None, version: int | None = None) -> dict:
    """approve / reject / reset (unreviewed) some images, recording who and when. Approving with
    ``drop_machine_below`` deletes the machine boxes under that confidence first. With ``version`` (one
    image, the version the reviewer saw) a stale review is refused with Conflict, like a stale save.
    The result has the image's new ``version`` when one image was given."""
    require(ctx, user, "annotator", "reviewing images")
    p = project(ctx, ref)
    status = (status or "").strip().lower()
    if status == "reset":
        status = "unreviewed"
    if status not in REVIEW_STATES:
        raise UserError(f"status must be approved, rejected or unreviewed (reset), got {status!r}")
    ids = [image_ids] if isinstance(image_ids, (int, float, str)) else list(image_ids or [])
    imgs = [image_in(ctx, p, i) for i in ids]
    if not imgs:
        raise UserError("No image given")
    if drop_machine_below is not None and not (0.0 <= float(drop_machine_below) <= 1.0):
        raise UserError(f"confidence threshold must be between 0 and 1, got {drop_machine_below}")
    if version is not None:
        try:
            version = int(version)
        except (TypeError, ValueError):
            raise UserError(f"version must be a number (from load_image), got {version!r}") from None
        if len(imgs) != 1:
            raise UserError(f"a version goes with one image, got {len(imgs)}")
    changed = ctx.store.set_review_status([i.id for i in imgs], status, user or "local",
                                          drop_machine_below=drop_machine_below if status == "approved" else None,
                                          expected_version=version)
    _measure_edits(ctx, [i.id for i in imgs], status, user or "local")
    if status == "approved":
        loop.after_approvals(ctx, p, user)  # a keep-learning project may start its next round
    out = {"status": status, "images": changed, "ids": [i.id for i in imgs], "by": user or "local"}
    if len(imgs) == 1:
        out["version"] = int(ctx.store.editor_state(imgs[0].id)["version"])
    return out


def _measure_edits(ctx: AppContext, image_ids: Sequence[int], status: str, user: str) -> None:
    """On approval, record the edits between the machine's boxes the reviewer was shown (the image's latest
    job) and the approved boxes (annotator/edits.py); withdrawing an approval drops the record."""
    if status != "approved":
        ctx.store.record_review_edits([], drop=image_ids)
        return
    shown = ctx.store.predictions_for(image_ids)
    if not shown:
        return
    final = ctx.store.boxes_for_images(list(shown))
    rows = []
    for image_id, (job_id, model_id, machine) in shown.items():
        approved = final.get(image_id, [])
        e = count_edits(machine, approved)
        rows.append((image_id, job_id, model_id, len(machine), len(approved), e.deleted, e.added, e.reclassed,
                     e.adjusted, e.total, user))
    ctx.store.record_review_edits(rows)


def review_queue_ids(ctx: AppContext, ref, status: str | None = None, dataset: str | None = None,
                     class_name: str | None = None, no_boxes: bool = False, below_conf: float | None = None,
                     sort: str = "upload") -> list[int]:
    """The ordered image ids a reviewer goes through (see Store.review_queue for the filters)."""
    p = project(ctx, ref)
    status = review_state(status, allow_all=True)
    ds = dataset_id(ctx, p, dataset)
    class_idx = label_to_class(class_name, p.class_names) if class_name else None
    if below_conf is not None and not (0.0 <= float(below_conf) <= 1.0):
        raise UserError(f"confidence threshold must be between 0 and 1, got {below_conf}")
    sort = sort or "upload"
    if sort not in SORTS:
        raise UserError(f"sort must be one of {', '.join(SORTS)}, got {sort!r}")
    if sort == "errors":  # images with open label findings, the worst first, whatever their review state
        ids = ctx.store.label_error_queue(p.id)
        if ds is not None:
            recs = ctx.store.get_images(ids)
            ids = [i for i in ids if i in recs and recs[i].dataset_id == ds]
        return ids
    ids = ctx.store.review_queue(p.id, status=status, dataset_id=ds, class_idx=class_idx, no_boxes=bool(no_boxes),
                                 below_conf=below_conf, sort="upload" if sort == "informative" else sort).tolist()
    if sort == "informative":
        ensure_hashes(ctx, p)
        scores = ctx.store.queue_scores(ids)
        ids = informative_order(ids, [scores.get(i, (None, None))[0] for i in ids],
                                [scores.get(i, (None, None))[1] for i in ids],
                                ctx.store.approved_hashes(p.id, MAX_REFERENCE))
    return ids


SORTS = ("upload", "uncertain", "informative", "errors")


def review_queue(ctx: AppContext, ref, offset: int = 0, limit: int = 50, **filters) -> dict:
    """A page of the review queue: total, and per image id, status, path, box count, lowest machine
    confidence."""
    ids = review_queue_ids(ctx, ref, **filters)
    offset, limit = max(0, int(offset)), max(1, min(int(limit), 500))
    items = ctx.store.queue_items(ids[offset:offset + limit])
    for it in items:
        it.pop("thumb", None)
    return {"total": len(ids), "offset": offset, "items": items}


def queue_thumbs(ctx: AppContext, ref, image_ids: Sequence[int]) -> list[dict]:
    """Filmstrip entries (thumbnail path, status, box count) for the given ids, in order."""
    p = project(ctx, ref)
    return [{**it, "thumb": str(ctx.settings.project_file(p.id, it["thumb"]))}
            for it in ctx.store.queue_items(image_ids)]


def copy_boxes(ctx: AppContext, ref, from_image, to_image, user: str | None = None) -> list[dict]:
    """The boxes of ``from_image`` as new (person's) boxes for ``to_image``, scaled by the size ratio
    when the two differ (sequences usually share one size). Nothing is saved."""
    require(ctx, user, "annotator", "copying boxes")
    p = project(ctx, ref)
    src, dst = image_in(ctx, p, from_image), image_in(ctx, p, to_image)
    sx, sy = dst.width / src.width, dst.height / src.height
    return [Box(b.x1 * sx, b.y1 * sy, b.x2 * sx, b.y2 * sy, class_idx=b.class_idx).as_dict()
            for b in ctx.store.boxes_for_image(src.id)]


def review_stats_counts(ctx: AppContext, ref) -> dict[str, int]:
    return ctx.store.image_status_counts(project(ctx, ref).id)


def project_revision(ctx: AppContext, ref) -> int:
    """A number that moves whenever the project's boxes, reviews, images, splits or classes change:
    cheap enough for every open page to poll."""
    return ctx.store.project_revision(project(ctx, ref).id)


def image_changes(ctx: AppContext, ref, image_ids: Sequence[int]) -> dict[int, dict]:
    """image id -> {version, status, changed_by, changed_at} for images of the project (others are left
    out): what an open editor compares with the versions it holds."""
    p = project(ctx, ref)
    ids = []
    for i in image_ids or []:
        try:
            ids.append(int(i))
        except (TypeError, ValueError):
            raise UserError(f"image id must be a number, got {i!r}") from None
    return {i: {"version": int(r["version"]), "status": r["status"], "changed_by": r["changed_by"],
                "changed_at": _iso(r["changed_at"])} for i, r in ctx.store.image_changes(ids, p.id).items()}


def class_colours(ctx: AppContext, ref) -> list[str]:
    """The colour of each of the project's classes ("#rrggbb", by class index): the colours the gallery's
    overlays and the editor draw them in."""
    return ["#%02x%02x%02x" % c for c in overlay_colours(len(project(ctx, ref).class_names))]


def review_stats(ctx: AppContext, ref) -> dict:
    """Boxes per class (split by source) over the non-rejected images, images per review state, and
    reviews per day with a running total of approved images."""
    p = project(ctx, ref)
    raw = ctx.store.review_stats(p.id)
    per_class = {n: {"human": 0, "model": 0, "import": 0} for n in p.class_names}
    for c, source, n in raw["per_class"]:
        if c < len(p.class_names):
            per_class[p.class_names[c]][source] = n
    status = {s: int(raw["status"].get(s, 0)) for s in REVIEW_STATES}
    days, running = [], 0
    for d, s, n in raw["per_day"]:
        if s == "approved":
            running += n
        days.append({"day": d.isoformat(), "status": s, "images": n, "approved_total": running})
    return {"project": p.name, "total": sum(status.values()), "status": status,
            "per_class": [{"class": k, **v, "total": sum(v.values())} for k, v in per_class.items()],
            "per_day": days}


def _iso(ts: datetime | None) -> str | None:
    return ts.isoformat(timespec="seconds") if ts else None
