"""Class colours and boxes drawn on thumbnails (the gallery and the filmstrip).

Pure: imports only ``types`` (PIL is imported where a picture is drawn).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from .types import Box

PALETTE = [(230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180), (70, 240, 240),
           (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128), (170, 110, 40), (128, 0, 0)]


def class_colour(idx: int) -> tuple[int, int, int]:
    return PALETTE[idx % len(PALETTE)]


def class_colours(n: int) -> list[tuple[int, int, int]]:
    """The colours of a project's ``n`` classes, by index."""
    return [class_colour(i) for i in range(n)]


def draw_boxes(thumb: Path, boxes: Sequence[Box], width: int, height: int, out: Path) -> None:
    """Draw boxes (image pixels) on a thumbnail, dashed for machine boxes, solid for human/imported."""
    from PIL import Image, ImageDraw

    with Image.open(thumb) as im:
        im = im.convert("RGB")
    sx, sy = im.width / width, im.height / height
    d = ImageDraw.Draw(im)
    line = max(2, round(min(im.size) / 90))
    for b in boxes:
        x1, y1, x2, y2 = b.x1 * sx, b.y1 * sy, b.x2 * sx, b.y2 * sy
        colour = class_colour(b.class_idx)
        d.rectangle([x1, y1, x2, y2], outline=(20, 20, 20), width=line + 2)  # contrast on any background
        if b.source == "model":
            sides = ((x1, y1), (x2, y1)), ((x2, y1), (x2, y2)), ((x2, y2), (x1, y2)), ((x1, y2), (x1, y1))
            for a, c in sides:
                _dashed(d, a, c, colour, line, dash=3.0 * line)
        else:
            d.rectangle([x1, y1, x2, y2], outline=colour, width=line)
    tmp = out.with_suffix(".part")
    im.save(tmp, "JPEG", quality=85)
    os.replace(tmp, out)


def _dashed(d, a, b, colour, width, dash: float = 6.0) -> None:
    (x1, y1), (x2, y2) = a, b
    length = max(abs(x2 - x1), abs(y2 - y1))
    steps = max(1, int(length // dash))
    for k in range(0, steps, 2):
        t0, t1 = k / steps, min(1.0, (k + 1) / steps)
        d.line([(x1 + (x2 - x1) * t0, y1 + (y2 - y1) * t0), (x1 + (x2 - x1) * t1, y1 + (y2 - y1) * t1)],
               fill=colour, width=width)
