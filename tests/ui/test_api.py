"""The app launched for real on a free port, driven only through gradio_client (as a script would)."""

from __future__ import annotations

import inspect
import time
import zipfile

import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from annotator.demo import scenes
from annotator.launch import start
from annotator.services import DOMAINS, review
from annotator.settings import Settings
from annotator.types import API_ALIASES
from annotator.ui import api as public_api
from annotator.ui import build_app

from ..imagegen import jpeg_bytes
from ..support import free_port

pytestmark = [pytest.mark.slow]


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
    for name in ("/create_project", "/list_projects", "/add_images", "/list_images", "/project_details"):
        assert name in api

    created = client.predict(name="Parking", classes=["car", "truck"], api_name="/create_project")
    assert [c["name"] for c in created["classes"]] == ["car", "truck"]

    with pytest.raises(AppError, match="already exists"):
        client.predict(name="parking", classes="x", api_name="/create_project")

    archive = tmp_path / "lot.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("north/a.jpg", jpeg_bytes(320, 240, seed=1))
        zf.writestr("south/b.jpg", jpeg_bytes(200, 300, seed=2))
        zf.writestr("south/b_copy.jpg", jpeg_bytes(200, 300, seed=2))
        zf.writestr("notes.txt", b"not an image")
    report = client.predict(project="Parking", sources=[handle_file(str(archive))], api_name="/add_images")
    assert report["dataset"] == "lot"
    assert sorted(report["added_files"]) == ["north/a.jpg", "south/b.jpg"]
    assert [d["name"] for d in report["duplicate_files"]] == ["south/b_copy.jpg"]
    assert [s["name"] for s in report["skipped_files"]] == ["lot.zip:notes.txt"]
    # Was: every uploaded zip stayed in Gradio's temp folder for a day (each upload cost its size twice).
    left = [f for f in (app.services.settings.tmp_dir / "gradio").rglob("*.zip")]
    assert left == [], left

    listing = client.predict(project="Parking", api_name="/list_images")
    assert (listing["total"], listing["page"], listing["pages"]) == (2, 0, 1)
    assert {(i["rel_path"], i["width"], i["height"], i["dataset"]) for i in listing["images"]} == {
        ("north/a.jpg", 320, 240, "lot"), ("south/b.jpg", 200, 300, "lot")}
    details = client.predict(project="Parking", api_name="/project_details")
    assert details["datasets"] == [{"name": "lot", "images": 2}]
    assert client.predict(project="Parking", dataset="lot", status="approved", api_name="/list_images")["total"] == 0

    projects = client.predict(api_name="/list_projects")
    assert [(p["name"], p["images"]) for p in projects] == [("Parking", 2)]

    with pytest.raises(AppError, match="Nothing to export"):
        client.predict(project="Parking", fmt="yolo", api_name="/export_dataset")
    done = client.predict(project="Parking", image_ids=[i["id"] for i in listing["images"]], status="approved",
                          api_name="/set_review_status")
    assert done["images"] == 2 and done["by"] == "local"
    result = client.predict(project="Parking", fmt="coco", include_images=False, api_name="/export_dataset")
    assert (result["format"], result["images"], result["negatives"]) == ("coco", 2, 2)
    assert result["file"].startswith(str(app.services.settings.data_dir))  # where the app keeps it
    assert result["download"] != result["file"]  # downloaded by gradio_client
    assert zipfile.ZipFile(result["download"]).namelist() == ["annotations.json"]  # labels only


def test_unknown_project_is_a_clear_api_error(app):
    client = Client(app.url, verbose=False)
    with pytest.raises(AppError, match="No project named 'Nope'"):
        client.predict(project="Nope", api_name="/list_images")


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
        # Who acts is the signed-in user, never a parameter.
        client.predict(name="Lot", classes="car", api_name="/create_project")
        archive = tmp_path / "one.zip"
        with zipfile.ZipFile(archive, "w") as zf:
            zf.writestr("a.jpg", jpeg_bytes(64, 48, seed=3))
        report = client.predict(project="Lot", sources=[handle_file(str(archive))], api_name="/add_images")
        (image,) = client.predict(project="Lot", api_name="/list_images")["images"]
        done = client.predict(project="Lot", image_ids=[image["id"]], status="rejected", api_name="/set_review_status")
        assert report["added"] == 1 and done["by"] == "ann"
    finally:
        running.close()


