"""Likely label errors, for real: approved demo scenes with planted errors (a removed box, a wrong class, a
box on nothing, a loose box), a label check with the demo model run by a real worker process, and the
findings: the planted ones head the queue, each with the right kind, and Y/N in the editor resolve them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from annotator.demo import scenes
from annotator.types import UserError

from ..support import wait_for_job, worker_world

pytestmark = [pytest.mark.slow]

MODEL = Path(os.environ.get("ANNOTATOR_TEST_MODEL") or scenes.DEMO_MODEL_PATH)


def _boxes(boxes):
    return [{"class_idx": b.class_idx, "x1": b.x1, "y1": b.y1, "x2": b.x2, "y2": b.y2} for b in boxes]


def _empty_spot(boxes, side: float = 120.0) -> dict:
    for y in range(0, 480 - int(side), 20):
        for x in range(0, 640 - int(side), 20):
            if all(x + side + 10 < b.x1 or b.x2 + 10 < x or y + side + 10 < b.y1 or b.y2 + 10 < y for b in boxes):
                return {"class_idx": 0, "x1": float(x), "y1": float(y), "x2": x + side, "y2": y + side}
    raise AssertionError("the scene has no empty spot")


def test_planted_label_errors_head_the_queue(tmp_path):
    with worker_world(tmp_path, stale_after_s=10) as (services, _):
        folder = tmp_path / "src"
        truth = scenes.write_scenes(folder, range(61_000, 61_012), name="scene_{i:03d}.jpg")
        p = services.projects.create_project("Shapes", list(scenes.CLASSES))
        services.images.add_images(p, [(folder, "s")], dataset="s")
        services.models.add_model(p, MODEL, name="demo-shapes")
        with pytest.raises(UserError, match="no approved images"):
            services.quality.start_label_check(p, "demo-shapes")
        images = {i.rel_path: i for i in services.images.list_images(p).images}
        planted = {}
        for k, (name, boxes) in enumerate(sorted(truth.items())):
            img = images[name]
            labels = _boxes(boxes)
            if k == 0:  # a removed box: the model still sees it
                labels, kind = labels[1:], "missed"
            elif k == 1:  # a wrong class
                labels[0]["class_idx"] = (labels[0]["class_idx"] + 1) % 3
                kind = "wrong_class"
            elif k == 2:  # a box on empty background: a 120 px square no object touches
                labels.append(_empty_spot(boxes))
                kind = "spurious"
            elif k == 3:  # a loose box: twice as wide and tall around the object
                b = labels[0]
                w, h = b["x2"] - b["x1"], b["y2"] - b["y1"]
                b.update(x1=max(0.0, b["x1"] - w / 2), y1=max(0.0, b["y1"] - h / 2), x2=min(639.0, b["x2"] + w / 2),
                         y2=min(479.0, b["y2"] + h / 2))
                kind = "loose"
            else:
                kind = None
            saved = services.review.save_image(p, img.id, labels, version=services.review.load_image(p, img.id)["version"])
            services.review.set_review_status(p, [img.id], "approved")
            if kind:
                planted[img.id] = kind
            assert saved["boxes"] == len(labels)

        job = services.quality.start_label_check(p, "demo-shapes")
        assert job.kind == "check_labels" and job.total == 12
        job = wait_for_job(services, job.id, lambda j: not j.active)
        assert job.status == "succeeded", job.error
        assert job.result["images"] == 12

        queue = services.quality.label_error_queue(p)
        assert set(queue[:len(planted)]) == set(planted), (queue, planted)
        for image_id, kind in planted.items():
            found = services.quality.label_errors(p, image_id)
            assert found[0]["kind"] == kind, (kind, found)
        # The editor's queue order "errors" is this queue, whatever the images' review state.
        assert services.review.review_queue_ids(p, status="unreviewed", sort="errors") == queue
        # A finding resolves once; a second try names it.
        first = services.quality.label_errors(p)[0]
        done = services.quality.resolve_label_error(p, first["id"], "dismissed", user="local")
        assert done["status"] == "dismissed"
        with pytest.raises(UserError, match="no open finding"):
            services.quality.resolve_label_error(p, first["id"], "accepted")
        with pytest.raises(UserError, match="accepted or dismissed"):
            services.quality.resolve_label_error(p, first["id"], "maybe")
        # A new check replaces the open findings and keeps the resolved one as a record.
        again = services.quality.start_label_check(p, "demo-shapes")
        wait_for_job(services, again.id, lambda j: not j.active)
        assert first["id"] not in {f["id"] for f in services.quality.label_errors(p)}
        assert [f["id"] for f in services.quality.label_errors(p, status="dismissed")] == [first["id"]]
