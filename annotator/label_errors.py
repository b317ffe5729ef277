"""Likely label errors: where a trained model disagrees with an approved image's boxes.

What FiftyOne calls *mistakenness* and Cleanlab the *label issues* of object detection: an approved label
set is checked against the model's own predictions on the same image, and each disagreement that a
reviewer should look at becomes a ``LabelError`` with a suggested fix. The model is not trusted blindly;
a finding is a pointer ("look here"), ranked so that a reviewer's first minutes go to the likeliest
mistakes across the whole dataset.

Four kinds, each with the fix it suggests (thresholds are the module constants below):

- ``missed`` (fix: **add** the predicted box): a confident prediction (conf >= ``conf``, 0.5) that touches
  no approved box of *any* class (IoU < ``MISSED_IOU`` with each). A prediction on a box of another class
  is a class question (``wrong_class``), not a miss. Overlapping missed predictions (one object the model
  saw as "car" 0.9 and "truck" 0.6) are reported once, the most confident (class-agnostic NMS at
  ``DUPLICATE_IOU``).
- ``spurious`` (fix: **delete** the box): an approved box that no prediction overlaps (IoU <
  ``SPURIOUS_IOU`` with every prediction down to ``PRED_FLOOR`` = 0.05, so pass predictions made at a low
  confidence: "the model saw nothing at all there" is what makes a box suspicious).
- ``wrong_class`` (fix: **reclass** the box): a confident prediction of another class on the box (IoU >=
  ``MATCH_IOU``, 0.5) that the model's own vote for the labelled class does not answer: the best
  same-class prediction on the box scores (conf x IoU) less than ``SUPPORT_RATIO`` (half) of the other
  class's conf x IoU.
- ``loose`` (fix: **resize** the box to the prediction's corners): the box's same-class prediction
  (confident) lies mostly inside it (>= ``LOOSE_INSIDE`` of its area) while the box is >= ``LOOSE_AREA``
  (1.5x) its area and their IoU is < ``LOOSE_IOU`` (0.7). A box merely shifted a little (IoU 0.85) is fine.

Matching, so that one box is flagged at most once and one prediction explains at most one finding:
each approved box is first paired with a same-class prediction (greedy, highest IoU first, at IoU >=
``MATCH_IOU``; a box still unpaired may pair with a confident same-class prediction lying inside it, the
``loose`` case with its low IoU). A paired prediction confirms its box and accuses no other box. Then, in
this order, each box gets at most one of ``wrong_class`` > ``loose`` > ``spurious``, and the predictions
that no pair or finding used may become ``missed``.

``score`` (0..1, higher = look first) is the model's confidence times how bad the disagreement is:

- missed: ``conf`` (nothing labelled there at all; only the model's certainty matters);
- wrong_class: ``conf_other x IoU`` (a confident vote that sits squarely on the box);
- loose: ``conf x (1 - IoU)`` (the share of the two boxes' union they disagree on: 2.3x -> 0.57 x conf);
- spurious: ``SPURIOUS_WEIGHT x (1 - max IoU) x size``, ``size = min(1, sqrt(box area / image area) /
  SPURIOUS_FULL_SIDE)``. There is no confidence to use: the evidence is an absence, weaker than a confident
  detection (hence the 0.8 cap), and weakest for small boxes, which detectors miss most (a box whose side
  is under a quarter of the image's is scaled down in proportion).

``image_score`` (the worst finding) orders images in a review queue; ``rank`` orders findings across a
dataset. Pure: no store, no model; the caller runs the model and passes plain boxes.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Iterable, Mapping, Sequence

from .edits import MATCH_IOU
from .geometry import XYXY, area_xyxy, iou_xyxy, overlap_of_smaller_xyxy

PRED_FLOOR = 0.05  # predictions below this confidence are ignored altogether (noise)
MISSED_IOU = 0.3  # a prediction touching an approved box this much is not a miss
DUPLICATE_IOU = 0.7  # missed predictions overlapping this much are one object, reported once
SPURIOUS_IOU = 0.1  # an approved box below this IoU with every prediction is unexplained
SUPPORT_RATIO = 0.5  # the labelled class stands if its conf x IoU is at least half the other class's
LOOSE_IOU = 0.7
LOOSE_AREA = 1.5
LOOSE_INSIDE = 0.9  # share of the prediction's area inside the approved box
SPURIOUS_WEIGHT = 0.8
SPURIOUS_FULL_SIDE = 0.25  # a spurious box with sqrt(area share) >= this gets the full weight

KINDS = ("missed", "wrong_class", "loose", "spurious")
ACTIONS = {"missed": "add", "wrong_class": "reclass", "loose": "resize", "spurious": "delete"}


@dataclass(frozen=True)
class LabelError:
    """One likely label error on one image.

    ``box_id``/``class_idx``/``box``: the approved box in question (for ``missed`` there is none: box_id and
    box are None and class_idx is the predicted class). ``suggestion_class``/``suggestion_box``: the fix
    (see ``action``): the class and corners to add (missed), the new class (wrong_class; box None = keep
    the corners), the new corners (loose), nothing (spurious: delete). ``confidence``: the prediction's
    behind the finding (None for spurious, which no prediction backs)."""

    kind: str
    score: float
    box_id: int | None
    class_idx: int
    box: XYXY | None
    suggestion_class: int | None
    suggestion_box: XYXY | None
    confidence: float | None
    message: str

    @property
    def action(self) -> str:
        """What the suggested fix does: "add", "reclass", "resize" or "delete"."""
        return ACTIONS[self.kind]

    def as_dict(self) -> dict:
        d = asdict(self)
        for k in ("box", "suggestion_box"):
            d[k] = list(d[k]) if d[k] is not None else None
        d["action"] = self.action
        return d


@dataclass(frozen=True)
class _Labelled:
    cls: int
    xyxy: XYXY
    box_id: int | None


@dataclass(frozen=True)
class _Predicted:
    cls: int
    xyxy: XYXY
    conf: float


def _xyxy(values: Sequence) -> XYXY:
    x1, y1, x2, y2 = (float(v) for v in values)
    return (x1, y1, x2, y2)


def _labelled(approved: Iterable) -> list[_Labelled]:
    """Approved boxes as tuples (class, x1, y1, x2, y2[, box_id]) or objects with class_idx, x1..y2, id."""
    out = []
    for b in approved:
        if isinstance(b, (tuple, list)):
            box_id = b[5] if len(b) > 5 else None
            out.append(_Labelled(int(b[0]), _xyxy(b[1:5]), None if box_id is None else int(box_id)))
        else:
            out.append(_Labelled(int(b.class_idx), _xyxy((b.x1, b.y1, b.x2, b.y2)), getattr(b, "id", None)))
    return out


def _predicted(predictions: Iterable) -> list[_Predicted]:
    """Predictions as tuples (class, x1, y1, x2, y2, conf) or objects with class_idx, x1..y2, confidence."""
    out = []
    for p in predictions:
        if isinstance(p, (tuple, list)):
            cls, xyxy, conf = p[0], p[1:5], p[5]
        else:
            cls, xyxy, conf = p.class_idx, (p.x1, p.y1, p.x2, p.y2), p.confidence
        if conf is None:
            raise ValueError(f"a prediction needs a confidence, got {p!r}")
        out.append(_Predicted(int(cls), _xyxy(xyxy), float(conf)))
    return out


def _namer(class_names: Sequence[str]):
    def name(cls: int) -> str:
        return class_names[cls] if 0 <= cls < len(class_names) else f"class {cls}"
    return name


def _pair_same_class(boxes, preds, iou, conf: float) -> dict[int, int]:
    """Box index -> the same-class prediction that confirms it (see the module doc: IoU >= MATCH_IOU
    first, then a confident prediction mostly inside a box at least LOOSE_AREA its size)."""
    pairs: dict[int, int] = {}
    taken: set[int] = set()

    def greedy(candidates):
        for _, i, j in sorted(candidates):  # (-IoU, box, prediction): highest IoU first, ties by index
            if i not in pairs and j not in taken:
                pairs[i] = j
                taken.add(j)

    same = [(i, j) for i, b in enumerate(boxes) for j, p in enumerate(preds) if b.cls == p.cls]
    greedy((-iou[i][j], i, j) for i, j in same if iou[i][j] >= MATCH_IOU)
    greedy((-iou[i][j], i, j) for i, j in same
           if i not in pairs and j not in taken and preds[j].conf >= conf and _inside_loose(boxes[i], preds[j]))
    return pairs


def _inside_loose(box: _Labelled, pred: _Predicted) -> bool:
    """The prediction lies mostly inside a box at least LOOSE_AREA times its area."""
    a_box, a_pred = area_xyxy(box.xyxy), area_xyxy(pred.xyxy)
    # with the box the larger, overlap-of-smaller is the share of the prediction inside the box
    return a_pred > 0 and a_box >= LOOSE_AREA * a_pred and overlap_of_smaller_xyxy(box.xyxy, pred.xyxy) >= LOOSE_INSIDE


def _wrong_class(boxes, preds, iou, conf: float, used: set[int]) -> list[tuple[int, int]]:
    """(box, prediction) pairs where a confident other-class prediction outvotes the labelled class."""
    support = [max((p.conf * iou[i][j] for j, p in enumerate(preds) if p.cls == b.cls), default=0.0)
               for i, b in enumerate(boxes)]
    candidates = sorted(
        (-p.conf * iou[i][j], i, j)
        for i, b in enumerate(boxes) for j, p in enumerate(preds)
        if j not in used and p.cls != b.cls and p.conf >= conf and iou[i][j] >= MATCH_IOU
        and support[i] < SUPPORT_RATIO * p.conf * iou[i][j])
    out, seen_box, seen_pred = [], set(), set()
    for _, i, j in candidates:
        if i not in seen_box and j not in seen_pred:
            out.append((i, j))
            seen_box.add(i)
            seen_pred.add(j)
    return out


def find_label_errors(approved: Sequence, predictions: Sequence, width: int, height: int, conf: float = 0.5,
                      *, class_names: Sequence[str] = ()) -> list[LabelError]:
    """The likely label errors of one approved image, worst first (see the module doc).

    ``approved``: (class, x1, y1, x2, y2, box_id) tuples or Box-like objects; ``predictions``: (class,
    x1, y1, x2, y2, conf) tuples or Box-like objects with a confidence, made down to a low confidence
    (<= PRED_FLOOR) so that ``spurious`` can tell "nothing there" from "not sure". ``width``/``height``:
    the image's, in the boxes' pixels. ``conf``: how confident a prediction must be to accuse a label
    (missed, wrong_class, loose). ``class_names`` only word the messages."""
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    boxes = _labelled(approved)
    preds = [p for p in _predicted(predictions) if p.conf >= PRED_FLOOR]
    iou = [[iou_xyxy(b.xyxy, p.xyxy) for p in preds] for b in boxes]
    name = _namer(class_names)

    pairs = _pair_same_class(boxes, preds, iou, conf)
    used = set(pairs.values())  # a prediction confirming one label accuses nothing else
    flagged: set[int] = set()
    found: list[LabelError] = []

    for i, j in _wrong_class(boxes, preds, iou, conf, used):
        b, p = boxes[i], preds[j]
        found.append(LabelError("wrong_class", p.conf * iou[i][j], b.box_id, b.cls, b.xyxy, p.cls, None, p.conf,
                                f"labelled '{name(b.cls)}', the model says '{name(p.cls)}' ({p.conf:.2f})"))
        flagged.add(i)
        used.add(j)

    for i, j in sorted(pairs.items()):
        b, p = boxes[i], preds[j]
        if i in flagged or p.conf < conf or iou[i][j] >= LOOSE_IOU or not _inside_loose(b, p):
            continue
        ratio = area_xyxy(b.xyxy) / area_xyxy(p.xyxy)
        found.append(LabelError("loose", p.conf * (1 - iou[i][j]), b.box_id, b.cls, b.xyxy, b.cls, p.xyxy, p.conf,
                                f"box is {ratio:.1f}x the model's '{name(p.cls)}' box"))
        flagged.add(i)

    image_area = float(width) * float(height)
    for i, b in enumerate(boxes):
        best = max(iou[i], default=0.0)
        if i in flagged or best >= SPURIOUS_IOU:
            continue
        size = min(1.0, math.sqrt(area_xyxy(b.xyxy) / image_area) / SPURIOUS_FULL_SIDE)
        found.append(LabelError("spurious", SPURIOUS_WEIGHT * (1 - best) * size, b.box_id, b.cls, b.xyxy, None,
                                None, None, f"no prediction overlaps this '{name(b.cls)}' box"))
        flagged.add(i)

    reported: list[_Predicted] = []
    for j in sorted(range(len(preds)), key=lambda j: (-preds[j].conf, j)):
        p = preds[j]
        if (j in used or p.conf < conf or any(iou[i][j] >= MISSED_IOU for i in range(len(boxes)))
                or any(iou_xyxy(p.xyxy, q.xyxy) >= DUPLICATE_IOU for q in reported)):
            continue
        found.append(LabelError("missed", p.conf, None, p.cls, None, p.cls, p.xyxy, p.conf,
                                f"the model sees a '{name(p.cls)}' ({p.conf:.2f}) with no label here"))
        reported.append(p)

    return sorted(found, key=_order)


def _order(e: LabelError) -> tuple:
    """Worst first; ties by kind (alphabetical), then box id (None first), then corners: deterministic."""
    corners = e.box if e.box is not None else e.suggestion_box
    return (-e.score, e.kind, -1 if e.box_id is None else e.box_id, corners or ())


def image_score(errors: Iterable[LabelError]) -> float:
    """The worst finding's score (0.0 when none): an image's place in a "likely mistakes" queue."""
    return max((e.score for e in errors), default=0.0)


def rank(per_image: Mapping[int, Sequence[LabelError]]) -> list[tuple[int, LabelError]]:
    """Every finding of a dataset as (image id, finding), worst first; ties by image id, kind, box."""
    flat = [(image_id, e) for image_id, errors in per_image.items() for e in errors]
    return sorted(flat, key=lambda t: (-t[1].score, t[0], *_order(t[1])[1:]))


__all__ = ["LabelError", "find_label_errors", "image_score", "rank", "KINDS", "ACTIONS", "PRED_FLOOR",
           "MISSED_IOU", "SPURIOUS_IOU", "LOOSE_IOU", "LOOSE_AREA", "LOOSE_INSIDE", "SUPPORT_RATIO"]
