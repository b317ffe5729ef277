"""Auto-annotation with tracking, for real: a video of moving shapes ingested as frames, a job with
``track=True`` run by a worker process with the demo model: every machine box of a frame has a track id, one
id per moving shape across the frames; deleting a track in the following frames removes exactly those
boxes and leaves frames a person approved alone."""

from __future__ import annotations

import pytest

from annotator.demo import scenes

from ..support import wait_for_job, worker_world
from ..test_video import write_video
from .test_tracking import _clip, _iou

pytestmark = [pytest.mark.slow]


def test_a_tracking_job_gives_each_moving_shape_one_id_and_a_track_deletes_forward(tmp_path):
    frames, truth = _clip(20)
    video = write_video(tmp_path / "shapes.avi", iter(frames), 10, fourcc="MJPG")  # MJPG: sharp enough shapes
    with worker_world(tmp_path, stale_after_s=10) as (services, _):
        p = services.projects.create_project("Moving", list(scenes.CLASSES))
        r = services.images.add_images(p, [video], sampling="all")
        assert len(r.added) == 20
        services.models.add_model(p, scenes.DEMO_MODEL_PATH, name="demo-shapes")
        job = services.annotation.start_annotation(p, "demo-shapes", conf=0.25, imgsz=320, track=True)
        job = wait_for_job(services, job.id, lambda j: not j.active)
        assert job.status == "succeeded", job.error
        images = sorted(services.images.list_images(p).images, key=lambda i: i.frame_index)
        ids: dict[str, set] = {}
        for img, boxes in zip(images, truth):
            for b in services.ctx.store.boxes_for_image(img.id):
                name = max(boxes, key=lambda s: _iou(b.xyxy, boxes[s]))
                assert _iou(b.xyxy, boxes[name]) > 0.5
                assert b.track_id is not None and b.job_id == job.id, (img.frame_index, b)
                ids.setdefault(name, set()).add(b.track_id)
        assert {k: len(v) for k, v in ids.items()} == {"circle": 1, "square": 1, "triangle": 1}
        assert len(set().union(*ids.values())) == 3
        # Delete the circle's track after frame 10; frame 15 was approved by a person: left alone.
        (circle,) = ids["circle"]
        services.review.set_review_status(p, [images[15].id], "approved")
        out = services.review.delete_track(p, images[10].id, job.id, circle, user="local")
        assert out["protected"] == 1 and out["images"] == out["deleted"] == 8  # frames 11-19 but 15
        for img in images:
            tracks = {b.track_id for b in services.ctx.store.boxes_for_image(img.id)}
            assert (circle in tracks) == (img.frame_index <= 10 or img.frame_index == 15), img.frame_index
        with pytest.raises(Exception, match="not a video's frame"):
            still = tmp_path / "still"
            still.mkdir()
            (still / "a.jpg").write_bytes(scenes.scene_jpeg(1)[0])
            r2 = services.images.add_images(p, [still], dataset="stills")
            services.review.delete_track(p, r2.image_ids["a.jpg"], job.id, circle)
