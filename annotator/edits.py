"""How many edits a reviewer needs to turn the machine's boxes into the approved ones: the number the whole
product tries to make small (issue "the loop that learns"; bench/loop.py measures the same way).

One image, two box lists: what the model showed and what was approved. Pairs are matched greedily by IoU
(highest first), first within the same class, then across classes, each at IoU >= ``MATCH_IOU``:

- a machine box with no partner was **deleted** (a false positive),
- an approved box with no partner was **added** (a miss the person drew),
- a cross-class pair was **reclassed** (one edit, not a delete plus an add),
- a matched pair (either kind) whose IoU is below ``TIGHT_IOU`` was **adjusted** (moved or resized).

``total`` is their sum; an image approved as shown has 0 edits.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Iterable, Sequence

MATCH_IOU = 0.5
TIGHT_IOU = 0.85

Corners = tuple[int, float, float, float, float]  # class, x1, y1, x2, y2


@dataclass(frozen=True)
class Edits:
    deleted: int = 0
    added: int = 0
    reclassed: int = 0
    adjusted: int = 0

    @property
    def total(self) -> int:
        return self.deleted + self.added + self.reclassed + self.adjusted

    def as_dict(self) -> dict[str, int]:
        return {**asdict(self), "total": self.total}


def _iou(a: Corners, b: Corners) -> float:
    iw = min(a[3], b[3]) - max(a[1], b[1])
    ih = min(a[4], b[4]) - max(a[2], b[2])
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    union = (a[3] - a[1]) * (a[4] - a[2]) + (b[3] - b[1]) * (b[4] - b[2]) - inter
    return inter / union if union > 0 else 0.0


def _corners(boxes: Iterable) -> list[Corners]:
    """Boxes (anything with class_idx and x1..y2, or tuples already) as (class, x1, y1, x2, y2)."""
    out = []
    for b in boxes:
        if isinstance(b, tuple):
            out.append((int(b[0]), float(b[1]), float(b[2]), float(b[3]), float(b[4])))
        else:
            out.append((int(b.class_idx), float(b.x1), float(b.y1), float(b.x2), float(b.y2)))
    return out


def count_edits(shown: Sequence, approved: Sequence) -> Edits:
    """The edits between the machine's boxes ``shown`` and the ``approved`` ones (see the module doc)."""
    machine, final = _corners(shown), _corners(approved)
    free_m, free_f = set(range(len(machine))), set(range(len(final)))
    adjusted = reclassed = 0
    for same_class in (True, False):
        pairs = sorted(((_iou(machine[i], final[j]), i, j) for i in free_m for j in free_f
                        if (machine[i][0] == final[j][0]) == same_class), reverse=True)
        for iou, i, j in pairs:
            if iou < MATCH_IOU:
                break
            if i not in free_m or j not in free_f:
                continue
            free_m.discard(i)
            free_f.discard(j)
            reclassed += 0 if same_class else 1
            adjusted += iou < TIGHT_IOU
    return Edits(deleted=len(free_m), added=len(free_f), reclassed=reclassed, adjusted=int(adjusted))


__all__ = ["Edits", "count_edits", "MATCH_IOU", "TIGHT_IOU"]
