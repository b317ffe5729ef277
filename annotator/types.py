"""The currency of the app: small frozen dataclasses validated at construction.

Nothing here imports anything of ours. Boxes are absolute-pixel xyxy floats in the EXIF-corrected image;
conversions to other conventions live in geometry.py and the format/edge modules.
"""

from __future__ import annotations

import errno
import math
import os
import shutil
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

BOX_SOURCES = ("human", "model", "import")
REVIEW_STATES = ("unreviewed", "approved", "rejected")
SPLITS = ("train", "val", "test")
JOB_STATES = ("queued", "running", "succeeded", "failed", "cancelled", "interrupted")
ACTIVE_JOB_STATES = ("queued", "running")
# Files we take as images (upload pickers, zip walks, import layouts) and as labels (imports).
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".bmp"})
LABEL_EXTENSIONS = frozenset({".txt", ".yaml", ".yml", ".json"})
VIDEO_EXTENSIONS = frozenset({".mp4", ".mov", ".avi", ".mkv", ".webm"})  # uploads sample them into frames


class UserError(Exception):
    """A failure the user can act on; its message names the file or value at fault."""


class NotFound(UserError):
    """A project, dataset, image or class that does not exist."""


class Conflict(UserError):
    """A save or review that would silently overwrite someone else's newer change of the same image.

    Optionally says which image, its current version, and who changed it when (a user name, or
    "job #5" / "an import"), so an editor can show it and offer to reload or overwrite."""

    def __init__(self, message: str, image_id: int | None = None, version: int | None = None,
                 changed_by: str | None = None, changed_at: datetime | None = None):
        super().__init__(message)
        self.image_id = image_id
        self.version = version
        self.changed_by = changed_by
        self.changed_at = changed_at

    def as_dict(self) -> dict:
        return {"message": str(self), "image_id": self.image_id, "version": self.version,
                "changed_by": self.changed_by,
                "changed_at": self.changed_at.isoformat(timespec="seconds") if self.changed_at else None}


class Forbidden(UserError):
    """The acting user's role does not allow this ("deleting a project needs the admin role; alice is an
    annotator"). ``needed``: the role it needs; ``role``: the user's (None for a name the app does not know)."""

    def __init__(self, message: str, user: str | None = None, needed: str | None = None, role: str | None = None):
        super().__init__(message)
        self.user = user
        self.needed = needed
        self.role = role


class DiskProblem(UserError):
    """The data folder's disk is full or cannot be written (read-only, no permission): said in words, with
    the folder and its free space, instead of a stack trace. Whatever failed wrote nothing lasting."""


_DISK_FULL = (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))
_READ_ONLY = (errno.EROFS,)
_NO_PERMISSION = (errno.EACCES, errno.EPERM)
# What DuckDB (and other libraries that do not raise OSError) put in their messages for the same failures.
_DISK_TEXTS = (("No space left on device", _DISK_FULL[0]), ("Disk quota exceeded", _DISK_FULL[0]),
               ("Read-only file system", errno.EROFS), ("Permission denied", errno.EACCES))


_DATA_FOLDER: list = [None]  # the process's data folder (Settings.prepare): where a write without a name went


def set_data_folder(path: "str | os.PathLike | None") -> None:
    _DATA_FOLDER[0] = path


def _mb(n: float) -> str:
    return f"{n / 1e6:,.0f} MB" if n >= 10e6 else f"{n / 1e6:.1f} MB"


def free_space_text(folder: "str | os.PathLike | None") -> str:
    """ "123 MB free in /data/projects" for the nearest existing folder at or above ``folder``."""
    if folder is None:
        return ""
    path = Path(folder)
    while not path.exists() and path != path.parent:
        path = path.parent
    try:
        return f"{_mb(shutil.disk_usage(path).free)} free in {path}"
    except OSError:
        return ""


