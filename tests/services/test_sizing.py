"""The image size from the project's data, through the services: the suggestion, and jobs started without an
image size run at it and store the reason."""

from __future__ import annotations

from annotator.demo import scenes
from annotator.types import Box

from .. import imagegen


def test_jobs_without_an_image_size_run_at_the_size_the_data_needs(services, tmp_path):
    from huey import MemoryHuey

    from jobs import tasks

    huey = MemoryHuey("sizing-test")
    tasks.register(huey)
    services.ctx._queue = huey
    p = services.projects.create_project("Small", list(scenes.CLASSES))
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(4):
        (folder / f"s{i}.jpg").write_bytes(imagegen.jpeg_bytes(800, 600, seed=i))
    services.images.add_images(p, [folder], dataset="d")
    m = services.models.add_model(p, scenes.DEMO_MODEL_PATH, "demo")
    base = int(m.params["imgsz"])
    first = services.models.suggest_imgsz(p, "demo", "cpu")
    assert first["imgsz"] == base and "base model's own size" in first["reason"] and first["base_imgsz"] == base

    imgs = services.ctx.store.list_images(p.id, offset=0, limit=10)
    # people drew small objects: 20 px on an 800 px image; 12 px needs 480
    services.ctx.store.insert_boxes([(img.id, Box(100, 100, 120, 125, 0, source="human")) for img in imgs])
    advice = services.models.suggest_imgsz(p, "demo", "cpu")
    assert advice["imgsz"] == 480 and "confirmed boxes" in advice["reason"]
    job = services.annotation.start_annotation(p, "demo", scope="untouched")
    assert job.params["imgsz"] == 480 and job.params["imgsz_reason"] == advice["reason"]
    assert "at imgsz 480" in services.jobs.get_job(job.id).log
    chosen = services.annotation.start_annotation(p, "demo", imgsz=320, scope="untouched")
    assert chosen.params["imgsz"] == 320 and chosen.params["imgsz_reason"] == "as chosen"
