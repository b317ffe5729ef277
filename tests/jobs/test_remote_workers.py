"""Scale-out on one machine: the app (launched, serving HTTP) on loopback Redis, and two `annotator worker`
processes with DIFFERENT data folders: one sees the app's folder, the other has no project file at all and
fetches images and the model over HTTP with the worker token. They share one 600-image job; one is killed
with SIGKILL in the middle; the job still ends with exactly the boxes a single worker made."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from annotator.demo import scenes
from annotator.settings import Settings

from ..support import free_port, redis_server, require_tool, wait_for_job, wait_for_workers, worker_process

pytestmark = [pytest.mark.redis, pytest.mark.slow]

require_tool("redis-server", "redis-server")
TOKEN = "worker-token-for-the-test"
IMAGES, SHARD, IMGSZ = 600, 50, 320
CACHE_MB = 2


def _boxes(services, p) -> dict[int, list]:
    out = {}
    for img in services.ctx.store.list_images(p.id, offset=0, limit=10_000):
        out[img.id] = sorted((b.class_idx, *b.xyxy) for b in services.ctx.store.boxes_for_image(img.id)
                             if b.source == "model")
    return out


def _same_boxes(a: dict, b: dict, tol: float = 0.05) -> list:
    """Images whose boxes differ (class, or a corner by more than ``tol`` px: floats of a batch of another size)."""
    bad = []
    for image_id in sorted(set(a) | set(b)):
        x, y = a.get(image_id, []), b.get(image_id, [])
        if len(x) != len(y) or any(p[0] != q[0] or max(abs(u - v) for u, v in zip(p[1:], q[1:])) > tol
                                   for p, q in zip(x, y)):
            bad.append(image_id)
    return bad


def test_two_workers_one_over_http_survive_a_kill(tmp_path):
    from annotator.launch import start

    with redis_server(tmp_path) as redis_url:
        app_dir = tmp_path / "app-data"
        settings = Settings.from_env({
            "ANNOTATOR_DATA_DIR": str(app_dir), "ANNOTATOR_QUEUE_URL": redis_url, "ANNOTATOR_PORT": str(free_port()),
            "ANNOTATOR_LOCAL_WORKER": "0", "ANNOTATOR_DEMO": "0", "ANNOTATOR_STALE_AFTER_S": "4",
            "ANNOTATOR_SHARD_IMAGES": str(SHARD), "ANNOTATOR_WORKER_TOKEN": TOKEN, "ANNOTATOR_DEVICE": "cpu"})
        app = start(settings, block=False, quiet=True)
        try:
            services = app.services
            folder = tmp_path / "src"
            scenes.write_scenes(folder, range(80_000, 80_000 + IMAGES), name="scene_{i:04d}.jpg")
            p = services.projects.create_project("Scale", list(scenes.CLASSES))
            services.images.add_images(p, [folder], dataset="scenes")
            services.models.add_model(p, scenes.DEMO_MODEL_PATH, name="demo-shapes")
            common = {"ANNOTATOR_QUEUE_URL": redis_url}
            shared = {**common, "ANNOTATOR_DATA_DIR": str(app_dir)}
            remote_dir = tmp_path / "remote-worker"  # no project files: everything comes over HTTP
            remote = {**common, "ANNOTATOR_DATA_DIR": str(remote_dir), "ANNOTATOR_APP_URL": app.url,
                      "ANNOTATOR_WORKER_TOKEN": TOKEN, "ANNOTATOR_WORKER_CACHE_MB": str(CACHE_MB),
                      "ANNOTATOR_WORKER_FILES": "fetch"}  # on this host it could read the app's paths: it must not

            # The reference: one worker, on the shared folder.
            with worker_process(tmp_path / "single.log", shared) as single:
                wait_for_workers(services, {single.pid}, log=tmp_path / "single.log")
                job = services.annotation.start_annotation(p, "demo-shapes", imgsz=IMGSZ)
                job = wait_for_job(services, job.id, lambda j: not j.active, timeout=300)
                assert job.status == "succeeded", job.error
            reference = _boxes(services, p)
            assert len(reference) == IMAGES and sum(map(len, reference.values())) > IMAGES

            with worker_process(tmp_path / "local.log", shared) as local, \
                    worker_process(tmp_path / "remote.log", remote) as far:
                wait_for_workers(services, {local.pid, far.pid}, log=tmp_path / "remote.log")
                job = services.annotation.start_annotation(p, "demo-shapes", imgsz=IMGSZ)
                assert len(services.ctx.store.job_shards(job.id, 0)) == IMAGES // SHARD
                # Both are busy (the one with the folder past its first shard, the remote one has fetched
                # images): kill the one with the folder in the middle of a shard, most of it still to do.
                mine, theirs = f"{_host()}:{local.pid}", f"{_host()}:{far.pid}"

                def busy(j) -> bool:
                    done = {x["worker"]: x["images"] for x in j.live.get("workers", [])}
                    return done.get(mine, 0) >= SHARD and done.get(theirs, 0) > 0 and any(
                        s.status == "running" and s.worker == mine and s.done <= SHARD // 3
                        for s in services.ctx.store.job_shards(j.id, 0, with_images=False))

                wait_for_job(services, job.id, busy, timeout=120)
                os.kill(local.pid, signal.SIGKILL)
                job = wait_for_job(services, job.id, lambda j: not j.active, timeout=300)
                assert job.status == "succeeded", job.error
                assert "stopped responding" in job.log and "fetched from the app" in job.log, job.log
                by_worker = {w["worker"]: w["images"] for w in job.live["workers"]}
                assert by_worker[f"{_host()}:{far.pid}"] > 0 and by_worker[f"{_host()}:{local.pid}"] > 0
                assert sum(by_worker.values()) == IMAGES
            finished = [image_id for image_id, *_ in services.ctx.store.job_images(job.id)]
            assert sorted(finished) == sorted(reference)  # each image once
            assert _same_boxes(_boxes(services, p), reference) == []  # the boxes of the single worker
            # The remote worker fetched into its cache and kept it within its bound; it never got the folder.
            cached = [f for f in (remote_dir / "cache" / "fetched").rglob("*") if f.is_file()]
            assert cached and sum(f.stat().st_size for f in cached) <= CACHE_MB << 20
            assert not any(f.is_file() for f in (remote_dir / "projects").rglob("*"))
        finally:
            app.close()


def _host() -> str:
    import socket

    return socket.gethostname()