def disk_problem(exc: BaseException, folder: "str | os.PathLike | None" = None) -> DiskProblem | None:
    """``exc`` (or an exception it was raised from) as a DiskProblem when it is a full disk, a read-only file
    system or a missing permission; None for anything else. ``folder``: where the write went (else the
    file named in the error), for the free-space figure."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, DiskProblem):
            return exc
        code = exc.errno if isinstance(exc, OSError) else None
        if code is None:
            text = str(exc)
            code = next((c for t, c in _DISK_TEXTS if t in text), None)
        if code is not None and code in (*_DISK_FULL, *_READ_ONLY, *_NO_PERMISSION):
            where = folder or (getattr(exc, "filename", None) if isinstance(exc, OSError) else None) \
                or _DATA_FOLDER[0]
            if where is not None and not Path(where).is_dir():
                where = Path(where).parent
            free = free_space_text(where)
            if code in _DISK_FULL:
                msg = "The disk is full" + (f" ({free})" if free else "") + \
                      ": nothing was stored. Free some space and try again."
            elif code in _READ_ONLY:
                msg = f"The data folder{f' {where}' if where else ''} is on a read-only file system: nothing " \
                      "can be stored. Mount it writable (or choose another ANNOTATOR_DATA_DIR)."
            else:
                msg = f"No permission to write in{f' {where}' if where else ' the data folder'}: nothing was " \
                      "stored. Give the app's user write access (or choose another ANNOTATOR_DATA_DIR)."
            problem = DiskProblem(msg)
            problem.__cause__ = exc
            return problem
        exc = exc.__cause__ or exc.__context__
    return None


class StoreBusy(UserError):
    """The metadata database is held by another process (normally the running app)."""

    def __init__(self, message: str, pid: int | None = None):
        super().__init__(message)
        self.pid = pid


@dataclass(frozen=True)
class ClassDef:
    index: int
    name: str


@dataclass(frozen=True)
class Project:
    id: int
    name: str
    classes: tuple[ClassDef, ...]
    created_at: datetime
    description: str = ""

    @property
    def class_names(self) -> list[str]:
        return [c.name for c in self.classes]


@dataclass(frozen=True)
class ProjectSummary:
    id: int
    name: str
    description: str
    created_at: datetime
    num_classes: int
    num_datasets: int
    num_images: int
    num_boxes: int
    num_approved: int

    def as_dict(self) -> dict:
        return {
            "id": self.id, "name": self.name, "description": self.description, "classes": self.num_classes,
            "datasets": self.num_datasets, "images": self.num_images, "approved": self.num_approved,
            "boxes": self.num_boxes, "created_at": self.created_at.isoformat(timespec="seconds"),
        }


@dataclass(frozen=True)
class Dataset:
    id: int
    project_id: int
    name: str
    created_at: datetime
    num_images: int = 0


def format_clock(seconds: float) -> str:
    """"00:04.0", "01:02.5", "1:02:03.5": a time in a video, to the tenth of a second (negative or unknown
    reads 00:00.0)."""
    tenths = int(math.floor(seconds * 10 + 0.5)) if math.isfinite(seconds) and seconds > 0 else 0
    hours, rest = divmod(tenths, 36000)
    minutes, rest = divmod(rest, 600)
    clock = f"{minutes:02d}:{rest // 10:02d}.{rest % 10}"
    return f"{hours}:{clock}" if hours else clock


@dataclass(frozen=True)
class ImageRecord:
    id: int
    project_id: int
    dataset_id: int
    rel_path: str  # path as uploaded, posix, inside its dataset
    sha256: str  # of the uploaded bytes
    file: str  # stored file, relative to the project folder
    thumb: str  # thumbnail, relative to the project folder
    width: int  # EXIF-corrected
    height: int
    format: str
    size_bytes: int
    split: str | None = None
    status: str = "unreviewed"
    reviewed_by: str | None = None
    reviewed_at: datetime | None = None
    created_at: datetime | None = None
    dataset: str = ""  # the dataset's name, filled by listing queries
    video_id: int | None = None  # a video's frame: its video, its frame number and time (seconds)
    frame_index: int | None = None
    frame_time: float | None = None

    @property
    def frame_label(self) -> str:
        """ "frame 120 · 00:04.0" for a video's frame, "" for a still image."""
        if self.frame_index is None:
            return ""
        return f"frame {self.frame_index} · {format_clock(self.frame_time or 0.0)}"

    def __post_init__(self):
        if self.split is not None and self.split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS} or None, got {self.split!r}")
        if self.status not in REVIEW_STATES:
            raise ValueError(f"status must be one of {REVIEW_STATES}, got {self.status!r}")


