"""Review and correction: widget value <-> boxes, provenance through saves, version conflicts, review
states, the queue's filters and orders, stats."""

from __future__ import annotations

import pytest

from .. import imagegen
from annotator import classmap
from annotator.ui import widget
from annotator.types import Box, Conflict, NotFound, UserError

CLASSES = ["circle", "square", "triangle"]
COLOURS = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]


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


# ---- pure conversions ------------------------------------------------------------------------------------

def test_labels_show_confidence_for_machine_boxes_and_parse_back():
    m = {"class_idx": 1, "confidence": 0.873, "source": "model"}
    h = {"class_idx": 2, "confidence": None, "source": "human"}
    assert widget.widget_label(m, CLASSES) == "square 0.87"
    assert widget.widget_label(h, CLASSES) == "triangle"
    assert classmap.label_to_class("square 0.87", CLASSES) == 1
    assert classmap.label_to_class("SQUARE", CLASSES) == 1
    assert classmap.label_to_class("tri 1", ["tri 1", "tri"]) == 0  # a name that ends in a number is a name
    with pytest.raises(UserError, match="'hexagon'"):
        classmap.label_to_class("hexagon", CLASSES)
    with pytest.raises(UserError, match="no class"):
        classmap.label_to_class("", CLASSES)


@pytest.mark.parametrize("k,width,height", [(0, 640, 480), (1, 640, 480), (2, 300, 900), (3, 300, 900)])
def test_rotated_widget_boxes_map_back_to_the_stored_frame(k, width, height):
    box = (10.0, 20.0, 110.0, 60.0)

    def turn(pt, w, h):  # one clockwise quarter turn of an image w x h, as the widget draws it
        x, y = pt
        return (h - y, x), (h, w)

    pts, w, h = [(box[0], box[1]), (box[2], box[3])], width, height
    for _ in range(k):
        pts, (w, h) = [turn(p, w, h)[0] for p in pts], (h, w)
    rotated = (min(p[0] for p in pts), min(p[1] for p in pts), max(p[0] for p in pts), max(p[1] for p in pts))
    assert widget.unrotate(rotated, k, width, height) == pytest.approx(box)


def test_widget_round_trip_keeps_untouched_boxes_exactly_and_marks_edits_human():
    boxes = [
        {"id": 1, "class_idx": 0, "x1": 10.4, "y1": 20.6, "x2": 99.5, "y2": 80.25, "confidence": 0.91, "source": "model",
         "model_id": 3, "job_id": 7, "created_by": None},
        {"id": 2, "class_idx": 1, "x1": 200.0, "y1": 100.0, "x2": 300.0, "y2": 200.0, "confidence": 0.2,
         "source": "model", "model_id": 3, "job_id": 7, "created_by": None},
        {"id": 3, "class_idx": 2, "x1": 5.0, "y1": 5.0, "x2": 50.0, "y2": 50.0, "confidence": None, "source": "human",
         "model_id": None, "job_id": None, "created_by": "ann"},
    ]
    value, shown = widget.to_widget("/x.jpg", boxes, CLASSES, COLOURS, min_conf=0.5)
    assert shown == [0, 2]  # the 0.2 machine box is hidden by the slider
    assert [b["label"] for b in value["boxes"]] == ["circle 0.91", "triangle"]
    # what the widget sends back: whole pixels (preprocess rounds), colours as tuples
    back = {**value, "boxes": [{**b, "xmin": round(b["xmin"]), "ymin": round(b["ymin"]), "xmax": round(b["xmax"]),
                                "ymax": round(b["ymax"])} for b in value["boxes"]]}
    merged = widget.from_widget(back, boxes, shown, CLASSES, 640, 480)
    assert widget.same_boxes(merged, boxes)  # nothing changed: same ids, float corners, provenance
    # move the human box by 30 px, relabel the machine box, draw a new one
    back["boxes"][1].update(xmin=35, xmax=80)
    back["boxes"][0]["label"] = "square"
    back["boxes"].insert(0, {"xmin": 400, "ymin": 300, "xmax": 450, "ymax": 350, "label": "circle"})
    merged = widget.from_widget(back, boxes, shown, CLASSES, 640, 480)
    assert merged[0]["id"] == 2  # the hidden box comes through untouched
    by_class = sorted((b["class_idx"], b["source"], b["id"], b["x1"]) for b in merged[1:])
    assert by_class == [(0, "human", None, 400.0), (1, "human", None, 10.0), (2, "human", None, 35.0)]


