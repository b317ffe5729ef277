"""Zip / folder / loose files -> validated, EXIF-normalized images and thumbnails in a staging folder.

Pure of the store: ``prepare_upload`` gets what the project already holds (sha256 -> "dataset/path") and
returns what to register. The caller moves the staged files into place and commits the rows in one
transaction, so a failure half-way registers nothing.

Safety: archive member names are never used as filesystem paths (files are stored by content hash), and
unsafe names, links, encrypted members, zip bombs (size and ratio limits) and decompression bombs (pixel
limit) are refused per file with a reason. Zips are read member by member from disk.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import io
import os
import posixpath
import stat
import sys
import unicodedata
import uuid
import warnings
import zipfile
from collections import deque
from contextlib import ExitStack
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from PIL import Image, ImageOps, UnidentifiedImageError

from . import pixels
from .phash import dhash
from .types import IMAGE_EXTENSIONS, LABEL_EXTENSIONS, VIDEO_EXTENSIONS, DuplicateFile, SkippedFile

# PIL format -> stored extension. TIFF is stored as PNG so every browser can show it.
STORED_EXT = {"JPEG": "jpg", "MPO": "jpg", "PNG": "png", "WEBP": "webp", "BMP": "bmp", "TIFF": "png"}
ORIENTATION_TAG = 0x0112

Progress = Callable[[int, int, str], None]


@dataclass(frozen=True)
class Limits:
    max_pixels: int = 178_956_970
    max_file_bytes: int = 1 << 30
    max_upload_bytes: int = 64 << 30
    max_zip_ratio: int = 200
    thumb_size: int = 256

    @classmethod
    def from_settings(cls, s) -> "Limits":
        return cls(s.max_image_pixels, s.max_file_bytes, s.max_upload_bytes, s.max_zip_ratio, s.thumb_size)


class BadImage(Exception):
    """The file is not an image we can store; the message is the reason shown to the user."""


@dataclass(frozen=True)
class Decoded:
    data: bytes  # bytes to store (the upload itself unless it had to be rotated or converted)
    ext: str
    format: str
    width: int
    height: int
    thumb: bytes
    normalized: str = ""  # what was changed, for the report ("" = stored as uploaded)


@dataclass(frozen=True)
class StagedImage:
    rel_path: str
    sha256: str
    ext: str
    format: str
    width: int
    height: int
    size_bytes: int
    image_path: Path  # in the staging folder
    thumb_path: Path
    note: str = ""  # how the stored file differs from the upload ("" = byte-identical)
    phash: int | None = None  # thumb_hash of its thumbnail
    video: str | None = None  # a frame: the upload name of its video (a key of PreparedUpload.videos)
    frame_index: int | None = None
    frame_time: float | None = None


@dataclass
class StagedVideo:
    """A video sampled into frames: what the videos table records (its frames are StagedImages)."""

    name: str  # as uploaded ("clips/drive.mp4", or "archive.zip:clips/drive.mp4" inside a zip)
    sha256: str
    size_bytes: int
    info: object  # video.VideoInfo
    sampling: str  # Sampling.describe()
    read: int = 0
    kept: int = 0
    stopped: str = ""  # where and why reading stopped early ("" = read to the end or to the frame limit)
    # the file, when the upload keeps the video: the user's own (copied at commit) or our copy out of a zip
    # in the staging folder (moved at commit)
    source: Path | None = None
    ours: bool = False


@dataclass
class PreparedUpload:
    images: list[StagedImage] = field(default_factory=list)
    duplicates: list[DuplicateFile] = field(default_factory=list)
    skipped: list[SkippedFile] = field(default_factory=list)
    videos: dict[str, StagedVideo] = field(default_factory=dict)  # by name


# --- names ---------------------------------------------------------------------------------------------
def safe_relpath(name: str) -> str:
    """Normalize an archive member name to a relative posix path (NFC, control characters replaced by
    '_'), or raise ValueError saying why not."""
    p = unicodedata.normalize("NFC", name.replace("\\", "/"))
    p = "".join("_" if unicodedata.category(c).startswith("C") else c for c in p)
    if p.startswith("/") or (len(p) > 1 and p[1] == ":"):
        raise ValueError("absolute path in archive (zip-slip), not extracted")
    parts = [x for x in p.split("/") if x not in ("", ".")]
    if any(x == ".." for x in parts):
        raise ValueError("path escapes the archive with '..' (zip-slip), not extracted")
    if not parts:
        raise ValueError("empty name")
    return "/".join(parts)


def skip_reason_for_name(rel_path: str, videos: bool = False) -> str | None:
    """Reasons that need no reading: system clutter, hidden files, non-images (and non-videos, when an
    upload takes ``videos``)."""
    parts = rel_path.split("/")
    if "__MACOSX" in parts:
        return "macOS metadata (__MACOSX), not an image"
    if any(x.startswith(".") for x in parts):
        return "hidden file or folder"
    ext = posixpath.splitext(rel_path)[1].lower()
    if ext not in IMAGE_EXTENSIONS and not (videos and ext in VIDEO_EXTENSIONS):
        accepted = "JPG, PNG, WebP, TIFF, BMP" + (", MP4, MOV, AVI, MKV, WebM" if videos else "")
        return f"not an image{' or video' if videos else ''} file ({ext or 'no extension'}); accepted: {accepted}"
    return None


def is_video(rel_path: str) -> bool:
    return posixpath.splitext(rel_path)[1].lower() in VIDEO_EXTENSIONS


def thumb_hash(thumb: bytes | Path) -> int:
    """THE near-duplicate hash of an image (annotator/phash.py), computed from its stored thumbnail: at
    ingest from the bytes just made, and by the backfill of older images from the file, so both agree."""
    with _pil_open()(io.BytesIO(thumb) if isinstance(thumb, bytes) else thumb) as im:
        im.draft("L", (32, 32))  # a JPEG decodes at 1/8 scale: the hash needs 9x8 pixels
        return dhash(im)


def _human(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


# --- decoding ------------------------------------------------------------------------------------------
def _thumb_size(w: int, h: int, size: int) -> tuple[int, int]:
    scale = min(1.0, size / max(w, h))
    return max(1, round(w * scale)), max(1, round(h * scale))


def _make_thumb(im: Image.Image, size: int, max_side: int | None = None) -> bytes:
    """A gallery thumbnail whose long side is at most ``max_side`` (default ``size``).

    JPEGs arrive already DCT-scaled by ``draft`` to between 1x and 2x ``size``; resampling that last
    step would cost ~15% of ingest CPU for no visible gain, so they pass ``max_side=2*size``.
    """
    if im.mode.startswith("I") or im.mode == "F":  # 16/32-bit greyscale: scale to 8 bits
        im = im.convert("I").point(lambda v: v * (1 / 256)).convert("L")
    if im.mode not in ("RGB", "L"):
        im = im.convert("RGB")
    if max(im.size) > (max_side or size):
        im.thumbnail((size, size), Image.Resampling.BILINEAR, reducing_gap=2.0)
    out = io.BytesIO()
    im.save(out, "JPEG", quality=80)
    return out.getvalue()


def _pil_open():
    """PIL's own Image.open. Importing ultralytics (model checks, workers) replaces it process-wide with a
    version that tries to import the pi-heif plugin on any unidentified file, and raises when it's absent."""
    patched = sys.modules.get("ultralytics.utils.patches")
    return getattr(patched, "_image_open", Image.open) if patched is not None else Image.open


