"""Sharded auto-annotation with several worker processes (`annotator worker --devices cpu,cpu`, as on a host
with two GPUs): every process takes shards of the same job, a killed one's shard goes to another without
duplicate boxes, and cancel reaches every shard. Plus the argument plumbing of --devices (no GPU needed)."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

import pytest

from annotator.demo import scenes
from annotator.launch import start_jobs
from annotator.services import Services
from annotator.settings import Settings
from jobs.runtime import WORKER_DEVICE_ENV, WORKER_GPU_ENV, worker_device
from jobs.worker import device_env, parse_devices

from ..support import wait_for_job, wait_for_workers, worker_process

MODEL = Path(os.environ.get("ANNOTATOR_TEST_MODEL") or scenes.DEMO_MODEL_PATH)


def test_shards_are_equal_and_spread_over_the_live_workers():
    from annotator.services.annotation import MIN_SHARD, shard_size

    assert shard_size(200, 256, 1) == 200  # one worker: one shard under the limit
    assert shard_size(300, 256, 1) == 150  # equal halves, not 256 + 44
    assert shard_size(200, 256, 2) == 50  # two workers: two shards each
    assert shard_size(100_000, 256, 4) == 256
    assert shard_size(10, 256, 3) == 10  # never split below MIN_SHARD images
    assert shard_size(2 * MIN_SHARD, 256, 8) == MIN_SHARD


def test_devices_spec_names_one_process_per_device():
    assert parse_devices("all", gpu_count=3) == ["0", "1", "2"]
    assert parse_devices("0, 2", gpu_count=3) == ["0", "2"]
    assert parse_devices("cpu,cpu", gpu_count=0) == ["cpu", "cpu"]
    with pytest.raises(ValueError, match="no CUDA GPU"):
        parse_devices("all", gpu_count=0)
    with pytest.raises(ValueError, match="GPU 4 is not on this host"):
        parse_devices("0,4", gpu_count=2)
    with pytest.raises(ValueError, match="'gpu1' is neither"):
        parse_devices("gpu1", gpu_count=2)


def test_a_gpu_worker_process_sees_only_its_gpu_and_auto_means_it(monkeypatch):
    env = device_env("2")
    assert env["CUDA_VISIBLE_DEVICES"] == "2" and env[WORKER_GPU_ENV] == "2" and env[WORKER_DEVICE_ENV] == "0"
    assert device_env("cpu")["CUDA_VISIBLE_DEVICES"] == ""
    monkeypatch.setenv(WORKER_DEVICE_ENV, "0")
    assert worker_device("auto") == "0" and worker_device(None) == "0"
    assert worker_device("cpu") == "cpu"  # a job that asks for the CPU gets it
    assert worker_device("1") == "0" and worker_device("0,1") == "0"  # any GPU: the one this process sees
    monkeypatch.setenv(WORKER_DEVICE_ENV, "cpu")
    assert worker_device("auto") == "cpu"


# --- real worker processes ---------------------------------------------------------------------------------
@contextlib.contextmanager
def two_process_world(tmp_path, shard_images: int):
    """The app's side (services + monitor, no local worker) and `annotator worker --devices cpu,cpu`."""
    env = {"ANNOTATOR_DATA_DIR": str(tmp_path / "data"), "ANNOTATOR_STALE_AFTER_S": "4", "ANNOTATOR_DEVICE": "cpu",
           "ANNOTATOR_SHARD_IMAGES": str(shard_images)}
    services = Services.open(Settings.from_env(env))
    monitor = start_jobs(services, local_worker=False, interval=0.2)
    try:
        with worker_process(tmp_path / "workers.log", env, "--devices", "cpu,cpu") as sup:
            wait_for_workers(services, count=2, log=tmp_path / "workers.log")
            yield services, sup
    finally:
        monitor.stop()
        services.close()


def _project(services: Services, tmp_path: Path, n: int):
    folder = tmp_path / "src"
    scenes.write_scenes(folder, range(70_000, 70_000 + n), name="scene_{i:03d}.jpg")
    p = services.projects.create_project("Shapes", list(scenes.CLASSES))
    services.images.add_images(p, [folder], dataset="scenes")
    services.models.add_model(p, MODEL, name="demo-shapes")
    return p


