"""The editor's server functions (what the page's JavaScript calls, through the public API's functions):
one JSON object in, one out, errors and conflicts as data, never a stack trace; and who is calling."""

from __future__ import annotations

from types import SimpleNamespace

from annotator.types import Box
from annotator.ui.api import Api
from annotator.ui.common import username
from annotator.ui.editor import EditorFunctions

from ..imagegen import jpeg_bytes

CLASSES = ["circle", "square", "triangle"]


def _add(services, project, tmp_path, sizes):
    folder = tmp_path / "imgs"
    folder.mkdir(exist_ok=True)
    for n, (w, h) in enumerate(sizes):
        (folder / f"img{n:02d}.jpg").write_bytes(jpeg_bytes(w, h, seed=n))
    services.images.add_images(project, [folder], dataset="set")
    return services.ctx.store.list_images(project.id, offset=0, limit=100)


def _machine(image_id, x1, y1, x2, y2, cls=0, conf=0.9):
    return (image_id, Box(x1, y1, x2, y2, cls, confidence=conf, source="model", model_id=None, job_id=7))


def test_editor_server_functions_answer_data_never_a_stack_trace(services, project, tmp_path):
    a, b = _add(services, project, tmp_path, [(640, 480), (64, 48)])
    services.ctx.store.insert_boxes([_machine(a.id, 10.5, 20.25, 99.5, 80.75, conf=0.9)])
    fns = {f.__name__: f for f in EditorFunctions(Api(services)).server_functions()}
    assert sorted(fns) == ["aa_changes", "aa_copy", "aa_finding", "aa_load", "aa_open", "aa_review", "aa_save",
                          "aa_thumbs", "aa_track"]
    opened = fns["aa_open"]({"project": "Shapes", "status": "all", "sort": "uncertain"})
    assert opened["ok"] and opened["ids"] == [a.id, b.id] and opened["classes"] == CLASSES
    assert opened["colours"][0].startswith("#") and opened["counts"] == {"unreviewed": 2, "approved": 0, "rejected": 0}
    img = fns["aa_load"]({"project": "Shapes", "id": a.id})["image"]
    assert img["url"].startswith("gradio_api/file=") and img["display"]["width"] == 640 and img["version"] == 0
    (box,) = img["boxes"]
    saved = fns["aa_save"]({"project": "Shapes", "id": a.id, "version": 0, "boxes": [box, {**box, "id": None,
                                                                                             "class_idx": 2}]})
    assert saved["ok"] and saved["saved"]["kept"] == 1 and saved["version"] == 1 and saved["by"] == "local"
    assert saved["boxes"][0]["id"] == box["id"]  # the untouched box kept its row
    assert saved["boxes"] == fns["aa_load"]({"project": "Shapes", "id": a.id})["image"]["boxes"]
    # stale: a structured conflict the page shows (who, when, the version now), nothing written
    stale = fns["aa_review"]({"project": "Shapes", "id": a.id, "version": 0, "status": "approved", "boxes": None})
    assert stale["ok"] is False and stale["conflict"]["changed_by"] == "local" and stale["conflict"]["version"] == 1
    assert "NOT saved" in stale["error"] and services.ctx.store.editor_state(a.id)["status"] == "unreviewed"
    done = fns["aa_review"]({"project": "Shapes", "id": a.id, "version": 1, "status": "rejected", "stay": True})
    assert done["ok"] and done["version"] == 2 and done["image"]["status"] == "rejected"
    assert done["counts"]["rejected"] == 1
    # bad input and unexpected failures: a message, no exception
    assert fns["aa_load"]({"project": "Shapes", "id": "x"}) == {"ok": False, "error": "image id must be a number, got 'x'"}
    assert fns["aa_save"]("not a dict")["error"] == "Choose a project first"
    broken = EditorFunctions(Api(services))
    broken.image = lambda *a: 1 / 0
    out = {f.__name__: f for f in broken.server_functions()}["aa_load"]({"project": "Shapes", "id": a.id})
    assert out["ok"] is False and "ZeroDivisionError" in out["error"] and "Traceback" not in out["error"]
    ch = fns["aa_changes"]({"project": "Shapes", "ids": [a.id, b.id], "film": [b.id], "query": {"status": "unreviewed"}})
    assert ch["ok"] and ch["images"][str(a.id)]["version"] == 2 and ch["ids"] == [b.id]
    same = fns["aa_changes"]({"project": "Shapes", "ids": [], "query": {"status": "unreviewed"}, "total": 2})
    assert same["ok"] and "ids" not in same  # as many images as the page knows: no queue query
    assert ch["film"][0]["thumb"].startswith("gradio_api/file=") and ch["revision"] == services.review.project_revision(project)
    copied = fns["aa_copy"]({"project": "Shapes", "from": a.id, "to": b.id})
    assert copied["ok"] and len(copied["boxes"]) == 2 and all(x["id"] is None for x in copied["boxes"])


