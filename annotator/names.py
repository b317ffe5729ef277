"""Names people type and names we write: project, class, dataset and model names; export file names.

Pure: imports only ``types``. Every refusal is a ``UserError`` naming the value at fault.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import unicodedata
from typing import Sequence

from .types import ImageRecord, UserError

MAX_NAME = 100
MAX_FILE_NAME_BYTES = 120  # an exported file's name: unzip, tar and every filesystem take it (most allow 255)


def clean_name(value: str | None, what: str, forbid: str = "") -> str:
    """A name as stored: stripped, NFC, at most MAX_NAME characters, no control characters, none of ``forbid``."""
    name = unicodedata.normalize("NFC", (value or "").strip())
    if not name:
        raise UserError(f"{what} must not be empty")
    if len(name) > MAX_NAME:
        raise UserError(f"{what} {name[:30]!r}... is longer than {MAX_NAME} characters")
    if any(unicodedata.category(ch).startswith("C") for ch in name):
        raise UserError(f"{what} {name!r} contains control characters")
    bad = [ch for ch in forbid if ch in name]
    if bad:
        raise UserError(f"{what} {name!r} must not contain {' or '.join(repr(c) for c in bad)}")
    return name


def parse_class_names(text: str | Sequence[str]) -> list[str]:
    """One name per line (blank lines ignored), or a list. Refuses empty and duplicate names."""
    if isinstance(text, str):
        raw = [line for line in text.splitlines() if line.strip()]
    else:
        raw = list(text)
    names = []
    seen: dict[str, int] = {}
    for pos, item in enumerate(raw):
        if not str(item).strip():
            raise UserError(f"Class name at position {pos} is empty")
        name = clean_name(str(item), f"Class name at position {pos}")
        key = name.lower()
        if key in seen:
            raise UserError(f"Class name {name!r} is listed twice (positions {seen[key]} and {pos})")
        seen[key] = pos
        names.append(name)
    return names


def slug(name: str) -> str:
    """A file-name-safe form of a project name (export zips)."""
    out = "".join(c if c.isalnum() or c in "-_" else "-" for c in name.strip())
    return out.strip("-") or "project"


def plain_text(name: str) -> str:
    """NFC, with control characters (and path separators) replaced by '_': a name as we store or write it."""
    name = unicodedata.normalize("NFC", name)
    return "".join("_" if unicodedata.category(c).startswith("C") or c in "/\\" else c for c in name)


def fit_file_name(name: str, limit: int = MAX_FILE_NAME_BYTES) -> str:
    """``name`` (plain_text) at most ``limit`` bytes of UTF-8: a longer one keeps its extension and as much
    of its stem as fits (whole characters), plus '~' and 8 hex digits of a hash of the whole name, so two
    long names that share their start stay apart."""
    name = plain_text(name)
    if len(name.encode("utf-8")) <= limit:
        return name
    stem, ext = posixpath.splitext(name)
    if len(ext.encode("utf-8")) > 16:  # not an extension: a dot inside a long name
        stem, ext = name, ""
    tag = "~" + hashlib.sha1(name.encode("utf-8")).hexdigest()[:8]
    budget = max(1, limit - len(ext.encode("utf-8")) - len(tag))
    return stem.encode("utf-8")[:budget].decode("utf-8", "ignore") + tag + ext


def unique_export_names(images: Sequence[ImageRecord], splits: dict[int, str]) -> dict[int, str]:
    """Exported file names, unique (by stem, case-insensitively) within each split: the base name when it
    is unique, else the dataset and folder path flattened with '__', else that plus the image id.
    The extension is the stored file's. Every name is plain text of at most MAX_FILE_NAME_BYTES bytes
    (fit_file_name), so any unzip and any training run can create it."""
    bases = {img.id: fit_file_name(posixpath.splitext(posixpath.basename(img.rel_path))[0]
                                   + posixpath.splitext(img.file)[1]) for img in images}

    def flat(img: ImageRecord) -> str:
        folders = [part for part in posixpath.dirname(img.rel_path).split("/") if part]
        base = posixpath.splitext(posixpath.basename(img.rel_path))[0] + posixpath.splitext(img.file)[1]
        return fit_file_name("__".join([img.dataset, *folders, base]).replace(" ", "_"))

    def key(img: ImageRecord, name: str) -> tuple[str, str]:  # YOLO labels are named by stem: a.jpg ~ a.png
        return splits[img.id], posixpath.splitext(name)[0].lower()

    counts: dict[tuple[str, str], int] = {}
    for img in images:
        k = key(img, bases[img.id])
        counts[k] = counts.get(k, 0) + 1
    names = {img.id: bases[img.id] if counts[key(img, bases[img.id])] == 1 else flat(img) for img in images}
    seen: dict[tuple[str, str], int] = {}
    for img in images:
        k = key(img, names[img.id])
        seen[k] = seen.get(k, 0) + 1
        if seen[k] > 1:
            tail = f"__{img.id}"
            stem, ext = os.path.splitext(fit_file_name(names[img.id], MAX_FILE_NAME_BYTES - len(tail)))
            names[img.id] = f"{stem}{tail}{ext}"
    return names
