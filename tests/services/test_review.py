"""Review and correction: provenance through saves (box identity by id), version conflicts on saves AND
reviews (who or which job, when), the project revision live views poll, review states, the queue's filters
and orders, stats, display copies. The editor's server functions are tested in tests/ui/test_editor.py, the editor itself
(JavaScript) in tests/e2e/test_editor_browser.py."""

from __future__ import annotations

import pytest

from .. import imagegen
from annotator import classmap
from annotator.types import Box, Conflict, NotFound, UserError

CLASSES = ["circle", "square", "triangle"]


def _add(services, project, tmp_path, sizes):
    """Images of the given sizes (portrait, landscape, larger and smaller than the canvas), by id order."""
    folder = tmp_path / "imgs"
    folder.mkdir(exist_ok=True)
    for n, (w, h) in enumerate(sizes):
        (folder / f"img{n:02d}.jpg").write_bytes(imagegen.jpeg_bytes(w, h, seed=n))
    services.images.add_images(project, [folder], dataset="set")
    return services.ctx.store.list_images(project.id, offset=0, limit=100)


def _machine(image_id, x1, y1, x2, y2, cls=0, conf=0.9):
    return (image_id, Box(x1, y1, x2, y2, cls, confidence=conf, source="model", model_id=None, job_id=7))


# ---- class names ----------------------------------------------------------------------------------------

def test_class_names_parse_with_or_without_a_confidence_suffix():
    assert classmap.label_to_class("square 0.87", CLASSES) == 1
    assert classmap.label_to_class("SQUARE", CLASSES) == 1
    assert classmap.label_to_class("tri 1", ["tri 1", "tri"]) == 0  # a name that ends in a number is a name
    with pytest.raises(UserError, match="'hexagon'"):
        classmap.label_to_class("hexagon", CLASSES)
    with pytest.raises(UserError, match="no class"):
        classmap.label_to_class("", CLASSES)


# ---- services: load / save / conflicts ------------------------------------------------------------------

@pytest.mark.parametrize("size", [(4000, 3000), (3000, 4000), (320, 240), (240, 320)])
def test_save_coordinates_exact_for_large_small_portrait_landscape(services, project, tmp_path, size):
    (img,) = _add(services, project, tmp_path, [size])
    w, h = size
    loaded = services.review.load_image(project, img.id)
    assert (loaded["width"], loaded["height"]) == (w, h) and loaded["boxes"] == []
    boxes = [{"class": "square", "x1": 0.25 * w, "y1": 0.5 * h, "x2": w - 0.5, "y2": h * 0.75},
             {"class_idx": 2, "x1": -20, "y1": -5, "x2": 17.5, "y2": 13.25}]  # crosses the corner: clamped
    res = services.review.save_image(project, img.id, boxes, loaded["version"], user="ann")
    stored_now = res.pop("stored")
    revision = res.pop("revision")
    assert res == {"id": img.id, "version": 1, "boxes": 2, "kept": 0, "human": 2, "dropped": []}
    assert revision == services.review.project_revision(project)  # the revision this save moved it to
    assert stored_now == [services.review.load_image(project, img.id)["boxes"][k] for k in (0, 1)]  # no second read needed
    stored = sorted(services.ctx.store.boxes_for_image(img.id), key=lambda b: b.class_idx)
    assert [b.xyxy for b in stored] == [(0.25 * w, 0.5 * h, w - 0.5, h * 0.75), (0.0, 0.0, 17.5, 13.25)]
    assert all(b.source == "human" and b.created_by == "ann" and b.confidence is None for b in stored)