def test_roles_through_the_api(tmp_path):
    """A users file with three roles: through the public API, a viewer reads but every write is refused with
    the role needed; an annotator uploads and reviews but cannot delete a project; an admin can."""
    from annotator.users import upsert_user

    data = tmp_path / "data"
    for name, role in (("ann", "admin"), ("bob", "annotator"), ("cy", "viewer")):
        upsert_user(data / "users.txt", name, f"{name}-pass", role)
    settings = Settings.from_env({"ANNOTATOR_DATA_DIR": str(data), "ANNOTATOR_DEMO": "0",
                                  "ANNOTATOR_LOCAL_WORKER": "0"}).with_overrides(port=free_port())
    running = start(settings, block=False, quiet=True)
    try:
        ann, bob, cy = (Client(running.url, auth=(n, f"{n}-pass"), verbose=False) for n in ("ann", "bob", "cy"))
        with pytest.raises(AppError, match="Creating a project needs the admin role; bob is an annotator"):
            bob.predict(name="Lot", classes="car", api_name="/create_project")
        ann.predict(name="Lot", classes="car", api_name="/create_project")
        assert [p["name"] for p in cy.predict(api_name="/list_projects")] == ["Lot"]  # a viewer reads
        archive = tmp_path / "one.zip"
        with zipfile.ZipFile(archive, "w") as zf:
            zf.writestr("a.jpg", jpeg_bytes(64, 48, seed=3))
        with pytest.raises(AppError, match="Uploading images needs the annotator role; cy is a viewer"):
            cy.predict(project="Lot", sources=[handle_file(str(archive))], api_name="/add_images")
        assert bob.predict(project="Lot", sources=[handle_file(str(archive))], api_name="/add_images")["added"] == 1
        (image,) = cy.predict(project="Lot", api_name="/list_images")["images"]
        with pytest.raises(AppError, match="Reviewing images needs the annotator role; cy is a viewer"):
            cy.predict(project="Lot", image_ids=[image["id"]], status="approved", api_name="/set_review_status")
        done = bob.predict(project="Lot", image_ids=[image["id"]], status="approved", api_name="/set_review_status")
        assert done["by"] == "bob"
        with pytest.raises(AppError, match="Deleting a project needs the admin role; bob is an annotator"):
            bob.predict(project="Lot", confirm="Lot", api_name="/delete_project")
        with pytest.raises(AppError, match="Renaming a class needs the admin role; cy is a viewer"):
            cy.predict(project="Lot", class_ref="car", new_name="auto", api_name="/rename_class")
        assert ann.predict(project="Lot", confirm="Lot", api_name="/delete_project") == "Lot"
        assert cy.predict(api_name="/whoami") == {"user": "cy", "role": "viewer", "login": True, "can": ["viewer"]}
        assert bob.predict(api_name="/whoami")["can"] == ["viewer", "annotator"]
        for c in (ann, bob, cy):
            c.close()
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
        models = client.predict(project="Demo", api_name="/list_models")
        assert [m["name"] for m in models] == ["demo-shapes"] and models[0]["classes"] == list(scenes.CLASSES)
        mapping = client.predict(project="Demo", model="demo-shapes", api_name="/class_mapping")
        assert mapping == {str(i): i for i in range(len(scenes.CLASSES))}  # model index -> project index, by name
        job = client.predict(project="Demo", model="demo-shapes", device="cpu", overrides=mapping,
                             api_name="/start_annotation")
        assert job["status"] == "queued" and job["total"] == 24
        deadline = time.time() + 180
        while job["status"] in ("queued", "running") and time.time() < deadline:
            time.sleep(0.5)
            job = client.predict(job_id=job["id"], api_name="/get_job")
        assert job["status"] == "succeeded", job
        assert job["result"]["images"] == 24 and job["result"]["boxes"] >= 24
        with pytest.raises(AppError, match="already succeeded"):
            client.predict(job_id=job["id"], api_name="/cancel_job")
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
    q = client.predict(project="Yard", status="unreviewed", sort="uncertain", limit=20, api_name="/review_queue")
    assert q["total"] == 3 and [i["id"] for i in q["items"]] == [ids[1], ids[2], ids[0]]
    img = client.predict(project="Yard", image_id=ids[1], api_name="/load_image")
    assert img["width"] == 160 and img["boxes"][0]["confidence"] == 0.3 and img["version"] == 0
    # A box names its class by index (as load_image gives it) or by name.
    boxes = img["boxes"] + [{"class": "square", "x1": 100, "y1": 10, "x2": 150, "y2": 60},
                            {"class_idx": 0, "x1": 10, "y1": 70, "x2": 40, "y2": 100}]
    saved = client.predict(project="Yard", image_id=img["id"], boxes=boxes, version=img["version"],
                           api_name="/save_image")
    assert (saved["kept"], saved["human"], saved["version"]) == (1, 2, 1)
    with pytest.raises(AppError, match="NOT saved"):
        client.predict(project="Yard", image_id=img["id"], boxes=[], version=img["version"], api_name="/save_image")
    done = client.predict(project="Yard", image_ids=[ids[1], ids[2]], status="approved",
                          api_name="/set_review_status")
    assert done["images"] == 2
    stats = client.predict(project="Yard", api_name="/review_stats")
    assert stats["status"] == {"unreviewed": 1, "approved": 2, "rejected": 0}
    stored = sorted((b.source, b.class_idx, b.confidence) for b in svc.ctx.store.boxes_for_image(ids[1]))
    assert stored == [("human", 0, None), ("human", 1, None), ("model", 0, 0.3)]
    client.close()


