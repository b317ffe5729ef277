"""The app launched for real on a free port, driven only through gradio_client (as a script would)."""

from __future__ import annotations

import time
import zipfile

import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from annotator.launch import start
from annotator.settings import Settings

from annotator.demo import scenes

from .imagegen import jpeg_bytes
from .support import free_port



@pytest.fixture
def app(tmp_path):
    settings = Settings.from_env({"ANNOTATOR_DATA_DIR": str(tmp_path / "data"), "ANNOTATOR_DEMO": "0"}).with_overrides(
        port=free_port())
    running = start(settings, block=False, quiet=True)
    try:
        yield running
    finally:
        running.close()


def test_create_upload_list_through_the_api(app, tmp_path):
    client = Client(app.url, verbose=False)
    api = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
    for name in ("/create_project", "/list_projects", "/upload_images", "/list_images", "/project_details"):
        assert name in api

    created = client.predict("Parking", "car\ntruck", "", api_name="/create_project")
    assert [c["name"] for c in created["classes"]] == ["car", "truck"]

    with pytest.raises(AppError, match="already exists"):
        client.predict("parking", "x", "", api_name="/create_project")

    archive = tmp_path / "lot.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("north/a.jpg", jpeg_bytes(320, 240, seed=1))
        zf.writestr("south/b.jpg", jpeg_bytes(200, 300, seed=2))
        zf.writestr("south/b_copy.jpg", jpeg_bytes(200, 300, seed=2))
        zf.writestr("notes.txt", b"not an image")
    report = client.predict("Parking", [handle_file(str(archive))], "", api_name="/upload_images")
    assert report["dataset"] == "lot"
    assert sorted(report["added_files"]) == ["north/a.jpg", "south/b.jpg"]
    assert [d["name"] for d in report["duplicate_files"]] == ["south/b_copy.jpg"]
    assert [s["name"] for s in report["skipped_files"]] == ["lot.zip:notes.txt"]

    listing = client.predict("Parking", "", "", 1, api_name="/list_images")
    assert listing["total"] == 2
    assert {(i["rel_path"], i["width"], i["height"]) for i in listing["images"]} == {
        ("north/a.jpg", 320, 240), ("south/b.jpg", 200, 300)}
    assert listing["datasets"] == [{"name": "lot", "images": 2}]

    projects = client.predict(api_name="/list_projects")
    assert [(p["name"], p["images"]) for p in projects] == [("Parking", 2)]

    with pytest.raises(AppError, match="Nothing to export"):
        client.predict("Parking", "yolo", [], True, True, 0.2, False, False, api_name="/export_dataset")
    app.services.ctx.store.set_review_status([i["id"] for i in listing["images"]], "approved", "ann")
    result, downloaded = client.predict("Parking", "coco", [], True, False, 0.2, False, False,
                                        api_name="/export_dataset")
    assert (result["format"], result["images"], result["negatives"]) == ("coco", 2, 2)
    assert zipfile.ZipFile(downloaded).namelist() == ["annotations.json"]  # labels only, downloaded


def test_unknown_project_is_a_clear_api_error(app):
    client = Client(app.url, verbose=False)
    with pytest.raises(AppError, match="No project named 'Nope'"):
        client.predict("Nope", "", "", 1, api_name="/list_images")


def test_share_without_auth_is_refused(tmp_path):
    settings = Settings.from_env({"ANNOTATOR_DATA_DIR": str(tmp_path / "data")}).with_overrides(share=True)
    with pytest.raises(Exception, match="refusing to start without login"):
        start(settings, block=False, quiet=True)
    assert not (tmp_path / "data" / "metadata.duckdb").exists()


def test_auth_protects_the_api(tmp_path):
    settings = Settings.from_env({
        "ANNOTATOR_DATA_DIR": str(tmp_path / "data"), "ANNOTATOR_AUTH": "ann:secret", "ANNOTATOR_DEMO": "0",
        "ANNOTATOR_LOCAL_WORKER": "0",
    }).with_overrides(port=free_port())
    running = start(settings, block=False, quiet=True)
    try:
        with pytest.raises(Exception):
            Client(running.url, verbose=False)
        client = Client(running.url, auth=("ann", "secret"), verbose=False)
        assert client.predict(api_name="/list_projects") == []
    finally:
        running.close()


