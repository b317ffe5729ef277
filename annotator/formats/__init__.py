"""Export/import formats. Inside the app a box is absolute pixel xyxy in the EXIF-corrected image; the
modules here convert at the edge: pure ``<src>_to_<dst>`` converters first, thin file writers second.

Everything is deterministic: the same input gives byte-identical files (images sorted, no timestamps).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Sequence

from annotator.geometry import area_xyxy, clamp_xyxy
from annotator.types import SPLITS, Box

XYXY = tuple[float, float, float, float]


@dataclass(frozen=True)
class ExportImage:
    id: int  # our image id
    file_name: str  # exported file name, unique within its split (the caller makes it unique)
    width: int  # EXIF-corrected pixels
    height: int
    split: str  # "train" | "val" | "test"
    boxes: tuple[Box, ...]  # absolute xyxy
    source: Path | None = None  # stored image file to copy into the export, or None for labels-only


@dataclass
class ExportSummary:
    images: int = 0
    boxes: int = 0
    negatives: int = 0  # images written with no box (empty label file / no annotation)
    per_class: dict[str, int] = field(default_factory=dict)  # class name -> boxes written (all classes)
    per_split: dict[str, int] = field(default_factory=dict)  # split -> images
    dropped: list[tuple[str, str]] = field(default_factory=list)  # (file_name, reason)
    files: list[str] = field(default_factory=list)  # relative posix paths written (sorted)


def sort_images(images: Sequence[ExportImage]) -> list[ExportImage]:
    """Deterministic order: split in SPLITS order (train, val, test), then file name."""
    return sorted(images, key=lambda im: (SPLITS.index(im.split), im.file_name))


def clamp_boxes(boxes: Sequence[Box], width: int, height: int) -> tuple[list[tuple[Box, XYXY]], list[str]]:
    """Clamp every box to the image; returns ([(box, clamped xyxy)], reasons for the zero-area ones)."""
    kept: list[tuple[Box, XYXY]] = []
    reasons: list[str] = []
    for i, box in enumerate(boxes):
        c = clamp_xyxy(box.xyxy, width, height)
        c = tuple(v + 0.0 for v in c)  # no -0.0 in the output
        if area_xyxy(c) <= 0.0:
            reasons.append(
                f"box {i} (class {box.class_idx}) has zero area after clamping to {width}x{height}: "
                f"({box.x1:g}, {box.y1:g}, {box.x2:g}, {box.y2:g})")
            continue
        kept.append((box, c))
    return kept, reasons


def validate_images(images: Sequence[ExportImage], class_names: Sequence[str], *, unique_across_splits: bool,
                    unique_stems: bool, check_sources: bool) -> None:
    """Refuse bad input before anything is written, naming the file or value at fault (ValueError)."""
    if len(set(class_names)) != len(class_names) or not all(isinstance(n, str) and n for n in class_names):
        raise ValueError(f"class names must be unique non-empty strings, got {list(class_names)}")
    seen: dict[tuple, str] = {}
    for im in images:
        name = im.file_name
        p = PurePosixPath(name)
        if not name or "/" in name or "\\" in name or name in (".", "..") or p.stem in ("", ".", ".."):
            raise ValueError(f"export file name must be a plain file name, got {name!r}")
        if im.split not in SPLITS:
            raise ValueError(f"{name}: split must be one of {SPLITS}, got {im.split!r}")
        if not (isinstance(im.width, int) and isinstance(im.height, int) and im.width > 0 and im.height > 0):
            raise ValueError(f"{name}: image size must be positive ints, got {im.width!r}x{im.height!r}")
        for box in im.boxes:
            if box.class_idx >= len(class_names):
                raise ValueError(
                    f"{name}: box class index {box.class_idx} is not in the class table ({len(class_names)} classes)")
        if check_sources and im.source is not None and not Path(im.source).is_file():
            raise ValueError(f"{name}: source image {im.source} does not exist")
        keys = [("file", name)]
        if unique_stems:
            keys.append(("stem", p.stem))
        for kind, value in keys:
            key = (kind, value) if unique_across_splits else (im.split, kind, value)
            if key in seen:
                what = "label file name (stem)" if kind == "stem" else "file name"
                raise ValueError(f"duplicate {what} {value!r} in split {im.split!r}: {seen[key]!r} and {name!r}")
            seen[key] = name


def write_text(root: Path, rel: str, text: str, files: list[str]) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode("utf-8"))  # bytes: no platform newline translation
    files.append(rel)


# ---- readers (import) -------------------------------------------------------------------------------------

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")
SPLIT_ALIASES = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}


@dataclass(frozen=True)
class LabelRecord:
    """One image as a source dataset describes it. ``image`` is its posix path inside the import root (YOLO)
    or the ``file_name`` as written in the JSON (COCO)."""

    image: str
    split: str | None  # "train" | "val" | "test" | None when the layout doesn't say
    boxes: tuple[tuple[str, float, float, float, float], ...]  # (class name, x1, y1, x2, y2) absolute pixels
    width: int | None = None  # from the source when it says (COCO) or from image_size (YOLO, labelled images)
    height: int | None = None


@dataclass
class ReadResult:
    records: list[LabelRecord] = field(default_factory=list)
    class_names: list[str] = field(default_factory=list)  # the source's own classes in its own order
    problems: list[tuple[str, str]] = field(default_factory=list)  # (file, reason) per bad file/row


def split_of(name: str) -> str | None:
    """A folder or file-name part -> "train" | "val" | "test" | None ("valid" -> "val")."""
    return SPLIT_ALIASES.get(name.lower())


def is_junk(rel: PurePosixPath) -> bool:
    """macOS zip litter and hidden files/folders."""
    return any(p.startswith(".") or p == "__MACOSX" for p in rel.parts)