def decode_image(data: bytes, limits: Limits) -> Decoded:
    """Validate one image fully and return what to store. Raises BadImage with a user-facing reason."""
    if not data:
        raise BadImage("empty file (0 bytes)")
    if (Image.MAX_IMAGE_PIXELS or 0) < limits.max_pixels:
        # Pillow refuses at 2x its own limit before our check can run: let our (higher) limit decide.
        Image.MAX_IMAGE_PIXELS = limits.max_pixels
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own limit decides below
            im = _pil_open()(io.BytesIO(data))
    except Image.DecompressionBombError:
        raise BadImage(f"decompression bomb: more than {limits.max_pixels:,} pixels") from None
    except (UnidentifiedImageError, ImportError):
        raise BadImage("not a readable image (unknown format or damaged header)") from None
    except (OSError, SyntaxError, ValueError) as e:
        kind = "truncated image" if "truncated" in str(e).lower() else "not a readable image"
        raise BadImage(f"{kind} ({e})") from None
    fmt = im.format or "?"
    if fmt not in STORED_EXT:
        raise BadImage(f"unsupported image format {fmt}; accepted: JPG, PNG, WebP, TIFF, BMP")
    w, h = im.size
    if w <= 0 or h <= 0:
        raise BadImage(f"image has no pixels ({w}x{h})")
    if w * h > limits.max_pixels:
        raise BadImage(
            f"decompression bomb: {w}x{h} = {w * h:,} pixels exceeds the limit of {limits.max_pixels:,} "
            "(ANNOTATOR_MAX_IMAGE_PIXELS)"
        )
    # The decoded pixels count against the process's budget, so concurrent uploads of huge images queue.
    # A JPEG's orientation is in its header and its decode size depends on it (drafted or not): it takes
    # its share below. Any other format takes it now: getexif() decodes a PNG whole (an eXIf chunk may
    # follow the pixels). A TIFF's conversion holds a second copy.
    if fmt in ("JPEG", "MPO"):
        return _decode_pixels(im, data, fmt, w, h, limits, held=False)
    with pixels.DECODE.hold(pixels.decoded_bytes(w, h) * (2 if fmt == "TIFF" else 1)):
        return _decode_pixels(im, data, fmt, w, h, limits, held=True)