def test_untouched_machine_boxes_keep_provenance_and_conflicts_lose_nothing(services, project, tmp_path):
    (img,) = _add(services, project, tmp_path, [(640, 480)])
    services.ctx.store.insert_boxes([_machine(img.id, 10.4, 20.6, 99.5, 80.25, conf=0.91),
                                 _machine(img.id, 200, 100, 300, 200, cls=1, conf=0.3)])
    first = services.review.load_image(project, img.id)
    second = services.review.load_image(project, img.id)  # another browser tab
    boxes = [dict(b) for b in first["boxes"]]
    boxes[1].update(class_idx=2)  # relabel the second
    res = services.review.save_image(project, img.id, boxes, first["version"], user="ann")
    assert (res["kept"], res["human"]) == (1, 1)
    stored = {b.class_idx: b for b in services.ctx.store.boxes_for_image(img.id)}
    assert stored[0].source == "model" and stored[0].confidence == 0.91 and stored[0].job_id == 7
    assert stored[0].xyxy == (10.4, 20.6, 99.5, 80.25)
    assert stored[2].source == "human" and stored[2].confidence is None and stored[2].created_by == "ann"

    with pytest.raises(Conflict, match=r"changed by ann at .* NOT saved"):
        services.review.save_image(project, img.id, [], second["version"], user="bob")
    assert len(services.ctx.store.boxes_for_image(img.id)) == 2  # bob's stale save erased nothing
    st = services.ctx.store.editor_state(img.id)
    assert st["edited_by"] == "ann" and st["version"] == 1


def test_save_refuses_bad_input_naming_it(services, project, tmp_path):
    (img,) = _add(services, project, tmp_path, [(64, 48)])
    with pytest.raises(UserError, match="'hexagon'"):
        services.review.save_image(project, img.id, [{"class": "hexagon", "x1": 0, "y1": 0, "x2": 5, "y2": 5}], 0)
    with pytest.raises(UserError, match="class index 9"):
        services.review.save_image(project, img.id, [{"class_idx": 9, "x1": 0, "y1": 0, "x2": 5, "y2": 5}], 0)
    with pytest.raises(UserError, match="numeric x1"):
        services.review.save_image(project, img.id, [{"class": "circle", "x1": "a", "y1": 0, "x2": 5, "y2": 5}], 0)
    res = services.review.save_image(project, img.id, [{"class": "circle", "x1": 100, "y1": 0, "x2": 120, "y2": 5}], 0)
    assert res["boxes"] == 0 and "no area" in res["dropped"][0]
    other = services.projects.create_project("Other", ["x"])
    with pytest.raises(NotFound, match="not in project 'Other'"):
        services.review.load_image(other, img.id)


def test_jobs_and_imports_bump_the_version_so_a_stale_editor_conflicts(services, project, tmp_path):
    a, b = _add(services, project, tmp_path, [(64, 48), (64, 48)])
    opened = services.review.load_image(project, a.id)
    services.ctx.store.save_predictions(5, 0, None, [(a.id, [Box(1, 1, 9, 9, 0, confidence=0.5, source="model")])])
    with pytest.raises(Conflict, match=r"changed by job #5 at \d\d:\d\d:\d\d .* NOT saved") as e:
        services.review.save_image(project, a.id, [], opened["version"])
    c = e.value.as_dict()
    assert (c["image_id"], c["version"], c["changed_by"]) == (a.id, opened["version"] + 1, "job #5")
    assert c["changed_at"] and services.review.load_image(project, a.id)["changed_by"] == "job #5"
    opened = services.review.load_image(project, b.id)
    services.ctx.store.save_imported_labels([(b.id, [Box(1, 1, 9, 9, 1)], None)], approve=False, user="ann")
    with pytest.raises(Conflict, match="changed by an import by ann"):
        services.review.save_image(project, b.id, [], opened["version"])


def test_box_identity_by_id_decides_provenance(services, project, tmp_path):
    """What the editor sends back: each box with the id it was loaded with. Unchanged (class and corners)
    keeps the stored box, row and id included; changed, new, duplicated or foreign ids become a person's."""
    a, b = _add(services, project, tmp_path, [(640, 480), (640, 480)])
    services.ctx.store.insert_boxes([_machine(a.id, 10.4, 20.6, 99.5, 80.25, conf=0.91),
                                 _machine(a.id, 200, 100, 300, 200, cls=1, conf=0.3),
                                 _machine(a.id, 400, 300, 450, 350, cls=2, conf=0.5),
                                 _machine(b.id, 1, 1, 50, 50, conf=0.7)])
    loaded = services.review.load_image(project, a.id)
    foreign = services.review.load_image(project, b.id)["boxes"][0]
    untouched, recl, moved = (dict(x) for x in loaded["boxes"])
    recl["class_idx"] = 2  # a digit key on the selected box
    moved["x1"] += 0.5  # Alt+arrow nudges, in stored pixels
    sent = [untouched, recl, moved, dict(untouched), {**foreign, "x2": 60.0}, dict(foreign)]
    res = services.review.save_image(project, a.id, sent, loaded["version"], user="ann")
    assert (res["kept"], res["human"]) == (1, 5)
    after = services.ctx.store.boxes_for_image(a.id)
    kept = [x for x in after if x.source == "model"]
    assert [(x.id, x.xyxy, x.confidence, x.job_id) for x in kept] == [
        (untouched["id"], (10.4, 20.6, 99.5, 80.25), 0.91, 7)]  # the same row: its id did not change
    humans = sorted((x.class_idx, x.xyxy) for x in after if x.source == "human")
    assert humans == sorted([(2, (200.0, 100.0, 300.0, 200.0)), (2, (400.5, 300.0, 450.0, 350.0)),
                             (0, (10.4, 20.6, 99.5, 80.25)), (0, (1.0, 1.0, 60.0, 50.0)),
                             (0, (1.0, 1.0, 50.0, 50.0))])
    assert all(x.created_by == "ann" and x.confidence is None for x in after if x.source == "human")
    assert len(services.ctx.store.boxes_for_image(b.id)) == 1  # the other image's box is untouched


