"""The image size jobs run at, chosen from the project's data rather than from the model.

YOLO resizes each image so that its long side is ``imgsz``. A model trained at 320 and run at 320 on 800x600
scenes loses the small objects: in issue 13's measurement, simply running the demo model at 640 instead of
its training size cut a reviewer's edits from 1.99 to 0.71 per image, more than a fine-tune at 320 did.

The rule: the smallest multiple of 32 at which the smaller side of the 10th-percentile box is at least
``MIN_BOX_PX`` pixels after resizing; never below the base model's training size; never above the images'
long side (90th percentile, rounded up to 32: no point upscaling) nor the device's cap (CPU 640, GPU 1280).
The boxes are those a person confirmed: drawn, imported, or on an approved image (a model's unreviewed boxes
miss exactly the small objects, and would make every re-run drift). Without any yet (a first
auto-annotation), the base model's own size: the model's distribution is the best guess until people say
otherwise. The reason comes back in words, for the field's hint and the job's log.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

MIN_BOX_PX = 12  # below this a box's object is a few feature-map cells: YOLO misses it
CAP = {"cpu": 640, "gpu": 1280}


@dataclass(frozen=True)
class SizeProfile:
    """What the rule needs, aggregated by the store: image count, the 90th-percentile long side, box
    count, the 10th percentile of (box's shorter side / its image's long side), and which boxes those are
    (people's: drawn, imported or approved)."""
    images: int = 0
    long_side_p90: float = 0.0
    boxes: int = 0
    rel_short_p10: float | None = None
    box_source: str = ""


def up32(x: float) -> int:
    return max(32, int(math.ceil(x / 32.0)) * 32)


def choose_imgsz(profile: SizeProfile, base: int | None, device: str = "cpu") -> tuple[int, str]:
    """(imgsz, the reason in words)."""
    base = up32(base) if base else None
    cap = CAP["gpu" if device == "gpu" else "cpu"]
    if profile.images == 0:
        size = base or 640
        return size, f"{size}: no images yet (the base model's size)" if base else f"{size}: no images yet"
    top = min(up32(profile.long_side_p90), cap)
    where = f"images up to {profile.long_side_p90:.0f} px"
    if profile.boxes and profile.rel_short_p10:
        need = up32(MIN_BOX_PX / profile.rel_short_p10)
        size = min(max(need, base or 32), max(top, base or 32))
        small = profile.rel_short_p10 * size
        why = (f"{size}: at this size the smallest tenth of the {profile.boxes} {profile.box_source} boxes are "
               f"{small:.0f} px or more (YOLO needs about {MIN_BOX_PX})")
        if need > size and need > cap:
            why += f"; {need} would be needed, above the {device.upper()} cap of {cap}"
        elif need > size:
            why += f"; {need} would be needed, but the {where}"
    elif base:
        size = base
        why = (f"{size}: no box a person drew or approved yet, so the base model's own size (once there are, the "
               "size follows them)")
        return size, why
    else:
        size = top
        why = f"{size}: no box a person drew or approved yet, so the images' size ({where}, {device.upper()} cap {cap})"
    if base and size == base:
        why += "; the base model's own size"
    elif base and size > base:
        why += f"; the base model was trained at {base}"
    return size, why


PASSES = {"cpu": 1200, "gpu": 3000}  # image-passes a fine-tune gets by default
EPOCHS = {"cpu": (10, 60), "gpu": (20, 100)}


def epochs_for(images: int, device: str = "cpu") -> tuple[int, int]:
    """(epochs, patience) for a fine-tune on ``images`` training images: small sets need more passes to get
    enough optimizer steps, large ones fewer. About 3000 image-passes on a GPU (20-100 epochs); on a CPU,
    where a pass at 320 costs ~0.17 s on 2 cores, about 1200 (10-60 epochs: ~4 minutes a round). Fine-tuning
    starts from a model that already knows the task, so this is enough to adapt it (bench/loop.py). Patience
    half the epochs, at least 15: a fine-tune's val score often dips for several epochs before it climbs
    past the base's, and stopping in the dip would keep the base's weights."""
    kind = "gpu" if device == "gpu" else "cpu"
    lo, hi = EPOCHS[kind]
    epochs = max(lo, min(hi, PASSES[kind] // max(1, images)))
    return epochs, max(15, epochs // 2)


__all__ = ["SizeProfile", "choose_imgsz", "epochs_for", "MIN_BOX_PX", "CAP", "up32"]
