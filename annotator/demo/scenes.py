"""The demo's runtime half: seeded synthetic "shapes" scenes and where the demo model lives.

Everything here is offline and deterministic. A scene is a textured, gradient background with 1-6 filled
circles, squares and triangles; its boxes are exact (taken from the drawn masks), so the demo can show
auto-annotation, review and fine-tuning without downloading a model or a dataset. The app's Demo project
(services/images.py ``ensure_demo``), the tests and the benchmarks use it; the maintainer's tool that
trained the committed model on such scenes is ``build.py`` (``python -m annotator.demo --help``).

Seeds: the committed model trained on seeds 0..183; ``python -m annotator.demo check`` uses fresh seeds from
``CHECK_SEED``, tests/test_demo.py from ``TEST_SEED`` upwards. torch and ultralytics are never imported here.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from ..geometry import overlap_of_smaller_xyxy
from ..types import Box

CLASSES = ("circle", "square", "triangle")
ASSETS_DIR = Path(__file__).resolve().parents[1] / "assets"
DEMO_MODEL_PATH = ASSETS_DIR / "demo_shapes.pt"
DEFAULT_IMGSZ = 320
CHECK_SEED = 1_000_000  # first seed of the `check` command's scenes: far from any training seed
TEST_SEED = 2_000_000  # first seed of tests/test_demo.py's scenes

MIN_SIZE, MAX_SIZE = 30, 160  # shape extent in pixels (longest side of its box)
MAX_SHAPES = 6
GAP = 3  # pixels kept free around every shape: shapes never touch or occlude each other
MAX_BOX_OVERLAP = 0.15  # boxes may overlap a little (a circle's corner region), shapes never


def _rngs(seed: int) -> tuple[np.random.Generator, np.random.Generator]:
    """Independent streams for the background and the shapes, so ``background(seed)`` stands alone."""
    bg, shapes = np.random.SeedSequence(int(seed)).spawn(2)
    return np.random.default_rng(bg), np.random.default_rng(shapes)


def _background_array(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """float32 h x w x 3: a two-colour gradient, smooth blotches, fine texture and mild pixel noise."""
    c1, c2 = rng.uniform(40, 215, size=(2, 3))
    angle = rng.uniform(0, 2 * np.pi)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    proj = xs * np.cos(angle) + ys * np.sin(angle)
    t = (proj - proj.min()) / max(float(np.ptp(proj)), 1.0)
    arr = c1[None, None, :] * (1 - t[..., None]) + c2[None, None, :] * t[..., None]

    def upsampled(cells_y: int, cells_x: int, amplitude: float) -> np.ndarray:
        grid = rng.uniform(0, 255, size=(cells_y, cells_x, 3)).astype(np.uint8)
        big = Image.fromarray(grid, "RGB").resize((width, height), Image.BICUBIC)
        return (np.asarray(big, dtype=np.float32) / 255.0 - 0.5) * 2 * amplitude

    arr = arr + upsampled(int(rng.integers(3, 7)), int(rng.integers(4, 9)), rng.uniform(10, 35))
    arr = arr + upsampled(height // 12, width // 12, rng.uniform(3, 10))
    arr = arr + rng.normal(0, rng.uniform(2, 6), size=arr.shape)
    return np.clip(arr, 0, 255).astype(np.float32)


def background(seed: int, width: int = 640, height: int = 480) -> Image.Image:
    """The background of ``scene(seed, width, height)``: every pixel outside its shapes equals this."""
    bg_rng, _ = _rngs(seed)
    return Image.fromarray(np.round(_background_array(bg_rng, width, height)).astype(np.uint8), "RGB")


@dataclass(frozen=True)
class Shift:
    """How a "customer's" scenes differ from the ones the demo model learnt (bench/loop.py): squares turned
    by up to ``square_turn`` degrees (the model only saw axis-aligned ones), shapes whose colour is only
    ``min_contrast`` (Euclidean RGB) from the background under them instead of 110, a Gaussian blur of
    ``blur`` pixels over the whole scene, object sizes ``sizes`` (min, max extent in pixels), and up to
    ``distractors`` unlabelled objects per scene (rings and five-pointed stars: things that are none of the
    classes, which a model must learn to leave alone). The default changes nothing: ``scene(seed)`` and
    ``scene(seed, shift=Shift())`` are the same bytes."""
    square_turn: float = 0.0
    min_contrast: float = 110.0
    blur: float = 0.0
    sizes: tuple[int, int] = (MIN_SIZE, MAX_SIZE)
    distractors: int = 0


def _shape_mask(rng: np.random.Generator, cls: int, size: int, turn: float = 0.0) -> Image.Image:
    """An 'L' mask (255 = shape) whose tight bbox is the whole mask, longest side ``size``."""
    if cls == 0:  # circle
        mask = Image.new("L", (size, size), 0)
        ImageDraw.Draw(mask).ellipse((0, 0, size - 1, size - 1), fill=255)
        return mask
    if cls == 1 and turn:  # a square turned by up to ``turn`` degrees, its box's longest side ``size``
        return _polygon_mask(np.radians(rng.uniform(-turn, turn)) + np.array([0.25, 0.75, 1.25, 1.75]) * np.pi, size)
    if cls == 1:  # square (axis-aligned)
        return Image.new("L", (size, size), 255)
    # triangle: roughly equilateral, random rotation, vertices jittered by up to 12 degrees
    rot = rng.uniform(0, 2 * np.pi)
    return _polygon_mask(rot + np.array([0.0, 2 * np.pi / 3, 4 * np.pi / 3]) + rng.uniform(-0.2, 0.2, size=3), size)


def _polygon_mask(angles: np.ndarray, size: int) -> Image.Image:
    """The polygon whose vertices sit on the unit circle at ``angles``, scaled so that its box's longest side
    is ``size``, as a tight 'L' mask."""
    pts = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    pts -= pts.min(axis=0)
    pts *= (size - 1) / max(float(pts.max()), 1e-6)
    w, h = (int(np.ceil(v)) + 1 for v in pts.max(axis=0))
    mask = Image.new("L", (max(w, 1), max(h, 1)), 0)
    ImageDraw.Draw(mask).polygon([tuple(p) for p in pts.tolist()], fill=255)
    return mask.crop(mask.getbbox())


def _distractor_mask(rng: np.random.Generator, size: int) -> Image.Image:
    """An unlabelled object: a ring (a circle's outline, a third of its radius thick) or a five-pointed star."""
    mask = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(mask)
    if rng.random() < 0.5:
        draw.ellipse((0, 0, size - 1, size - 1), fill=255)
        t = max(2, size // 6)
        draw.ellipse((t, t, size - 1 - t, size - 1 - t), fill=0)
    else:
        rot = rng.uniform(0, 2 * np.pi)
        a = rot + np.arange(10) * np.pi / 5
        r = np.where(np.arange(10) % 2 == 0, 1.0, 0.45)
        pts = np.stack([np.cos(a) * r, np.sin(a) * r], axis=1)
        pts = (pts + 1) / 2 * (size - 1)
        draw.polygon([tuple(q) for q in pts.tolist()], fill=255)
    box = mask.getbbox()
    return mask.crop(box) if box else mask


def _pick_colour(rng: np.random.Generator, under: np.ndarray, min_contrast: float = 110.0) -> np.ndarray:
    """A random colour far (Euclidean >= ``min_contrast``) from the mean background colour ``under`` the
    shape; with a shift's lower contrast, also at most twice that far (a faint shape, not just any)."""
    mean = under.reshape(-1, 3).mean(axis=0)
    faint = min_contrast < 110
    for _ in range(50):
        colour = rng.uniform(0, 255, size=3)
        d = np.linalg.norm(colour - mean)
        if d >= min_contrast and (not faint or d <= 2 * min_contrast):
            return colour
    return np.where(mean > 127, 20.0, 235.0)


def scene(seed: int, width: int = 640, height: int = 480, shift: Shift | None = None) -> tuple[Image.Image, list[Box]]:
    """A deterministic RGB scene and its boxes (``Box``: class index and absolute pixel xyxy).

    Boxes are tight: they are the bounding boxes of the drawn masks (pixel edges, so a shape covering
    columns 10..49 has x1=10, x2=50). Shapes never touch (a gap of ``GAP`` pixels); boxes may overlap
    slightly. Same seed and size, same image bytes. ``shift`` changes the scenes' look (see ``Shift``).
    """
    shift = shift or Shift()
    min_size, max_size = shift.sizes
    if width < 2 * min_size or height < 2 * min_size:
        raise ValueError(f"scene size {width}x{height} is too small (at least {2 * min_size} per side)")
    bg_rng, rng = _rngs(seed)
    arr = _background_array(bg_rng, width, height)
    occupied = Image.new("L", (width, height), 0)  # shapes grown by GAP pixels
    boxes: list[Box] = []
    placed: list[Box] = []  # the distractors' extents (never returned)
    max_size = min(max_size, width - 2, height - 2)
    n_shapes = int(rng.integers(1, MAX_SHAPES + 1))
    n_extra = int(rng.integers(0, shift.distractors + 1)) if shift.distractors else 0
    for k in range(n_shapes + n_extra):
        extra = k >= n_shapes  # a distractor: drawn like a shape, no box
        cls = int(rng.integers(0, len(CLASSES))) if not extra else -1
        for _attempt in range(40):
            size = int(round(np.exp(rng.uniform(np.log(min_size), np.log(max_size)))))
            mask = _distractor_mask(rng, size) if extra else _shape_mask(rng, cls, size, shift.square_turn)
            mw, mh = mask.size
            x = int(rng.integers(1, width - mw))
            y = int(rng.integers(1, height - mh))
            box = (x, y, x + mw, y + mh)
            if any(overlap_of_smaller_xyxy(box, b.xyxy) > MAX_BOX_OVERLAP for b in boxes + placed):
                continue
            m = np.asarray(mask) > 127
            if (np.asarray(occupied.crop(box)) > 0)[m].any():
                continue
            break
        else:
            continue  # no room for this shape
        region = arr[y : y + mh, x : x + mw]
        colour = _pick_colour(rng, region[m], shift.min_contrast)
        # mild shading across the shape and a little noise, so shapes are not flat stickers
        gy, gx = np.mgrid[0:mh, 0:mw].astype(np.float32)
        shade = (gx / max(mw, 1) - 0.5) * rng.uniform(-25, 25) + (gy / max(mh, 1) - 0.5) * rng.uniform(-25, 25)
        fill = colour[None, None, :] + shade[..., None] + rng.normal(0, 3, size=(mh, mw, 3))
        region[m] = np.clip(fill, 0, 255)[m]
        grown = Image.new("L", (mw + 2 * GAP, mh + 2 * GAP), 0)
        grown.paste(mask, (GAP, GAP))
        grown = grown.filter(ImageFilter.MaxFilter(2 * GAP + 1))
        occupied.paste(255, (x - GAP, y - GAP), grown)
        if extra:
            placed.append(Box(float(box[0]), float(box[1]), float(box[2]), float(box[3]), class_idx=0))
        else:
            boxes.append(Box(float(box[0]), float(box[1]), float(box[2]), float(box[3]), class_idx=cls))
    image = Image.fromarray(np.round(arr).astype(np.uint8), "RGB")
    if shift.blur:
        image = image.filter(ImageFilter.GaussianBlur(shift.blur))
    return image, boxes


def scene_jpeg(seed: int, width: int = 640, height: int = 480, quality: int = 90,
               shift: Shift | None = None) -> tuple[bytes, list[Box]]:
    """``scene()`` encoded as JPEG bytes (deterministic for a given Pillow/libjpeg)."""
    image, boxes = scene(seed, width, height, shift)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=int(quality))
    return out.getvalue(), boxes


def write_scenes(folder: Path, seeds: Iterable[int], width: int = 640, height: int = 480, quality: int = 90,
                 name: str = "scene_{seed:07d}.jpg", shift: Shift | None = None) -> dict[str, list[Box]]:
    """``scene_jpeg()`` of each seed written into ``folder`` (created), the file named by
    ``name.format(i=position, seed=seed)``; returns file name -> that scene's boxes."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    truth = {}
    for i, seed in enumerate(seeds):
        data, boxes = scene_jpeg(seed, width, height, quality, shift)
        file_name = name.format(i=i, seed=seed)
        (folder / file_name).write_bytes(data)
        truth[file_name] = boxes
    return truth