def _decode_pixels(im: Image.Image, data: bytes, fmt: str, w: int, h: int, limits: Limits, held: bool) -> Decoded:
    try:
        orientation = int(im.getexif().get(ORIENTATION_TAG, 1) or 1)
    except Exception:  # a broken EXIF block is not worth refusing the pixels for
        orientation = 1
    rotate = orientation in range(2, 9)
    try:
        jpeg_scaled = fmt in ("JPEG", "MPO") and not rotate
        if jpeg_scaled:
            # Stored as uploaded. Decode at the thumbnail's scale: the whole entropy-coded stream is
            # still read, so truncated or corrupt files fail here, at a fraction of a full decode.
            im.draft(im.mode, _thumb_size(w, h, limits.thumb_size))
        # A rotated JPEG is decoded whole and transposed: two copies at once.
        share = contextlib.nullcontext() if held else pixels.DECODE.hold(
            pixels.decoded_bytes(*im.size) * (2 if rotate else 1))
        with warnings.catch_warnings(), share:
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            if jpeg_scaled:
                im.load()
                return Decoded(data, "jpg", "JPEG", w, h, _make_thumb(im, limits.thumb_size, 2 * limits.thumb_size))
            im.load()
            # A multi-page TIFF or an animated PNG / WebP: what is stored, shown and predicted is the first
            # frame, and the report says so (a browser would animate it under boxes drawn for frame 1).
            frames = int(getattr(im, "n_frames", 1) or 1)
            animated = frames > 1 and fmt in ("PNG", "WEBP")
            if not rotate and fmt != "TIFF" and not animated:
                return Decoded(data, STORED_EXT[fmt], fmt, w, h, _make_thumb(im, limits.thumb_size))
            # Rewrite once: rotate pixels to match EXIF orientation, convert TIFF to PNG, keep one frame.
            notes = []
            if rotate:
                im = ImageOps.exif_transpose(im)
                notes.append(f"rotated per EXIF orientation {orientation}")
            if animated:
                notes.append(f"animated ({frames} frames): kept the first frame")
            out = io.BytesIO()
            save_fmt = "PNG" if fmt == "TIFF" else ("JPEG" if fmt == "MPO" else fmt)
            if fmt == "TIFF":
                notes.append("converted TIFF to PNG" + (f", kept page 1 of {frames}" if frames > 1 else ""))
                if im.mode not in ("1", "L", "LA", "P", "RGB", "RGBA", "I;16"):
                    im = im.convert("RGB")
            kwargs = {}
            if save_fmt == "JPEG":
                kwargs = {"quality": 95, "icc_profile": im.info.get("icc_profile")}
            elif save_fmt == "WEBP":
                kwargs = {"quality": 95, "lossless": bool(im.info.get("lossless"))}
            exif = im.getexif()
            if ORIENTATION_TAG in exif:
                del exif[ORIENTATION_TAG]
            if save_fmt in ("JPEG", "PNG", "WEBP") and len(exif):
                kwargs["exif"] = exif.tobytes()
            if save_fmt == "JPEG" and im.mode not in ("RGB", "L", "CMYK"):
                im = im.convert("RGB")
            im.save(out, save_fmt, **{k: v for k, v in kwargs.items() if v is not None})
            fw, fh = im.size
            return Decoded(
                out.getvalue(), STORED_EXT[fmt], save_fmt if fmt != "MPO" else "JPEG", fw, fh,
                _make_thumb(im, limits.thumb_size), "; ".join(notes),
            )
    except BadImage:
        raise
    except Image.DecompressionBombError:
        raise BadImage(f"decompression bomb: more than {limits.max_pixels:,} pixels") from None
    except (OSError, SyntaxError, ValueError, EOFError, MemoryError) as e:
        msg = str(e) or type(e).__name__
        if "truncated" in msg.lower():
            raise BadImage(f"truncated image ({msg})") from None
        raise BadImage(f"corrupt image ({msg})") from None