@dataclass(frozen=True)
class Box:
    """One box: absolute pixel xyxy, class index, and provenance."""

    x1: float
    y1: float
    x2: float
    y2: float
    class_idx: int
    confidence: float | None = None
    source: str = "human"
    model_id: int | None = None
    job_id: int | None = None
    created_by: str | None = None
    created_at: datetime | None = None
    id: int | None = None
    track_id: int | None = None  # a machine box on a video's frame: ByteTrack's id (auto-annotation with tracking)

    def __post_init__(self):
        coords = (self.x1, self.y1, self.x2, self.y2)
        if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in coords):
            raise ValueError(f"box coordinates must be finite numbers, got {coords}")
        if self.x2 < self.x1 or self.y2 < self.y1:
            raise ValueError(f"box must have x2 >= x1 and y2 >= y1, got {coords}")
        if not isinstance(self.class_idx, int) or self.class_idx < 0:
            raise ValueError(f"class index must be a non-negative int, got {self.class_idx!r}")
        if self.source not in BOX_SOURCES:
            raise ValueError(f"box source must be one of {BOX_SOURCES}, got {self.source!r}")
        if self.confidence is not None and not (0.0 <= self.confidence <= 1.0):
            raise ValueError(f"confidence must be in [0, 1] or None, got {self.confidence!r}")

    @property
    def xyxy(self) -> tuple[float, float, float, float]:
        return (self.x1, self.y1, self.x2, self.y2)

    # The one wire form of a box (API, editor, job chunks, training manifest): a flat JSON object.
    WIRE_FIELDS = ("id", "class_idx", "x1", "y1", "x2", "y2", "confidence", "source", "model_id", "job_id",
                   "created_by", "track_id")

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.WIRE_FIELDS}

    @classmethod
    def from_dict(cls, d: dict, **overrides) -> "Box":
        """The inverse of ``as_dict`` (unknown keys ignored, missing optional ones default); ``overrides``
        replace fields (e.g. ``source="model", job_id=5`` for a job's results). ValueError names the problem."""
        try:
            fields = {k: d[k] for k in cls.WIRE_FIELDS if k in d}
            fields.update(overrides)
            for k in ("x1", "y1", "x2", "y2"):
                fields[k] = float(fields[k])
            fields["class_idx"] = int(fields["class_idx"])
            if fields.get("confidence") is not None:
                fields["confidence"] = float(fields["confidence"])
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"not a box (needs class_idx and numeric x1, y1, x2, y2): {d!r} ({e})") from None
        return cls(**fields)


@dataclass(frozen=True)
class SkippedFile:
    name: str
    reason: str


@dataclass(frozen=True)
class DuplicateFile:
    name: str
    same_as: str  # "dataset/rel_path" of the stored copy, or a name earlier in the same upload
    sha256: str = ""  # of its bytes: the stored copy's image id is found by it


@dataclass
class IngestReport:
    project: str
    dataset: str
    added: list[str] = field(default_factory=list)
    duplicates: list[DuplicateFile] = field(default_factory=list)
    skipped: list[SkippedFile] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # how stored files differ from the upload
    seconds: float = 0.0
    # rel_path in the upload -> image id, for every image added or found already stored (not in as_dict)
    image_ids: dict[str, int] = field(default_factory=dict)
    # one per video sampled: name, sampling, frames read / kept / added, duration, rotation, where it stopped
    videos: list[dict] = field(default_factory=list)
    # near-duplicates among the added images and of images already stored: [{"name", "similar_to", "distance"}]
    similar: list[dict] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "project": self.project,
            "dataset": self.dataset,
            "added": len(self.added),
            "duplicates": len(self.duplicates),
            "skipped": len(self.skipped),
            "added_files": list(self.added),
            "duplicate_files": [{"name": d.name, "same_as": d.same_as} for d in self.duplicates],
            "skipped_files": [{"name": s.name, "reason": s.reason} for s in self.skipped],
            "notes": list(self.notes),
            "videos": list(self.videos),
            "similar": list(self.similar),
            "seconds": round(self.seconds, 3),
        }


@dataclass(frozen=True)
class ModelRecord:
    id: int
    project_id: int
    name: str
    file: str  # relative to the project folder
    sha256: str
    size_bytes: int
    task: str
    class_names: tuple[str, ...]
    source: str  # uploaded | trained | demo
    parent_id: int | None = None
    job_id: int | None = None
    params: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    created_at: datetime | None = None
    created_by: str | None = None

    def as_dict(self) -> dict:
        return {
            "id": self.id, "name": self.name, "source": self.source, "task": self.task,
            "classes": list(self.class_names), "size_bytes": self.size_bytes, "sha256": self.sha256,
            "parent_id": self.parent_id, "job_id": self.job_id, "imgsz": self.params.get("imgsz"),
            "created_at": self.created_at.isoformat(timespec="seconds") if self.created_at else None,
            "created_by": self.created_by, "metrics": self.metrics,
        }


