"""What the app and the workers share, and the ONLY module both sides of the queue import: task names, the
payload each task gets, the manifest a training job reads, the shape of result chunks, the JobChannel
through which one job reports, and the table where workers announce themselves. Imports nothing of ours.

How a worker and the app talk about one job, through the queue's own key-value storage.

Works the same on SqliteHuey and RedisHuey, so a worker on another host needs the queue and the data
folder, never the database. Keys are per job AND per attempt, so a resumed job never mixes its results
with a dead attempt's leftovers. An auto-annotation job is split into shards (ANNOTATOR_SHARD_IMAGES, 256
images each), one task per shard, so any number of workers share it: each shard (and each try of it, when a
dead worker's shard is given to another) reports on keys of its own, ``aa:job:<id>:<attempt>:s<shard>.<try>:``;
the cancel key is the job's (per attempt), so one request reaches every shard.

    worker writes                           app reads
    progress   (overwritten, also the heartbeat)   peek
    chunk:<n>  (numbered 0, 1, 2 ...)              pop in order, commit to DuckDB, then the next
    log:<n>    (numbered lines)                    pop in order, appended to the job's log
    done       {status, error, chunks, logs, state, result}   peek; the job ends once every chunk is in
    app writes: cancel                             worker peeks between batches
"""

from __future__ import annotations

import time
from typing import Any, TypedDict

# --- tasks and their payloads ------------------------------------------------------------------------------
ANNOTATE = "annotate"
TRAIN = "train"
EVALUATE = "evaluate"
MANIFEST = "manifest.json"  # in the job folder of a training or evaluation job


class AnnotatePayload(TypedDict, total=False):
    job_id: int
    attempt: int
    shard: int  # which shard of the job (absent: the whole job on one channel, as before shards)
    retry: int  # the shard's try: 0, then 1, 2 ... each time a dead worker's shard is given to another
    model_path: str
    model_name: str
    images: list  # [image id, stored file path, width, height]
    root: str  # the app's data folder: a worker without it fetches the files (jobs/fetch.py)
    conf: float
    iou: float
    imgsz: int
    max_det: int
    device: str
    batch: int  # 0 = auto
    mapping: dict  # model class index -> project class index, or None to skip
    track: dict  # tracking of video frames: {"video_of": {image id: video id}, "frame_rate": {video id: fps}}


class TrainPayload(TypedDict):
    job_id: int
    attempt: int
    job_dir: str  # holds MANIFEST; the worker writes dataset/ and run/ here
    class_names: list
    base: dict  # {"kind": "model", "path", "name"} or {"kind": "arch", "name": "yolov8n.yaml"}
    parent_eval: bool  # also validate the base model on the same val images
    onnx: bool
    parent_imgsz: int
    train: dict  # imgsz, epochs, batch (-1 = auto), optimizer, lr0, patience, device, workers, seed


class EvaluatePayload(TypedDict):
    job_id: int
    attempt: int
    job_dir: str
    model_path: str
    model_name: str
    class_names: list  # the model's
    imgsz: int
    device: str
    batch: int


class ManifestImage(TypedDict):
    id: int
    file_name: str  # unique within its split
    width: int
    height: int
    split: str
    source: str  # the stored image file
    boxes: list  # Box.as_dict() of each box (class_idx in the manifest's class_names)
    dataset: str  # the dataset it belongs to (a training scores the model on each one's val images)


class Manifest(TypedDict):
    class_names: list
    images: list  # ManifestImage
    val_fingerprint: dict  # splits.fingerprint of the val images, computed by the app


# Result chunks. annotate: {"items": [[image id, [Box.as_dict() with class_idx, corners, confidence]]],
# "failed": [image ids that could not be read]}. train: {"items": [epoch row, or {"restart": True, "batch"}]}.


