"""Roles are enforced in the services: for each role, a representative write per domain is refused or allowed
(a Forbidden names the role needed and the user's role), reads stay open to viewers, and an annotator acts
on their own jobs only. Without login (every other test) everyone is an admin."""

from __future__ import annotations

import dataclasses

import pytest

from annotator.demo import scenes
from annotator.services import Services
from annotator.settings import Settings
from annotator.types import Forbidden, UserError
from annotator.users import User, Users

from ..imagegen import jpeg_bytes

TEAM = Users([User("ann", "admin", plain="a"), User("bob", "annotator", plain="b"), User("cy", "viewer", plain="c")])


@pytest.fixture
def team(tmp_path):
    settings = dataclasses.replace(Settings.from_env({"ANNOTATOR_DATA_DIR": str(tmp_path / "data")}), users=TEAM)
    svc = Services.open(settings)
    try:
        p = svc.projects.create_project("Yard", ["car", "bike"], user="ann")
        folder = tmp_path / "imgs"
        folder.mkdir()
        for i in range(2):
            (folder / f"i{i}.jpg").write_bytes(jpeg_bytes(64, 48, seed=i))
        svc.images.add_images(p, [folder], user="bob")
        yield svc, p, [i.id for i in svc.images.list_images(p).images]
    finally:
        svc.close()


def _refused(call, needed: str, who: str, role: str | None):
    with pytest.raises(Forbidden) as e:
        call()
    msg = str(e.value)
    assert f"needs the {needed} role" in msg, msg
    assert (f"{who} is an {role}" if role and role[0] in "aeiou" else f"{who} is a {role}" if role
            else f"{who} is not a user") in msg, msg
    assert (e.value.needed, e.value.role, e.value.user) == (needed, role, who)


def test_admin_only_writes_refuse_annotators_and_viewers(team):
    svc, p, ids = team
    admin_only = {
        "creating a project": lambda u: svc.projects.create_project("New", ["x"], user=u),
        "deleting a project": lambda u: svc.projects.delete_project(p, "Yard", user=u),
        "renaming a class": lambda u: svc.projects.rename_class(p, "car", "auto", user=u),
        "adding classes": lambda u: svc.projects.add_classes(p, ["truck"], user=u),
        "deleting a class": lambda u: svc.projects.delete_class(p, "bike", user=u),
        "reordering classes": lambda u: svc.projects.reorder_classes(p, ["bike", "car"], user=u),
        "adding a model": lambda u: svc.models.add_model(p, scenes.DEMO_MODEL_PATH, name="m", user=u),
        "configuring splits": lambda u: svc.splits.configure_splits(p, 0.8, 0.2, 0, user=u),
        "moving images between splits": lambda u: svc.splits.set_split(p, "val", user=u),
        "starting a training": lambda u: svc.training.start_training(p, user=u),
        "starting an evaluation": lambda u: svc.training.start_evaluation(p, "m", user=u),
        "importing labels with new classes": lambda u: svc.transfer.import_labels(p, [], "yolo", add_new_classes=True,
                                                                                 user=u),
        "importing labels that replace people's boxes": lambda u: svc.transfer.import_labels(p, [], "yolo",
                                                                                            replace=True, user=u),
    }
    for doing, call in admin_only.items():
        for who, role in (("bob", "annotator"), ("cy", "viewer"), ("mallory", None)):
            _refused(lambda: call(who), "admin", who, role)
    assert [c.name for c in svc.projects.get_project(p).classes] == ["car", "bike"]  # nothing changed
    # The admin may: a representative few (the rest are the same check).
    assert svc.projects.rename_class(p, "car", "auto", user="ann").class_names == ["auto", "bike"]
    assert svc.splits.set_split(p, "val", user="ann")["moved"] == 2
    assert svc.projects.create_project("New", ["x"], user="ann").name == "New"
    assert svc.projects.delete_project("New", "New", user="ann") == "New"


