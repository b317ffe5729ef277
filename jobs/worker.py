"""A worker process: `python -m annotator worker` (the app starts one as its child unless told not to).

Thread workers, because ultralytics starts DataLoader processes and Huey's process workers are daemonic.
Every few seconds the worker announces itself (with its torch/CUDA facts) in the queue's storage.
"""

from __future__ import annotations

import logging
import threading
import time

from annotator.settings import Settings

from .inference import WORKER_ID, system_info
from .queue import make_huey

WORKERS_KEY = "aa:workers"
ANNOUNCE_S = 3.0


def announce(huey, info: dict) -> None:
    """Read-modify-write of the worker table: a lost race only drops an entry until the next beat."""
    table = huey.get(WORKERS_KEY, peek=True) or {}
    now = time.time()
    table = {k: v for k, v in table.items() if now - v.get("ts", 0) < 60}
    table[WORKER_ID] = {**info, "ts": now}
    huey.put(WORKERS_KEY, table)


def live_workers(huey, max_age: float = 15.0) -> list[dict]:
    table = huey.get(WORKERS_KEY, peek=True) or {}
    now = time.time()
    return [v for v in table.values() if now - v.get("ts", 0) < max_age]


def run_worker(settings: Settings, workers: int = 1) -> None:
    settings.prepare()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s worker %(levelname)s %(message)s")
    huey = make_huey(settings)
    info = system_info(settings.device)
    logging.info("worker %s: torch %s, CUDA %s, device %s", WORKER_ID, info.get("torch"),
                 info.get("cuda_available"), info.get("device"))

    def beat():
        while True:
            try:
                announce(huey, info)
            except Exception:  # noqa: BLE001 - the queue may be briefly locked; try again next beat
                logging.exception("announce failed")
            time.sleep(ANNOUNCE_S)

    threading.Thread(target=beat, name="announce", daemon=True).start()
    consumer = huey.create_consumer(workers=workers, worker_type="thread", periodic=False,
                                    initial_delay=0.1, backoff=1.15, max_delay=1.0, check_worker_health=True)
    consumer.run()
