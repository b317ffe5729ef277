"""Issue 15's keys in the real editor (Chromium): a likely label error is shown on its image, Y applies the
model's suggestion and saves it, N dismisses; a tracked machine box on a video frame deleted with Delete,
then T deletes its track in the following frames. Each test checks what the database holds afterwards."""

from __future__ import annotations

import pytest

from annotator.types import Box

from ..test_video import frame_bgr, write_video
from .test_browser import ARTIFACTS
from .test_editor_browser import (app, boxes, browser, click_at, editor_state, make_project, open_tab,  # noqa: F401
                                  page, stored, wait_ready, wait_saved)

pytestmark = pytest.mark.browser


def _msg(page, text):
    page.locator("#aa-editor .aa-msg").filter(has_text=text).wait_for()


def test_y_applies_a_findings_suggestion_and_n_dismisses_one(app, page, tmp_path):
    svc = app.services
    name, (a, b) = make_project(app, tmp_path, [(640, 480), (640, 480)], classes=("car", "person"))
    p = svc.projects.get_project(name)
    for image_id in (a, b):
        v = svc.review.load_image(p, image_id)["version"]
        svc.review.save_image(p, image_id, [{"class_idx": 0, "x1": 100, "y1": 100, "x2": 220, "y2": 200}], version=v)
        svc.review.set_review_status(p, [image_id], "approved")
    box_a = svc.ctx.store.boxes_for_image(a)[0].id
    svc.ctx.store.save_label_check(p.id, 0, 0, None, [a, b], [
        {"image_id": a, "kind": "wrong_class", "score": 0.9, "box_id": box_a, "class_idx": 0, "suggestion_class": 1,
         "box": (100, 100, 220, 200), "confidence": 0.9, "message": "labelled 'car', the model says 'person' (0.90)"},
        {"image_id": b, "kind": "missed", "score": 0.7, "box_id": None, "class_idx": 1, "suggestion_class": 1,
         "box": (300, 250, 400, 380), "confidence": 0.7, "message": "the model sees a 'person' (0.70) with no label"}])

    open_tab(page, app, name)
    page.get_by_label("Likely label errors, worst first (from a label check: Health tab)").check()
    wait_ready(page, a)  # the worst finding first, though the image is approved
    page.locator("#aa-editor .aa-finding").filter(has_text="the model says 'person'").wait_for()
    page.screenshot(path=str(ARTIFACTS / "editor-label-error.png"))
    page.keyboard.press("y")
    _msg(page, "Applied the model's suggestion")
    wait_saved(page)
    assert [(c, s) for c, s, *_ in stored(app, a)] == [(1, "human")]  # reclassed, a person's edit now
    assert [f["status"] for f in svc.quality.label_errors(p, a, status="")] == ["accepted"]
    page.locator("#aa-editor .aa-findbar").wait_for(state="hidden")  # nothing more on this image

    page.keyboard.press("ArrowRight")
    wait_ready(page, b)
    page.locator("#aa-editor .aa-finding").filter(has_text="no label").wait_for()
    page.keyboard.press("n")
    _msg(page, "Dismissed")
    assert [(c, s) for c, s, *_ in stored(app, b)] == [(0, "human")]  # the label stays
    assert [f["status"] for f in svc.quality.label_errors(p, b, status="")] == ["dismissed"]


def test_delete_then_t_removes_a_track_from_the_following_frames(app, page, tmp_path):
    svc = app.services
    video = write_video(tmp_path / "cam.mp4", (frame_bgr(i) for i in range(8)), 10)
    p = svc.projects.create_project("Tracks", ["car", "person"])
    svc.images.add_images(p, [video], sampling="all")
    frames = sorted(svc.images.list_images(p).images, key=lambda i: i.frame_index)
    svc.ctx.store.insert_boxes(
        [(f.id, Box(40 + 5 * k, 60, 120 + 5 * k, 140, 0, confidence=0.9, source="model", job_id=7, track_id=3))
         for k, f in enumerate(frames)]
        + [(f.id, Box(200, 150, 260, 220, 1, confidence=0.8, source="model", job_id=7, track_id=4)) for f in frames])
    svc.review.set_review_status(p, [frames[5].id], "approved")  # a person's: its boxes stay

    open_tab(page, app, "Tracks")
    page.get_by_label("All", exact=True).filter(visible=True).first.check()  # frame 5 is approved
    page.wait_for_function("window.aaEditor.queue().ids.length === 8")  # the new queue, not the unreviewed one
    wait_ready(page, frames[0].id)
    page.locator("#aa-editor .aa-frame").filter(has_text="frame 0 · 00:00.0").wait_for()
    assert sorted(b["track_id"] for b in boxes(page)) == [3, 4]
    click_at(page, 80, 100)  # the car, track 3
    page.keyboard.press("Delete")
    assert [b["track_id"] for b in boxes(page)] == [4], editor_state(page)
    _msg(page, "T: also delete track #3 in the following frames")
    page.keyboard.press("t")
    _msg(page, "Deleted track #3 in 6 following frame(s): 6 box(es)")
    for f in frames[1:]:
        tracks = sorted(b.track_id for b in svc.ctx.store.boxes_for_image(f.id))
        assert tracks == ([3, 4] if f.frame_index == 5 else [4]), f.frame_index
    page.keyboard.press("ArrowRight")  # saves frame 0: its car goes too
    wait_ready(page, frames[1].id)
    assert [b["track_id"] for b in boxes(page)] == [4]
    assert [b.track_id for b in svc.ctx.store.boxes_for_image(frames[0].id)] == [4]