def test_annotator_writes_refuse_viewers_and_allow_annotators(team, tmp_path):
    svc, p, ids = team
    (tmp_path / "more").mkdir()
    (tmp_path / "more" / "m.jpg").write_bytes(jpeg_bytes(32, 32, seed=9))
    annotator = {
        "uploading images": lambda u: svc.images.add_images(p, [tmp_path / "more"], user=u),
        "saving boxes": lambda u: svc.review.save_image(p, ids[0], [{"class": "car", "x1": 1, "y1": 1, "x2": 20,
                                                                     "y2": 20}], 0, user=u),
        "reviewing images": lambda u: svc.review.set_review_status(p, [ids[0]], "approved", user=u),
        "copying boxes": lambda u: svc.review.copy_boxes(p, ids[0], ids[1], user=u),
        "exporting a dataset": lambda u: svc.transfer.export_dataset(p, "yolo", include_images=False, user=u),
        "running auto-annotation": lambda u: svc.annotation.start_annotation(p, "none", user=u),
        "importing labels": lambda u: svc.transfer.import_labels(p, [], "yolo", user=u),
    }
    for doing, call in annotator.items():
        _refused(lambda: call("cy"), "annotator", "cy", "viewer")
        _refused(lambda: call("eve"), "annotator", "eve", None)
    assert svc.images.list_images(p).total == 2  # the viewer's upload added nothing
    assert svc.images.add_images(p, [tmp_path / "more"], user="bob").added == ["m.jpg"]
    assert svc.review.save_image(p, ids[0], [{"class": "car", "x1": 1, "y1": 1, "x2": 20, "y2": 20}], 0,
                                 user="bob")["human"] == 1
    assert len(svc.review.copy_boxes(p, ids[0], ids[1], user="bob")) == 1
    assert svc.review.set_review_status(p, [ids[0]], "approved", user="bob")["by"] == "bob"
    assert svc.transfer.export_dataset(p, "yolo", include_images=False, user="bob")["images"] == 1
    with pytest.raises(UserError) as e:  # past the role check: the model does not exist
        svc.annotation.start_annotation(p, "none", user="bob")
    assert not isinstance(e.value, Forbidden)


def test_viewers_read(team):
    svc, p, ids = team
    assert [x.name for x in svc.projects.list_projects()] == ["Yard"]
    assert svc.review.load_image(p, ids[0])["id"] == ids[0]
    assert svc.review.review_queue(p)["total"] == 2


def test_annotators_cancel_their_own_jobs_admins_anyones(team):
    svc, p, _ = team
    store = svc.ctx.store
    ann_job = store.create_job(p.id, "annotate", {}, 1, user="ann")
    bob_job = store.create_job(p.id, "annotate", {}, 1, user="bob")
    _refused(lambda: svc.jobs.cancel_job(bob_job, user="cy"), "annotator", "cy", "viewer")
    with pytest.raises(Forbidden, match=f"job {ann_job} of ann needs the admin role; bob is an annotator"):
        svc.jobs.cancel_job(ann_job, user="bob")
    with pytest.raises(Forbidden, match="Resuming job"):
        svc.annotation.resume_job(ann_job, user="bob")
    assert svc.jobs.cancel_job(bob_job, user="bob").status == "cancelled"
    assert svc.jobs.cancel_job(ann_job, user="ann").status == "cancelled"


def test_without_login_everyone_is_an_admin(services):
    p = services.projects.create_project("Solo", ["a"])
    assert services.projects.rename_class(p, "a", "b", user="whoever").class_names == ["b"]
    assert services.projects.delete_project(p, "Solo") == "Solo"


def test_class_changes_and_deletes_are_logged_with_the_user(team, caplog):
    svc, p, _ = team
    with caplog.at_level("INFO", logger="annotator.audit"):
        svc.projects.add_classes(p, ["truck"], user="ann")
        svc.projects.delete_project(p, "Yard", user="ann")
    assert "ann: added classes truck to project 'Yard'" in caplog.text
    assert "ann: deleted project 'Yard'" in caplog.text
