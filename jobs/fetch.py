"""Where a worker reads a job's files (images, the model) from, so that a worker needs no shared folder.

A task names files by the app's paths (inside the app's data folder, ``payload["root"]``). In order:
1. the path itself (the app's own worker, or a host with the data folder mounted at the same path);
2. the same file under this worker's own data folder (mounted elsewhere: ``ANNOTATOR_DATA_DIR``);
3. fetched from the app over HTTP (``ANNOTATOR_APP_URL``, authenticated with ``ANNOTATOR_WORKER_TOKEN``, the
   deployment's worker token, never a user's password) into a bounded cache in this worker's data folder
   (``ANNOTATOR_WORKER_CACHE_MB``; least recently used files go first).
``ANNOTATOR_WORKER_FILES=fetch`` skips 1 and 2.

The app's side is ``annotator/worker_files.py`` (the streaming endpoint). Never opens DuckDB.
"""

from __future__ import annotations

import os
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import OrderedDict
from pathlib import Path, PurePosixPath

from .protocol import FILE_ENDPOINT, TOKEN_HEADER

APP_URL_ENV, TOKEN_ENV, CACHE_ENV = "ANNOTATOR_APP_URL", "ANNOTATOR_WORKER_TOKEN", "ANNOTATOR_WORKER_CACHE_MB"
# "fetch": always from the app, even where the app's paths can be read (a worker on the app's host acting as a
# remote one: the scale test and bench; a host that must not read a folder it happens to see); else "auto"
MODE_ENV = "ANNOTATOR_WORKER_FILES"
DEFAULT_CACHE_MB = 4096
ATTEMPTS = 3


class FetchError(RuntimeError):
    pass


def relative(path: str, root: str | None) -> str | None:
    """``path`` relative to the app's data folder ``root`` (posix form), or None when it is not inside it or
    climbs out of it."""
    if not root:
        return None
    try:
        rel = PurePosixPath(Path(path).relative_to(Path(root)).as_posix())
    except ValueError:
        return None
    if rel.is_absolute() or ".." in rel.parts or not rel.parts:
        return None
    return str(rel)