def test_a_stale_review_is_refused_and_reviews_advance_the_version(services, project, tmp_path):
    (img,) = _add(services, project, tmp_path, [(64, 48)])
    seen = services.review.load_image(project, img.id)
    services.ctx.store.save_predictions(9, 0, None, [(img.id, [Box(1, 1, 9, 9, 0, confidence=0.5, source="model")])])
    with pytest.raises(Conflict, match=r"changed by job #9 .*approval and any edits were NOT saved") as e:
        services.review.set_review_status(project, [img.id], "approved", user="ann", version=seen["version"])
    assert e.value.changed_by == "job #9" and e.value.version == seen["version"] + 1
    st = services.ctx.store.editor_state(img.id)
    assert st["status"] == "unreviewed" and st["reviewed_by"] is None  # nothing recorded
    fresh = services.review.load_image(project, img.id)
    done = services.review.set_review_status(project, [img.id], "rejected", user="ann", version=fresh["version"])
    assert done["version"] == fresh["version"] + 1 and done["images"] == 1
    st = services.ctx.store.editor_state(img.id)
    assert (st["status"], st["changed_by"], st["version"]) == ("rejected", "ann", done["version"])
    with pytest.raises(Conflict, match="by ann"):  # another tab that still had the old version
        services.review.save_image(project, img.id, [], fresh["version"], user="bob")
    with pytest.raises(UserError, match="one image"):
        services.review.set_review_status(project, [img.id, img.id], "approved", version=1)
    # without a version (the API, bulk) it is not checked
    assert services.review.set_review_status(project, [img.id], "approved", user="bob")["version"] == done["version"] + 1


def test_the_project_revision_moves_with_every_change_a_view_shows(services, project, tmp_path):
    rev = lambda: services.review.project_revision(project)  # noqa: E731
    other = services.projects.create_project("Other", ["x"])
    r0 = rev()
    img, fresh = _add(services, project, tmp_path, [(64, 48), (64, 48)])  # an upload
    steps = [rev()]
    v = services.review.load_image(project, img.id)["version"]
    v = services.review.save_image(project, img.id, [{"class_idx": 0, "x1": 1, "y1": 1, "x2": 9, "y2": 9}], v)["version"]
    steps.append(rev())
    services.review.set_review_status(project, [img.id], "rejected", version=v)
    steps.append(rev())
    services.ctx.store.save_predictions(3, 0, None, [(img.id, [])])  # a job's chunk on a person's image: no change
    assert rev() == steps[-1]
    services.ctx.store.save_predictions(3, 0, None, [(fresh.id, [])])  # ... and on an untouched one
    steps.append(rev())
    services.ctx.store.save_imported_labels([(fresh.id, [Box(1, 1, 5, 5, 0)], "val")], approve=False, user=None)
    steps.append(rev())
    services.splits.set_split(project, "test")
    steps.append(rev())
    services.projects.add_classes(project, ["hexagon"])
    steps.append(rev())
    assert [r0, *steps] == sorted(set([r0, *steps]))  # strictly increasing
    assert services.review.project_revision(other) == 0
    seen = services.review.image_changes(project, [img.id, fresh.id, 10_000])
    assert sorted(seen) == [img.id, fresh.id] and seen[img.id]["status"] == "rejected"
    assert seen[img.id]["changed_by"] == "local" and seen[fresh.id]["changed_by"] == "an import by local"
    assert seen[fresh.id]["changed_at"] and seen[fresh.id]["version"] == 2
    assert services.review.image_changes(other, [img.id]) == {}  # another project's image: not reported


