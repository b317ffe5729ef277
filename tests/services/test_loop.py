"""The loop's own measure: the edits a reviewer makes to the machine's boxes, recorded at approval and
summed per model round (services.review.loop_stats, `annotator loop-stats`)."""

from __future__ import annotations

from annotator.types import Box

from .. import imagegen


def _world(services, tmp_path, n=3):
    p = services.projects.create_project("Loop", ["a", "b"])
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(n):
        (folder / f"i{i}.jpg").write_bytes(imagegen.jpeg_bytes(200, 200, seed=i))
    services.images.add_images(p, [folder], dataset="d")
    imgs = services.ctx.store.list_images(p.id, offset=0, limit=10)
    return p, imgs


def _annotate(services, p, imgs, boxes_per_image, model_id=None):
    job = services.ctx.store.create_job(p.id, "annotate", {}, len(imgs), model_id=model_id)
    services.ctx.store.save_predictions(job, 0, model_id, [(img.id, boxes) for img, boxes in zip(imgs, boxes_per_image)])
    return job


def test_approval_records_the_edits_against_what_the_job_showed(services, tmp_path):
    p, imgs = _world(services, tmp_path)
    shown = [Box(10, 10, 60, 60, 0, confidence=0.9, source="model"), Box(100, 100, 150, 150, 1, confidence=0.3,
                                                                         source="model")]
    job = _annotate(services, p, imgs, [shown, shown, shown])
    # image 0: approved as shown; image 1: the false positive deleted and a miss drawn; image 2: reclassed
    services.review.set_review_status(p, imgs[0].id, "approved", user="ann")
    loaded = services.review.load_image(p, imgs[1].id)
    kept = [b for b in loaded["boxes"] if b["class_idx"] == 0]
    services.review.save_image(p, imgs[1].id, kept + [{"class": "b", "x1": 150, "y1": 10, "x2": 190, "y2": 50}],
                               loaded["version"], user="ann")
    loaded = services.review.load_image(p, imgs[2].id)
    services.review.save_image(p, imgs[2].id, [{**b, "class_idx": 1} if b["class_idx"] == 0 else b
                                               for b in loaded["boxes"]], loaded["version"], user="ann")
    services.review.set_review_status(p, [imgs[1].id, imgs[2].id], "approved", user="ann")

    rows = {r["image_id"]: r for r in services.ctx.store.review_edit_rows(p.id)}
    assert {i: (r["deleted"], r["added"], r["reclassed"], r["adjusted"], r["edits"]) for i, r in rows.items()} == {
        imgs[0].id: (0, 0, 0, 0, 0), imgs[1].id: (1, 1, 0, 0, 2), imgs[2].id: (0, 0, 1, 0, 1)}
    assert all(r["job_id"] == job and r["reviewed_by"] == "ann" and r["shown"] == 2 for r in rows.values())
    stats = services.review.loop_stats(p)
    (round_,) = stats["rounds"]
    assert round_["images"] == 3 and round_["edits"] == 3 and round_["edits_per_image"] == 1.0
    assert round_["acceptance"] == round(1 / 3, 3) and stats["edits_per_image"] == 1.0

    # withdrawing an approval drops its record; approving again measures again
    services.review.set_review_status(p, imgs[1].id, "unreviewed", user="ann")
    assert services.review.loop_stats(p)["images"] == 2
    services.review.set_review_status(p, imgs[1].id, "approved", user="bob")
    assert services.review.loop_stats(p)["images"] == 3


def test_a_new_job_replaces_what_was_shown_and_rounds_are_per_model(services, tmp_path):
    p, imgs = _world(services, tmp_path, 2)
    first = [Box(10, 10, 60, 60, 0, confidence=0.9, source="model"), Box(100, 100, 150, 150, 0, source="model",
                                                                         confidence=0.2)]
    _annotate(services, p, imgs, [first, first], model_id=None)
    better = [Box(10, 10, 60, 60, 0, confidence=0.9, source="model")]
    _annotate(services, p, imgs[1:], [better], model_id=7)  # re-annotated by a newer model: what is shown now
    loaded = services.review.load_image(p, imgs[0].id)
    services.review.save_image(p, imgs[0].id, [b for b in loaded["boxes"] if b["confidence"] > 0.5],
                               loaded["version"])
    services.review.set_review_status(p, [i.id for i in imgs], "approved")
    by_model = {r["model_id"]: (r["images"], r["edits"], r["acceptance"]) for r in services.review.loop_stats(p)["rounds"]}
    assert by_model == {None: (1, 1, 0.0), 7: (1, 0, 1.0)}


def test_images_no_job_annotated_are_not_measured(services, tmp_path):
    p, imgs = _world(services, tmp_path, 1)
    loaded = services.review.load_image(p, imgs[0].id)
    services.review.save_image(p, imgs[0].id, [{"class": "a", "x1": 1, "y1": 1, "x2": 20, "y2": 20}], loaded["version"])
    services.review.set_review_status(p, imgs[0].id, "approved")
    assert services.review.loop_stats(p) == {"project": "Loop", "rounds": [], "images": 0, "edits_per_image": None}


def test_cli_loop_stats(tmp_path, monkeypatch, capsys):
    import json

    from annotator import cli
    from annotator.services import Services
    from annotator.settings import Settings

    data = tmp_path / "data"
    svc = Services.open(Settings.from_env({"ANNOTATOR_DATA_DIR": str(data)}))
    try:
        p, imgs = _world(svc, tmp_path, 2)
        _annotate(svc, p, imgs, [[Box(10, 10, 60, 60, 0, confidence=0.9, source="model")]] * 2)
        loaded = svc.review.load_image(p, imgs[1].id)
        svc.review.save_image(p, imgs[1].id, [], loaded["version"])
        svc.review.set_review_status(p, [i.id for i in imgs], "approved")
    finally:
        svc.close()
    monkeypatch.setenv("ANNOTATOR_DATA_DIR", str(data))
    assert cli.main(["loop-stats", "Loop", "--json"]) == 0
    st = json.loads(capsys.readouterr().out)
    assert st["images"] == 2 and st["edits_per_image"] == 0.5 and st["rounds"][0]["acceptance"] == 0.5
    assert cli.main(["loop-stats", "Loop"]) == 0
    text = capsys.readouterr().out
    assert "0.5 edit(s) per image" in text and "50%" in text
