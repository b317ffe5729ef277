"""Background jobs for real: a `python -m annotator worker` process, the app-side monitor, the demo model.

Covers enqueue -> progress -> completion, cancel of a queued and of a running job, kill -9 of the worker
mid-job (the job is marked interrupted within seconds) followed by a resume that finishes the rest with
no duplicate boxes, reconciliation of a job orphaned by an app restart, and human work never touched.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from annotator.demo import scenes
from annotator.geometry import iou_xyxy
from annotator.launch import start_jobs
from annotator.services import Services
from annotator.settings import Settings
from annotator.types import Box, UserError

from ..support import wait_for_job, worker_world

pytestmark = [pytest.mark.slow]

MODEL = Path(os.environ.get("ANNOTATOR_TEST_MODEL") or scenes.DEMO_MODEL_PATH)


@pytest.fixture
def jobs_world(tmp_path):
    """Services over a fresh data folder, a monitor, and a real worker process."""
    with worker_world(tmp_path, stale_after_s=5) as world:
        yield world


def _scenes(services: Services, tmp_path: Path, n: int, first_seed: int = 50_000, dataset: str = "scenes"):
    folder = tmp_path / f"{dataset}-src"
    truth = scenes.write_scenes(folder, range(first_seed, first_seed + n), name="scene_{i:03d}.jpg")
    p = services.projects.get_project("Shapes") if services.ctx.store.find_project("Shapes") else services.projects.create_project(
        "Shapes", list(scenes.CLASSES))
    services.images.add_images(p, [(folder, dataset)], dataset=dataset)
    if not services.models.list_models(p):
        services.models.add_model(p, MODEL, name="demo-shapes")
    return p, truth


def _wait(services: Services, job_id: int, until, timeout: float = 180.0, monitor=None):
    return wait_for_job(services, job_id, until, timeout)


def _model_boxes(services: Services, image_id: int) -> list[Box]:
    return [b for b in services.ctx.store.boxes_for_image(image_id) if b.source == "model"]


def test_auto_annotation_finds_the_shapes(jobs_world, tmp_path):
    services, _ = jobs_world
    p, truth = _scenes(services, tmp_path, 12)
    job = services.annotation.start_annotation(p, "demo-shapes", conf=0.25)
    assert job.status == "queued" and job.total == 12
    assert job.params["mapping_named"] == {"circle": "circle", "square": "square", "triangle": "triangle"}
    job = _wait(services, job.id, lambda j: not j.active)
    assert job.status == "succeeded", job.error
    assert job.progress == 1.0 and job.done == 12 and job.result["images"] == 12
    assert "done: 12 image(s)" in job.log

    found = total = 0
    for img in services.images.list_images(p).images:
        boxes = _model_boxes(services, img.id)
        assert all(b.job_id == job.id and b.model_id == job.model_id and 0 < b.confidence <= 1 for b in boxes)
        for t in truth[img.rel_path]:
            total += 1
            found += any(b.class_idx == t.class_idx and iou_xyxy(b.xyxy, t.xyxy) >= 0.5 for b in boxes)
    assert total > 12 and found / total >= 0.85, f"recall {found}/{total}"


def test_rerun_replaces_machine_boxes_and_never_touches_human_work(jobs_world, tmp_path):
    services, _ = jobs_world
    p, _ = _scenes(services, tmp_path, 6)
    first = _wait(services, services.annotation.start_annotation(p, "demo-shapes").id, lambda j: not j.active)
    assert first.status == "succeeded"
    images = services.images.list_images(p).images
    approved, edited, free = images[0], images[1], images[2]
    # A person approves one image (with its machine boxes) and edits another (a human box).
    services.ctx.store.set_review_status([approved.id], "approved", "ann")
    kept_approved = [(b.id, b.xyxy) for b in services.ctx.store.boxes_for_image(approved.id)]
    loaded = services.review.load_image(p, edited.id)  # the editor: keep the machine boxes, draw one more, save
    services.review.save_image(p, edited.id, loaded["boxes"] + [{"class_idx": 2, "x1": 1, "y1": 1, "x2": 30, "y2": 30}],
                        loaded["version"], user="ann")
    def rounded(boxes):  # batch composition moves predictions in the 5th decimal
        return sorted(tuple(round(v, 2) for v in b.xyxy) for b in boxes)

    before_free = rounded(_model_boxes(services, free.id))
    assert before_free

    second = services.annotation.start_annotation(p, "demo-shapes", scope="untouched")
    assert second.total == 4  # the approved and the edited image are not even sent
    second = _wait(services, second.id, lambda j: not j.active)
    assert second.status == "succeeded"
    assert [(b.id, b.xyxy) for b in services.ctx.store.boxes_for_image(approved.id)] == kept_approved
    human = [b for b in services.ctx.store.boxes_for_image(edited.id) if b.source == "human"]
    assert [(b.xyxy, b.created_by) for b in human] == [((1, 1, 30, 30), "ann")]
    after_free = _model_boxes(services, free.id)
    assert rounded(after_free) == before_free  # replaced, not doubled
    assert {b.job_id for b in after_free} == {second.id}


def test_a_person_approving_during_the_job_wins(jobs_world, tmp_path):
    """Protection is re-checked when results are committed, not only when the job is queued."""
    services, monitor = jobs_world
    p, _ = _scenes(services, tmp_path, 3)
    images = services.images.list_images(p).images
    job = services.annotation.start_annotation(p, "demo-shapes")
    services.ctx.store.set_review_status([images[0].id], "approved", "ann")  # before any result arrives
    job = _wait(services, job.id, lambda j: not j.active)
    assert job.result["protected"] == 1 and job.result["images"] == 2
    assert _model_boxes(services, images[0].id) == []


def test_cancel_a_running_job(jobs_world, tmp_path):
    services, _ = jobs_world
    p, _ = _scenes(services, tmp_path, 100)
    job = services.annotation.start_annotation(p, "demo-shapes", imgsz=640)
    _wait(services, job.id, lambda j: j.status == "running" and j.result.get("images", 0) >= 2)
    services.jobs.cancel_job(job.id)
    job = _wait(services, job.id, lambda j: not j.active)
    assert job.status == "cancelled"
    done = services.ctx.store.job_image_count(job.id)
    assert 2 <= done < 100 and "cancelled after" in job.log
    with pytest.raises(UserError, match="already cancelled"):
        services.jobs.cancel_job(job.id)


def _every_image_once(services: Services, p, job) -> None:
    ids = [i.id for i in services.images.list_images(p, page_size=500).images]
    finished = [image_id for image_id, *_ in services.ctx.store.job_images(job.id)]
    assert sorted(finished) == sorted(ids)  # each image finished once, by one try of one shard
    for image_id in ids:  # no duplicate boxes
        boxes = [(b.class_idx, b.xyxy) for b in _model_boxes(services, image_id)]
        assert len(boxes) == len(set(boxes))


def test_kill_9_mid_job_gives_its_shard_to_the_next_worker(tmp_path):
    """A worker killed mid-shard: its shard's images left go back on the queue (here to the restarted local
    worker), the job finishes by itself, every image annotated once, the other shards untouched."""
    with worker_world(tmp_path, stale_after_s=4, ANNOTATOR_SHARD_IMAGES="25") as (services, monitor):
        p, _ = _scenes(services, tmp_path, 100)
        job = services.annotation.start_annotation(p, "demo-shapes", imgsz=640)
        assert [len(s.images) for s in services.ctx.store.job_shards(job.id, 0)] == [25, 25, 25, 25]
        _wait(services, job.id, lambda j: j.result.get("images", 0) >= 4)
        os.kill(monitor.worker.pid, signal.SIGKILL)
        job = _wait(services, job.id, lambda j: not j.active)
        assert job.status == "succeeded", job.error
        assert job.done == 100 and job.progress == 1.0 and job.result["images"] == 100
        assert "stopped responding" in job.log and "go to the next free worker (try 2)" in job.log
        shards = services.ctx.store.job_shards(job.id, 0)
        assert [s.status for s in shards] == ["succeeded"] * 4 and [s.retry for s in shards][0] == 1
        assert all(s.done == 25 for s in shards)
        _every_image_once(services, p, job)


def test_kill_9_then_resume_finishes_without_duplicates(tmp_path):
    """With no retries left, a dead worker's job is interrupted within seconds; Resume does the rest."""
    with worker_world(tmp_path, stale_after_s=5, ANNOTATOR_SHARD_RETRIES="0") as (services, monitor):
        p, _ = _scenes(services, tmp_path, 100)
        job = services.annotation.start_annotation(p, "demo-shapes", imgsz=640)
        _wait(services, job.id, lambda j: j.result.get("images", 0) >= 4)
        os.kill(monitor.worker.pid, signal.SIGKILL)
        killed_at = time.time()
        job = _wait(services, job.id, lambda j: j.status == "interrupted", timeout=30)
        assert time.time() - killed_at < 15, "a dead worker must be noticed within seconds"
        assert "stopped responding" in job.error and "Resume does the rest" in job.error
        partial = services.ctx.store.job_image_count(job.id)
        assert 4 <= partial < 100
        assert job.done == partial and job.result["images"] == partial  # what is committed, not a heartbeat's count

        _wait(services, job.id, lambda j: monitor.worker.alive(), timeout=10)  # the app restarted its worker
        resumed = services.annotation.resume_job(job.id)
        assert resumed.status == "queued" and resumed.attempt == 1 and resumed.total == 100
        job = _wait(services, job.id, lambda j: not j.active)
        assert job.status == "succeeded", job.error
        assert job.done == 100 and job.progress == 1.0
        assert sum(len(s.images) for s in services.ctx.store.job_shards(job.id, 1)) == 100 - partial  # only the rest
        _every_image_once(services, p, job)


