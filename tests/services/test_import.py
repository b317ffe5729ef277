"""Importing labels made elsewhere: round trips through our own exports, other layouts, bad labels."""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

import pytest

from annotator.geometry import area_xyxy, clamp_xyxy
from annotator.types import REVIEW_STATES, UserError

from .. import imagegen
from .test_export import world  # noqa: F401 - the fixture: a labelled, partly approved project


def _by_sha_and_class(services, project) -> dict[str, list[tuple]]:
    """stored file's sha256 -> sorted (class name, rounded xyxy) of its boxes, comparable across projects."""
    p = services.projects.get_project(project)
    out = {}
    images, _ = services.ctx.store.export_rows(p.id, None, REVIEW_STATES)
    boxes = services.ctx.store.boxes_for_images([i.id for i in images])
    for img in images:  # normalized as every export writes them: clamped to the image, zero-area dropped
        norm = [(p.class_names[b.class_idx], clamp_xyxy(b.xyxy, img.width, img.height)) for b in boxes[img.id]]
        # keyed by the STORED file: an EXIF-rotated upload is stored re-encoded, and that is what is exported
        key = hashlib.sha256(services.images.image_file(img).read_bytes()).hexdigest()
        out[key] = sorted((c, tuple(round(v, 1) for v in xy)) for c, xy in norm if area_xyxy(xy) > 0)
    return out


@pytest.mark.parametrize("fmt", ["yolo", "coco"])
def test_round_trip_through_export_and_import(services, world, fmt):  # noqa: F811
    source, _ = world
    exported = services.transfer.export_dataset(source, fmt)
    target = services.projects.create_project(f"Back-{fmt}", ["square", "circle", "triangle"])  # another class order
    r = services.transfer.import_labels(target, [exported["file"]], fmt, approve=True)
    assert r["labelled_images"] == exported["images"] and r["boxes"] == exported["boxes"]
    assert r["negatives"] == exported["negatives"] and r["approved"] == exported["images"]
    assert not r["problems"] and not r["dropped_by_class"] and r["added_classes"] == []
    want = _by_sha_and_class(services, source)
    got = _by_sha_and_class(services, target)
    assert len(got) == exported["images"] and all(got[sha] == want[sha] for sha in got)
    imported = services.images.list_images(target, page_size=100).images
    assert {i.status for i in imported} == {"approved"}
    if fmt == "yolo":  # the YOLO layout carries splits; a single COCO annotations.json does not
        assert {i.split for i in imported} <= {"train", "val"} and all(i.split for i in imported)


def _yolo_zip(tmp_path: Path, labels: dict[str, str], images: dict[str, bytes], yaml_text: str | None) -> Path:
    path = tmp_path / "labelled.zip"
    with zipfile.ZipFile(path, "w") as zf:
        if yaml_text is not None:
            zf.writestr("data.yaml", yaml_text)
        for name, data in images.items():
            zf.writestr(name, data)
        for name, text in labels.items():
            zf.writestr(name, text)
    return path


def test_bad_labels_are_reported_and_the_rest_lands(services, project, tmp_path):
    img = imagegen.jpeg_bytes(100, 50, seed=1)
    archive = _yolo_zip(tmp_path, {
        "labels/train/a.txt": "0 0.5 0.5 0.2 0.2\n1 0.5 0.5\nx 0.1 0.1 0.1 0.1\n7 0.5 0.5 0.1 0.1\n2 1.8 0.5 0.1 0.1\n",
        "labels/train/ghost.txt": "0 0.5 0.5 0.1 0.1\n",
    }, {"images/train/a.jpg": img, "images/train/b.jpg": imagegen.jpeg_bytes(100, 50, seed=2)},
        "names: [circle, square, triangle]\n")
    r = services.transfer.import_labels(project, [archive], "yolo")
    assert r["boxes"] == 1 and r["per_class"] == {"circle": 1}
    assert r["labelled_images"] == 2 and r["negatives"] == 1  # b.jpg has no label file: a negative
    reasons = " | ".join(f"{p['file']}: {p['reason']}" for p in r["problems"])
    for expected in ("a.txt", "ghost.txt"):
        assert expected in reasons
    assert len(r["problems"]) >= 5  # short row, non-numeric, class 7, outside the image, label with no image