# --- sources -------------------------------------------------------------------------------------------
@dataclass
class _Entry:
    rel_path: str
    display: str
    size: int
    read: Callable[[], bytes]
    # a video: ``path`` is its file (loose files), or ``save(dest)`` copies it out of its zip, streamed, and
    # returns its sha256
    video: bool = False
    path: Path | None = None
    save: Callable[[Path], str] | None = None


def _member_reason(info: zipfile.ZipInfo, limits: Limits, used: int) -> str | None:
    """Why a zip member must not be extracted (link, encrypted, too big, zip bomb, over the upload's
    total of which ``used`` bytes are taken), or None. A video is streamed to disk, never read into memory:
    only the upload's total bounds it."""
    if stat.S_ISLNK(info.external_attr >> 16):
        return "symbolic link in archive, not followed"
    if info.flag_bits & 0x1:
        return "encrypted zip member"
    if info.file_size > limits.max_file_bytes and not is_video(info.filename):
        return (f"file is {_human(info.file_size)}, over the per-file limit of "
                f"{_human(limits.max_file_bytes)} (ANNOTATOR_MAX_FILE_BYTES)")
    if info.file_size > (1 << 20) and info.file_size > limits.max_zip_ratio * max(info.compress_size, 1):
        return (f"suspicious compression ratio {info.file_size / max(info.compress_size, 1):,.0f}:1 "
                f"(zip bomb?); limit {limits.max_zip_ratio}:1 (ANNOTATOR_MAX_ZIP_RATIO)")
    if used + info.file_size > limits.max_upload_bytes:
        return (f"upload exceeds the total uncompressed limit of {_human(limits.max_upload_bytes)} "
                "(ANNOTATOR_MAX_UPLOAD_BYTES); split it into several uploads")
    return None


@dataclass(frozen=True)
class _Member:
    """A zip member that passed every safety check."""

    zf: zipfile.ZipFile
    info: zipfile.ZipInfo
    rel: str  # its name as a safe relative posix path
    display: str  # "archive.zip:member name", for reports


def _walk_zip(
    path: Path, name: str, limits: Limits, skipped: list[SkippedFile], budget: list[int], stack: ExitStack,
    name_reason: Callable[[str, zipfile.ZipInfo], str | None],
) -> Iterator[_Member]:
    """THE zip-safety walk, for uploads and label imports alike: open the archive (kept open on ``stack``)
    and yield the members that are safe to read. Every other member is added to ``skipped`` with its reason:
    zip-slip names, the caller's ``name_reason(rel, info)`` (which files it wants), links, encryption,
    per-file size, compression ratio and the upload's total (``budget[0]`` bytes taken, counted up here)."""
    try:
        zf = stack.enter_context(zipfile.ZipFile(path))
        members = zf.infolist()
    except (zipfile.BadZipFile, OSError) as e:
        skipped.append(SkippedFile(name, f"not a readable zip archive ({e})"))
        return
    for info in members:
        if info.is_dir():
            continue
        display = f"{name}:{info.filename}"
        try:
            rel = safe_relpath(info.filename)
        except ValueError as e:
            skipped.append(SkippedFile(display, str(e)))
            continue
        reason = name_reason(rel, info) or _member_reason(info, limits, budget[0])
        if reason:
            skipped.append(SkippedFile(display, reason))
            continue
        budget[0] += info.file_size
        yield _Member(zf, info, rel, display)


ZIP_CHUNK = 1 << 20  # inflate this much at a time