# --- the API's shape: one name per use case, the services' own parameters ------------------------------------
def _service(name: str):
    domain, _ = public_api.ENDPOINTS[name]
    return getattr(DOMAINS[domain], name)


FORWARDED = {review.review_queue: review.review_queue_ids}  # review_queue passes **filters on


@pytest.mark.parametrize("name", list(public_api.ENDPOINTS))
def test_each_endpoint_takes_its_service_functions_parameters(name):
    """Named like the service function it calls, with that function's parameter names and defaults (the API
    says project / model where the services say ref / model_ref), the user from the request: nothing drifts."""
    fn = _service(name)
    theirs = dict(inspect.signature(fn).parameters)
    if any(p.kind is p.VAR_KEYWORD for p in theirs.values()):
        theirs.update(inspect.signature(FORWARDED[fn]).parameters)
    signature = inspect.signature(getattr(public_api.Api, name)).parameters
    ours = {k: p for k, p in signature.items() if k not in ("self", "request")}
    for k, p in ours.items():
        service_name = API_ALIASES.get(k, k)
        assert service_name in theirs, f"{name}({k}): {fn.__module__}.{name} has no parameter {service_name!r}"
        default = theirs[service_name].default
        if p.default is not p.empty and default is not p.empty:
            assert p.default == default, f"{name}({k}={p.default!r}), but the service's default is {default!r}"
    required = {k for k, p in theirs.items()
                if p.default is p.empty and p.kind is p.POSITIONAL_OR_KEYWORD and k != "ctx"}
    given = {API_ALIASES.get(k, k) for k in ours}
    assert required <= given, f"{name} lacks the service's required {required - given}"
    assert ("user" in theirs) == ("request" in signature), f"{name}: the user comes from the request"


def test_the_public_names_are_the_api_functions_and_nothing_else(services):
    """Every public endpoint is registered once, by gr.api, with the function's parameter names; no UI
    event claims a public name."""
    named = build_app(services).get_api_info()["named_endpoints"]
    assert sorted(named) == sorted(f"/{n}" for n in public_api.ENDPOINTS)
    for name, info in named.items():
        params = [p for p in inspect.signature(getattr(public_api.Api, name[1:])).parameters
                  if p not in ("self", "request")]
        assert [p["parameter_name"] for p in info["parameters"]] == params, name