def test_classes_by_name_new_classes_and_overrides(services, project, tmp_path):
    img = imagegen.jpeg_bytes(100, 100, seed=3)
    archive = _yolo_zip(tmp_path, {"labels/a.txt": "0 0.5 0.5 0.2 0.2\n1 0.3 0.3 0.1 0.1\n2 0.7 0.7 0.1 0.1\n"},
                        {"images/a.jpg": img}, None)
    (tmp_path / "x").mkdir()
    with zipfile.ZipFile(archive, "a") as zf:
        zf.writestr("classes.txt", " CIRCLE \nhexagon\nsquare\n")
    analysis = services.transfer.analyze_labels(project, [archive], "yolo")
    assert [(c["source"], c["project"]) for c in analysis["classes"]] == [
        ("CIRCLE", "circle"), ("hexagon", None), ("square", "square")]
    dropped = services.transfer.import_labels(project, [archive], "yolo")
    assert dropped["dropped_by_class"] == {"hexagon": 1} and dropped["boxes"] == 2
    again = services.transfer.import_labels(project, [archive], "yolo", mapping={"hexagon": "triangle"})
    assert again["per_class"] == {"circle": 1, "triangle": 1, "square": 1} and again["duplicates"] == 1
    (img_rec,) = services.images.list_images(project).images
    assert len(services.ctx.store.boxes_for_image(img_rec.id)) == 3  # re-import replaced, not doubled
    grown = services.transfer.import_labels(project, [archive], "yolo", add_new_classes=True)
    assert grown["added_classes"] == ["hexagon"]
    assert services.projects.get_project(project.name).class_names == ["circle", "square", "triangle", "hexagon"]


def test_roboflow_layout_and_protected_images(services, project, tmp_path):
    a, b = imagegen.jpeg_bytes(64, 64, seed=4), imagegen.jpeg_bytes(64, 64, seed=5)
    archive = _yolo_zip(tmp_path, {"export/train/labels/a.txt": "0 0.5 0.5 0.5 0.5\n",
                                   "export/valid/labels/b.txt": "1 0.5 0.5 0.5 0.5\n"},
                        {"export/train/images/a.jpg": a, "export/valid/images/b.jpg": b}, None)
    with zipfile.ZipFile(archive, "a") as zf:
        zf.writestr("export/data.yaml", "train: ../train/images\nval: ../valid/images\nnc: 3\n"
                                        "names: ['circle', 'square', 'triangle']\n")
    first = services.transfer.import_labels(project, [archive], "yolo")
    assert first["boxes"] == 2
    splits = {i.rel_path.split("/")[-1]: i.split for i in services.images.list_images(project).images}
    assert splits == {"a.jpg": "train", "b.jpg": "val"}
    (protected,) = [i for i in services.images.list_images(project).images if i.rel_path.endswith("a.jpg")]
    services.ctx.store.set_review_status([protected.id], "approved", "ann")
    before = services.ctx.store.boxes_for_image(protected.id)
    second = services.transfer.import_labels(project, [archive], "yolo")
    assert second["protected"] == 1 and services.ctx.store.boxes_for_image(protected.id) == before


def test_an_import_replaces_the_machine_boxes_and_replace_overrides_protection(services, project, tmp_path):
    """Importing true labels for auto-annotated images (and approving them) must not keep the model's boxes
    beside them: they would become training data. A person's boxes stay unless ``replace``."""
    from annotator.types import Box

    a, b = imagegen.jpeg_bytes(64, 64, seed=6), imagegen.jpeg_bytes(64, 64, seed=7)
    images = {"images/train/a.jpg": a, "images/train/b.jpg": b}
    services.images.add_images(project, [_yolo_zip(tmp_path, {}, images, None)], dataset="labelled")
    by_name = {i.rel_path.split("/")[-1]: i for i in services.images.list_images(project).images}
    machine = [(by_name[n].id, Box(1, 1, 30, 30, 0, confidence=0.4, source="model", job_id=1))
               for n in ("a.jpg", "a.jpg", "b.jpg")]
    services.ctx.store.insert_boxes(machine)
    human = services.review.load_image(project, by_name["b.jpg"].id)
    services.review.save_image(project, by_name["b.jpg"].id, [{"class": "square", "x1": 5, "y1": 5, "x2": 20,
                                                               "y2": 20}], human["version"], user="ann")
    (tmp_path / "t").mkdir()
    truth = _yolo_zip(tmp_path / "t", {"labels/train/a.txt": "1 0.5 0.5 0.5 0.5\n",
                                       "labels/train/b.txt": "2 0.5 0.5 0.25 0.25\n"}, images,
                      "names: [circle, square, triangle]\n")
    r = services.transfer.import_labels(project, [truth], "yolo", dataset="labelled", approve=True)
    assert r["replaced_machine"] == 2 and r["protected"] == 1 and r["replaced_protected"] == 0
    a_boxes = services.ctx.store.boxes_for_image(by_name["a.jpg"].id)
    assert [(x.source, x.class_idx) for x in a_boxes] == [("import", 1)]  # the truth only, approved
    assert services.ctx.store.get_image(by_name["a.jpg"].id).status == "approved"
    b_boxes = services.ctx.store.boxes_for_image(by_name["b.jpg"].id)
    assert [x.source for x in b_boxes] == ["human"]  # the image a person saved: left as it is
    r = services.transfer.import_labels(project, [truth], "yolo", dataset="labelled", replace=True)
    assert r["replaced_protected"] == 2 and r["protected"] == 0  # b (saved) and a (approved by the import)
    b_boxes = services.ctx.store.boxes_for_image(by_name["b.jpg"].id)
    assert [(x.source, x.class_idx) for x in b_boxes] == [("import", 2)]


