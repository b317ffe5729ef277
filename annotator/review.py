"""Review and correction: the use cases behind the Annotate tab (``ReviewMixin``, part of ``Services``) and
the pure conversions between our boxes and the ``gradio_image_annotation`` widget's value.

A box on its way through the editor is a plain dict (JSON-able, so it can live in a Gradio session and go
through the API)::

    {"id": stored box id or None, "class_idx": int, "x1": .., "y1": .., "x2": .., "y2": ..,
     "confidence": float | None, "source": "human" | "model" | "import", "model_id", "job_id", "created_by"}

The widget works in whole pixels and knows nothing of provenance, so a save matches what comes back
against what was shown: a box whose class is unchanged and whose corners are within ``TOLERANCE_PX`` of
a shown box IS that box (same id, float corners, source, confidence); anything else is a person's box.
"""

from __future__ import annotations

import math
import os
import re
import uuid
from datetime import datetime
from pathlib import Path
from typing import Sequence

from .types import Box, Conflict, NotFound, UserError

TOLERANCE_PX = 1.0  # the widget rounds corners to whole pixels (and may be off by one when it scales)
REVIEW_STATUSES = ("unreviewed", "approved", "rejected")
_CONF_SUFFIX = re.compile(r"^(.*\S)\s+(?:0(?:\.\d+)?|1(?:\.0+)?)$")


# ---- boxes <-> dicts <-> widget ------------------------------------------------------------------------

def box_to_dict(b: Box) -> dict:
    return {"id": b.id, "class_idx": b.class_idx, "x1": b.x1, "y1": b.y1, "x2": b.x2, "y2": b.y2,
            "confidence": b.confidence, "source": b.source, "model_id": b.model_id, "job_id": b.job_id,
            "created_by": b.created_by}


def widget_label(box: dict, class_names: Sequence[str]) -> str:
    """Class name, plus the confidence for a machine box ("car 0.87")."""
    name = class_names[box["class_idx"]]
    return f"{name} {box['confidence']:.2f}" if box.get("source") == "model" and box.get("confidence") is not None \
        else name


def label_to_class(label: str, class_names: Sequence[str]) -> int:
    """A widget label -> class index: the name itself, or a name followed by a confidence; case-insensitive
    as a last resort. UserError naming the label otherwise."""
    text = (label or "").strip()
    exact = {n: i for i, n in enumerate(class_names)}
    if text in exact:
        return exact[text]
    m = _CONF_SUFFIX.match(text)
    if m and m.group(1) in exact:
        return exact[m.group(1)]
    folded = {n.casefold(): i for i, n in enumerate(class_names)}
    for t in (text, m.group(1) if m else None):
        if t is not None and t.casefold() in folded:
            return folded[t.casefold()]
    if not text:
        raise UserError("A box has no class: pick one for it (double-click the box, or press E with it selected)")
    raise UserError(f"Unknown class {text!r}: the project's classes are {', '.join(class_names)}")


def rgb(colour: Sequence[int]) -> str:
    """The widget's colour format, both ways: "rgb(r, g, b)" (a tuple passes one way only)."""
    r, g, b = (int(v) for v in colour)
    return f"rgb({r}, {g}, {b})"


def visible(box: dict, min_conf: float, hide_all: bool) -> bool:
    if hide_all:
        return False
    return not (box.get("source") == "model" and box.get("confidence") is not None and box["confidence"] < min_conf)


def to_widget(image: str, boxes: Sequence[dict], class_names: Sequence[str], colours: Sequence[tuple],
              min_conf: float = 0.0, hide_all: bool = False, scale: tuple[float, float] = (1.0, 1.0)
              ) -> tuple[dict, list[int]]:
    """The widget value for an image and its working boxes, and the indices of the boxes shown (those
    hidden by the confidence slider or "hide all" stay out of the widget and are kept as they are).
    ``scale`` (x, y): shown pixels per stored pixel, when the widget shows a smaller copy of the image."""
    shown = [i for i, b in enumerate(boxes) if visible(b, min_conf, hide_all)]
    sx, sy = scale
    return ({"image": image, "orientation": 0,
             "boxes": [{"xmin": boxes[i]["x1"] * sx, "ymin": boxes[i]["y1"] * sy, "xmax": boxes[i]["x2"] * sx,
                        "ymax": boxes[i]["y2"] * sy, "label": widget_label(boxes[i], class_names),
                        "color": rgb(colours[boxes[i]["class_idx"] % len(colours)])}
                       for i in shown]},
            shown)