def test_relabel_new_box_only_when_exactly_one_box_was_drawn():
    prev = [{"xmin": 1, "ymin": 1, "xmax": 20, "ymax": 20, "label": "circle"}]
    drawn = {"image": "x", "boxes": [{"xmin": 50, "ymin": 50, "xmax": 90, "ymax": 90, "label": "circle"}, *prev]}
    out = widget.relabel_new_box(drawn, prev, "triangle", (0, 0, 255))
    assert out["boxes"][0]["label"] == "triangle" and out["boxes"][0]["color"] == "rgb(0, 0, 255)"
    assert out["boxes"][1:] == prev
    moved = {"image": "x", "boxes": [{**prev[0], "xmin": 5}]}
    assert widget.relabel_new_box(moved, prev, "triangle", (0, 0, 255)) is None
    assert widget.relabel_new_box(out, prev, "triangle", (0, 0, 255)) is None  # already labelled


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
    assert res == {"id": img.id, "version": 1, "boxes": 2, "kept": 0, "human": 2, "dropped": []}
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
    (img,) = _add(services, project, tmp_path, [(64, 48)])
    opened = services.review.load_image(project, img.id)
    services.ctx.store.save_predictions(1, 0, None, [(img.id, [Box(1, 1, 9, 9, 0, confidence=0.5, source="model")])])
    with pytest.raises(Conflict, match="auto-annotation job or an import"):
        services.review.save_image(project, img.id, [], opened["version"])


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


# ---- the editor session (the tab's private handlers, with plain widget dicts) -----------------------------

def _as_widget_returns(value):
    """What the widget sends back: whole pixels."""
    return {**value, "boxes": [{**b, **{k: round(b[k]) for k in ("xmin", "ymin", "xmax", "ymax")}}
                               for b in value["boxes"]]}


def test_editor_saves_on_navigation_and_keeps_the_user_on_a_conflict(services, project, tmp_path):
    from annotator.ui.tab_annotate import Editor

    a, b, c = _add(services, project, tmp_path, [(640, 480), (320, 240), (200, 400)])
    services.ctx.store.insert_boxes([_machine(a.id, 10.4, 20.6, 99.5, 80.25, conf=0.91),
                                 _machine(a.id, 300, 300, 320, 330, cls=2, conf=0.1)])
    ed = Editor(services)
    out = ed.open_queue("Shapes", "all", None, None, False, 0, "upload", 0.5, False, None, {}, new_class="square")
    state = out[1]
    assert state["image"]["id"] == a.id and len(state["shown"]) == 1  # the 0.1 box is hidden at 0.5
    value, _ = widget.to_widget(state["image"]["file"], state["boxes"], CLASSES, COLOURS, min_conf=0.5)
    edited = _as_widget_returns(value)
    edited["boxes"].insert(0, {"xmin": 400, "ymin": 100, "xmax": 450, "ymax": 160, "label": ""})  # just drawn
    out = ed.go(1, edited, state, 0.5, False)  # ArrowRight
    state = out[1]
    assert state["image"]["id"] == b.id and state["pos"] == 1
    saved = sorted((x.class_idx, x.source, x.xyxy) for x in services.ctx.store.boxes_for_image(a.id))
    assert saved == [(0, "model", (10.4, 20.6, 99.5, 80.25)), (1, "human", (400.0, 100.0, 450.0, 160.0)),
                     (2, "model", (300.0, 300.0, 320.0, 330.0))]  # the hidden box is kept too

    # Another tab saves image b; this tab's edit must not erase it, and this tab stays on b with its edit.
    other = services.review.load_image(project, b.id)
    services.review.save_image(project, b.id, [{"class": "circle", "x1": 1, "y1": 1, "x2": 50, "y2": 50}],
                        other["version"], user="bob")
    value, _ = widget.to_widget(state["image"]["file"], state["boxes"], CLASSES, COLOURS)
    mine = {**value, "boxes": [{"xmin": 5, "ymin": 5, "xmax": 60, "ymax": 70, "label": "triangle"}]}
    with pytest.raises(Conflict, match="bob"):
        ed.go(1, mine, state, 0.0, False)
    assert [(x.class_idx, x.created_by) for x in services.ctx.store.boxes_for_image(b.id)] == [(0, "bob")]

    # Approve-and-next with nothing changed writes no boxes, records the review and moves on.
    state = ed.open_queue("Shapes", "all", None, None, False, 0, "upload", 0.0, False, None, {})[1]
    value, _ = widget.to_widget(state["image"]["file"], state["boxes"], CLASSES, COLOURS)
    version = services.ctx.store.editor_state(a.id)["version"]
    out = ed.review("approved", True, _as_widget_returns(value), state, 0.0, False, False)
    assert out[1]["image"]["id"] == b.id
    st = services.ctx.store.editor_state(a.id)
    assert st["status"] == "approved" and st["version"] == version