def _member_chunks(m: _Member, chunk: int = ZIP_CHUNK) -> Iterator[bytes]:
    """A zip member's bytes, inflated ``chunk`` bytes at a time and never past the size its header
    declares (which the limits were checked against): a member whose data inflates further is refused as
    soon as it passes that size (BadImage naming it), whatever its header says, having inflated at most one
    chunk more. One shorter than declared is refused too."""
    declared = m.info.file_size
    # zipfile stops handing out data at the header's size and checks the CRC there; give it room past the
    # declared size so that a longer stream is seen (and refused here) instead of quietly cut.
    probe = copy.copy(m.info)
    probe.file_size = declared + max(chunk, 1 << 16)
    got = 0
    with m.zf.open(probe) as f:
        while True:
            data = f.read(min(chunk, declared + 1 - got))
            if not data:
                break
            got += len(data)
            if got > declared:
                raise BadImage(f"{m.info.filename}: its data inflates past the {declared:,} bytes its header "
                               "declares (zip bomb or tampered archive); not extracted")
            yield data
    if got != declared:
        raise BadImage("zip member size does not match its header (corrupt or tampered archive)")


def _upload_name_reason(rel: str, info: zipfile.ZipInfo) -> str | None:
    """Uploads take non-empty image and video files."""
    reason = skip_reason_for_name(rel, videos=True)
    if reason is None and info.file_size == 0:
        reason = "empty file (0 bytes)"
    return reason


def _import_name_reason(rel: str, info: zipfile.ZipInfo) -> str | None:
    """Label imports take images and label files (an empty label file is a negative)."""
    if posixpath.splitext(rel)[1].lower() not in LABEL_EXTENSIONS:
        return skip_reason_for_name(rel)
    return "hidden file or folder" if any(x.startswith(".") or x == "__MACOSX" for x in rel.split("/")) else None


def _iter_zip(
    path: Path, name: str, prefix: str, limits: Limits, skipped: list[SkippedFile], budget: list[int], stack: ExitStack
) -> Iterator[_Entry]:
    for m in _walk_zip(path, name, limits, skipped, budget, stack, _upload_name_reason):

        def read(m=m) -> bytes:
            return b"".join(_member_chunks(m))

        def save(dest: Path, m=m) -> str:
            digest = hashlib.sha256()
            with open(dest, "wb") as out:
                for data in _member_chunks(m):
                    digest.update(data)
                    out.write(data)
            return digest.hexdigest()

        video = is_video(m.rel)
        yield _Entry(prefix + m.rel, m.display, m.info.file_size, read, video, save=save if video else None)


def _file_entry(path: Path, rel: str, limits: Limits, skipped: list[SkippedFile], budget: list[int]) -> _Entry | None:
    reason = skip_reason_for_name(rel, videos=True)
    if reason is None and path.is_symlink():
        reason = "symbolic link, not followed"
    size = path.stat().st_size if reason is None else 0
    video = is_video(rel)
    if reason is None and size == 0:
        reason = "empty file (0 bytes)"
    if reason is None and size > limits.max_file_bytes and not video:
        reason = f"file is {_human(size)}, over the per-file limit of {_human(limits.max_file_bytes)} (ANNOTATOR_MAX_FILE_BYTES)"
    if reason is None and budget[0] + size > limits.max_upload_bytes:
        reason = (f"upload exceeds the total limit of {_human(limits.max_upload_bytes)} "
                  "(ANNOTATOR_MAX_UPLOAD_BYTES); split it into several uploads")
    if reason:
        skipped.append(SkippedFile(rel, reason))
        return None
    budget[0] += size
    return _Entry(rel, rel, size, path.read_bytes, video, path=path if video else None)


def _iter_sources(
    sources: list[tuple[Path, str]], limits: Limits, skipped: list[SkippedFile], stack: ExitStack
) -> Iterator[_Entry]:
    """``sources``: (path, display name). Zips expand (prefixed by their stem when there are several)."""
    zips = [p for p, _ in sources if p.is_file() and p.suffix.lower() == ".zip"]
    budget = [0]
    for path, name in sources:
        if path.is_dir():
            for root, dirs, files in os.walk(path):  # os.walk does not follow directory links
                dirs.sort()
                for fn in sorted(files):
                    full = Path(root) / fn
                    rel = full.relative_to(path).as_posix()
                    entry = _file_entry(full, rel, limits, skipped, budget)
                    if entry:
                        yield entry
        elif path.suffix.lower() == ".zip":
            prefix = (Path(name).stem + "/") if len(zips) > 1 else ""
            yield from _iter_zip(path, name, prefix, limits, skipped, budget, stack)
        elif path.is_file():
            entry = _file_entry(path, Path(name).name, limits, skipped, budget)
            if entry:
                yield entry
        else:
            skipped.append(SkippedFile(name, "no such file or folder"))


