"""The review editor in a real browser (Debian's Chromium through Playwright, never a downloaded browser):
draw a box by mouse drag, change its class, Ctrl+S, ArrowRight, A on the next image, then check that the
database holds exactly those boxes and review states. The screenshot goes to tests/artifacts/editor.png."""

from __future__ import annotations

import pytest

from annotator.launch import start
from annotator.settings import Settings
from annotator.types import Box

from ..imagegen import jpeg_bytes
from ..support import free_port
from .test_browser import ARTIFACTS, page  # noqa: F401  (the Chromium page fixture)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SIZES = [(1600, 1200), (300, 500), (640, 480)]  # larger than the canvas, portrait and smaller, landscape
MAX_SIDE = 1000  # the first image is shown as a 1000x750 copy: box corners scaled both ways


@pytest.fixture
def app(tmp_path):
    settings = Settings.from_env({"ANNOTATOR_DATA_DIR": str(tmp_path / "data"), "ANNOTATOR_DEMO": "0",
                                  "ANNOTATOR_LOCAL_WORKER": "0", "ANNOTATOR_EDITOR_MAX_SIDE": str(MAX_SIDE)}
                                 ).with_overrides(port=free_port())
    running = start(settings, block=False, quiet=True)
    svc = running.services
    p = svc.projects.create_project("Street", ["car", "person", "bike"])
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i, (w, h) in enumerate(SIZES):
        (folder / f"frame{i}.jpg").write_bytes(jpeg_bytes(w, h, seed=i))
    svc.images.add_images(p, [folder], dataset="cam")
    first = svc.ctx.store.list_images(p.id, offset=0, limit=10)[0]
    svc.ctx.store.insert_boxes([(first.id, Box(100.3, 200.7, 500.2, 600.9, 0, confidence=0.91, source="model",
                                           job_id=1))])
    try:
        yield running
    finally:
        running.close()


def _toast(page, text):
    page.locator(".toast-body, [data-testid=toast-body]").filter(has_text=text).first.wait_for(timeout=20_000)


def _drag_box(page, bb, size, box):
    """Draw ``box`` (image pixels) with the mouse; returns the image -> screen mapping. The widget shows an
    image wider than the canvas scaled to its width, a smaller one at 1:1, centred."""
    w, h = size
    scale = min(bb["width"] / w, bb["height"] / h, 1.0)
    ox, oy = (bb["width"] - w * scale) / 2, (bb["height"] - h * scale) / 2

    def screen(x, y):
        return bb["x"] + ox + x * scale, bb["y"] + oy + y * scale

    page.get_by_role("button", name="Create box").click()
    (x0, y0), (x1, y1) = screen(box[0], box[1]), screen(box[2], box[3])
    page.mouse.move(x0, y0)
    page.mouse.down()
    for k in range(1, 11):
        page.mouse.move(x0 + (x1 - x0) * k / 10, y0 + (y1 - y0) * k / 10)
    page.mouse.up()
    page.wait_for_timeout(800)
    return screen


def test_draw_relabel_save_next_approve_with_the_keyboard(app, page):  # noqa: F811
    svc = app.services
    ids = [i.id for i in svc.ctx.store.list_images(svc.projects.get_project("Street").id, offset=0, limit=10)]
    page.goto(app.url)
    page.locator("#aa-project input").fill("Street")
    page.keyboard.press("Enter")
    page.get_by_role("tab", name="Annotate", exact=True).click()
    page.get_by_text("image 1 of 3 in this queue").wait_for()
    canvas = page.locator("#aa-editor canvas")
    canvas.scroll_into_view_if_needed()
    page.wait_for_timeout(500)
    bb = canvas.bounding_box()

    # Draw: from (900, 600) to (1060, 720) in image pixels, through the canvas' scale and centring.
    screen = _drag_box(page, bb, SIZES[0], (900, 600, 1060, 720))

    # Change its class with the editor's own picker: select it, E, pick "person", OK.
    page.get_by_role("button", name="Drag boxes").click()
    page.mouse.click(*screen(980, 660))
    page.keyboard.press("e")
    modal = page.locator("#aa-editor .modal")
    modal.get_by_role("option", name="person").click()
    modal.get_by_role("button", name="OK").click()
    modal.wait_for(state="detached")

    page.keyboard.press("Control+s")
    _toast(page, "Saved")
    page.screenshot(path=str(ARTIFACTS / "editor.png"), full_page=False)
    page.keyboard.press("ArrowRight")
    page.get_by_text("image 2 of 3 in this queue").wait_for()
    # Typing in a text field is typing: "a" and "r" there approve or reject nothing.
    job_box = page.get_by_label("Job", exact=True)
    job_box.click()
    job_box.type("ar")
    page.wait_for_timeout(1000)
    assert svc.ctx.store.editor_state(ids[1])["status"] == "unreviewed"
    assert page.get_by_text("image 2 of 3 in this queue").count() == 1
    page.evaluate("document.activeElement.blur()")
    # On the small portrait image (1:1, centred): key 3 picks "bike" for new boxes, then draw one.
    page.keyboard.press("3")
    canvas.scroll_into_view_if_needed()
    page.wait_for_timeout(300)
    _drag_box(page, canvas.bounding_box(), SIZES[1], (50, 100, 200, 300))
    page.evaluate("document.activeElement.blur()")
    page.keyboard.press("a")  # saves first, then approves and moves on
    page.get_by_text("image 3 of 3 in this queue").wait_for()
    page.get_by_text("approved 1 / total 3").wait_for()

    assert len(list(svc.settings.projects_dir.rglob(f"display/*-{MAX_SIDE}.jpg"))) == 1  # the 1600x1200 one only
    boxes = sorted(svc.ctx.store.boxes_for_image(ids[0]), key=lambda b: b.source)
    assert [(b.source, b.class_idx) for b in boxes] == [("human", 1), ("model", 0)]
    human, machine = boxes
    # the machine box was not touched: exact float corners, confidence and job kept
    assert machine.xyxy == (100.3, 200.7, 500.2, 600.9) and machine.confidence == 0.91 and machine.job_id == 1
    # whole pixels of a 0.625 copy shown at 0.9: a few stored pixels at most
    assert human.xyxy == pytest.approx((900, 600, 1060, 720), abs=5)
    assert human.confidence is None and human.created_by == "local"
    states = {i: svc.ctx.store.editor_state(i) for i in ids}
    assert [states[i]["status"] for i in ids] == ["unreviewed", "approved", "unreviewed"]
    assert states[ids[1]]["reviewed_by"] == "local" and states[ids[0]]["edited_by"] == "local"
    (bike,) = svc.ctx.store.boxes_for_image(ids[1])
    assert bike.class_idx == 2 and bike.source == "human" and bike.xyxy == pytest.approx((50, 100, 200, 300), abs=2)
    assert svc.ctx.store.boxes_for_image(ids[2]) == []