def test_a_save_right_after_drawing_gives_the_box_the_picked_class(services, project, tmp_path):
    """The relabel round trip may not be back yet: settle() applies it to what the save handler gets."""
    from annotator.ui.tab_annotate import Editor

    (a,) = _add(services, project, tmp_path, [(64, 48)])
    services.ctx.store.insert_boxes([(a.id, Box(1, 1, 9, 9, 0, source="human"))])
    ed = Editor(services)
    out = ed.open_queue("Shapes", "all", None, None, False, 0, "upload", 0.0, False, None, {})
    state, seen = out[1], out[5]
    drawn = {"image": state["image"]["file"], "boxes": [
        {"xmin": 20, "ymin": 10, "xmax": 40, "ymax": 30, "label": "circle"},  # the widget's default label
        *[{**b, **{k: round(b[k]) for k in ("xmin", "ymin", "xmax", "ymax")}} for b in seen]]}
    canvas, state = ed.settle(drawn, state, seen, "triangle")
    ed.save(canvas, state, 0.0, False)
    assert sorted((b.class_idx, b.x1) for b in services.ctx.store.boxes_for_image(a.id)) == [(0, 1.0), (2, 20.0)]
    # nothing new drawn (the widget already shows what the server saw): nothing relabelled
    out = ed.open_queue("Shapes", "all", None, None, False, 0, "upload", 0.0, False, None, {})
    same = {"image": out[1]["image"]["file"], "boxes": out[5]}
    assert ed.settle(same, out[1], out[5], "square")[0] is same


def test_editor_refuses_to_save_a_widget_showing_another_image(services, project, tmp_path):
    from annotator.ui.tab_annotate import Editor

    a, b = _add(services, project, tmp_path, [(64, 48), (64, 48)])
    ed = Editor(services)
    state = ed.open_queue("Shapes", "all", None, None, False, 0, "upload", 0.0, False, None, {})[1]
    other = services.review.load_image(project, b.id)
    stale = {"image": other["file"], "boxes": [{"xmin": 1, "ymin": 1, "xmax": 9, "ymax": 9, "label": "circle"}]}
    assert other["file"] != state["image"]["file"]  # two different stored files
    with pytest.raises(UserError, match="another image"):
        ed.save(stale, state, 0.0, False)
    assert services.ctx.store.boxes_for_image(a.id) == [] and services.ctx.store.boxes_for_image(b.id) == []


# ---- large images: the editor shows a smaller copy, boxes are scaled both ways ---------------------------

def test_scaled_widget_round_trip_keeps_untouched_boxes_and_scales_edits_back():
    boxes = [{"id": 1, "class_idx": 0, "x1": 1234.56, "y1": 789.01, "x2": 2345.67, "y2": 1890.12, "confidence": 0.8,
              "source": "model", "model_id": 2, "job_id": 3, "created_by": None}]
    scale = (2560 / 6000, 1707 / 4000)
    value, shown = widget.to_widget("/d.jpg", boxes, CLASSES, COLOURS, scale=scale)
    assert value["boxes"][0]["xmin"] == pytest.approx(1234.56 * scale[0])
    back = _as_widget_returns(value)  # whole shown pixels: up to 1.2 stored pixels off
    assert widget.same_boxes(widget.from_widget(back, boxes, shown, CLASSES, 6000, 4000, scale=scale), boxes)
    back["boxes"].append({"xmin": 100, "ymin": 50, "xmax": 200, "ymax": 150, "label": "square"})
    new = widget.from_widget(back, boxes, shown, CLASSES, 6000, 4000, scale=scale)[1]
    assert (new["x1"], new["y1"], new["x2"], new["y2"]) == pytest.approx(
        (100 / scale[0], 50 / scale[1], 200 / scale[0], 150 / scale[1]))


def test_large_images_get_a_display_copy_small_ones_are_shown_as_stored(services, project, tmp_path):
    import dataclasses

    from PIL import Image

    services.ctx.settings = dataclasses.replace(services.settings, editor_max_side=1000)
    big, small = _add(services, project, tmp_path, [(3000, 2000), (800, 600)])
    d = services.review.load_image(project, big.id)["display"]
    assert (d["width"], d["height"]) == (1000, 667) and d["file"].endswith("-1000.jpg")
    with Image.open(d["file"]) as im:
        assert im.size == (1000, 667)
    assert services.review.display_image(big) == d  # made once, then reused
    assert services.review.load_image(project, small.id)["display"]["file"] == str(services.images.image_file(small))