# --- the pipeline ----------------------------------------------------------------------------------------
def prepare_upload(
    sources: list[tuple[Path, str]],
    staging: Path,
    limits: Limits,
    known: dict[str, str],
    taken_paths: set[str] = frozenset(),
    progress: Progress | None = None,
    threads: int = 0,
    sampling=None,
    keep_videos: bool = False,
) -> PreparedUpload:
    """Read, dedup, validate and stage every image of ``sources`` into ``staging``; sample every video
    into frames (``sampling``: a video.Sampling, default every half second) staged the same way; with
    ``keep_videos`` each video's file is named in ``videos`` for the commit to store.

    ``known``: sha256 -> "dataset/rel_path" already in the project; ``taken_paths``: rel_paths already in
    the target dataset. Reading and hashing happen in order on this thread (so which copy counts as the
    duplicate is deterministic); decoding, thumbnails and writes run on a thread pool. A video is decoded
    on this thread, frame by frame (never whole in memory); its frames are encoded on the pool.
    """
    staging.mkdir(parents=True, exist_ok=True)
    result = PreparedUpload()
    seen: dict[str, str] = {}  # sha -> rel_path, within this upload
    paths_seen: set[str] = set()
    threads = threads or min(8, os.cpu_count() or 1)
    max_in_flight = threads * 4
    pending: deque[tuple[str, str, str, Future]] = deque()  # (rel_path, display, sha, staged)
    failed_shas: dict[str, str] = {}
    stack = ExitStack()  # archives stay open while their members are read
    entries = list(_iter_sources(sources, limits, result.skipped, stack))
    counter = {"done": len(result.skipped), "total": 0}
    counter["total"] = counter["done"] + sum(_expected_frames(e, sampling) if e.video else 1 for e in entries)

    def tick(name: str, n: int = 1) -> None:
        counter["done"] += n
        counter["total"] = max(counter["total"], counter["done"])
        if progress:
            progress(counter["done"], counter["total"], name)

    def collect(rel: str, display: str, sha: str, fut: Future) -> None:
        try:
            result.images.append(fut.result())
        except BadImage as e:
            result.skipped.append(SkippedFile(display, str(e)))
            failed_shas[sha] = str(e)
        tick(rel)

    def offer(rel: str, display: str, data: bytes, stage: Callable[[], StagedImage]) -> bool:
        """Dedup one file's bytes against the project and the upload, then stage it on the pool."""
        sha = hashlib.sha256(data).hexdigest()
        same = known.get(sha) or (f"{seen[sha]} (earlier in this upload)" if sha in seen else None)
        if same:
            result.duplicates.append(DuplicateFile(rel, same, sha))
            tick(rel)
            return False
        if rel in taken_paths or rel in paths_seen:
            result.skipped.append(SkippedFile(
                display, "a different image with this path is already in the dataset; upload it into another dataset"))
            tick(rel)
            return False
        seen[sha] = rel
        paths_seen.add(rel)
        pending.append((rel, display, sha, pool.submit(stage, sha)))
        while len(pending) >= max_in_flight:
            collect(*pending.popleft())
        return True

    with stack, ThreadPoolExecutor(max_workers=threads, thread_name_prefix="ingest") as pool:
        for entry in entries:
            if entry.video:
                _sample_video(entry, staging, limits, sampling, result, offer, tick, keep_videos)
                continue
            try:
                data = entry.read()
            except (BadImage, zipfile.BadZipFile, OSError, EOFError, RuntimeError) as e:
                reason = str(e)
                if "CRC" in reason:
                    reason = f"corrupt zip member ({reason})"
                result.skipped.append(SkippedFile(entry.display, reason))
                tick(entry.rel_path)
                continue
            offer(entry.rel_path, entry.display, data,
                  lambda sha, data=data, rel=entry.rel_path: _stage_one(data, sha, rel, staging, limits))
        while pending:
            collect(*pending.popleft())

    # A duplicate of a file that turned out unreadable is unreadable too: report it as such.
    if failed_shas:
        by_path = {img_path: sha for sha, img_path in seen.items()}
        keep = []
        for d in result.duplicates:
            origin = d.same_as.removesuffix(" (earlier in this upload)")
            sha = by_path.get(origin)
            if sha in failed_shas:
                result.skipped.append(SkippedFile(d.name, failed_shas[sha]))
            else:
                keep.append(d)
        result.duplicates = keep
    return result


