"""ANNOTATOR_QUEUE_URL=redis://... : the same job runs through RedisHuey against a real redis-server
(on a free loopback port), as it would with workers on other GPU hosts."""

from __future__ import annotations

import time

import pytest

from annotator.demo import scenes
from annotator.launch import start_jobs
from annotator.services import Services
from annotator.settings import Settings

from ..support import redis_server, require_tool

pytestmark = [pytest.mark.redis, pytest.mark.slow]

REDIS = require_tool("redis-server", "redis-server")


@pytest.fixture
def redis_url(tmp_path):
    with redis_server(tmp_path) as url:
        yield url


def test_auto_annotation_through_redis(redis_url, tmp_path):
    settings = Settings.from_env({"ANNOTATOR_DATA_DIR": str(tmp_path / "data"), "ANNOTATOR_QUEUE_URL": redis_url,
                                  "ANNOTATOR_DEVICE": "cpu"})
    services = Services.open(settings)
    monitor = start_jobs(services, local_worker=True, interval=0.2)
    try:
        from huey import RedisHuey

        assert isinstance(services.ctx.queue, RedisHuey)
        folder = tmp_path / "scenes"
        folder.mkdir()
        for i in range(4):
            (folder / f"{i}.jpg").write_bytes(scenes.scene_jpeg(70_000 + i)[0])
        p = services.projects.create_project("R", list(scenes.CLASSES))
        services.images.add_images(p, [folder])
        services.models.add_model(p, scenes.DEMO_MODEL_PATH, name="demo")
        job = services.annotation.start_annotation(p, "demo")
        deadline = time.time() + 120
        while services.jobs.get_job(job.id).active and time.time() < deadline:
            time.sleep(0.2)
        job = services.jobs.get_job(job.id)
        assert job.status == "succeeded", job.error
        assert job.result["images"] == 4 and job.result["boxes"] > 0
        assert [w["worker"] for w in services.jobs.live_workers()]  # the worker announced itself in redis
        assert not (settings.data_dir / "queue.db").exists()  # nothing went through SQLite
    finally:
        monitor.stop()
        services.close()
