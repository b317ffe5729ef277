"""How a worker and the app talk about one job, through the queue's own key-value storage.

Works the same on SqliteHuey and RedisHuey, so a worker on another host needs the queue and the data
folder, never the database. Keys are per job AND per attempt, so a resumed job never mixes its results
with a dead attempt's leftovers.

    worker writes                           app reads
    progress   (overwritten, also the heartbeat)   peek
    chunk:<n>  (numbered 0, 1, 2 ...)              pop in order, commit to DuckDB, then the next
    log:<n>    (numbered lines)                    pop in order, appended to the job's log
    done       {status, error, chunks, counters, result}   peek; the job ends once every chunk is in
    app writes: cancel                             worker peeks between batches
"""

from __future__ import annotations

import time
from typing import Any


class JobChannel:
    def __init__(self, huey, job_id: int, attempt: int):
        self.huey = huey
        self.prefix = f"aa:job:{int(job_id)}:{int(attempt)}:"
        self._chunk = 0
        self._log = 0

    def _k(self, name: str) -> str:
        return self.prefix + name

    # --- worker side ----------------------------------------------------------------------------------
    def progress(self, **state: Any) -> None:
        self.huey.put(self._k("progress"), {**state, "ts": time.time()})

    def send_chunk(self, items: list, failed: list | None = None) -> None:
        self.huey.put(self._k(f"chunk:{self._chunk}"), {"items": items, "failed": failed or []})
        self._chunk += 1

    def log(self, line: str) -> None:
        self.huey.put(self._k(f"log:{self._log}"), f"{time.strftime('%H:%M:%S')} {line}")
        self._log += 1

    def finish(self, status: str, error: str | None = None, result: dict | None = None, **counters: Any) -> None:
        """The last word of an attempt. ``result``: what the app turns into rows (e.g. a trained model)."""
        self.huey.put(self._k("done"), {"status": status, "error": error, "chunks": self._chunk,
                                        "logs": self._log, "counters": counters, "result": result,
                                        "ts": time.time()})

    def cancel_requested(self) -> bool:
        return bool(self.huey.get(self._k("cancel"), peek=True))

    # --- app side -------------------------------------------------------------------------------------
    def request_cancel(self) -> None:
        self.huey.put(self._k("cancel"), True)

    def read_progress(self) -> dict | None:
        return self.huey.get(self._k("progress"), peek=True)

    def pop_chunk(self, n: int) -> dict | None:
        return self.huey.get(self._k(f"chunk:{n}"))

    def pop_log(self, n: int) -> str | None:
        return self.huey.get(self._k(f"log:{n}"))

    def read_done(self) -> dict | None:
        return self.huey.get(self._k("done"), peek=True)

    def clear(self) -> None:
        for name in ("progress", "done", "cancel"):
            self.huey.delete(self._k(name))