def test_the_jobs_signature_moves_when_a_job_is_added_or_moves(services, project):
    seen = [services.jobs.jobs_signature()]
    job = services.ctx.store.create_job(project.id, "annotate", {}, 10)
    seen.append(services.jobs.jobs_signature())
    services.ctx.store.update_job(job, status="running", done=3, progress=0.3)
    seen.append(services.jobs.jobs_signature())
    services.ctx.store.update_job(job, log="a line")
    seen.append(services.jobs.jobs_signature())
    services.ctx.store.update_job(job, result={"boxes": 5})
    seen.append(services.jobs.jobs_signature())
    services.ctx.store.update_job(job, live={"stage": "predict", "images_per_s": 4.2})
    seen.append(services.jobs.jobs_signature())
    assert len(set(seen)) == len(seen)
    assert services.jobs.jobs_signature() == seen[-1]  # nothing moved: the same


# ---- review states, queue, stats ------------------------------------------------------------------------

def test_review_states_record_who_and_when_and_can_drop_low_confidence_boxes(services, project, tmp_path):
    a, b = _add(services, project, tmp_path, [(64, 48), (64, 48)])
    services.ctx.store.insert_boxes([_machine(a.id, 1, 1, 9, 9, conf=0.9), _machine(a.id, 2, 2, 8, 8, conf=0.1)])
    r = services.review.set_review_status(project, a.id, "approved", user="ann", drop_machine_below=0.5)
    assert r["images"] == 1
    assert [x.confidence for x in services.ctx.store.boxes_for_image(a.id)] == [0.9]
    loaded = services.review.load_image(project, a.id)
    assert loaded["status"] == "approved" and loaded["reviewed_by"] == "ann" and loaded["reviewed_at"]
    services.review.set_review_status(project, [b.id], "rejected", user="bob")
    services.review.set_review_status(project, [a.id], "reset", user="bob")
    assert services.review.load_image(project, a.id)["reviewed_by"] is None
    assert services.review.load_image(project, b.id)["status"] == "rejected"
    with pytest.raises(UserError, match="'maybe'"):
        services.review.set_review_status(project, [a.id], "maybe")


def test_queue_filters_and_most_uncertain_first(services, project, tmp_path):
    imgs = _add(services, project, tmp_path, [(64, 48)] * 5)
    ids = [i.id for i in imgs]
    services.ctx.store.insert_boxes([
        _machine(ids[0], 1, 1, 9, 9, cls=0, conf=0.95),
        _machine(ids[1], 1, 1, 9, 9, cls=1, conf=0.30), _machine(ids[1], 1, 1, 9, 9, cls=1, conf=0.99),
        _machine(ids[2], 1, 1, 9, 9, cls=2, conf=0.60),
        (ids[3], Box(1, 1, 9, 9, 1, source="human")),
    ])  # ids[4]: no boxes
    services.review.set_review_status(project, [ids[2]], "approved")
    q = services.review.review_queue_ids
    assert q(project) == ids
    assert q(project, sort="uncertain") == [ids[1], ids[2], ids[0], ids[3], ids[4]]
    assert q(project, status="unreviewed") == [ids[0], ids[1], ids[3], ids[4]]
    assert q(project, status="approved") == [ids[2]]
    assert q(project, class_name="square") == [ids[1], ids[3]]
    assert q(project, no_boxes=True) == [ids[4]]
    assert q(project, below_conf=0.5) == [ids[1]]
    assert q(project, dataset="set", status="all") == ids
    with pytest.raises(NotFound, match="'nope'"):
        q(project, dataset="nope")
    page = services.review.review_queue(project, offset=1, limit=2, sort="uncertain")
    assert page["total"] == 5 and [i["id"] for i in page["items"]] == [ids[2], ids[0]]
    assert page["items"][0]["min_conf"] == 0.6 and page["items"][0]["status"] == "approved"


