"""Pure box geometry. Inside the app a box is absolute pixel xyxy (floats) in the EXIF-corrected image.

Function names say their units: ``xyxy`` absolute corners, ``xywh`` absolute top-left + size (COCO),
``yolo`` normalized centre + size.
"""

from __future__ import annotations

import numpy as np

XYXY = tuple[float, float, float, float]


def xyxy_to_xywh(b: XYXY) -> XYXY:
    x1, y1, x2, y2 = b
    return (x1, y1, x2 - x1, y2 - y1)


def xywh_to_xyxy(b: XYXY) -> XYXY:
    x, y, w, h = b
    return (x, y, x + w, y + h)


def xyxy_to_yolo(b: XYXY, width: int, height: int) -> XYXY:
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    x1, y1, x2, y2 = b
    return ((x1 + x2) / 2 / width, (y1 + y2) / 2 / height, (x2 - x1) / width, (y2 - y1) / height)


def yolo_to_xyxy(b: XYXY, width: int, height: int) -> XYXY:
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    xc, yc, w, h = b
    return ((xc - w / 2) * width, (yc - h / 2) * height, (xc + w / 2) * width, (yc + h / 2) * height)


def clamp_xyxy(b: XYXY, width: int, height: int) -> XYXY:
    x1, y1, x2, y2 = b
    x1, x2 = sorted((min(max(x1, 0.0), width), min(max(x2, 0.0), width)))
    y1, y2 = sorted((min(max(y1, 0.0), height), min(max(y2, 0.0), height)))
    return (x1, y1, x2, y2)


def clamp_xyxy_array(xyxy: np.ndarray, widths, heights) -> np.ndarray:
    """``clamp_xyxy`` on an (n, 4) array, with the same float arithmetic (so both give identical corners);
    ``widths``/``heights`` are one size for all rows or one per row."""
    ax = np.minimum(np.maximum(xyxy[:, 0], 0.0), widths)
    bx = np.minimum(np.maximum(xyxy[:, 2], 0.0), widths)
    ay = np.minimum(np.maximum(xyxy[:, 1], 0.0), heights)
    by = np.minimum(np.maximum(xyxy[:, 3], 0.0), heights)
    return np.column_stack([np.minimum(ax, bx), np.minimum(ay, by), np.maximum(ax, bx), np.maximum(ay, by)]) + 0.0


def has_area(b: XYXY) -> bool:
    return b[2] - b[0] > 0 and b[3] - b[1] > 0


def area_xyxy(b: XYXY) -> float:
    x1, y1, x2, y2 = b
    return max(0.0, x2 - x1) * max(0.0, y2 - y1)


def iou_xyxy(a: XYXY, b: XYXY) -> float:
    ix1, iy1 = max(a[0], b[0]), max(a[1], b[1])
    ix2, iy2 = min(a[2], b[2]), min(a[3], b[3])
    inter = area_xyxy((ix1, iy1, ix2, iy2))
    union = area_xyxy(a) + area_xyxy(b) - inter
    return inter / union if union > 0 else 0.0


def overlap_of_smaller_xyxy(a: XYXY, b: XYXY) -> float:
    """Intersection over the smaller box's area (1.0 when one box lies inside the other): how much of the
    smaller box the other covers. Not IoU: a small box inside a large one scores 1.0 here."""
    inter = area_xyxy((max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])))
    smaller = min(area_xyxy(a), area_xyxy(b))
    return inter / smaller if smaller > 0 else 0.0