class JobChannel:
    """One job attempt's keys; with ``shard`` (and its ``retry``, the try) one shard's own keys, the cancel
    key staying the job's."""

    def __init__(self, huey, job_id: int, attempt: int, shard: int | None = None, retry: int = 0):
        self.huey = huey
        self.job_prefix = f"aa:job:{int(job_id)}:{int(attempt)}:"
        self.prefix = self.job_prefix + ("" if shard is None else f"s{int(shard)}.{int(retry)}:")
        self._tag = "" if shard is None else f"[shard {int(shard)}] "  # each log line says whose it is
        self._chunk = 0
        self._log = 0

    @classmethod
    def for_payload(cls, huey, payload: dict) -> "JobChannel":
        return cls(huey, payload["job_id"], payload["attempt"], payload.get("shard"), int(payload.get("retry") or 0))

    def _k(self, name: str) -> str:
        return self.prefix + name

    # --- worker side ----------------------------------------------------------------------------------
    def progress(self, **state: Any) -> None:
        self.huey.put(self._k("progress"), {**state, "ts": time.time()})

    def send_chunk(self, items: list, failed: list | None = None) -> None:
        self.huey.put(self._k(f"chunk:{self._chunk}"), {"items": items, "failed": failed or []})
        self._chunk += 1

    def log(self, line: str) -> None:
        self.huey.put(self._k(f"log:{self._log}"), f"{time.strftime('%H:%M:%S')} {self._tag}{line}")
        self._log += 1

    def finish(self, status: str, error: str | None = None, result: dict | None = None, **state: Any) -> None:
        """The last word of an attempt. ``result``: what the app turns into rows (e.g. a trained model);
        ``state``: the runner's final progress snapshot."""
        self.huey.put(self._k("done"), {"status": status, "error": error, "chunks": self._chunk,
                                        "logs": self._log, "state": state, "result": result,
                                        "ts": time.time()})

    def cancel_requested(self) -> bool:
        return bool(self.huey.get(self.job_prefix + "cancel", peek=True))

    # --- app side -------------------------------------------------------------------------------------
    def request_cancel(self) -> None:
        self.huey.put(self.job_prefix + "cancel", True)

    def read_progress(self) -> dict | None:
        return self.huey.get(self._k("progress"), peek=True)

    def pop_chunk(self, n: int) -> dict | None:
        return self.huey.get(self._k(f"chunk:{n}"))

    def pop_log(self, n: int) -> str | None:
        return self.huey.get(self._k(f"log:{n}"))

    def read_done(self) -> dict | None:
        return self.huey.get(self._k("done"), peek=True)

    def clear(self, cancel: bool = False) -> None:
        """Drop this channel's markers (progress, done; chunks and log lines are popped as they are read), and
        with ``cancel`` the job's cancel key: an ended job leaves nothing behind in the queue's storage."""
        for name in ("progress", "done"):
            self.huey.delete(self._k(name))
        if cancel:
            self.huey.delete(self.job_prefix + "cancel")


# --- files over HTTP, for a worker without the data folder (jobs/fetch.py; the app: annotator/worker_files.py)
FILE_ENDPOINT = "/aa-worker/v1/file/"  # + the file's path relative to the app's data folder
TOKEN_HEADER = "X-Annotator-Worker-Token"  # its value: ANNOTATOR_WORKER_TOKEN, the same on the app and workers


# --- workers announce themselves ---------------------------------------------------------------------------
WORKERS_KEY = "aa:workers"


def announce(huey, worker_id: str, info: dict) -> None:
    """Read-modify-write of the worker table: a lost race only drops an entry until the next beat."""
    table = huey.get(WORKERS_KEY, peek=True) or {}
    now = time.time()
    table = {k: v for k, v in table.items() if now - v.get("ts", 0) < 60}
    table[worker_id] = {**info, "ts": now}
    huey.put(WORKERS_KEY, table)


def live_workers(huey, max_age: float = 15.0) -> list[dict]:
    table = huey.get(WORKERS_KEY, peek=True) or {}
    now = time.time()
    return [v for v in table.values() if now - v.get("ts", 0) < max_age]