def _stage_one(data: bytes, sha: str, rel_path: str, staging: Path, limits: Limits) -> StagedImage:
    dec = decode_image(data, limits)
    image_path = staging / f"{sha}.{dec.ext}"
    thumb_path = staging / f"{sha}.thumb.jpg"
    image_path.write_bytes(dec.data)
    thumb_path.write_bytes(dec.thumb)
    return StagedImage(
        rel_path, sha, dec.ext, dec.format, dec.width, dec.height, len(dec.data), image_path, thumb_path, dec.normalized,
        thumb_hash(dec.thumb),
    )


# --- videos ----------------------------------------------------------------------------------------------
FRAME_QUALITY = 95  # frames are stored as JPEG at this quality: what a camera would have written


def frame_path(video_rel: str, index: int) -> str:
    """A frame's path in its dataset: beside where the video was, in a folder named after it."""
    return f"{posixpath.splitext(video_rel)[0]}/frame_{index:06d}.jpg"


def _expected_frames(entry: _Entry, sampling) -> int:
    """About how many frames sampling this video keeps, for the progress bar (0 when unknown)."""
    from .video import BadVideo, Sampling, probe

    if entry.path is None:  # inside a zip: not extracted yet
        return 1
    try:
        info = probe(entry.path)
    except BadVideo:
        return 1
    return max(1, expected_kept(info, sampling or Sampling()))