def test_the_editor_knows_the_signed_in_user_from_gradio_s_session_cookie():
    app = SimpleNamespace(cookie_id="abc", tokens={"tok": "ann"})
    assert username(SimpleNamespace(username="bob")) == "bob"  # a gr.Request
    assert username(SimpleNamespace(app=app, cookies={"access-token-abc": "tok"})) == "ann"  # the raw request
    assert username(SimpleNamespace(app=app, cookies={"access-token-unsecure-abc": "tok"})) == "ann"
    assert username(SimpleNamespace(app=app, cookies={})) == "local"  # no auth
    assert username(None) == "local"


def test_a_viewer_s_save_and_review_come_back_as_errors(tmp_path):
    """Roles are the services' guard: the editor's server functions answer a refusal as {ok: false, error}."""
    import dataclasses

    from annotator.services import Services
    from annotator.settings import Settings
    from annotator.users import User, Users

    team = Users([User("ann", "admin", plain="a"), User("cy", "viewer", plain="c")])
    settings = dataclasses.replace(Settings.from_env({"ANNOTATOR_DATA_DIR": str(tmp_path / "data")}), users=team)
    services = Services.open(settings)
    try:
        project = services.projects.create_project("Shapes", CLASSES, user="ann")
        folder = tmp_path / "imgs"
        folder.mkdir()
        (folder / "a.jpg").write_bytes(jpeg_bytes(64, 48, seed=1))
        services.images.add_images(project, [folder], user="ann")
        (a,) = services.ctx.store.list_images(project.id, offset=0, limit=10)
        fns = {f.__name__: f for f in EditorFunctions(Api(services)).server_functions()}
        cy = SimpleNamespace(username="cy")
        assert fns["aa_load"]({"project": "Shapes", "id": a.id}, request=cy)["ok"]  # a viewer reads
        box = {"class_idx": 0, "x1": 1, "y1": 1, "x2": 20, "y2": 20}
        saved = fns["aa_save"]({"project": "Shapes", "id": a.id, "version": 0, "boxes": [box]}, request=cy)
        assert saved == {"ok": False, "error": "Saving boxes needs the annotator role; cy is a viewer"}
        reviewed = fns["aa_review"]({"project": "Shapes", "id": a.id, "version": 0, "status": "approved"}, request=cy)
        assert reviewed["ok"] is False and "needs the annotator role; cy is a viewer" in reviewed["error"]
        copied = fns["aa_copy"]({"project": "Shapes", "from": a.id, "to": a.id}, request=cy)
        assert copied["ok"] is False and "annotator role" in copied["error"]
        assert services.ctx.store.editor_state(a.id)["status"] == "unreviewed"
        assert fns["aa_save"]({"project": "Shapes", "id": a.id, "version": 0, "boxes": [box]},
                              request=SimpleNamespace(username="ann"))["ok"]
    finally:
        services.close()


def test_the_header_says_who_is_signed_in_only_with_login():
    from annotator.ui import render_whoami

    assert render_whoami({"user": "local", "role": "admin", "login": False}) == ""
    assert render_whoami({"user": "cy", "role": "viewer", "login": True}) == "Signed in as **cy** · viewer"
