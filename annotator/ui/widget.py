"""Conversions between our boxes (``Box.as_dict()``) and the ``gradio_image_annotation`` widget's value, for
the Annotate tab. The widget works in whole pixels and knows nothing of provenance, so a save matches what
comes back against what was shown: a box whose class is unchanged and whose corners are within
``TOLERANCE_PX`` of a shown box IS that box (same id, float corners, source, confidence); anything else is a
person's box.
"""

from __future__ import annotations

import math
from typing import Sequence

from ..classmap import label_to_class
from ..types import UserError

TOLERANCE_PX = 1.0  # the widget rounds corners to whole pixels (and may be off by one when it scales)


def widget_label(box: dict, class_names: Sequence[str]) -> str:
    """Class name, plus the confidence for a machine box ("car 0.87")."""
    name = class_names[box["class_idx"]]
    return f"{name} {box['confidence']:.2f}" if box.get("source") == "model" and box.get("confidence") is not None \
        else name


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
