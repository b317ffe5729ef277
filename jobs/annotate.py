"""Auto-annotation in a worker: images in, machine boxes out, through a JobChannel. Never opens DuckDB.

A prefetch pool decodes images (OpenCV releases the GIL) while the model runs, as many ahead as fit the
prefetch budget of decoded bytes (ANNOTATOR_PREFETCH_BUDGET_MB; a huge image is read alone), the model is loaded once
per worker process, CUDA out-of-memory halves the batch and retries, cancel is checked between
batches, and a heartbeat thread keeps reporting even while the model loads.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable

from annotator import pixels
from annotator.geometry import clamp_xyxy, has_area
from annotator.settings import Settings, _env_int
from annotator.types import Box

from .fetch import FetchError, FileSource
from .protocol import JobChannel
from .runtime import WORKER_ID, FreeCores, is_oom, run_attempt, verify_model_file, worker_device

CPU_BATCH = 8  # on CPU, batches of 8 beat batch 1 by ~25% (bench/auto_annotate.py)
# ultralytics sets torch to min(8, cores - 1) threads when it builds a predictor: one thread on a 2-core
# machine. Inference is ~93% of a job's time, so use every core (at most 8) unless told otherwise.
CPU_THREADS = int(os.environ.get("ANNOTATOR_CPU_THREADS") or 0) or min(8, os.cpu_count() or 1)
# Results go to the app every CHUNK_SECONDS, or sooner once CHUNK_IMAGES are in hand. The app commits a chunk in
# one transaction (~20 ms whatever its size), so a fast worker must not send small ones: with 32 images a chunk,
# 4 workers with an instant model got 1,373 images/s committed; with 256, 7,060 (bench/scale.py, 100k images).
CHUNK_IMAGES = 256
CHUNK_SECONDS = 1.0

_models: dict[tuple[str, float], Any] = {}
_models_lock = threading.Lock()


def load_model(path: str):
    """The ultralytics model for ``path``, loaded once per worker (reloaded if the file changes)."""
    from ultralytics import YOLO

    key = (path, os.path.getmtime(path))
    with _models_lock:
        if key not in _models:
            _models.clear()  # one model resident at a time: GPU memory is the scarce thing
            _models[key] = YOLO(verify_model_file(path), task="detect")
        return _models[key]


@dataclass
class _State:
    stage: str = "loading model"
    done: int = 0
    total: int = 0
    boxes: int = 0
    unmapped: int = 0
    failed: int = 0
    batch: int = 1
    device: str = "cpu"
    started: float = field(default_factory=time.time)
    first_image_at: float | None = None

    def snapshot(self) -> dict:
        elapsed = time.time() - (self.first_image_at or time.time())
        ips = self.done / elapsed if self.done and elapsed > 0 else 0.0
        eta = (self.total - self.done) / ips if ips else None
        return {"stage": self.stage, "done": self.done, "total": self.total, "boxes": self.boxes,
                "unmapped": self.unmapped, "failed": self.failed, "batch": self.batch, "device": self.device,
                "ips": round(ips, 2), "eta_s": None if eta is None else round(eta, 1), "worker": WORKER_ID}


def run_annotation(channel: JobChannel, payload: dict, model_loader: Callable[[str], Any] = load_model) -> str:
    """Run one auto-annotation attempt; report everything through ``channel``. Returns the final status."""
    images: list[tuple] = [tuple(x) for x in payload["images"]]  # (id, path[, width, height])
    mapping: dict[int, int | None] = {int(k): v for k, v in payload["mapping"].items()}
    state = _State(total=len(images), device=worker_device(payload.get("device")))
    return run_attempt(channel, state,
                       lambda: (_annotate(channel, payload, images, mapping, state, model_loader), None, None))


def _annotate(channel, payload, images, mapping, state: _State, model_loader) -> str:
    import cv2

    device = state.device
    if channel.cancel_requested():  # cancelled while it waited in the queue: no model load
        channel.log("cancelled before it started")
        return "cancelled"
    again = f" (try {int(payload['retry']) + 1})" if payload.get("retry") else ""
    channel.log(f"worker {WORKER_ID}{again}: {len(images)} image(s), device {device}, "
                f"model {payload.get('model_name') or os.path.basename(payload['model_path'])}")
    source = FileSource.for_payload(payload)  # the data folder, or the app over HTTP (jobs/fetch.py)
    fetched_before = source.fetched, source.fetched_bytes
    model = model_loader(source.local(payload["model_path"]))
    bs = int(payload.get("batch") or 0) or (CPU_BATCH if device == "cpu" else 16)
    state.batch = bs
    opts = dict(conf=float(payload.get("conf", 0.25)), iou=float(payload.get("iou", 0.7)),
                imgsz=int(payload.get("imgsz") or 640), max_det=int(payload.get("max_det", 300)),
                device=device, verbose=False)
    if device not in ("cpu", "mps"):
        opts["quantize"] = 16  # FP16 on CUDA (ultralytics 8.4 replaced `half` with `quantize`)
    state.stage = "running"

    pending: list = []
    failed: list[int] = []
    last_flush = time.time()
    tracks = _Tracks(payload) if payload.get("track") else None

    def flush(force: bool = False):
        nonlocal pending, failed, last_flush
        if (pending or failed) and (force or len(pending) >= CHUNK_IMAGES or time.time() - last_flush >= CHUNK_SECONDS):
            channel.send_chunk(pending, failed)
            pending, failed = [], []
            last_flush = time.time()

    def read(item):
        image_id, path = item[0], item[1]
        try:
            path = source.local(path)
        except FetchError as e:
            channel.log(f"image {image_id}: {e}")
            return image_id, None
        return image_id, cv2.imread(path, cv2.IMREAD_COLOR)

    def run_batch(batch) -> None:  # the batch's arrays (and results holding them) are freed on return
        good = []
        for image_id, arr in batch:
            if arr is None:
                failed.append(image_id)
                state.failed += 1
                channel.log(f"image {image_id}: could not be read")
            else:
                good.append((image_id, arr))
        results = _predict(model, [a for _, a in good], bs, opts, channel, state) if good else []
        if state.first_image_at is None:
            state.first_image_at = time.time()
        for (image_id, arr), r in zip(good, results):
            boxes = _boxes(r, mapping, arr.shape[1], arr.shape[0], state)
            if tracks is not None:
                tracks.assign(image_id, boxes)
            pending.append((image_id, boxes))
        state.done += len(batch)

    # Reading overlaps inference: up to ``lookahead`` images are decoded ahead, as long as the decoded
    # pixels ahead and in the batch being predicted fit the prefetch budget (one image larger than the
    # budget is read alone). Sizes come from the files' headers, before decoding.
    lookahead = max(2 * bs, 8)
    budget = prefetch_budget()
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="prefetch") as pool:
        queue: deque = deque()  # (future, decoded bytes)
        it = iter(images)
        nxt = next(it, None)
        nxt_cost = _decoded_size(nxt) if nxt else 0
        held = 0  # decoded bytes queued or in the batch being predicted

        def fill() -> None:
            nonlocal nxt, nxt_cost, held
            while nxt is not None and len(queue) < lookahead and (held == 0 or held + nxt_cost <= budget):
                queue.append((pool.submit(read, nxt), nxt_cost))
                held += nxt_cost
                nxt = next(it, None)
                nxt_cost = _decoded_size(nxt) if nxt else 0

        fill()
        while queue:
            if channel.cancel_requested():
                flush(force=True)
                channel.log(f"cancelled after {state.done} of {state.total} image(s)")
                return "cancelled"
            batch, cost = [], 0
            while queue and len(batch) < bs:
                fut, c = queue.popleft()
                batch.append(fut.result())
                cost += c
                del fut  # a future keeps its result: the array would outlive its batch
                fill()
            run_batch(batch)
            del batch
            held -= cost
            fill()
            flush()
    flush(force=True)
    fetched = source.fetched - fetched_before[0]
    over_http = (f"; {fetched} file(s), {(source.fetched_bytes - fetched_before[1]) / 2**20:.1f} MB fetched from the app"
                 if fetched else "")
    channel.log(f"done: {state.done} image(s), {state.boxes} box(es), {state.unmapped} unmapped prediction(s) "
                f"skipped, {state.failed} unreadable{over_http}")
    return "succeeded"


class _Tracks:
    """Track ids for the machine boxes of a job's video frames (payload ``track``: {"video_of": image id ->
    video id, "frame_rate": video id -> rate of its sampled frames}): one ByteTrack per video
    (jobs/tracking.py), fed the frames in order (the app sends a video's frames in order, in one shard).
    Ids are offset by ``base`` (the attempt and try), so a resumed or retried video's new tracker never reuses
    an id of the frames an earlier try committed. A track confirmed on its second frame names its first one
    (FrameTracker.backfill): that frame's box gets the id too while it is still waiting in the chunk."""

    def __init__(self, payload: dict):
        from .tracking import require_lap

        require_lap()
        spec = payload["track"]
        self.video_of = {int(k): int(v) for k, v in spec.get("video_of", {}).items()}
        self.rates = {int(k): float(v) for k, v in spec.get("frame_rate", {}).items()}
        self.base = (int(payload.get("attempt", 0)) * 16 + int(payload.get("retry", 0))) * TRACK_ID_SPAN
        self.trackers: dict[int, Any] = {}
        self.frames: dict[int, list[list[dict]]] = {}  # video -> its frames' box lists, in update order

    def assign(self, image_id: int, boxes: list[dict]) -> None:
        import numpy as np

        from .tracking import NO_ID, FrameTracker

        video = self.video_of.get(int(image_id))
        if video is None:  # a still image in a tracking job
            return
        tracker = self.trackers.get(video)
        if tracker is None:
            tracker = self.trackers[video] = FrameTracker(frame_rate=self.rates.get(video) or 30.0)
        xyxy = np.array([[b["x1"], b["y1"], b["x2"], b["y2"]] for b in boxes], dtype=np.float64).reshape(-1, 4)
        conf = np.array([b["confidence"] or 0.0 for b in boxes], dtype=np.float64)
        cls = np.array([b["class_idx"] for b in boxes], dtype=np.int64)
        ids = tracker.update(xyxy, conf, cls)
        for b, t in zip(boxes, ids.tolist()):
            b["track_id"] = self.base + int(t) if t != NO_ID else None
        history = self.frames.setdefault(video, [])
        history.append(boxes)
        for frame, row, t in tracker.backfill:
            if 0 <= frame < len(history) and row < len(history[frame]):
                history[frame][row]["track_id"] = self.base + int(t)
        if len(history) > 4:  # backfill names the frame before: older ones are never touched again
            history[-5] = []


TRACK_ID_SPAN = 1_000_000  # track ids of one try of a job's shard: base + 1, 2, ...


def prefetch_budget() -> int:
    """Bytes of decoded images a worker holds ahead of inference (ANNOTATOR_PREFETCH_BUDGET_MB)."""
    return _env_int(os.environ, "ANNOTATOR_PREFETCH_BUDGET_MB", Settings.prefetch_budget_mb, 1) << 20


def _decoded_size(item: tuple) -> int:
    """What cv2.imread(path, IMREAD_COLOR) will take (3 bytes a pixel): from the size the app sent with the
    image, else from the file's header. A header PIL cannot read counts as the whole budget (the image is
    read alone: it is most likely unreadable, which the read reports as before)."""
    import warnings

    from PIL import Image

    if len(item) >= 4 and item[2] and item[3]:
        return pixels.decoded_bytes(int(item[2]), int(item[3]), 3)
    path = item[1]

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                w, h = im.size
    except Exception:  # noqa: BLE001 - the real read reports it
        return prefetch_budget()
    return pixels.decoded_bytes(w, h, 3)


def _predict(model, arrays: list, bs: int, opts: dict, channel: JobChannel, state: _State) -> list:
    """Predict ``arrays`` in batches of ``state.batch``; on CUDA out-of-memory halve it and retry."""
    out: list = []
    i = 0
    while i < len(arrays):
        size = state.batch
        try:
            _use_cpu_threads(opts["device"])
            out.extend(model.predict(arrays[i:i + size], **opts))
            _forget_inputs(model)
            i += size
        except Exception as e:  # noqa: BLE001
            if not is_oom(e) or size <= 1:
                raise
            state.batch = max(1, size // 2)
            channel.log(f"CUDA out of memory at batch {size}: retrying with batch {state.batch}")
            try:
                import torch

                torch.cuda.empty_cache()
            except Exception:  # noqa: BLE001
                pass
    return out


def _forget_inputs(model) -> None:
    """ultralytics' predictor keeps its last batch (its source, batch and results hold the decoded arrays)
    until the next call: drop them, so that a batch's images go when the batch is done and the prefetch
    budget is what the worker holds (12 huge PNGs: 2.2 GB peak with them kept)."""
    predictor = getattr(model, "predictor", None)
    for name in ("batch", "dataset", "results"):
        if predictor is not None and hasattr(predictor, name):
            setattr(predictor, name, None)


_FREE: FreeCores | None = None


def cpu_threads() -> int:
    """The torch threads for the next CPU batch: ANNOTATOR_CPU_THREADS when set; else every core (at most 8)
    that other processes leave free (runtime.FreeCores): with a training holding one of 2 cores, 2 threads
    ran slower than 1."""
    global _FREE
    if os.environ.get("ANNOTATOR_CPU_THREADS"):
        return CPU_THREADS
    if _FREE is None:
        _FREE = FreeCores(os.cpu_count() or 1)
    return _FREE.threads(CPU_THREADS)


def _use_cpu_threads(device: str) -> None:
    """Undo ultralytics' per-predictor thread cap on CPU (it is re-applied whenever a predictor is built), and
    follow the cores other processes leave free."""
    if device != "cpu":
        return
    try:
        import torch

        want = cpu_threads()
        if torch.get_num_threads() != want:
            torch.set_num_threads(want)
    except ImportError:  # a fake model in tests: nothing to tune
        pass


def _boxes(result, mapping: dict[int, int | None], width: int, height: int, state: _State) -> list[dict]:
    """ultralytics Results -> machine boxes (Box wire form) in project classes, clamped to the image."""
    b = result.boxes
    if b is None or len(b) == 0:
        return []
    xyxy = b.xyxy.cpu().numpy().tolist()
    cls = b.cls.cpu().numpy().astype(int).tolist()
    conf = b.conf.cpu().numpy().tolist()
    out = []
    for corners, c, p in zip(xyxy, cls, conf):
        target = mapping.get(int(c))
        if target is None:
            state.unmapped += 1
            continue
        x1, y1, x2, y2 = clamp_xyxy(corners, width, height)
        if not has_area((x1, y1, x2, y2)):
            continue
        out.append(Box(float(x1), float(y1), float(x2), float(y2), class_idx=int(target),
                       confidence=round(float(p), 5), source="model").as_dict())
    state.boxes += len(out)
    return out