@dataclass(frozen=True)
class Job:
    """A background job's row. ``result``: what it produced (an auto-annotation's tallies images, boxes,
    protected, errors; a training's or an evaluation's metrics, plots, speed, and the model it registered).
    ``live``: the worker's last progress report. ``chunks_in``/``logs_in``/``chunks_lost``: how far the app has
    consumed the job's channel in this attempt; ``done_before``: images earlier attempts finished."""

    id: int
    project_id: int | None
    kind: str
    params: dict
    status: str
    progress: float = 0.0
    done: int = 0
    total: int | None = None
    result: dict = field(default_factory=dict)
    error: str | None = None
    log: str = ""
    worker: str | None = None
    task_id: str | None = None
    created_at: datetime | None = None
    created_by: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    heartbeat_at: datetime | None = None
    attempt: int = 0
    model_id: int | None = None
    live: dict = field(default_factory=dict)
    chunks_in: int = 0
    logs_in: int = 0
    chunks_lost: int = 0
    done_before: int = 0

    @property
    def active(self) -> bool:
        return self.status in ACTIVE_JOB_STATES

    def as_dict(self) -> dict:
        live = self.live or {}
        return {
            "id": self.id, "project_id": self.project_id, "kind": self.kind, "status": self.status,
            "progress": round(self.progress, 4), "done": self.done, "total": self.total,
            "images_per_s": live.get("ips"), "eta_s": live.get("eta_s"), "stage": live.get("stage"),
            "live": dict(live), "result": dict(self.result or {}), "chunks_lost": self.chunks_lost,
            "error": self.error, "worker": self.worker, "attempt": self.attempt, "model_id": self.model_id,
            "params": self.params, "log": self.log,
            **{k: (v.isoformat(timespec="seconds") if v else None) for k, v in (
                ("created_at", self.created_at), ("started_at", self.started_at),
                ("finished_at", self.finished_at), ("heartbeat_at", self.heartbeat_at))},
        }


@dataclass(frozen=True)
class JobShard:
    """One shard of an auto-annotation job's attempt: the images one task was given, which try of it runs
    now (a dead worker's shard goes to another worker), who runs it and how far it got."""

    job_id: int
    attempt: int
    shard: int
    images: tuple[int, ...]
    status: str
    retry: int = 0
    done: int = 0
    done_before: int = 0
    task_id: str | None = None
    worker: str | None = None
    device: str | None = None
    ips: float | None = None
    chunks_in: int = 0
    chunks_lost: int = 0
    logs_in: int = 0
    heartbeat_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    error: str | None = None

    @property
    def active(self) -> bool:
        return self.status in ACTIVE_JOB_STATES


@dataclass(frozen=True)
class ProjectSnapshot:
    """One consistent view of a project's labelled data, like supervision's DetectionDataset: the class
    table, the images (in id order), their boxes and the split each image is in. Export writes one, the
    training job's manifest is one, and an import reads its source into one.

    ``boxes`` are columns (``image_id``, ``class_idx``, ``x1``, ``y1``, ``x2``, ``y2``, ``confidence`` with NaN
    for none), numpy arrays from the store (100k boxes without 100k objects) or plain lists; ``split_assigned``
    names the images whose split was computed for this snapshot and is not stored."""

    class_names: tuple[str, ...]
    images: tuple[ImageRecord, ...]
    boxes: dict
    splits: dict  # image id -> "train" | "val" | "test"
    split_assigned: frozenset = frozenset()

    def __post_init__(self):
        missing = [i.id for i in self.images if self.splits.get(i.id) not in SPLITS]
        if missing:
            raise ValueError(f"images without a split in the snapshot: {missing[:10]}")
        lengths = {k: len(v) for k, v in self.boxes.items()}
        if len(set(lengths.values())) > 1:
            raise ValueError(f"box columns disagree: {lengths}")

    @property
    def num_boxes(self) -> int:
        return len(self.boxes["image_id"]) if self.boxes else 0

    def boxes_by_image(self) -> dict[int, list["Box"]]:
        """The boxes as Box objects per image id (every image present, [] for a negative)."""
        out: dict[int, list[Box]] = {i.id: [] for i in self.images}
        if not self.boxes:
            return out
        cols = [self.boxes[k] for k in ("image_id", "class_idx", "x1", "y1", "x2", "y2", "confidence")]
        for image_id, c, x1, y1, x2, y2, conf in zip(*cols):
            conf = None if conf is None or conf != conf else float(conf)  # NaN: no confidence
            out[int(image_id)].append(Box(float(x1), float(y1), float(x2), float(y2), class_idx=int(c),
                                          confidence=conf))
        return out


# --- the wire form of any result: what the public API returns and the CLI prints with --json ----------------
# Where the API (and the CLI) names a service parameter differently: a person passes a project and a model
# (name or id); the services call them references.
API_ALIASES = {"project": "ref", "model": "model_ref"}


def to_json(value):
    """A service result as plain JSON values, the same whichever side converts it: a record by its
    ``as_dict()`` (another dataclass field by field), datetimes as ISO seconds, paths as strings, mapping
    keys as strings (as JSON has them), tuples and sets as lists, numpy scalars and arrays as numbers."""
    if hasattr(value, "as_dict"):
        return to_json(value.as_dict())
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [to_json(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds")
    if hasattr(value, "isoformat"):  # a date
        return value.isoformat()
    if hasattr(value, "__fspath__"):
        return value.__fspath__()
    if hasattr(value, "__dataclass_fields__") and not isinstance(value, type):
        return {k: to_json(getattr(value, k)) for k in value.__dataclass_fields__}
    if hasattr(value, "tolist"):  # numpy
        return to_json(value.tolist())
    return value