@pytest.mark.parametrize("kind,params,hint", [
    ("annotate", {"scope": "unreviewed"}, "Resume does the rest"),
    ("train", {"epochs": 5}, "start the training again"),
])
def test_orphaned_running_job_is_reconciled(tmp_path, kind, params, hint):
    """An app killed while a job ran: on the next start the job is marked interrupted, with a reason that
    says what to do for its kind."""
    settings = Settings.from_env({"ANNOTATOR_DATA_DIR": str(tmp_path / "data"), "ANNOTATOR_STALE_AFTER_S": "2"})
    services = Services.open(settings)
    try:
        p = services.projects.create_project("P", ["a"])
        jid = services.ctx.store.create_job(p.id, kind, params, total=5)
        services.ctx.store.update_job(jid, status="running")
        monitor = start_jobs(services, local_worker=False, interval=0.2)
        try:
            job = _wait(services, jid, lambda j: j.status == "interrupted", timeout=15)
        finally:
            monitor.stop()
        assert "stopped responding" in job.error and hint in job.error and job.finished_at is not None
    finally:
        services.close()


def test_queued_job_cancels_without_a_worker(tmp_path, services, project):
    src = tmp_path / "one.jpg"
    src.write_bytes(scenes.scene_jpeg(1)[0])
    services.images.add_images(project, [src])
    services.models.add_model(project, MODEL, name="m")
    job = services.annotation.start_annotation(project, "m")
    assert job.status == "queued" and job.task_id
    job = services.jobs.cancel_job(job.id)
    assert job.status == "cancelled"
    assert services.ctx.queue.is_revoked(job.task_id)


