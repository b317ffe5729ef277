"""Uploads that fail leave nothing behind in Gradio's temp folder (inside the data folder).

Gradio streams an upload into a temp file at the top of GRADIO_TEMP_DIR, then moves it into a folder named by
its hash. It removes that temp file when the multipart body is malformed, but not when writing it fails (a
full disk) or the browser goes away mid-upload: the partial file then sits there for a day, and on a full
disk it keeps the disk full. ``install()`` makes every failed parse remove its own files (only those: other
uploads in flight are untouched); ``sweep_leftovers()`` removes the top-level temp files an earlier run left
(at start no upload is in flight, so every one of them is a leftover). Uploads that succeeded are removed
by the API once stored (``api._drop_uploads``), the rest by Gradio's hourly cache cleanup.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)
_INSTALLED = False


def install() -> bool:
    """Wrap Gradio's multipart parser so that a failed upload removes its partial files. Returns False (and
    logs) when this Gradio has no such parser: uploads still work, only without the cleanup."""
    global _INSTALLED
    if _INSTALLED:
        return True
    try:
        from gradio.route_utils import GradioMultiPartParser
    except ImportError:
        log.warning("gradio.route_utils.GradioMultiPartParser is gone: failed uploads are not cleaned up early")
        return False
    original = GradioMultiPartParser.parse

    async def parse(self):
        try:
            return await original(self)
        except BaseException:
            for f in list(getattr(self, "_files_to_close_on_error", ())):
                with contextlib.suppress(Exception):
                    f.close()
                with contextlib.suppress(OSError, TypeError):
                    os.unlink(f.name)
            raise

    parse.__wrapped__ = original
    GradioMultiPartParser.parse = parse
    _INSTALLED = True
    return True


def sweep_leftovers(temp_dir: str | os.PathLike | None = None) -> int:
    """Remove the regular files at the top of Gradio's temp folder (partial uploads of an earlier run; what
    Gradio keeps lives in sub-folders). Returns how many bytes were freed. Call before the server starts."""
    root = Path(temp_dir or os.environ.get("GRADIO_TEMP_DIR") or "")
    if not str(root) or not root.is_dir():
        return 0
    freed = 0
    for p in root.iterdir():
        try:
            if p.is_file() and not p.is_symlink():
                size = p.stat().st_size
                p.unlink()
                freed += size
        except OSError:
            continue
    if freed:
        log.info("removed %.1f MB of interrupted uploads from %s", freed / 1e6, root)
    return freed
