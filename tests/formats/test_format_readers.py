"""Label readers: YOLO (ultralytics / Roboflow layouts) and COCO -> ReadResult, problems never exceptions,
and round trips through the writers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image, ImageOps

from annotator.formats import ExportImage, LabelRecord, ReadResult, coco, yolo
from annotator.types import Box
from tests.imagegen import image_bytes, jpeg_bytes

CLASSES = ["zebra", "apple", "Mango"]  # sorts differently from its order


def pil_size(path: Path) -> tuple[int, int] | None:
    try:
        with Image.open(path) as im:
            return ImageOps.exif_transpose(im).size
    except OSError:
        return None


def put(root: Path, rel: str, data: bytes | str) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def by_image(result: ReadResult) -> dict[str, LabelRecord]:
    return {r.image: r for r in result.records}


def named(res: ReadResult, boxes) -> list[tuple]:
    """A record's boxes as (class name, x1, y1, x2, y2): class_idx indexes the result's class_names."""
    assert all(isinstance(b, Box) and b.source == "import" and b.confidence is None for b in boxes), boxes
    return [(res.class_names[b.class_idx], *b.xyxy) for b in boxes]


def assert_boxes(res: ReadResult, rec: LabelRecord, want, tol=1e-3):
    got = named(res, rec.boxes)
    assert len(got) == len(want), (got, want)
    for g, w in zip(got, want):
        assert g[0] == w[0]
        assert g[1:] == pytest.approx(w[1:], abs=tol), (g, w)


# ---- YOLO layouts ------------------------------------------------------------------------------------------

def test_ultralytics_layout_with_splits_dict_names_and_negatives(tmp_path):
    put(tmp_path, "data.yaml", "path: /somewhere/else\ntrain: images/train\nval: images/val\n"
                               "names:\n  0: zebra\n  1: apple\n  2: Mango\n")
    put(tmp_path, "images/train/a.jpg", image_bytes("JPEG", 200, 100))
    put(tmp_path, "labels/train/a.txt", "2 0.5 0.5 0.5 0.5\n\n0 0.25 0.5 0.5 1.0\n")
    put(tmp_path, "images/train/neg.PNG", image_bytes("PNG", 50, 40))  # no label file: a negative
    put(tmp_path, "images/val/b.png", image_bytes("PNG", 100, 100))
    put(tmp_path, "labels/val/b.txt", "")  # empty label file: a negative
    put(tmp_path, "images/test/c.webp", image_bytes("WEBP", 80, 60))
    put(tmp_path, "labels/test/c.txt", "1 0.5 0.5 1 1\n")
    res = yolo.read_yolo(tmp_path, pil_size)
    assert res.problems == []
    assert res.class_names == CLASSES
    recs = by_image(res)
    assert sorted(recs) == ["images/test/c.webp", "images/train/a.jpg", "images/train/neg.PNG", "images/val/b.png"]
    assert {k: r.split for k, r in recs.items()} == {
        "images/test/c.webp": "test", "images/train/a.jpg": "train", "images/train/neg.PNG": "train",
        "images/val/b.png": "val"}
    assert_boxes(res, recs["images/train/a.jpg"], [("Mango", 50, 25, 150, 75), ("zebra", 0, 0, 100, 100)])
    assert (recs["images/train/a.jpg"].width, recs["images/train/a.jpg"].height) == (200, 100)
    assert recs["images/train/neg.PNG"].boxes == () and recs["images/val/b.png"].boxes == ()
    assert_boxes(res, recs["images/test/c.webp"], [("apple", 0, 0, 80, 60)])


def test_roboflow_layout_one_folder_down_list_names(tmp_path):
    top = tmp_path / "My Dataset.v3i.yolov8"
    put(top, "data.yaml", "train: ../train/images\nval: ../valid/images\nnc: 2\nnames: ['cat', 'ant']\n")
    put(top, "README.roboflow.txt", "not a label")
    put(top, "train/images/a.jpg", image_bytes("JPEG", 100, 50))
    put(top, "train/labels/a.txt", "1 0.5 0.5 0.2 0.2\n")
    put(top, "valid/images/b.jpeg", image_bytes("JPEG", 10, 10))
    put(top, "valid/labels/b.txt", "0 0.5 0.5 1 1\n")
    put(top, "test/images/c.jpg", image_bytes("JPEG", 10, 10))
    put(tmp_path, "__MACOSX/._junk.jpg", b"junk")
    res = yolo.read_yolo(tmp_path, pil_size)
    assert res.problems == []
    assert res.class_names == ["cat", "ant"]
    p = "My Dataset.v3i.yolov8/"
    recs = by_image(res)
    assert {k: r.split for k, r in recs.items()} == {
        p + "train/images/a.jpg": "train", p + "valid/images/b.jpeg": "val", p + "test/images/c.jpg": "test"}
    assert_boxes(res, recs[p + "train/images/a.jpg"], [("ant", 40, 20, 60, 30)])
    assert recs[p + "test/images/c.jpg"].boxes == ()


def test_flat_layout_classes_txt_and_no_names(tmp_path):
    put(tmp_path, "classes.txt", "zebra\napple\n\nMango\n")
    put(tmp_path, "images/a.jpg", image_bytes("JPEG", 100, 100))
    put(tmp_path, "labels/a.txt", "2 0.5 0.5 0.5 0.5\n")
    res = yolo.read_yolo(tmp_path, pil_size)
    assert res.problems == [] and res.class_names == CLASSES
    assert res.records[0].split is None
    assert_boxes(res, res.records[0], [("Mango", 25, 25, 75, 75)])

    (tmp_path / "classes.txt").unlink()
    res = yolo.read_yolo(tmp_path, pil_size)
    assert res.problems == [] and res.class_names == ["0", "1", "2"]
    assert named(res, res.records[0].boxes)[0][0] == "2"


def test_exif_rotated_image_uses_the_callers_size(tmp_path):
    put(tmp_path, "images/train/r.jpg", jpeg_bytes(200, 100, orientation=6))  # displays as 100 x 200
    put(tmp_path, "labels/train/r.txt", "0 0.5 0.5 1 1\n")
    res = yolo.read_yolo(tmp_path, pil_size)
    assert res.problems == []
    rec = res.records[0]
    assert (rec.width, rec.height) == (100, 200)
    assert_boxes(res, rec, [("0", 0, 0, 100, 200)])


def test_bad_rows_are_reported_with_file_and_line_and_the_rest_is_kept(tmp_path):
    put(tmp_path, "data.yaml", "names: [a, b]\n")
    put(tmp_path, "images/train/x.jpg", image_bytes("JPEG", 100, 100))
    put(tmp_path, "labels/train/x.txt", "\n".join([
        "0 0.5 0.5 0.2 0.2",                      # 1 ok
        "0 0.1 0.1 0.2 0.2 0.3 0.3",              # 2 polygon
        "1 0.5 0.5",                              # 3 too few columns
        "1 0.5 abc 0.2 0.2",                      # 4 non-numeric
        "7 0.5 0.5 0.2 0.2",                      # 5 class out of range
        "1 0.5 1.5 0.2 0.2",                      # 6 real overshoot
        "1 1.0004 0.5 0.2 0.2",                   # 7 tiny overshoot: clamped, kept
        "1 0.5 0.5 0 0.2",                        # 8 zero size
        "1 0.5 0.5 0.2 0.2",                      # 9 ok
    ]) + "\n")
    put(tmp_path, "labels/train/orphan.txt", "0 0.5 0.5 0.1 0.1\n")
    put(tmp_path, "images/val/u.jpg", image_bytes("JPEG", 10, 10))
    put(tmp_path, "labels/val/u.txt", b"\xff\xfe\x00bad")
    res = yolo.read_yolo(tmp_path, pil_size)
    probs = res.problems
    x = [r for f, r in probs if f == "labels/train/x.txt"]
    assert [r.split(":")[0] for r in x] == ["line 2", "line 3", "line 4", "line 5", "line 6", "line 8"]
    assert "polygon rows are not supported, use boxes" in x[0]
    assert "expected 5" in x[1] and "non-numeric" in x[2] and "out of range" in x[3]
    assert "outside [0, 1]" in x[4] and "zero-size" in x[5]
    assert ("labels/train/orphan.txt", "labels/train/orphan.txt has no image") in probs
    assert any(f == "labels/val/u.txt" and "unreadable" in r for f, r in probs)
    assert len(probs) == 8
    recs = by_image(res)
    assert sorted(recs) == ["images/train/x.jpg"]  # u.jpg's labels are unknown: not passed off as a negative
    assert_boxes(res, recs["images/train/x.jpg"], [("a", 40, 40, 60, 60), ("b", 90, 40, 100, 60),
                                                    ("b", 40, 40, 60, 60)])


def test_unreadable_image_size_is_a_problem(tmp_path):
    put(tmp_path, "images/a.jpg", b"not a jpeg")
    put(tmp_path, "labels/a.txt", "0 0.5 0.5 0.1 0.1\n")
    res = yolo.read_yolo(tmp_path, pil_size)
    assert res.records == []
    ((name, reason),) = res.problems  # the reason may carry the error text, which depends on what patched PIL
    assert name == "images/a.jpg"
    assert reason.startswith("cannot read the image size") and reason.endswith("its labels in labels/a.txt are skipped")


def test_bad_data_yaml_is_a_problem_and_indices_are_used(tmp_path):
    put(tmp_path, "data.yaml", "names: [a, b\n")
    put(tmp_path, "images/a.jpg", image_bytes("JPEG", 10, 10))
    put(tmp_path, "labels/a.txt", "1 0.5 0.5 1 1\n")
    res = yolo.read_yolo(tmp_path, pil_size)
    assert [f for f, _ in res.problems] == ["data.yaml"] and "invalid YAML" in res.problems[0][1]
    assert res.class_names == ["0", "1"] and named(res, res.records[0].boxes)[0][0] == "1"


# ---- round trips through the writers ----------------------------------------------------------------------

def world(tmp_path: Path) -> list[ExportImage]:
    src = tmp_path / "src"
    specs = [  # (name, split, w, h, boxes)
        ("a.jpg", "train", 640, 480, [Box(10, 20, 110, 220, 0), Box(300.5, 100.25, 640, 480, 2)]),
        ("b.png", "train", 320, 200, [Box(1, 1, 50, 60, 1)]),
        ("neg.jpg", "val", 100, 100, []),
        ("c.jpg", "val", 300, 300, [Box(5, 5, 6, 7, 2), Box(100, 10, 290, 20, 1)]),
        ("d.jpg", "test", 64, 48, [Box(0, 0, 64, 48, 0)]),
    ]
    out = []
    for i, (name, split, w, h, boxes) in enumerate(specs, start=1):
        fmt = "PNG" if name.endswith(".png") else "JPEG"
        out.append(ExportImage(id=i, file_name=name, width=w, height=h, split=split, boxes=tuple(boxes),
                               source=put(src, name, image_bytes(fmt, w, h, seed=i))))
    return out


def expected(images):
    return {im.file_name: (im.split, [(CLASSES[b.class_idx], *b.xyxy) for b in im.boxes]) for im in images}


def test_yolo_round_trip(tmp_path):
    images = world(tmp_path)
    yolo.write_yolo(tmp_path / "out", images, CLASSES)
    res = yolo.read_yolo(tmp_path / "out", pil_size)
    assert res.problems == [] and res.class_names == CLASSES
    want = expected(images)
    assert len(res.records) == len(want)
    for rec in res.records:
        split, boxes = want[Path(rec.image).name]
        assert rec.image == f"images/{split}/{Path(rec.image).name}" and rec.split == split
        w, h = next((im.width, im.height) for im in images if im.file_name == Path(rec.image).name)
        assert_boxes(res, rec, boxes, tol=1e-6 * max(w, h) + 1e-9)  # six decimals


@pytest.mark.parametrize("per_split", [False, True])
def test_coco_round_trip(tmp_path, per_split):
    images = world(tmp_path)
    coco.write_coco(tmp_path / "out", images, CLASSES, per_split=per_split)
    paths = coco.find_annotations(tmp_path / "out")
    assert [p.relative_to(tmp_path / "out").as_posix() for p in paths] == (
        ["annotations/instances_test.json", "annotations/instances_train.json", "annotations/instances_val.json"]
        if per_split else ["annotations.json"])
    want = expected(images)
    seen = {}
    for p in paths:
        res = coco.read_coco(p)
        assert res.problems == [] and res.class_names == CLASSES
        for rec in res.records:
            split, boxes = want[rec.image]
            assert rec.split == (split if per_split else None)
            im = next(i for i in images if i.file_name == rec.image)
            assert (rec.width, rec.height) == (im.width, im.height)
            assert_boxes(res, rec, boxes)
            seen[rec.image] = rec
    assert sorted(seen) == sorted(want)


# ---- COCO -------------------------------------------------------------------------------------------------

def coco_json(categories, annotations, images=None):
    images = images or [{"id": 1, "file_name": "a.jpg", "width": 100, "height": 80},
                        {"id": 2, "file_name": "sub/neg.jpg", "width": 50, "height": 50}]
    return json.dumps({"images": images, "annotations": annotations, "categories": categories})


@pytest.mark.parametrize("ids", [(0, 3, 7), (5, 6, 9)])
def test_coco_sparse_category_ids_any_base(tmp_path, ids):
    cats = [{"id": ids[2], "name": "Mango"}, {"id": ids[0], "name": "zebra"}, {"id": ids[1], "name": "apple"}]
    anns = [{"id": 1, "image_id": 1, "category_id": ids[2], "bbox": [10, 20, 30, 40], "iscrowd": 1},
            {"id": 2, "image_id": 1, "category_id": ids[0], "bbox": [90, 70, 20, 20]},  # clamped to the image
            {"id": 3, "image_id": 1, "category_id": 99, "bbox": [1, 1, 2, 2]},
            {"id": 4, "image_id": 1, "category_id": ids[1], "bbox": [1, 1, 0, 2]},
            {"id": 5, "image_id": 1, "category_id": ids[1], "bbox": [1, 1, -3, 2]},
            {"id": 6, "image_id": 42, "category_id": ids[1], "bbox": [1, 1, 2, 2]},
            {"id": 7, "image_id": 1, "category_id": ids[1], "bbox": [1, 1, "x", 2]}]
    path = put(tmp_path, "train/_annotations.coco.json", coco_json(cats, anns))
    res = coco.read_coco(path)
    assert res.class_names == CLASSES  # category id order
    recs = by_image(res)
    assert sorted(recs) == ["a.jpg", "sub/neg.jpg"] and all(r.split == "train" for r in res.records)
    assert_boxes(res, recs["a.jpg"], [("Mango", 10, 20, 40, 60), ("zebra", 90, 70, 100, 80)])  # iscrowd kept
    assert recs["sub/neg.jpg"].boxes == () and (recs["sub/neg.jpg"].width, recs["sub/neg.jpg"].height) == (50, 50)
    reasons = [r for f, r in res.problems]
    assert all(f == "_annotations.coco.json" for f, _ in res.problems)
    assert len(reasons) == 5
    assert "annotation 3" in reasons[0] and "unknown category_id 99" in reasons[0]
    assert "annotation 4" in reasons[1] and "zero or negative size" in reasons[1]
    assert "annotation 5" in reasons[2] and "zero or negative size" in reasons[2]
    assert "annotation 6" in reasons[3] and "unknown image_id 42" in reasons[3]
    assert "annotation 7" in reasons[4] and "bbox must be 4 numbers" in reasons[4]


def test_coco_roboflow_placeholder_category_and_valid_split(tmp_path):
    cats = [{"id": 0, "name": "fruits-x1", "supercategory": "none"},
            {"id": 1, "name": "zebra", "supercategory": "fruits-x1"},
            {"id": 2, "name": "apple", "supercategory": "fruits-x1"}]
    anns = [{"id": 0, "image_id": 1, "category_id": 2, "bbox": [0, 0, 10, 10]}]
    res = coco.read_coco(put(tmp_path, "valid/_annotations.coco.json", coco_json(cats, anns)))
    assert res.problems == [] and res.class_names == ["zebra", "apple"]
    assert {r.split for r in res.records} == {"val"}


@pytest.mark.parametrize("name,split", [("annotations/instances_val2017.json", "val"),
                                        ("annotations/instances_valid.json", "val"),
                                        ("annotations.json", None), ("test/annotations.json", "test")])
def test_coco_split_from_file_name(tmp_path, name, split):
    res = coco.read_coco(put(tmp_path, name, coco_json([{"id": 1, "name": "a"}], [])))
    assert res.problems == [] and {r.split for r in res.records} == {split}


def test_coco_invalid_json_is_one_problem(tmp_path):
    res = coco.read_coco(put(tmp_path, "annotations.json", '{"images": [}'))
    assert res.records == [] and res.class_names == []
    assert len(res.problems) == 1 and res.problems[0][0] == "annotations.json"
    assert "invalid JSON" in res.problems[0][1]
    res = coco.read_coco(put(tmp_path, "x/instances_train.json", "[1, 2]"), name="x/instances_train.json")
    assert res.problems == [("x/instances_train.json", "is not a COCO file: no 'images' list")]


def test_find_annotations_ignores_other_json(tmp_path):
    for rel in ("a/_annotations.coco.json", "annotations/instances_train.json", "annotations.json",
                "meta.json", "__MACOSX/annotations/._instances_train.json"):
        put(tmp_path, rel, "{}")
    assert [p.relative_to(tmp_path).as_posix() for p in coco.find_annotations(tmp_path)] == [
        "a/_annotations.coco.json", "annotations/instances_train.json", "annotations.json"]
