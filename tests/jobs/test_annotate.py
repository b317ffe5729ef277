"""The worker's inference loop in-process, with a fake model: OOM fallback, mapping, unreadable images."""

from __future__ import annotations

import numpy as np
import pytest
from huey import MemoryHuey
from PIL import Image

from annotator.types import Box
from jobs.protocol import JobChannel
from jobs.annotate import run_annotation
from jobs.runtime import resolve_device


class _T:
    """Just enough of a torch tensor for jobs.annotate._boxes."""

    def __init__(self, a):
        self.a = np.asarray(a, dtype=float)

    def cpu(self):
        return self

    def numpy(self):
        return self.a


class _Boxes:
    def __init__(self, rows):
        rows = np.asarray(rows, dtype=float).reshape(-1, 6)
        self.xyxy, self.conf, self.cls = _T(rows[:, :4]), _T(rows[:, 4]), _T(rows[:, 5])

    def __len__(self):
        return len(self.xyxy.a)


class _Result:
    def __init__(self, rows):
        self.boxes = _Boxes(rows)


class FakeModel:
    """Predicts one box per class 0..2; runs 'out of memory' above ``max_batch`` images."""

    def __init__(self, max_batch: int):
        self.max_batch = max_batch
        self.calls: list[int] = []

    def predict(self, arrays, **opts):
        self.calls.append(len(arrays))
        if len(arrays) > self.max_batch:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return [_Result([[10, 10, 50, 40, 0.9, 0], [-5, 5, 30, 999, 0.8, 1], [1, 1, 2, 2, 0.3, 2]]) for _ in arrays]


def _images(tmp_path, n):
    out = []
    for i in range(n):
        path = tmp_path / f"{i}.png"
        Image.new("RGB", (64, 48), (i, 0, 0)).save(path)
        out.append((i + 1, str(path)))
    return out


def _drain(huey, job_id=7, attempt=0):
    ch = JobChannel(huey, job_id, attempt)
    chunks, n = [], 0
    while (c := ch.pop_chunk(n)) is not None:
        chunks.append(c)
        n += 1
    logs, k = [], 0
    while (line := ch.pop_log(k)) is not None:
        logs.append(line)
        k += 1
    return chunks, logs, ch.read_done()


def test_cuda_oom_halves_the_batch_and_retries(tmp_path):
    huey = MemoryHuey(utc=True)
    model = FakeModel(max_batch=2)
    images = _images(tmp_path, 9)
    payload = {"job_id": 7, "attempt": 0, "model_path": "fake.pt", "images": images, "conf": 0.25, "iou": 0.7,
               "imgsz": 64, "max_det": 10, "device": "0", "batch": 8, "mapping": {0: 0, 1: 1, 2: None}}
    status = run_annotation(JobChannel(huey, 7, 0), payload, model_loader=lambda path: model)
    assert status == "succeeded"
    chunks, logs, done = _drain(huey)
    assert any("out of memory at batch 8: retrying with batch 4" in line for line in logs)
    assert any("out of memory at batch 4: retrying with batch 2" in line for line in logs)
    assert max(model.calls[model.calls.index(2):]) == 2  # stays at the size that fits
    items = [item for c in chunks for item in c["items"]]
    assert sorted(i for i, _ in items) == [i for i, _ in images]  # every image exactly once
    for _, boxes in items:
        # class 2 is unmapped (skipped); the second box is clamped into the 64x48 image
        got = [Box.from_dict(b) for b in boxes]  # the wire form of a machine box
        assert [(b.class_idx, *b.xyxy, b.confidence, b.source) for b in got] == [
            (0, 10.0, 10.0, 50.0, 40.0, 0.9, "model"), (1, 0.0, 5.0, 30.0, 48.0, 0.8, "model")]
    assert done["status"] == "succeeded" and done["state"]["unmapped"] == 9 and done["state"]["batch"] == 2


