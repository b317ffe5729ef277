"""A person in a real browser: Debian's Chromium driven by Playwright (which never downloads a browser).

Creates a project, refuses a bad class edit, uploads a messy zip, and checks the report and the gallery.
Screenshots go to tests/artifacts/ for a human to look at.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from annotator.launch import start
from annotator.settings import Settings

from ..imagegen import jpeg_bytes
from ..support import ARTIFACTS, free_port, require_tool

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = require_tool("chromium", "chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]

@pytest.fixture
def app(tmp_path):
    port = free_port()
    settings = Settings.from_env({"ANNOTATOR_DATA_DIR": str(tmp_path / "data"), "ANNOTATOR_DEMO": "0",
                                  "ANNOTATOR_LOCAL_WORKER": "0"}).with_overrides(port=port)
    running = start(settings, block=False, quiet=True)
    try:
        yield running
    finally:
        running.close()


@pytest.fixture
def page():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        pg = browser.new_page(viewport={"width": 1400, "height": 1000})
        pg.set_default_timeout(30_000)
        errors: list[str] = []
        pg.on("pageerror", lambda e: errors.append(str(e)))
        yield pg
        browser.close()
        assert not errors, f"JavaScript errors on the page: {errors}"


def test_create_project_and_upload_a_messy_zip(app, page, tmp_path):
    ARTIFACTS.mkdir(exist_ok=True)
    archive = tmp_path / "street.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for i in range(3):
            zf.writestr(f"cam{i % 2}/frame{i}.jpg", jpeg_bytes(320, 240, seed=i))
        zf.writestr("cam0/again.jpg", jpeg_bytes(320, 240, seed=0))
        zf.writestr("../escape.jpg", jpeg_bytes(32, 32, seed=9))
        zf.writestr("__MACOSX/cam0/._frame0.jpg", b"junk")
        zf.writestr("cam1/cut.jpg", jpeg_bytes(320, 240, seed=5)[:300])

    page.goto(app.url)
    page.get_by_text("No project selected").wait_for()  # the empty state tells a newcomer what to do

    page.get_by_label("Project name").fill("Street")
    page.get_by_label("Classes, one per line (order = YOLO index 0, 1, 2 ...)").fill("car\nperson\nbike")
    page.get_by_role("button", name="Create project").click()
    page.locator("h3", has_text="Street").wait_for()
    for name in ("car", "person", "bike"):
        page.get_by_text(name, exact=True).filter(visible=True).first.wait_for()
    assert page.get_by_label("Project name").input_value() == ""  # the form is cleared for the next one

    # A duplicate class name is refused with a message, and nothing changes.
    page.get_by_text("Edit classes").click()
    page.get_by_label("Add classes (one per line, appended at the end)").fill("Car")
    page.get_by_role("button", name="Add", exact=True).click()
    page.get_by_text("Class name 'Car' already exists").filter(visible=True).first.wait_for()
    assert app.services.projects.get_project("Street").class_names == ["car", "person", "bike"]
    page.screenshot(path=str(ARTIFACTS / "projects-tab.png"), full_page=True)

    page.get_by_role("tab", name="Upload").click()
    page.locator("input[type=file][multiple]").set_input_files(str(archive))
    page.get_by_text("street", exact=True).filter(visible=True).first.wait_for()  # Gradio splits stem/.ext
    page.get_by_role("button", name="Upload", exact=True).click()
    page.get_by_text("Added 3 image(s)").filter(visible=True).first.wait_for(timeout=60_000)
    page.get_by_text("zip-slip").filter(visible=True).first.wait_for()
    page.get_by_text("truncated image").filter(visible=True).first.wait_for()
    page.get_by_text("cam0/again.jpg").filter(visible=True).first.wait_for()
    page.get_by_text("3 image(s) shown by this filter").filter(visible=True).first.wait_for()
    assert page.locator(".grid-container img, .gallery img, button.thumbnail-item img").count() >= 3
    page.screenshot(path=str(ARTIFACTS / "upload-tab.png"), full_page=True)

    images = app.services.images.list_images("Street")
    assert sorted(i.rel_path for i in images.images) == ["cam0/frame0.jpg", "cam0/frame2.jpg", "cam1/frame1.jpg"]
    assert not any(p.name == "escape.jpg" for p in tmp_path.rglob("*"))


def test_the_page_says_who_is_signed_in_and_hides_what_a_viewer_cannot_do(tmp_path):
    from playwright.sync_api import sync_playwright

    from annotator.users import upsert_user

    data = tmp_path / "data"
    upsert_user(data / "users.txt", "ann", "a-pass", "admin")
    upsert_user(data / "users.txt", "cy", "c-pass", "viewer")
    settings = Settings.from_env({"ANNOTATOR_DATA_DIR": str(data), "ANNOTATOR_DEMO": "0",
                                  "ANNOTATOR_LOCAL_WORKER": "0"}).with_overrides(port=free_port())
    app = start(settings, block=False, quiet=True)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
            try:
                for who, role, create_visible in (("cy", "viewer", False), ("ann", "admin", True)):
                    context = browser.new_context(viewport={"width": 1400, "height": 1000})
                    page = context.new_page()
                    page.set_default_timeout(30_000)
                    assert page.request.post(f"{app.url}/login", form={"username": who, "password": f"{who[0]}-pass"}).ok
                    page.goto(app.url)
                    page.locator("#aa-whoami", has_text=f"Signed in as {who} · {role}").wait_for()
                    page.wait_for_function(f"document.body.dataset.aaRole === '{role}'")
                    assert page.get_by_role("button", name="Create project").is_visible() is create_visible
                    context.close()
            finally:
                browser.close()
    finally:
        app.close()