def test_refusals_name_the_problem(services, project, tmp_path):
    services.models.add_model(project, MODEL, name="m")
    with pytest.raises(UserError, match="No images to annotate"):
        services.annotation.start_annotation(project, "m")
    with pytest.raises(UserError, match="no model 'nope'"):
        services.annotation.start_annotation(project, "nope")
    with pytest.raises(UserError, match="confidence threshold"):
        services.annotation.start_annotation(project, "m", conf=1.5)
    with pytest.raises(UserError, match="scope must be"):
        services.annotation.start_annotation(project, "m", scope="everything")
    other = services.projects.create_project("Other", ["dog", "cat"])
    services.models.add_model(other, MODEL, name="m")
    src = tmp_path / "x.jpg"
    src.write_bytes(scenes.scene_jpeg(2)[0])
    services.images.add_images(other, [src])
    with pytest.raises(UserError, match="None of the model's classes"):
        services.annotation.start_annotation(other, "m")
    job = services.annotation.start_annotation(other, "m", overrides={"circle": "dog", "square": "cat"})
    assert job.params["mapping_named"] == {"circle": "dog", "square": "cat", "triangle": None}
    with pytest.raises(UserError, match="already registered"):
        services.models.add_model(other, MODEL, name="again")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"\x00not a checkpoint" * 100)
    with pytest.raises(UserError, match="garbage.pt"):
        services.models.add_model(other, garbage)
    assert [m.name for m in services.models.list_models(other)] == ["m"]


def test_demo_project_is_created_once(settings):
    services = Services.open(settings)
    try:
        p = services.images.ensure_demo(n_images=6)
        assert p is not None and p.class_names == list(scenes.CLASSES)
        assert services.images.list_images(p).total == 6
        assert [m.name for m in services.models.list_models(p)] == ["demo-shapes"]
        assert services.images.ensure_demo() is None  # not twice
        services.projects.delete_project(p, "Demo")
        assert services.images.ensure_demo() is None  # deleting it is final
        assert services.projects.list_projects() == []
    finally:
        services.close()