def test_copy_boxes_scales_and_review_stats_count(services, project, tmp_path):
    a, b = _add(services, project, tmp_path, [(100, 50), (200, 100)])
    services.ctx.store.insert_boxes([(a.id, Box(10, 10, 20, 20, 2, source="human")), _machine(a.id, 0, 0, 50, 25)])
    copied = services.review.copy_boxes(project, a.id, b.id)
    assert [(c["class_idx"], c["x1"], c["y2"], c["source"], c["id"]) for c in copied] == [
        (2, 20.0, 40.0, "human", None), (0, 0.0, 50.0, "human", None)]
    services.review.set_review_status(project, [a.id], "approved", user="ann")
    stats = services.review.review_stats(project)
    assert stats["status"] == {"unreviewed": 1, "approved": 1, "rejected": 0} and stats["total"] == 2
    rows = {r["class"]: r for r in stats["per_class"]}
    assert rows["triangle"]["human"] == 1 and rows["circle"]["model"] == 1 and rows["square"]["total"] == 0
    assert stats["per_day"][-1]["approved_total"] == 1


# ---- large images: the editor shows a smaller copy, boxes are scaled both ways ---------------------------

def test_large_images_get_a_display_copy_small_ones_are_shown_as_stored(services, project, tmp_path):
    import dataclasses

    from PIL import Image

    services.ctx.settings = dataclasses.replace(services.settings, editor_max_side=1000)
    folder = tmp_path / "imgs"
    folder.mkdir()
    (folder / "zz.png").write_bytes(imagegen.image_bytes("PNG", 1600, 900))
    big, small, odd, png = _add(services, project, tmp_path, [(3000, 2000), (800, 600), (1999, 1001)])
    assert png.format == "PNG"
    for img, size in ((big, (750, 500)),  # a JPEG decoded at 1/4: within the limit, more than half of it
                      (odd, (1000, 501)),  # 1/2 of 1999x1001, rounded up as libjpeg does
                      (png, (1000, 562))):  # not a JPEG: resized to the limit
        d = services.review.load_image(project, img.id)["display"]
        assert (d["width"], d["height"]) == size and d["file"].endswith(f"-{max(size)}.jpg")
        with Image.open(d["file"]) as im:
            assert im.size == size
        assert services.review.display_image(img) == d  # made once, then reused
    assert services.review.load_image(project, small.id)["display"]["file"] == str(services.images.image_file(small))


def test_most_informative_first_puts_a_new_scene_before_copies_of_an_approved_one(services, project, tmp_path):
    """Hashes are computed from the thumbnails on first need (and stored); the queue then shows first the
    image unlike anything approved, the re-encoded and brightened copies of the approved scene after it."""
    from PIL import ImageEnhance

    from annotator.demo import scenes

    folder = tmp_path / "frames"
    folder.mkdir()
    a, _ = scenes.scene(21)

    def save(im, name, quality=90):
        im.save(folder / name, "JPEG", quality=quality)

    save(a, "f0_scene.jpg")
    save(a, "f1_copy.jpg", quality=45)
    save(ImageEnhance.Brightness(a).enhance(1.1), "f2_brighter.jpg")
    save(scenes.scene(22)[0], "f3_other.jpg")
    services.images.add_images(project, [folder], dataset="frames")
    imgs = sorted(services.images.list_images(project).images, key=lambda i: i.rel_path)
    ids = [i.id for i in imgs]
    at_ingest = services.ctx.store.image_hashes(ids)
    assert all(h is not None for h in at_ingest.values())  # made at ingest, from the thumbnail
    # Images uploaded before hashes were made at ingest have none: the review order computes them, the same.
    with services.ctx.store.transaction() as cur:
        cur.execute("UPDATE images SET phash = NULL")
    assert services.ctx.store.image_hashes(ids) == {i: None for i in ids}
    services.review.set_review_status(project, [ids[0]], "approved")
    q = services.review.review_queue_ids
    assert q(project, status="unreviewed") == ids[1:]
    order = q(project, status="unreviewed", sort="informative")
    assert order[0] == ids[3] and sorted(order) == sorted(ids[1:])
    hashes = services.ctx.store.image_hashes(ids)
    assert hashes == at_ingest  # stored: the next call reads them
    assert services.similar.ensure_hashes(services.ctx.store.get_project(project.id)) == 0
    page = services.review.review_queue(project, status="unreviewed", sort="informative", limit=10)
    assert [i["id"] for i in page["items"]] == order
    with pytest.raises(UserError, match="'newest'"):
        q(project, sort="newest")