def unrotate(xyxy: tuple[float, float, float, float], orientation: int, width: int, height: int):
    """Corners the widget reports after its rotate buttons (``orientation`` quarter turns clockwise) ->
    corners in the stored image. The widget returns the image unrotated but the boxes rotated."""
    x1, y1, x2, y2 = xyxy
    k = int(orientation or 0) % 4
    if k == 1:  # (x, y) -> (H - y, x) when turned
        pts = [(y1, height - x1), (y2, height - x2)]
    elif k == 2:
        pts = [(width - x1, height - y1), (width - x2, height - y2)]
    elif k == 3:  # (x, y) -> (y, W - x)
        pts = [(width - y1, x1), (width - y2, x2)]
    else:
        return (x1, y1, x2, y2)
    (a, b), (c, d) = pts
    return (min(a, c), min(b, d), max(a, c), max(b, d))


def from_widget(value: dict | None, boxes: Sequence[dict], shown: Sequence[int], class_names: Sequence[str],
                width: int, height: int, default_class: int | None = None,
                scale: tuple[float, float] = (1.0, 1.0)) -> list[dict]:
    """The working boxes after an edit: the hidden ones untouched, then every box in the widget, matched
    back to the shown box it came from when it was not changed (see the module doc). A box drawn a moment
    ago may still have no label: it gets ``default_class`` (the class picked for new boxes). ``scale``
    is to_widget's: the widget's whole pixels are then worth 1/scale stored pixels."""
    sx, sy = scale
    tolerance = TOLERANCE_PX / min(sx, sy)
    shown_set = set(shown)
    hidden = [b for i, b in enumerate(boxes) if i not in shown_set]
    candidates = [boxes[i] for i in shown]
    used: set[int] = set()
    out: list[dict] = []
    orientation = (value or {}).get("orientation") or 0
    for wb in (value or {}).get("boxes") or []:
        try:
            raw = tuple(float(wb[k]) for k in ("xmin", "ymin", "xmax", "ymax"))
        except (KeyError, TypeError, ValueError):
            raise UserError(f"A box from the editor has no usable corners: {wb!r}") from None
        if not all(math.isfinite(v) for v in raw):
            raise UserError(f"A box from the editor has corners that are not numbers: {wb!r}")
        raw = (raw[0] / sx, raw[1] / sy, raw[2] / sx, raw[3] / sy)
        xyxy = unrotate(raw, orientation, width, height)
        label = str(wb.get("label") or "").strip()
        cls = default_class if (not label and default_class is not None) else label_to_class(label, class_names)
        best, best_d = None, None
        for j, c in enumerate(candidates):
            if j in used or c["class_idx"] != cls:
                continue
            d = max(abs(a - b) for a, b in zip(xyxy, (c["x1"], c["y1"], c["x2"], c["y2"])))
            if d <= tolerance and (best_d is None or d < best_d):
                best, best_d = j, d
        if best is not None:
            used.add(best)
            out.append(dict(candidates[best]))
            continue
        out.append({"id": None, "class_idx": cls, "x1": min(xyxy[0], xyxy[2]), "y1": min(xyxy[1], xyxy[3]),
                    "x2": max(xyxy[0], xyxy[2]), "y2": max(xyxy[1], xyxy[3]), "confidence": None,
                    "source": "human", "model_id": None, "job_id": None, "created_by": None})
    return hidden + out


def same_boxes(a: Sequence[dict], b: Sequence[dict]) -> bool:
    """Whether two working box lists are the same set (order does not matter)."""
    def key(x: dict):
        return (x.get("id"), x["class_idx"], round(x["x1"], 6), round(x["y1"], 6), round(x["x2"], 6),
                round(x["y2"], 6), x.get("source"))
    return sorted(map(key, a), key=repr) == sorted(map(key, b), key=repr)