def test_oom_at_batch_one_fails_the_job_with_the_reason(tmp_path):
    huey = MemoryHuey(utc=True)
    payload = {"job_id": 7, "attempt": 0, "model_path": "fake.pt", "images": _images(tmp_path, 2), "device": "0",
               "batch": 1, "mapping": {0: 0}}
    assert run_annotation(JobChannel(huey, 7, 0), payload, model_loader=lambda p: FakeModel(max_batch=0)) == "failed"
    _, _, done = _drain(huey)
    assert done["status"] == "failed" and "out of memory" in done["error"]


def test_unreadable_images_are_counted_not_fatal(tmp_path):
    huey = MemoryHuey(utc=True)
    images = _images(tmp_path, 2) + [(99, str(tmp_path / "missing.jpg"))]
    payload = {"job_id": 7, "attempt": 0, "model_path": "fake.pt", "images": images, "device": "cpu",
               "mapping": {0: 0, 1: 0, 2: 0}}
    assert run_annotation(JobChannel(huey, 7, 0), payload, model_loader=lambda p: FakeModel(9)) == "succeeded"
    chunks, logs, done = _drain(huey)
    assert [f for c in chunks for f in c["failed"]] == [99]
    assert done["state"]["failed"] == 1 and any("image 99: could not be read" in line for line in logs)


def test_cancel_flag_stops_between_batches(tmp_path):
    huey = MemoryHuey(utc=True)
    JobChannel(huey, 7, 0).request_cancel()
    payload = {"job_id": 7, "attempt": 0, "model_path": "fake.pt", "images": _images(tmp_path, 3), "device": "cpu",
               "mapping": {0: 0}}
    model = FakeModel(9)
    assert run_annotation(JobChannel(huey, 7, 0), payload, model_loader=lambda p: model) == "cancelled"
    assert model.calls == []


@pytest.mark.parametrize("given,expected", [("cpu", "cpu"), ("0", "0"), ("cuda:1", "cuda:1"), (" CPU ", "cpu")])
def test_resolve_device_passes_explicit_devices(given, expected):
    assert resolve_device(given) == expected


def test_auto_device_is_cpu_without_a_gpu():
    import torch

    assert resolve_device("auto") == ("0" if torch.cuda.is_available() else "cpu")


def test_the_worker_loads_only_a_registered_model_file_that_still_has_its_hash(tmp_path):
    """The app registers a .pt under its SHA-256 after checking what its pickle imports; a worker refuses a
    file whose content no longer matches its name (or one that was never registered) before loading it."""
    import hashlib

    from jobs.runtime import verify_model_file

    content = b"checked weights"
    good = tmp_path / f"{hashlib.sha256(content).hexdigest()}.pt"
    good.write_bytes(content)
    assert verify_model_file(good) == str(good)
    good.write_bytes(b"swapped after the check")
    with pytest.raises(RuntimeError, match="changed since it was registered"):
        verify_model_file(good)
    stray = tmp_path / "best.pt"
    stray.write_bytes(content)
    with pytest.raises(RuntimeError, match="not a registered model file"):
        verify_model_file(stray)


def test_best_conf_is_where_the_val_f1_peaks_within_bounds():
    """The threshold a trained model is run at by default: the peak of its (class-mean, smoothed) F1 curve
    on the val images, kept within 0.1-0.9; no curve, no advice (None), never an error."""
    from types import SimpleNamespace

    import numpy as np

    from jobs.train import best_conf

    px = np.linspace(0, 1, 1000)

    def metrics(peak_at):
        f1 = np.exp(-((px - peak_at) ** 2) / 0.005)
        return SimpleNamespace(box=SimpleNamespace(f1_curve=np.stack([f1, f1 * 0.9]), px=px))

    assert abs(best_conf(metrics(0.42)) - 0.42) <= 0.01
    assert best_conf(metrics(0.97)) == 0.9 and best_conf(metrics(0.01)) == 0.1
    assert best_conf(SimpleNamespace(box=SimpleNamespace(f1_curve=np.zeros((0, 1000)), px=px))) is None
    assert best_conf(SimpleNamespace()) is None
