"""Export/import formats. Inside the app a box is absolute pixel xyxy in the EXIF-corrected image; the
modules here convert at the edge: pure ``<src>_to_<dst>`` converters first, thin file writers second.

Everything is deterministic: the same input gives byte-identical files (images sorted, no timestamps).
"""

from __future__ import annotations

import os
import shutil
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Callable, Sequence

import numpy as np

from annotator.geometry import clamp_xyxy_array
from annotator.types import SPLITS, Box

@dataclass(frozen=True)
class ExportImage:
    id: int  # our image id
    file_name: str  # exported file name, unique within its split (the caller makes it unique)
    width: int  # EXIF-corrected pixels
    height: int
    split: str  # "train" | "val" | "test"
    boxes: tuple[Box, ...] = ()  # absolute xyxy (ignored when the writer is given a BoxTable)
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


@dataclass(frozen=True)
class BoxTable:
    """The boxes of many images as columns, so the writers do their maths on arrays: row i is one box of
    image ``image_id[i]``, absolute xyxy. Rows of one image keep their order (the order they are written)."""

    image_id: np.ndarray  # int64 (n,)
    class_idx: np.ndarray  # int64 (n,)
    xyxy: np.ndarray  # float64 (n, 4)
    confidence: np.ndarray  # float64 (n,), NaN where a box has none (human, import)

    def __post_init__(self):
        n = len(self.image_id)
        if self.xyxy.shape != (n, 4) or len(self.class_idx) != n or len(self.confidence) != n:
            raise ValueError(f"box table columns disagree: {n} ids, {len(self.class_idx)} classes, "
                             f"{self.xyxy.shape} corners, {len(self.confidence)} confidences")

    def __len__(self) -> int:
        return len(self.image_id)

    @classmethod
    def from_columns(cls, image_id, class_idx, x1, y1, x2, y2, confidence=None) -> "BoxTable":
        n = len(image_id)
        conf = np.full(n, np.nan) if confidence is None else np.asarray(confidence, dtype=np.float64)
        return cls(np.asarray(image_id, dtype=np.int64), np.asarray(class_idx, dtype=np.int64),
                   np.column_stack([np.asarray(v, dtype=np.float64) for v in (x1, y1, x2, y2)]).reshape(n, 4),
                   conf)

    @classmethod
    def from_images(cls, images: Sequence[ExportImage]) -> "BoxTable":
        rows = [(im.id, b.class_idx, b.x1, b.y1, b.x2, b.y2, np.nan if b.confidence is None else b.confidence)
                for im in images for b in im.boxes]
        cols = list(zip(*rows)) if rows else [()] * 7
        return cls.from_columns(*cols)


@dataclass
class PlacedBoxes:
    """A BoxTable laid out for writing: the boxes of ``images`` (in writer order), clamped to their image,
    zero-area ones dropped. ``bounds[k]:bounds[k + 1]`` are the rows of image k."""

    class_idx: np.ndarray
    xyxy: np.ndarray  # clamped
    confidence: np.ndarray
    image_pos: np.ndarray  # index into ``images`` per row
    bounds: np.ndarray  # (len(images) + 1,)
    dropped: list[tuple[str, str]]  # (file_name, reason), in image order


def place_boxes(images: Sequence[ExportImage], table: BoxTable, class_names: Sequence[str]) -> PlacedBoxes:
    """Clamp every box to its image (geometry.clamp_xyxy's arithmetic, on arrays) and lay the boxes out
    in image order.
    Boxes of images not in ``images`` are ignored; a class index outside the class table is a ValueError
    naming the file."""
    ids = np.fromiter((im.id for im in images), dtype=np.int64, count=len(images))
    order = np.argsort(ids, kind="stable")
    sorted_ids = ids[order]
    at = np.searchsorted(sorted_ids, table.image_id) if len(sorted_ids) else np.zeros(len(table), dtype=np.int64)
    found = at < len(sorted_ids)
    found[found] = sorted_ids[at[found]] == table.image_id[found]
    rows = np.nonzero(found)[0]
    pos = order[at[rows]]
    rows = rows[np.argsort(pos, kind="stable")]  # image order, each image's own box order kept
    pos = np.sort(pos, kind="stable")
    cls = table.class_idx[rows]
    bad = np.nonzero(cls >= len(class_names))[0]
    if len(bad):
        raise ValueError(f"{images[pos[bad[0]]].file_name}: box class index {int(cls[bad[0]])} is not in the "
                         f"class table ({len(class_names)} classes)")
    widths = np.fromiter((im.width for im in images), dtype=np.float64, count=len(images))[pos]
    heights = np.fromiter((im.height for im in images), dtype=np.float64, count=len(images))[pos]
    raw = table.xyxy[rows]
    xyxy = clamp_xyxy_array(raw, widths, heights)
    keep = (xyxy[:, 2] - xyxy[:, 0] > 0.0) & (xyxy[:, 3] - xyxy[:, 1] > 0.0)
    starts = np.searchsorted(pos, np.arange(len(images) + 1))
    dropped = []
    for r in np.nonzero(~keep)[0]:
        im = images[pos[r]]
        x1, y1, x2, y2 = raw[r].tolist()
        dropped.append((im.file_name,
                        f"box {int(r - starts[pos[r]])} (class {int(cls[r])}) has zero area after clamping to "
                        f"{im.width}x{im.height}: ({x1:g}, {y1:g}, {x2:g}, {y2:g})"))
    pos = pos[keep]
    return PlacedBoxes(class_idx=cls[keep], xyxy=xyxy[keep], confidence=table.confidence[rows][keep],
                       image_pos=pos, bounds=np.searchsorted(pos, np.arange(len(images) + 1)), dropped=dropped)