class FileSource:
    """Resolves a task's file paths to files this worker can read (see the module's docstring)."""

    def __init__(self, root: str | None, data_dir: Path | None, app_url: str | None, token: str | None,
                 cache_dir: Path | None, cache_bytes: int, timeout: float = 60.0, always_fetch: bool = False):
        self.root = root
        self.always_fetch = always_fetch
        self.data_dir = Path(data_dir) if data_dir else None
        self.app_url = (app_url or "").rstrip("/")
        self.token = token or ""
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.cache_bytes = max(1, int(cache_bytes))
        self.timeout = timeout
        self._lock = threading.Lock()
        self._lru: OrderedDict[Path, int] = OrderedDict()  # cached file -> size, least recently used first
        self._size = 0
        self._scanned = False
        self.fetched = 0  # files fetched over HTTP by this source (what a test or a log line reports)
        self.fetched_bytes = 0

    @classmethod
    def for_payload(cls, payload: dict, env=None) -> "FileSource":
        from annotator.settings import Settings, _env_int

        env = os.environ if env is None else env
        data_dir = Settings.from_env(env, load_users=False).data_dir  # this worker's own (./data when unset)
        mb = _env_int(env, CACHE_ENV, DEFAULT_CACHE_MB, 1)
        mode = (env.get(MODE_ENV) or "auto").strip().lower()
        if mode not in ("auto", "fetch"):
            raise ValueError(f"{MODE_ENV}={mode!r}: use auto (the data folder when it is here) or fetch")
        return _shared(payload.get("root"), data_dir, env.get(APP_URL_ENV), env.get(TOKEN_ENV),
                       (data_dir / "cache" / "fetched") if data_dir else None, mb << 20, mode == "fetch")

    def local(self, path: str) -> str:
        """A path to read ``path`` from on this worker (fetching it when needed)."""
        if not self.always_fetch and os.path.exists(path):
            return path
        rel = relative(path, self.root)
        if rel is None:
            return path  # not the app's file: let the reader report it
        if self.data_dir is not None and not self.always_fetch:
            mine = self.data_dir / rel
            if mine.exists():
                return str(mine)
        if not self.app_url or self.cache_dir is None:
            if self.data_dir is not None and self.data_dir.resolve() == Path(self.root).resolve():
                return path  # the app's own folder: the file is missing, the read says which one
            raise FetchError(f"{rel} is not on this worker (neither {path} nor under {self.data_dir}), and "
                             f"{APP_URL_ENV} is not set to fetch it from the app")
        return str(self._fetch(rel))

    # --- the cache --------------------------------------------------------------------------------------
    def _scan(self) -> None:
        if self._scanned:
            return
        self._scanned = True
        if self.cache_dir is None or not self.cache_dir.exists():
            return
        files = sorted((p for p in self.cache_dir.rglob("*") if p.is_file() and not p.name.endswith(".part")),
                       key=lambda p: p.stat().st_atime)
        for p in files:
            size = p.stat().st_size
            self._lru[p] = size
            self._size += size

    def _fetch(self, rel: str) -> Path:
        dest = self.cache_dir / rel
        with self._lock:
            self._scan()
            if dest in self._lru and dest.exists():
                self._lru.move_to_end(dest)
                return dest
        url = self.app_url + FILE_ENDPOINT + urllib.parse.quote(rel)
        req = urllib.request.Request(url, headers={TOKEN_HEADER: self.token})
        dest.parent.mkdir(parents=True, exist_ok=True)
        part = dest.with_name(f"{dest.name}.{threading.get_ident()}.part")
        last: Exception | None = None
        for attempt in range(ATTEMPTS):
            try:
                size = 0
                with urllib.request.urlopen(req, timeout=self.timeout) as resp, open(part, "wb") as out:
                    while block := resp.read(1 << 20):  # streamed: a large file never sits in memory
                        out.write(block)
                        size += len(block)
                os.replace(part, dest)
                break
            except urllib.error.HTTPError as e:
                part.unlink(missing_ok=True)
                detail = e.read(300).decode(errors="replace")
                if e.code in (401, 403, 404):  # asking again will not help
                    raise FetchError(f"{url}: HTTP {e.code} {detail}".strip()) from None
                last = e
            except (OSError, urllib.error.URLError) as e:
                part.unlink(missing_ok=True)
                last = e
            if attempt + 1 < ATTEMPTS:
                time.sleep(0.5 * (attempt + 1))
        else:
            raise FetchError(f"could not fetch {rel} from the app at {self.app_url}: {last}")
        with self._lock:
            old = self._lru.pop(dest, 0)
            self._lru[dest] = size
            self._size += size - old
            self.fetched += 1
            self.fetched_bytes += size
            self._evict(keep=dest)
        return dest

    def _evict(self, keep: Path) -> None:
        while self._size > self.cache_bytes and len(self._lru) > 1:
            victim, size = next(iter(self._lru.items()))
            if victim == keep:
                self._lru.move_to_end(victim)
                continue
            del self._lru[victim]
            self._size -= size
            try:
                victim.unlink()
            except OSError:
                pass

    @property
    def cached_bytes(self) -> int:
        return self._size


_SOURCES: dict[tuple, FileSource] = {}
_SOURCES_LOCK = threading.Lock()


def _shared(root, data_dir, app_url, token, cache_dir, cache_bytes, always_fetch) -> FileSource:
    """One source per configuration in a worker process: its cache bookkeeping is shared by every task."""
    key = (root, str(data_dir), app_url, token, str(cache_dir), cache_bytes, always_fetch)
    with _SOURCES_LOCK:
        if key not in _SOURCES:
            _SOURCES[key] = FileSource(root, data_dir, app_url, token, cache_dir, cache_bytes,
                                       always_fetch=always_fetch)
        return _SOURCES[key]