def test_coco_refusals(services, project, tmp_path):
    broken = tmp_path / "broken.zip"
    with zipfile.ZipFile(broken, "w") as zf:
        zf.writestr("annotations.json", "{not json")
    with pytest.raises(UserError, match="No labelled images"):
        services.transfer.import_labels(project, [broken], "coco")
    with pytest.raises(UserError, match="format must be"):
        services.transfer.import_labels(project, [broken], "voc")
    empty = tmp_path / "empty.zip"
    with zipfile.ZipFile(empty, "w") as zf:
        zf.writestr("readme.md", "nothing")
    with pytest.raises(UserError, match="No COCO annotations file"):
        services.transfer.import_labels(project, [empty], "coco")
    # COCO labels for images already in the project, matched by file name; sparse category ids
    src = tmp_path / "pic.jpg"
    src.write_bytes(imagegen.jpeg_bytes(80, 60, seed=6))
    services.images.add_images(project, [src])
    doc = {"images": [{"id": 9, "file_name": "pic.jpg", "width": 80, "height": 60}],
           "annotations": [{"id": 1, "image_id": 9, "category_id": 40, "bbox": [10, 10, 20, 20], "area": 400,
                            "iscrowd": 0}],
           "categories": [{"id": 40, "name": "Square"}, {"id": 7, "name": "circle"}]}
    labels_only = tmp_path / "coco.zip"
    with zipfile.ZipFile(labels_only, "w") as zf:
        zf.writestr("annotations.json", json.dumps(doc))
    r = services.transfer.import_labels(project, [labels_only], "coco")
    assert r["boxes"] == 1 and r["per_class"] == {"square": 1} and r["images_added"] == 0


def test_coco_files_with_different_category_orders_merge_by_name(services, project, tmp_path):
    """Each JSON numbers its own categories: a box's class is remapped onto the merged class list."""
    archive = tmp_path / "coco.zip"
    anns = {  # split -> (categories, [(category id, bbox)])
        "train": ([{"id": 1, "name": "square"}, {"id": 2, "name": "circle"}],
                  [(1, [0, 0, 10, 10]), (2, [5, 5, 10, 10])]),
        "val": ([{"id": 1, "name": "circle"}, {"id": 2, "name": "hexagon"}, {"id": 3, "name": "square"}],
                [(1, [0, 0, 20, 20]), (2, [1, 1, 5, 5]), (3, [2, 2, 8, 8])]),
    }
    with zipfile.ZipFile(archive, "w") as zf:
        for k, (split, (cats, boxes)) in enumerate(anns.items()):
            zf.writestr(f"images/{split}/{split}.jpg", imagegen.jpeg_bytes(64, 48, seed=20 + k))
            doc = {"images": [{"id": 1, "file_name": f"{split}.jpg", "width": 64, "height": 48}],
                   "annotations": [{"id": i + 1, "image_id": 1, "category_id": c, "bbox": b}
                                   for i, (c, b) in enumerate(boxes)],
                   "categories": cats}
            zf.writestr(f"annotations/instances_{split}.json", json.dumps(doc))
    analysis = services.transfer.analyze_labels(project, [archive], "coco")
    assert [(c["source"], c["boxes"], c["project"]) for c in analysis["classes"]] == [
        ("square", 2, "square"), ("circle", 2, "circle"), ("hexagon", 1, None)]
    r = services.transfer.import_labels(project, [archive], "coco")
    assert r["per_class"] == {"square": 2, "circle": 2} and r["dropped_by_class"] == {"hexagon": 1}
    p = services.projects.get_project(project.name)
    stored = {i.rel_path: sorted((p.class_names[b.class_idx], b.xyxy) for b in services.ctx.store.boxes_for_image(i.id))
              for i in services.images.list_images(project).images}
    assert stored == {
        "images/train/train.jpg": [("circle", (5.0, 5.0, 15.0, 15.0)), ("square", (0.0, 0.0, 10.0, 10.0))],
        "images/val/val.jpg": [("circle", (0.0, 0.0, 20.0, 20.0)), ("square", (2.0, 2.0, 10.0, 10.0))],
    }


@pytest.mark.slow
def test_cli_import(tmp_path):
    from ..support import run_cli

    archive = _yolo_zip(tmp_path, {"labels/a.txt": "1 0.5 0.5 0.5 0.5\n"},
                        {"images/a.jpg": imagegen.jpeg_bytes(64, 32, seed=8)}, "names: {0: dog, 1: cat}\n")
    data = tmp_path / "data"
    run_cli(data, "project", "create", "Pets", "--classes", "cat,dog")
    r = json.loads(run_cli(data, "import", "Pets", str(archive), "--format", "yolo", "--approve", "--json").stdout)
    assert r["per_class"] == {"cat": 1} and r["approved"] == 1 and r["images_added"] == 1
    bad = run_cli(data, "import", "Pets", str(archive), "--format", "yolo", "--map", "cat=lion", check=False)
    assert bad.returncode == 2 and "lion" in bad.stderr
