"""The Huey instance: SqliteHuey in the data folder, or RedisHuey when workers live on other hosts.

Built from Settings (not at import time), so tests and scripts can point it anywhere. App and workers
register the same tasks by name, so either side can be rebuilt freely.
"""

from __future__ import annotations

from huey import RedisHuey, SqliteHuey

from annotator.settings import Settings

from . import tasks


def make_huey(settings: Settings):
    url = settings.queue_url
    if url and url.startswith(("redis://", "rediss://", "unix://")):
        huey = RedisHuey("auto-annotator", url=url, results=False, utc=True)
    elif url:
        raise ValueError(f"ANNOTATOR_QUEUE_URL={url!r}: only redis:// URLs are supported (default: SQLite)")
    else:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        huey = SqliteHuey("auto-annotator", filename=str(settings.queue_path), results=False, utc=True,
                          timeout=30)
    tasks.register(huey)
    return huey
