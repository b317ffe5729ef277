"""Shared helpers for the benchmarks. Imports nothing of ours: each script sets ANNOTATOR_DATA_DIR first.

Benchmarks print figures; they never assert timings.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Sequence

REPO = Path(__file__).resolve().parent.parent


def use_repo_package() -> None:
    """Make ``import annotator`` work when a script is run as ``python bench/x.py`` from anywhere."""
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))


@contextmanager
def temp_workdir(prefix: str, keep: bool = False, parent: str | None = None) -> Iterator[Path]:
    """A fresh temp folder (never the repo's data/), removed afterwards unless ``keep``."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    try:
        yield path
    finally:
        if keep:
            print(f"(kept {path})")
        else:
            shutil.rmtree(path, ignore_errors=True)


def set_data_dir(path: Path) -> Path:
    """Point the app at ``path``; call before importing annotator (and again per fresh repetition)."""
    path.mkdir(parents=True, exist_ok=True)
    os.environ["ANNOTATOR_DATA_DIR"] = str(path)
    return path


def app_settings(data_dir: Path, **env: str):
    """Settings for an app a bench launches: its own data folder, no demo project, no local worker, a free
    port; ``env`` adds ANNOTATOR_* variables. Call after use_repo_package()."""
    import socket

    from annotator.settings import Settings

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return Settings.from_env({"ANNOTATOR_DATA_DIR": str(data_dir), "ANNOTATOR_DEMO": "0", "ANNOTATOR_LOCAL_WORKER": "0",
                              **env}).with_overrides(port=port)


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank-with-interpolation percentile (q in 0..100), no numpy needed."""
    xs = sorted(values)
    if not xs:
        return float("nan")
    if len(xs) == 1:
        return xs[0]
    k = (len(xs) - 1) * q / 100.0
    lo = int(k)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def time_calls(fn: Callable[[int], object], reps: int, warmup: int = 2) -> dict:
    """Call ``fn(i)`` ``reps`` times (after ``warmup`` untimed calls); return ms statistics."""
    for i in range(warmup):
        fn(-1 - i)
    samples = []
    for i in range(reps):
        t = time.perf_counter()
        fn(i)
        samples.append((time.perf_counter() - t) * 1000.0)
    return {
        "p50_ms": round(percentile(samples, 50), 3),
        "p95_ms": round(percentile(samples, 95), 3),
        "min_ms": round(min(samples), 3),
        "max_ms": round(max(samples), 3),
        "mean_ms": round(statistics.fmean(samples), 3),
        "reps": reps,
    }


def best_of(fn: Callable[[int], float], reps: int) -> tuple[float, list[float]]:
    """``fn(i)`` returns the seconds of one repetition; return (best, all)."""
    runs = [fn(i) for i in range(reps)]
    return min(runs), runs


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [[str(h) for h in headers]] + [[_fmt(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = []
    for n, r in enumerate(cells):
        lines.append("  ".join(c.rjust(w) if n and _numeric(c) else c.ljust(w) for c, w in zip(r, widths)).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _fmt(v: object) -> str:
    if isinstance(v, float):
        if v != v:
            return "n/a"
        if abs(v) >= 100:
            return f"{v:,.0f}"
        if abs(v) >= 10:
            return f"{v:.1f}"
        return f"{v:.2f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def _numeric(s: str) -> bool:
    return s.replace(",", "").replace(".", "").replace("-", "").replace("x", "").replace("%", "").isdigit()


def machine() -> dict:
    return {
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
        "cpus": os.cpu_count(),
    }


def emit_result(payload: dict) -> None:
    """The one machine-readable line every benchmark ends with."""
    print("RESULT " + json.dumps(payload, sort_keys=True, default=str), flush=True)


def add_image_rows(store, project_id: int, real: Sequence, count: int, tag: str, chunk: int = 20_000) -> list[int]:
    """``count`` more image ROWS in the project, pointing round robin at the stored files of ``real`` (image
    records already added), each with its own rel_path and sha256: a large project without generating its
    images (bench/editor.py, export.py, scale.py). Returns their ids."""
    import hashlib

    rows = [{"rel_path": f"batch{k // 1000:03d}/IMG_{k:06d}.jpg",
             "sha256": hashlib.sha256(f"{tag}/{k}".encode()).hexdigest(),
             "file": src.file, "thumb": src.thumb, "width": src.width, "height": src.height,
             "format": src.format, "size_bytes": src.size_bytes}
            for k, src in ((k, real[k % len(real)]) for k in range(count))]
    ids: list[int] = []
    for at in range(0, len(rows), chunk):
        part = rows[at:at + chunk]
        ids += store.add_images(project_id, "bulk", part, {"source": f"{tag}-rows", "added": len(part),
                                                           "duplicates": 0, "skipped": 0}, "bench")
    return ids
