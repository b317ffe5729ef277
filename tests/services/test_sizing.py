"""The image size from the project's data, through the services: the suggestion, and jobs started without an
image size run at it and store the reason."""

from __future__ import annotations

from annotator.demo import scenes
from annotator.types import Box

from .. import imagegen


def _project_with_demo_model(services, tmp_path, name: str, n: int, size: tuple[int, int]):
    """A project of ``n`` generated images of ``size`` with the demo model registered as "demo", its jobs
    going to an in-memory queue nobody consumes (only what a job is started with matters here)."""
    from huey import MemoryHuey

    from jobs import tasks

    huey = MemoryHuey(f"{name}-test")
    tasks.register(huey)
    services.ctx._queue = huey
    p = services.projects.create_project(name, list(scenes.CLASSES))
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(n):
        (folder / f"s{i}.jpg").write_bytes(imagegen.jpeg_bytes(*size, seed=i))
    services.images.add_images(p, [folder], dataset="d")
    return p, services.models.add_model(p, scenes.DEMO_MODEL_PATH, "demo")


def test_jobs_without_an_image_size_run_at_the_size_the_data_needs(services, tmp_path):
    p, m = _project_with_demo_model(services, tmp_path, "Small", 4, (800, 600))
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


def test_auto_annotation_without_a_threshold_uses_the_models_own_best(services, tmp_path):
    """A model this app trained carries the threshold of best F1 on its val images (jobs/train.py best_conf):
    auto-annotation given none (0) runs at it and says why; a model without one runs at 0.25; a chosen one
    is kept; a threshold outside (0, 1] is refused naming it."""
    import pytest
    from annotator.types import UserError

    p, demo = _project_with_demo_model(services, tmp_path, "Conf", 2, (320, 240))
    services.ctx.store.add_model(p.id, "tuned", demo.file, demo.sha256, demo.size_bytes, demo.class_names, "trained",
                                 parent_id=demo.id, params=demo.params, metrics={"mAP50-95": 0.8, "best_conf": 0.42})

    plain = services.annotation.start_annotation(p, "demo")
    assert plain.params["conf"] == 0.25 and "no validation of its own" in plain.params["conf_reason"]
    tuned = services.annotation.start_annotation(p, "tuned", conf=0)
    assert tuned.params["conf"] == 0.42 and "best F1" in tuned.params["conf_reason"]
    assert "confidence 0.42: where tuned's boxes" in services.jobs.get_job(tuned.id).log
    assert services.models.suggest_conf(p, "tuned") == {"conf": 0.42, "reason": tuned.params["conf_reason"]}
    chosen = services.annotation.start_annotation(p, "tuned", conf=0.3)
    assert chosen.params["conf"] == 0.3 and chosen.params["conf_reason"] == "as chosen"
    # An uploaded model gets its threshold from an evaluation on this project's val images; the newest counts,
    # and it also overrides a trained model's own (it is on the project's current val images).
    for model_id, best in ((demo.id, 0.33), (demo.id, 0.37), (services.models.get_model(p, "tuned").id, 0.5)):
        services.ctx.store.add_evaluation(p.id, model_id, 9, {"mAP50-95": 0.7, "best_conf": best}, {}, "ann")
    evaluated = services.annotation.start_annotation(p, "demo", scope="untouched")
    assert evaluated.params["conf"] == 0.37 and "this project's val images" in evaluated.params["conf_reason"]
    assert "evaluation job #9" in evaluated.params["conf_reason"]
    assert services.models.suggest_conf(p, "tuned")["conf"] == 0.5
    for bad in (1.5, -0.2, "high"):
        with pytest.raises(UserError, match="confidence threshold"):
            services.annotation.start_annotation(p, "tuned", conf=bad)
