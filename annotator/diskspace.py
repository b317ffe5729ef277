"""Free space, checked before anything big is written: an upload's images, an export's zip, a training
dataset. ``require_space`` refuses with "N MB needed, M MB free in <folder>" before the first byte, so a
full disk never leaves half a write behind; what still fails mid-write (another program filled the disk)
becomes a ``types.DiskProblem`` where it is caught.

Sizes are estimates from what is already known without reading the data: a zip's central directory (the
uncompressed sizes it declares; the reader refuses a member that inflates past them), file sizes on disk.
The margin covers thumbnails, display copies and the database's own growth, and keeps ``RESERVE_BYTES``
free so that the metadata database can still commit after the write.
"""

from __future__ import annotations

import os
import shutil
import zipfile
from pathlib import Path
from typing import Iterable

from .types import DiskProblem, _mb

RESERVE_BYTES = 64 * 1024 * 1024  # always left free: the database, logs, thumbnails of what is stored
MARGIN = 1.10  # thumbnails and per-file overhead on top of the payload


def existing(folder: str | os.PathLike) -> Path:
    """``folder`` or its nearest existing parent (a folder about to be created lives on that disk)."""
    path = Path(folder)
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def free_bytes(folder: str | os.PathLike) -> int:
    return shutil.disk_usage(existing(folder)).free


def require_space(folder: str | os.PathLike, payload_bytes: int, what: str) -> None:
    """Refuse (DiskProblem) unless ``folder``'s disk holds ``payload_bytes`` with the margin and keeps the
    reserve free. ``what``: the action, for the message ("upload street.zip")."""
    needed = int(payload_bytes * MARGIN) + RESERVE_BYTES
    free = free_bytes(folder)
    if free < needed:
        raise DiskProblem(f"Not enough disk space to {what}: {_mb(needed)} needed (with a {_mb(RESERVE_BYTES)} "
                          f"reserve), {_mb(free)} free in {existing(folder)}. Nothing was written.")


def sources_size(paths: Iterable[str | os.PathLike]) -> int:
    """Bytes that storing these uploads writes at most: a zip's declared uncompressed sizes (nested zips
    are not unpacked, so they count as they are), a folder's files, a file's size. Unreadable entries count
    0: the ingest reports them."""
    total = 0
    for p in paths:
        path = Path(p)
        try:
            if path.is_dir():
                total += sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())
            elif zipfile.is_zipfile(path):
                with zipfile.ZipFile(path) as zf:
                    total += sum(i.file_size for i in zf.infolist() if not i.is_dir())
            elif path.is_file():
                total += path.stat().st_size
        except (OSError, zipfile.BadZipFile, ValueError):
            continue
    return total


def files_size(paths: Iterable[str | os.PathLike]) -> int:
    """Sum of the sizes of files that exist (missing ones count 0)."""
    total = 0
    for p in paths:
        try:
            total += os.stat(p).st_size
        except OSError:
            continue
    return total


__all__ = ["RESERVE_BYTES", "require_space", "free_bytes", "sources_size", "files_size", "existing"]