def test_fresh_app_opens_the_demo_and_auto_annotates_it(tmp_path):
    """`make run` on an empty data folder: the Demo project, its images and model; one call runs it."""
    settings = Settings.from_env({"ANNOTATOR_DATA_DIR": str(tmp_path / "data")}).with_overrides(port=free_port())
    running = start(settings, block=False, quiet=True)
    try:
        client = Client(running.url, verbose=False)
        (demo_project,) = client.predict(api_name="/list_projects")
        assert demo_project["name"] == "Demo" and demo_project["images"] == 24
        models = client.predict("Demo", api_name="/list_models")
        assert [m["name"] for m in models] == ["demo-shapes"] and models[0]["classes"] == list(scenes.CLASSES)
        mapping = client.predict("Demo", "demo-shapes", api_name="/class_mapping")
        job = client.predict("Demo", "demo-shapes", [], 0.25, 0.7, 0, 300, "cpu", 0, "unreviewed", mapping,
                             api_name="/auto_annotate")
        assert job["status"] == "queued" and job["total"] == 24
        deadline = time.time() + 180
        while job["status"] in ("queued", "running") and time.time() < deadline:
            time.sleep(0.5)
            job = client.predict(job["id"], api_name="/job_status")
        assert job["status"] == "succeeded", job
        assert job["result"]["images"] == 24 and job["result"]["boxes"] >= 24
        with pytest.raises(AppError, match="already succeeded"):
            client.predict(job["id"], api_name="/cancel_job")
        info = client.predict(api_name="/system_info")
        assert info["app"]["device"] == "cpu" and "torch" in info["app"]
        assert [w["device"] for w in info["workers"]] == ["cpu"]
    finally:
        running.close()


def test_review_through_the_api(app, tmp_path):
    """The README's review example: queue, load, save (provenance kept by id), approve, a stale save refused."""
    svc = app.services
    p = svc.projects.create_project("Yard", ["circle", "square"])
    folder = tmp_path / "yard"
    folder.mkdir()
    for i in range(3):
        (folder / f"y{i}.jpg").write_bytes(jpeg_bytes(160, 120, seed=20 + i))
    svc.images.add_images(p, [folder])
    ids = [i.id for i in svc.ctx.store.list_images(p.id, offset=0, limit=10)]
    from annotator.types import Box
    svc.ctx.store.insert_boxes([(ids[1], Box(5.5, 6.25, 50, 60, 0, confidence=0.3, source="model", job_id=4)),
                            (ids[2], Box(5, 5, 40, 40, 1, confidence=0.9, source="model", job_id=4))])

    client = Client(app.url, verbose=False)
    api = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
    for name in ("/load_image", "/save_image", "/set_review_status", "/review_queue", "/review_stats"):
        assert name in api
    q = client.predict("Yard", "unreviewed", "", "", False, None, "uncertain", 0, 20, api_name="/review_queue")
    assert q["total"] == 3 and [i["id"] for i in q["items"]] == [ids[1], ids[2], ids[0]]
    img = client.predict("Yard", ids[1], api_name="/load_image")
    assert img["width"] == 160 and img["boxes"][0]["confidence"] == 0.3 and img["version"] == 0
    boxes = img["boxes"] + [{"class": "square", "x1": 100, "y1": 10, "x2": 150, "y2": 60}]
    saved = client.predict("Yard", img["id"], img["version"], boxes, api_name="/save_image")
    assert (saved["kept"], saved["human"], saved["version"]) == (1, 1, 1)
    with pytest.raises(AppError, match="NOT saved"):
        client.predict("Yard", img["id"], img["version"], [], api_name="/save_image")
    done = client.predict("Yard", f"{ids[1]}, {ids[2]}", "approved", None, api_name="/set_review_status")
    assert done["images"] == 2
    stats = client.predict("Yard", api_name="/review_stats")
    assert stats["status"] == {"unreviewed": 1, "approved": 2, "rejected": 0}
    stored = sorted((b.source, b.class_idx, b.confidence) for b in svc.ctx.store.boxes_for_image(ids[1]))
    assert stored == [("human", 1, None), ("model", 0, 0.3)]
    client.close()