def expected_kept(info, sampling) -> int:
    """Frames ``sampling`` keeps of a video described by ``info`` (a scene-change estimate is 1 per second)."""
    frames = info.frames or int(info.duration_s * (info.fps or 30))
    if sampling.mode == "all":
        n = frames
    elif sampling.mode == "every":
        n = -(-frames // max(1, sampling.every))
    elif sampling.mode == "fps":
        n = int(info.duration_s * min(sampling.fps, info.fps or sampling.fps)) + 1
    else:
        n = int(info.duration_s) + 1
    return min(n, sampling.max_frames) if sampling.max_frames else n


def _sample_video(entry: _Entry, staging: Path, limits: Limits, sampling, result: PreparedUpload, offer, tick,
                  keep: bool = False) -> None:
    """Decode one video frame by frame and offer each kept frame as a JPEG image; record the video (and, with
    ``keep``, its file: a zip member's copy stays in the staging folder for the commit to move).

    A video that cannot be read at all is skipped with the reason; one damaged part-way keeps the frames
    read before the damage, and the report says where it stopped."""
    from .video import BadVideo, Extraction, Sampling, format_time, iter_frames, probe

    sampling = sampling or Sampling()
    temp = None
    try:
        path = entry.path
        if path is None:  # a zip member: streamed to a file (OpenCV reads paths), hashed on the way
            temp = staging / f"video-{uuid.uuid4().hex}{posixpath.splitext(entry.rel_path)[1].lower()}"
            sha = entry.save(temp)
            path = temp
        else:
            digest = hashlib.sha256()
            with open(path, "rb") as f:
                while chunk := f.read(1 << 20):
                    digest.update(chunk)
            sha = digest.hexdigest()
        info = probe(path)
        if info.width * info.height > limits.max_pixels:
            raise BadVideo(f"{entry.display}: frames of {info.width}x{info.height} exceed the pixel limit of "
                           f"{limits.max_pixels:,} (ANNOTATOR_MAX_IMAGE_PIXELS)")
        staged = StagedVideo(entry.display, sha, path.stat().st_size, info, sampling.describe())
        run = Extraction()
        for frame in iter_frames(path, sampling, run):
            rel = frame_path(entry.rel_path, frame.index)
            # The decoded frames waiting for the pool count against the process's pixel budget: at most
            # its worth of 4K frames are alive at once, however fast the video decodes.
            held = pixels.DECODE.acquire(frame.image.nbytes)
            try:
                data = _encode_frame(frame.image)
            except BaseException:
                pixels.DECODE.release(held)
                raise
            note = f"frame {frame.index} · {format_time(frame.time_s)}"

            def stage(sha, data=data, rgb=frame.image, rel=rel, frame=frame, held=held) -> StagedImage:
                try:
                    return _stage_frame(data, rgb, sha, rel, staging, limits, entry.display, frame.index,
                                        frame.time_s)
                finally:
                    pixels.DECODE.release(held)

            if offer(rel, f"{entry.display} {note}", data, stage):
                staged.kept += 1
            else:  # a duplicate (or a taken path): never staged
                pixels.DECODE.release(held)
        staged.read, staged.stopped = run.read, run.stopped
        if keep:
            staged.source, staged.ours = path, temp is not None
            temp = None  # the commit moves it (or the staging folder goes, with it)
        result.videos[entry.display] = staged
    except BadVideo as e:
        result.skipped.append(SkippedFile(entry.display, str(e)))
        tick(entry.rel_path)
    except (BadImage, zipfile.BadZipFile, OSError, EOFError, RuntimeError) as e:
        result.skipped.append(SkippedFile(entry.display, f"could not read the video ({e})"))
        tick(entry.rel_path)
    finally:
        if temp is not None:
            temp.unlink(missing_ok=True)


def _encode_frame(rgb) -> bytes:
    out = io.BytesIO()
    Image.fromarray(rgb).save(out, "JPEG", quality=FRAME_QUALITY)
    return out.getvalue()


def _stage_frame(data: bytes, rgb, sha: str, rel: str, staging: Path, limits: Limits, video: str, index: int,
                 time_s: float) -> StagedImage:
    """A video frame as a stored image: its JPEG, and a thumbnail made from the decoded pixels at hand."""
    h, w = rgb.shape[:2]
    thumb = _make_thumb(Image.fromarray(rgb), limits.thumb_size)
    image_path = staging / f"{sha}.jpg"
    thumb_path = staging / f"{sha}.thumb.jpg"
    image_path.write_bytes(data)
    thumb_path.write_bytes(thumb)
    return StagedImage(rel, sha, "jpg", "JPEG", w, h, len(data), image_path, thumb_path, "", thumb_hash(thumb),
                       video, index, time_s)


def extract_archive(path: Path, name: str, dest: Path, limits: Limits) -> list[SkippedFile]:
    """Extract the images and label files (.txt .yaml .yml .json) of a zip into ``dest``, safely.

    The same rules as an upload: zip-slip names, links, encrypted members, hidden files and __MACOSX
    are skipped with a reason; per-file, total and ratio limits apply. Returns what was skipped.
    """
    skipped: list[SkippedFile] = []
    with ExitStack() as stack:
        for m in _walk_zip(path, name, limits, skipped, [0], stack, _import_name_reason):
            target = dest / m.rel
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                with open(target, "wb") as out:
                    for data in _member_chunks(m):
                        out.write(data)
            except BadImage as e:
                target.unlink(missing_ok=True)
                skipped.append(SkippedFile(m.display, str(e)))
            except (zipfile.BadZipFile, OSError, EOFError) as e:
                target.unlink(missing_ok=True)
                skipped.append(SkippedFile(m.display, f"corrupt zip member ({e})"))
    return skipped


def exif_size(path: Path) -> tuple[int, int] | None:
    """(width, height) of an image file as it will be stored: EXIF orientations 5-8 swap them."""
    try:
        with _pil_open()(path) as im:
            w, h = im.size
            # getexif() decodes a PNG whole (its eXIf chunk may follow the pixels): the budget's share first
            with (contextlib.nullcontext() if im.format in ("JPEG", "MPO")
                  else pixels.DECODE.hold(pixels.decoded_bytes(w, h))):
                orientation = int(im.getexif().get(ORIENTATION_TAG, 1) or 1)
    except Exception:  # noqa: BLE001 - unreadable: the caller reports it
        return None
    return (h, w) if orientation in (5, 6, 7, 8) else (w, h)


def stored_names(sha: str, ext: str) -> tuple[str, str]:
    """Where an image and its thumbnail live, relative to the project folder (content-addressed)."""
    return f"images/{sha[:2]}/{sha}.{ext}", f"thumbs/{sha[:2]}/{sha}.jpg"