def _boxes(services: Services, p) -> dict[int, list]:
    """image id -> its machine boxes (class, corners to 0.01 px), sorted."""
    out = {}
    for img in services.ctx.store.list_images(p.id, offset=0, limit=10_000):
        out[img.id] = sorted((b.class_idx, *(round(v, 2) for v in b.xyxy))
                             for b in services.ctx.store.boxes_for_image(img.id) if b.source == "model")
    return out


def _left_in_queue(services: Services, job_id: int) -> list[str]:
    """The job's keys still in the queue's storage."""
    return sorted(k for k in services.ctx.queue.storage.result_items() if k.startswith(f"aa:job:{job_id}:"))


@pytest.mark.slow
def test_two_worker_processes_share_a_job_and_survive_a_kill(tmp_path):
    with two_process_world(tmp_path, shard_images=16) as (services, _):
        p = _project(services, tmp_path, 64)
        job = services.annotation.start_annotation(p, "demo-shapes", imgsz=640)
        assert len(services.ctx.store.job_shards(job.id, 0)) == 4
        job = wait_for_job(services, job.id, lambda j: not j.active)
        assert job.status == "succeeded", job.error
        workers = job.live["workers"]
        assert len(workers) == 2 and all(w["images"] > 0 for w in workers), workers  # both took shards
        assert sum(w["images"] for w in workers) == 64 and job.result["images"] == 64
        reference = _boxes(services, p)
        assert sum(map(len, reference.values())) > 64

        # Again (re-running replaces machine boxes), killing a worker process in the middle of a shard: one
        # with at least half of its 16 images still to do (~0.1 s an image at 640 on one thread).
        job = services.annotation.start_annotation(p, "demo-shapes", imgsz=640)

        def mid_shard(j) -> bool:
            return any(s.status == "running" and s.worker and s.done <= 8
                       for s in services.ctx.store.job_shards(j.id, 0, with_images=False))

        wait_for_job(services, job.id, mid_shard)
        victim = next(s.worker for s in services.ctx.store.job_shards(job.id, 0, with_images=False)
                      if s.status == "running" and s.worker and s.done <= 8)
        os.kill(int(victim.rsplit(":", 1)[1]), signal.SIGKILL)
        job = wait_for_job(services, job.id, lambda j: not j.active)
        assert job.status == "succeeded", job.error
        assert "stopped responding" in job.log and "(try 2)" in job.log
        finished = [image_id for image_id, *_ in services.ctx.store.job_images(job.id)]
        assert sorted(finished) == sorted(reference)  # each image finished once
        assert _boxes(services, p) == reference  # exactly the boxes of the first run: none twice, none lost
        assert _left_in_queue(services, job.id) == []  # every try's markers went with the job


@pytest.mark.slow
def test_cancel_reaches_every_shard(tmp_path):
    with two_process_world(tmp_path, shard_images=24) as (services, _):
        p = _project(services, tmp_path, 96)
        job = services.annotation.start_annotation(p, "demo-shapes", imgsz=640)
        job = wait_for_job(services, job.id, lambda j: j.live.get("shards", {}).get("running", 0) == 2)
        services.jobs.cancel_job(job.id)
        job = wait_for_job(services, job.id, lambda j: not j.active, timeout=60)
        assert job.status == "cancelled"
        shards = services.ctx.store.job_shards(job.id, 0)
        assert all(not s.active for s in shards)
        stopped = [s for s in shards if s.status == "cancelled" and s.worker]  # were running: stopped mid-shard
        assert len(stopped) >= 2 and job.log.count("cancelled after") >= 2, job.log
        assert sum(s.status == "cancelled" and not s.worker for s in shards) >= 1  # never started
        done = services.ctx.store.job_image_count(job.id)
        time.sleep(3)  # nothing runs on after the cancel
        assert services.ctx.store.job_image_count(job.id) == done < 48
        assert _left_in_queue(services, job.id) == []