# ---- where the writers put files: a folder, or straight into a zip ---------------------------------------

class DirSink:
    """Files under a folder. ``copy(src, dst)`` places an image (a hard link, a copy ...)."""

    def __init__(self, root: Path, copy: Callable[[Path, Path], None] | None = shutil.copyfile):
        self.root = Path(root)
        self.copy = copy
        self.files: list[str] = []
        self._dirs: set[Path] = set()

    @property
    def takes_images(self) -> bool:
        return self.copy is not None

    def _path(self, rel: str) -> Path:
        path = self.root / rel
        if path.parent not in self._dirs:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._dirs.add(path.parent)
        self.files.append(rel)
        return path

    def text(self, rel: str, text: str) -> None:
        self._path(rel).write_bytes(text.encode("utf-8"))  # bytes: no platform newline translation

    def file(self, rel: str, src: Path) -> None:
        self.copy(Path(src), self._path(rel))


class ZipSink:
    """Entries written straight into an open ``zipfile.ZipFile``: label text from memory (deflated),
    image files streamed from where they are stored (not compressed: JPEG/PNG do not shrink), so an
    export never writes a temporary copy of the dataset. ``on_file(done, name)`` is called per image."""

    CHUNK = 1 << 20
    IN_ONE_GO = 64 << 20  # bytes: smaller images are read whole (photos are a few MB)

    def __init__(self, zf: zipfile.ZipFile, on_file: Callable[[int, str], None] | None = None):
        self.zf = zf
        self.on_file = on_file
        self.files: list[str] = []
        self._stamp = time.localtime(time.time())[:6]
        self._images = 0

    takes_images = True

    def text(self, rel: str, text: str) -> None:
        info = zipfile.ZipInfo(rel, date_time=self._stamp)
        info.compress_type = zipfile.ZIP_DEFLATED
        info.external_attr = 0o644 << 16
        self.zf.writestr(info, text.encode("utf-8"), compresslevel=1)
        self.files.append(rel)

    def file(self, rel: str, src: Path) -> None:
        info = zipfile.ZipInfo.from_file(src, rel)
        info.compress_type = zipfile.ZIP_STORED
        if info.file_size <= self.IN_ONE_GO:  # one read, one write: no header rewrite after streaming
            with open(src, "rb") as f:
                self.zf.writestr(info, f.read())
        else:
            with open(src, "rb") as f, self.zf.open(info, "w") as out:
                shutil.copyfileobj(f, out, self.CHUNK)
        self.files.append(rel)
        self._images += 1
        if self.on_file:
            self.on_file(self._images, os.path.basename(rel))


def as_sink(dest, copy: Callable[[Path, Path], None] | None = shutil.copyfile):
    return dest if isinstance(dest, (DirSink, ZipSink)) else DirSink(Path(dest), copy)


def stem(name: str) -> str:
    """``PurePosixPath(name).stem`` for a plain file name, without building a path (10k names per export)."""
    i = name.rfind(".")
    return name[:i] if 0 < i < len(name) - 1 else name


def sort_images(images: Sequence[ExportImage]) -> list[ExportImage]:
    """Deterministic order: split in SPLITS order (train, val, test), then file name."""
    return sorted(images, key=lambda im: (SPLITS.index(im.split), im.file_name))


def validate_images(images: Sequence[ExportImage], class_names: Sequence[str], *, unique_across_splits: bool,
                    unique_stems: bool, check_sources: bool) -> None:
    """Refuse bad input before anything is written, naming the file or value at fault (ValueError)."""
    if len(set(class_names)) != len(class_names) or not all(isinstance(n, str) and n for n in class_names):
        raise ValueError(f"class names must be unique non-empty strings, got {list(class_names)}")
    seen: dict[tuple, str] = {}
    for im in images:
        name = im.file_name
        name_stem = stem(name)
        if not name or "/" in name or "\\" in name or name in (".", "..") or name_stem in ("", ".", ".."):
            raise ValueError(f"export file name must be a plain file name, got {name!r}")
        if im.split not in SPLITS:
            raise ValueError(f"{name}: split must be one of {SPLITS}, got {im.split!r}")
        if not (isinstance(im.width, int) and isinstance(im.height, int) and im.width > 0 and im.height > 0):
            raise ValueError(f"{name}: image size must be positive ints, got {im.width!r}x{im.height!r}")
        for box in im.boxes:
            if box.class_idx >= len(class_names):
                raise ValueError(
                    f"{name}: box class index {box.class_idx} is not in the class table ({len(class_names)} classes)")
        if check_sources and im.source is not None and not os.path.isfile(im.source):
            raise ValueError(f"{name}: source image {im.source} does not exist")
        keys = [("file", name)]
        if unique_stems:
            keys.append(("stem", name_stem))
        for kind, value in keys:
            key = (kind, value) if unique_across_splits else (im.split, kind, value)
            if key in seen:
                what = "label file name (stem)" if kind == "stem" else "file name"
                raise ValueError(f"duplicate {what} {value!r} in split {im.split!r}: {seen[key]!r} and {name!r}")
            seen[key] = name


# ---- readers (import) -------------------------------------------------------------------------------------

SPLIT_ALIASES = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}


@dataclass(frozen=True)
class LabelRecord:
    """One image as a source dataset describes it. ``image`` is its posix path inside the import root (YOLO)
    or the ``file_name`` as written in the JSON (COCO)."""

    image: str
    split: str | None  # "train" | "val" | "test" | None when the layout doesn't say
    boxes: tuple[Box, ...]  # absolute pixels; class_idx indexes ReadResult.class_names; source "import"
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