def relabel_new_box(value: dict | None, previous: Sequence[dict] | None, label: str, colour: tuple) -> dict | None:
    """The widget puts a box it just created first in its list. If ``value`` is ``previous`` plus one such
    box, return the value with that box given ``label`` (the class picked for new boxes); else None."""
    boxes = (value or {}).get("boxes") or []
    prev = list(previous or [])
    if len(boxes) != len(prev) + 1 or not boxes:
        return None
    def key(b):
        return (b.get("label"), *(round(float(b[k])) for k in ("xmin", "ymin", "xmax", "ymax")))
    if [key(b) for b in boxes[1:]] != [key(b) for b in prev] or boxes[0].get("label") == label:
        return None
    first = {**boxes[0], "label": label, "color": rgb(colour)}
    return {**value, "boxes": [first, *boxes[1:]]}


# ---- use cases ------------------------------------------------------------------------------------------

class ReviewMixin:
    """Review use cases of ``Services`` (it provides ``store``, ``settings``, ``project``, ``image_file``,
    ``_dataset_id``, ``_prune_cache``)."""

    def _image_in(self, p, image_id):
        try:
            img = self.store.get_image(int(image_id))
        except (TypeError, ValueError):
            raise UserError(f"image id must be a number, got {image_id!r}") from None
        if img.project_id != p.id:
            raise NotFound(f"Image {image_id} is not in project {p.name!r}")
        return img

    def load_image(self, ref, image_id) -> dict:
        """An image for the editor: where its file is, its size and review state, its version (for the
        conflict check on save) and every box with its provenance."""
        p = self.project(ref)
        img = self._image_in(p, image_id)
        st = self.store.editor_state(img.id)
        return {
            "id": img.id, "project": p.name, "file": str(self.image_file(img)), "rel_path": img.rel_path,
            "dataset": img.dataset, "width": img.width, "height": img.height, "split": img.split,
            "status": st["status"], "version": int(st["version"]),
            "reviewed_by": st["reviewed_by"], "reviewed_at": _iso(st["reviewed_at"]),
            "edited_by": st["edited_by"], "edited_at": _iso(st["edited_at"]),
            "classes": p.class_names,
            "boxes": [box_to_dict(b) for b in self.store.boxes_for_image(img.id)],
            "display": self.display_image(img),
        }

    def display_image(self, img) -> dict:
        """What the editor shows: the stored file, or, for an image larger than ``editor_max_side``, a JPEG
        copy that size (made once, kept in the project's display/ folder), with its size. Box corners are
        scaled by display/stored size in the widget and back on save."""
        src = self.image_file(img)
        limit = int(self.settings.editor_max_side or 0)
        if not limit or max(img.width, img.height) <= limit:
            return {"file": str(src), "width": img.width, "height": img.height}
        ratio = limit / max(img.width, img.height)
        w, h = max(1, round(img.width * ratio)), max(1, round(img.height * ratio))
        folder = self.settings.project_dir(img.project_id) / "display"
        out = folder / f"{Path(img.file).stem}-{limit}.jpg"
        if not out.exists():
            from PIL import Image

            from .ingest import _pil_open

            folder.mkdir(parents=True, exist_ok=True)
            tmp = folder / f".{out.stem}.{uuid.uuid4().hex}.part"
            try:
                with _pil_open()(src) as im:
                    im.draft("RGB", (w, h))  # JPEG: decode at a DCT scale near the target, much faster
                    im.convert("RGB").resize((w, h), Image.Resampling.LANCZOS).save(tmp, "JPEG", quality=90)
                os.replace(tmp, out)
            finally:
                tmp.unlink(missing_ok=True)
            self._prune_cache(folder, keep=DISPLAY_CACHE_FILES)
        return {"file": str(out), "width": w, "height": h}

    def save_image(self, ref, image_id, boxes: Sequence[dict], version, user: str | None = None) -> dict:
        """Replace an image's boxes with ``boxes`` (dicts: ``class`` name or ``class_idx``, corners, and the
        ``id`` of a stored box it is). A box equal to the stored box of its id keeps that box's provenance;
        any other is a person's. Corners are clamped to the image; boxes with no area are dropped and
        reported. Fails with Conflict, writing nothing, if anyone saved the image since ``version``."""
        p = self.project(ref)
        img = self._image_in(p, image_id)
        try:
            version = int(version)
        except (TypeError, ValueError):
            raise UserError(f"version must be a number (from load_image), got {version!r}") from None
        stored = {b.id: b for b in self.store.boxes_for_image(img.id)}
        out: list[Box] = []
        dropped: list[str] = []
        kept = 0
        for n, d in enumerate(boxes or []):
            if not isinstance(d, dict):
                raise UserError(f"box {n} must be an object with class and x1, y1, x2, y2; got {d!r}")
            cls = self._box_class(p, d, n)
            try:
                xyxy = [float(d[k]) for k in ("x1", "y1", "x2", "y2")]
            except (KeyError, TypeError, ValueError):
                raise UserError(f"box {n} needs numeric x1, y1, x2, y2; got {d!r}") from None
            if not all(math.isfinite(v) for v in xyxy):
                raise UserError(f"box {n} has corners that are not finite numbers: {xyxy}")
            x1, x2 = sorted(min(max(v, 0.0), img.width) for v in (xyxy[0], xyxy[2]))
            y1, y2 = sorted(min(max(v, 0.0), img.height) for v in (xyxy[1], xyxy[3]))
            if x2 - x1 <= 0 or y2 - y1 <= 0:
                dropped.append(f"box {n} ({p.class_names[cls]}) has no area inside the {img.width}x{img.height} image")
                continue
            old = stored.get(d.get("id")) if d.get("id") is not None else None
            if old is not None and old.class_idx == cls and all(
                    abs(a - b) < 1e-6 for a, b in zip((x1, y1, x2, y2), old.xyxy)):
                out.append(old)  # untouched: provenance, confidence and exact corners kept
                kept += 1
                continue
            out.append(Box(x1=x1 + 0.0, y1=y1 + 0.0, x2=x2 + 0.0, y2=y2 + 0.0, class_idx=cls, source="human",
                           created_by=user or "local"))
        new_version = self.store.save_image_boxes(img.id, out, version, user or "local")
        return {"id": img.id, "version": new_version, "boxes": len(out), "kept": kept, "human": len(out) - kept,
                "dropped": dropped}

    @staticmethod
    def _box_class(p, d: dict, n: int) -> int:
        if d.get("class_idx") is not None and d.get("class") is None:
            try:
                cls = int(d["class_idx"])
            except (TypeError, ValueError):
                raise UserError(f"box {n}: class_idx must be a number, got {d['class_idx']!r}") from None
            if not 0 <= cls < len(p.class_names):
                raise UserError(f"box {n}: class index {cls} is not in {p.name!r} (0..{len(p.class_names) - 1})")
            return cls
        return label_to_class(str(d.get("class") or ""), p.class_names)

    def set_review_status(self, ref, image_ids, status: str, user: str | None = None,
                          drop_machine_below: float | None = None) -> dict:
        """approve / reject / reset (unreviewed) some images, recording who and when. Approving with
        ``drop_machine_below`` deletes the machine boxes under that confidence first."""
        p = self.project(ref)
        status = (status or "").strip().lower()
        if status == "reset":
            status = "unreviewed"
        if status not in REVIEW_STATUSES:
            raise UserError(f"status must be approved, rejected or unreviewed (reset), got {status!r}")
        ids = [image_ids] if isinstance(image_ids, (int, float, str)) else list(image_ids or [])
        imgs = [self._image_in(p, i) for i in ids]
        if not imgs:
            raise UserError("No image given")
        if drop_machine_below is not None and not (0.0 <= float(drop_machine_below) <= 1.0):
            raise UserError(f"confidence threshold must be between 0 and 1, got {drop_machine_below}")
        changed = self.store.set_review_status([i.id for i in imgs], status, user or "local",
                                               drop_machine_below=drop_machine_below if status == "approved" else None)
        return {"status": status, "images": changed, "ids": [i.id for i in imgs], "by": user or "local"}

    def review_queue_ids(self, ref, status: str | None = None, dataset: str | None = None,
                         class_name: str | None = None, no_boxes: bool = False, below_conf: float | None = None,
                         sort: str = "upload") -> list[int]:
        """The ordered image ids a reviewer goes through (see Store.review_queue for the filters)."""
        p = self.project(ref)
        status = (status or "").strip().lower() or None
        if status == "all":
            status = None
        if status is not None and status not in REVIEW_STATUSES:
            raise UserError(f"status must be unreviewed, approved, rejected or all, got {status!r}")
        dataset_id = self._dataset_id(p, dataset)
        class_idx = None
        if class_name:
            class_idx = label_to_class(class_name, p.class_names)
        if below_conf is not None and not (0.0 <= float(below_conf) <= 1.0):
            raise UserError(f"confidence threshold must be between 0 and 1, got {below_conf}")
        ids = self.store.review_queue(p.id, status=status, dataset_id=dataset_id, class_idx=class_idx,
                                      no_boxes=bool(no_boxes), below_conf=below_conf, sort=sort or "upload")
        return ids.tolist()

    def review_queue(self, ref, offset: int = 0, limit: int = 50, **filters) -> dict:
        """A page of the review queue: total, and per image id, status, path, box count, lowest machine
        confidence."""
        ids = self.review_queue_ids(ref, **filters)
        offset, limit = max(0, int(offset)), max(1, min(int(limit), 500))
        items = self.store.queue_items(ids[offset:offset + limit])
        for it in items:
            it.pop("thumb", None)
        return {"total": len(ids), "offset": offset, "items": items}

    def queue_thumbs(self, ref, image_ids: Sequence[int]) -> list[dict]:
        """Filmstrip entries (thumbnail path, status, box count) for the given ids, in order."""
        p = self.project(ref)
        pdir = self.settings.project_dir(p.id)
        return [{**it, "thumb": str(pdir / it["thumb"])} for it in self.store.queue_items(image_ids)]

    def copy_boxes(self, ref, from_image, to_image) -> list[dict]:
        """The boxes of ``from_image`` as new (person's) boxes for ``to_image``, scaled by the size ratio
        when the two differ (sequences usually share one size). Nothing is saved."""
        p = self.project(ref)
        src, dst = self._image_in(p, from_image), self._image_in(p, to_image)
        sx, sy = dst.width / src.width, dst.height / src.height
        return [{"id": None, "class_idx": b.class_idx, "x1": b.x1 * sx, "y1": b.y1 * sy, "x2": b.x2 * sx,
                 "y2": b.y2 * sy, "confidence": None, "source": "human", "model_id": None, "job_id": None,
                 "created_by": None} for b in self.store.boxes_for_image(src.id)]

    def review_stats_counts(self, ref) -> dict[str, int]:
        return self.store.image_status_counts(self.project(ref).id)

    def review_stats(self, ref) -> dict:
        """Boxes per class (split by source) over the non-rejected images, images per review state, and
        reviews per day with a running total of approved images."""
        p = self.project(ref)
        raw = self.store.review_stats(p.id)
        per_class = {n: {"human": 0, "model": 0, "import": 0} for n in p.class_names}
        for c, source, n in raw["per_class"]:
            if c < len(p.class_names):
                per_class[p.class_names[c]][source] = n
        status = {s: int(raw["status"].get(s, 0)) for s in REVIEW_STATUSES}
        days, running = [], 0
        for d, s, n in raw["per_day"]:
            if s == "approved":
                running += n
            days.append({"day": d.isoformat(), "status": s, "images": n, "approved_total": running})
        return {"project": p.name, "total": sum(status.values()), "status": status,
                "per_class": [{"class": k, **v, "total": sum(v.values())} for k, v in per_class.items()],
                "per_day": days}


DISPLAY_CACHE_FILES = 3000  # per project; the oldest display copies go first


def _iso(ts: datetime | None) -> str | None:
    return ts.isoformat(timespec="seconds") if ts else None


__all__ = ["ReviewMixin", "Conflict", "to_widget", "from_widget", "same_boxes", "relabel_new_box", "label_to_class",
           "widget_label", "unrotate", "box_to_dict"]
