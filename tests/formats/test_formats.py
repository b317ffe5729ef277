"""Export writers: pure converters (math round trips, clamping, drops) and the file layouts they write."""

from __future__ import annotations

import dataclasses
import json
import zipfile
from pathlib import Path

import pytest
import yaml

from annotator.formats import BoxTable, ExportImage, ZipSink, coco, yolo
from annotator.geometry import area_xyxy, clamp_xyxy, yolo_to_xyxy
from annotator.types import Box

CLASSES = ["zebra", "apple", "Mango"]  # sorts differently from its order


def img(name, split="train", boxes=(), w=640, h=480, source=None, id=1):
    return ExportImage(id=id, file_name=name, width=w, height=h, split=split, boxes=tuple(boxes), source=source)


def world(tmp_path: Path) -> list[ExportImage]:
    src = tmp_path / "src"
    src.mkdir()
    for n in ("a", "b", "c", "d", "e"):
        (src / f"{n}.jpg").write_bytes(f"jpeg-{n}".encode())
    return [
        img("cam1__b.jpg", "train", [Box(10, 20, 110, 220, 0, confidence=0.9, source="model"),
                                     Box(300.5, 100.25, 640, 480, 2)], source=src / "b.jpg", id=2),
        img("cam0__a.jpg", "train", [Box(-30, -10, 50, 40, 1)], w=800, h=600, source=src / "a.jpg", id=1),
        img("neg.jpg", "train", [], source=src / "c.jpg", id=3),
        img("v1.png", "val", [Box(5, 5, 6, 7, 2), Box(700, 10, 800, 20, 0)], source=src / "d.jpg", id=4),
        img("neg.jpg", "val", [], w=100, h=100, source=src / "e.jpg", id=5),
    ]


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------- YOLO: pure math

@pytest.mark.parametrize("w,h", [(640, 480), (1, 1), (4032, 3024), (17, 9999)])
@pytest.mark.parametrize("frac", [(0.0, 0.0, 1.0, 1.0), (0.1, 0.2, 0.3, 0.9), (0.3331, 0.5, 0.3332, 0.5007)])
def test_yolo_lines_round_trip(w, h, frac):
    box = Box(frac[0] * w, frac[1] * h, frac[2] * w, frac[3] * h, 1)
    lines, dropped = yolo.boxes_to_lines([box], w, h)
    if area_xyxy(box.xyxy) < 1e-9 or (box.x2 - box.x1) / w < 5e-7 or (box.y2 - box.y1) / h < 5e-7:
        assert lines == [] and dropped
        return
    assert dropped == [] and len(lines) == 1
    cls, *vals = lines[0].split(" ")
    assert cls == "1" and all(len(v.split(".")[1]) == 6 for v in vals)
    back = yolo_to_xyxy(tuple(float(v) for v in vals), w, h)
    for got, want, size in zip(back, box.xyxy, (w, h, w, h)):
        assert abs(got - want) <= 1e-5 * size + 1e-9


def test_yolo_clamps_boxes_crossing_and_touching_the_border():
    boxes = [Box(-50, -20, 100, 60, 0), Box(600, 400, 700, 500, 1), Box(0, 0, 640, 480, 2),
             Box(-10, -10, 700, 500, 0)]
    lines, dropped = yolo.boxes_to_lines(boxes, 640, 480)
    assert dropped == []
    assert lines == [
        "0 0.078125 0.062500 0.156250 0.125000",
        "1 0.968750 0.916667 0.062500 0.166667",
        "2 0.500000 0.500000 1.000000 1.000000",
        "0 0.500000 0.500000 1.000000 1.000000",
    ]
    for line in lines:
        assert all(0.0 <= float(v) <= 1.0 for v in line.split()[1:])


def test_yolo_drops_zero_area_and_reports_it():
    boxes = [Box(700, 10, 800, 20, 0), Box(10, 10, 10, 50, 1), Box(-5, 5, -1, 9, 2), Box(1, 1, 2, 2, 2),
             Box(5, 480, 10, 490, 0)]
    lines, dropped = yolo.boxes_to_lines(boxes, 640, 480)
    assert lines == ["2 0.002344 0.003125 0.001563 0.002083"]
    assert len(dropped) == 4 and all("zero area" in r for r in dropped)
    assert "box 0 (class 0)" in dropped[0] and "640x480" in dropped[0]


def test_yolo_values_never_leave_unit_range_or_print_minus_zero():
    boxes = [Box(-0.0, -0.0, 640.0, 0.0000001, 0), Box(639.9999999, 0, 640, 480, 0), Box(-1e9, -1e9, 1e9, 1e9, 0)]
    lines, _ = yolo.boxes_to_lines(boxes, 640, 480)
    for line in lines:
        assert "-" not in line
        assert all(0.0 <= float(v) <= 1.0 for v in line.split()[1:])


# ---------------------------------------------------------------- YOLO: files

def test_write_yolo_layout_yaml_and_negatives(tmp_path):
    root = tmp_path / "out"
    summary = yolo.write_yolo(root, world(tmp_path), CLASSES)
    files = tree(root)
    assert summary.files == sorted(files) == [
        "data.yaml", "images/train/cam0__a.jpg", "images/train/cam1__b.jpg", "images/train/neg.jpg",
        "images/val/neg.jpg", "images/val/v1.png", "labels/train/cam0__a.txt", "labels/train/cam1__b.txt",
        "labels/train/neg.txt", "labels/val/neg.txt", "labels/val/v1.txt"]
    assert files["images/train/cam0__a.jpg"] == b"jpeg-a"
    assert files["labels/train/neg.txt"] == b"" and files["labels/val/neg.txt"] == b""
    assert files["labels/train/cam0__a.txt"] == b"1 0.031250 0.033333 0.062500 0.066667\n"
    assert files["labels/train/cam1__b.txt"].decode().splitlines()[1].startswith("2 ")

    text = files["data.yaml"].decode()
    data = yaml.safe_load(text)
    assert data == {"train": "images/train", "val": "images/val", "nc": 3,
                    "names": {0: "zebra", 1: "apple", 2: "Mango"}}
    assert list(data["names"].values()) == CLASSES
    assert "test" not in data and str(tmp_path) not in text and "/work" not in text
    assert text.index("zebra") < text.index("apple") < text.index("Mango")

    assert (summary.images, summary.boxes, summary.negatives) == (5, 4, 2)
    assert summary.per_split == {"train": 3, "val": 2}
    assert summary.per_class == {"zebra": 1, "apple": 1, "Mango": 2}
    assert [f for f, _ in summary.dropped] == ["v1.png"] and "zero area" in summary.dropped[0][1]


def test_write_yolo_is_byte_identical_across_runs_and_input_orders(tmp_path):
    images = world(tmp_path)
    yolo.write_yolo(tmp_path / "one", images, CLASSES)
    yolo.write_yolo(tmp_path / "two", list(reversed(images)), CLASSES)
    assert tree(tmp_path / "one") == tree(tmp_path / "two")


def _table_and_bare(images):
    """The same images as one BoxTable (rows shuffled across images) plus box-less records."""
    table = BoxTable.from_images(list(reversed(images)))
    bare = [dataclasses.replace(im, boxes=()) for im in images]
    return table, bare


def _zip_tree(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as zf:
        return {n: zf.read(n) for n in sorted(zf.namelist())}


@pytest.mark.parametrize("fmt", ["yolo", "coco"])
def test_box_table_and_zip_sink_write_the_same_bytes_as_per_image_boxes_to_a_folder(tmp_path, fmt):
    images = world(tmp_path)
    def write(*a, **kw):  # world() repeats neg.jpg across splits: COCO needs one file per split for that
        return yolo.write_yolo(*a, **kw) if fmt == "yolo" else coco.write_coco(*a, per_split=True, with_scores=True,
                                                                               **kw)
    by_image = write(tmp_path / "dir", images, CLASSES)
    table, bare = _table_and_bare(images)
    assert len(table) == 5
    progress = []
    with zipfile.ZipFile(tmp_path / "x.zip", "w") as zf:
        by_table = write(ZipSink(zf, on_file=lambda done, name: progress.append((done, name))), bare, CLASSES,
                         boxes=table)
    assert _zip_tree(tmp_path / "x.zip") == tree(tmp_path / "dir")
    assert by_table == by_image
    assert [d for d, _ in progress] == [1, 2, 3, 4, 5]
    with zipfile.ZipFile(tmp_path / "x.zip") as zf:  # images stored as they are, labels deflated
        kinds = {i.filename.split("/")[0]: i.compress_type for i in zf.infolist()}
    assert kinds["images"] == zipfile.ZIP_STORED


def test_box_table_rows_of_unknown_images_are_ignored_and_bad_classes_name_the_file(tmp_path):
    images = world(tmp_path)
    table, bare = _table_and_bare(images)
    stray = BoxTable.from_columns([*table.image_id, 99], [*table.class_idx, 0], [*table.xyxy[:, 0], 1],
                                  [*table.xyxy[:, 1], 1], [*table.xyxy[:, 2], 5], [*table.xyxy[:, 3], 5])
    assert yolo.write_yolo(tmp_path / "a", bare, CLASSES, boxes=stray).boxes == 4
    bad = BoxTable.from_columns([3], [7], [1], [1], [5], [5])
    with pytest.raises(ValueError, match=r"neg\.jpg: box class index 7"):
        yolo.write_yolo(tmp_path / "b", bare, CLASSES, boxes=bad)
    assert not (tmp_path / "b").exists()  # refused before anything is written


def test_write_yolo_labels_only_and_custom_copy(tmp_path):
    images = world(tmp_path)
    summary = yolo.write_yolo(tmp_path / "labels", images, CLASSES, copy=None)
    assert not any(f.startswith("images/") for f in summary.files) and len(summary.files) == 6
    calls = []
    yolo.write_yolo(tmp_path / "custom", images, CLASSES, copy=lambda s, d: calls.append((s.name, d.name)))
    assert sorted(calls) == [("a.jpg", "cam0__a.jpg"), ("b.jpg", "cam1__b.jpg"), ("c.jpg", "neg.jpg"),
                             ("d.jpg", "v1.png"), ("e.jpg", "neg.jpg")]


def test_yaml_names_survive_tricky_class_names(tmp_path):
    names = ["yes", "null", "3", "a: b", "chat — ü"]
    yolo.write_yolo(tmp_path, [img("x.jpg")], names)
    data = yaml.safe_load((tmp_path / "data.yaml").read_text(encoding="utf-8"))
    assert data["names"] == dict(enumerate(names)) and data["nc"] == 5


@pytest.mark.parametrize("bad,match", [
    ([img("a.jpg"), img("a.jpg")], "duplicate file name"),
    ([img("a.jpg"), img("a.png")], "duplicate label file name"),
    ([img("../a.jpg")], "plain file name"),
    ([img("a.jpg", split="holdout")], "split"),
    ([img("a.jpg", boxes=[Box(0, 0, 1, 1, 3)])], "class index 3"),
    ([img("a.jpg", w=0)], "size"),
    ([img("a.jpg", source=Path("/nonexistent/a.jpg"))], "does not exist"),
])
def test_write_yolo_refuses_bad_input_before_writing(tmp_path, bad, match):
    with pytest.raises(ValueError, match=match):
        yolo.write_yolo(tmp_path / "out", bad, CLASSES)
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- COCO: pure

def test_to_coco_ids_categories_bbox_area_negatives(tmp_path):
    data, dropped = coco.to_coco(world(tmp_path), CLASSES)
    assert data["info"] == {"description": "Auto Annotator export", "version": "1.0"}
    assert data["licenses"] == []
    assert data["categories"] == [{"id": 1, "name": "zebra", "supercategory": "object"},
                                  {"id": 2, "name": "apple", "supercategory": "object"},
                                  {"id": 3, "name": "Mango", "supercategory": "object"}]
    assert [(i["id"], i["file_name"]) for i in data["images"]] == [
        (1, "cam0__a.jpg"), (2, "cam1__b.jpg"), (3, "neg.jpg"), (4, "neg.jpg"), (5, "v1.png")]
    anns = data["annotations"]
    assert [a["id"] for a in anns] == [1, 2, 3, 4]
    assert {a["image_id"] for a in anns} <= {i["id"] for i in data["images"]}
    assert anns[0] == {"id": 1, "image_id": 1, "category_id": 2, "bbox": [0.0, 0.0, 50.0, 40.0], "area": 2000.0,
                       "iscrowd": 0, "segmentation": []}
    assert anns[2]["bbox"] == [300.5, 100.25, 339.5, 379.75] and anns[2]["category_id"] == 3
    sizes = {i["id"]: (i["width"], i["height"]) for i in data["images"]}
    for a in anns:
        x, y, w, h = a["bbox"]
        assert w > 0 and h > 0 and a["area"] == round(w * h, 3)
        W, H = sizes[a["image_id"]]
        assert 0 <= x and 0 <= y and x + w <= W and y + h <= H
    negatives = {i["id"] for i in data["images"]} - {a["image_id"] for a in anns}
    assert negatives == {3, 4}
    assert all("score" not in a for a in anns)
    assert dropped == [("v1.png", dropped[0][1])] and "zero area" in dropped[0][1]


def test_to_coco_scores_only_when_asked_and_known(tmp_path):
    data, _ = coco.to_coco(world(tmp_path), CLASSES, with_scores=True)
    assert [a.get("score") for a in data["annotations"]] == [None, 0.9, None, None]


def test_to_coco_rounds_to_three_decimals_inside_the_image():
    box = Box(0.00049, 1.23456, 99.99951, 9.87654, 0)
    data, _ = coco.to_coco([img("r.jpg", boxes=[box], w=100, h=10)], ["c"])
    (a,) = data["annotations"]
    assert a["bbox"] == [0.0, 1.235, 100.0, 8.642] and a["area"] == 864.2


# ---------------------------------------------------------------- COCO: files

def test_write_coco_single_file(tmp_path):
    images = [im for im in world(tmp_path) if not (im.split == "val" and im.file_name == "neg.jpg")]
    root = tmp_path / "out"
    summary = coco.write_coco(root, images, CLASSES)
    assert summary.files == sorted(tree(root)) == [
        "annotations.json", "images/cam0__a.jpg", "images/cam1__b.jpg", "images/neg.jpg", "images/v1.png"]
    raw = (root / "annotations.json").read_text(encoding="utf-8")
    assert raw.endswith("}\n") and "\n" not in raw[:-1] and ", " not in raw
    assert json.loads(raw) == coco.to_coco(images, CLASSES)[0]
    assert (summary.images, summary.boxes, summary.negatives) == (4, 4, 1)
    assert summary.per_class == {"zebra": 1, "apple": 1, "Mango": 2}
    assert summary.per_split == {"train": 3, "val": 1}


def test_write_coco_refuses_same_name_in_two_splits_without_per_split(tmp_path):
    with pytest.raises(ValueError, match="duplicate file name 'neg.jpg'"):
        coco.write_coco(tmp_path / "out", world(tmp_path), CLASSES)
    assert not (tmp_path / "out").exists()


def test_write_coco_per_split_layout(tmp_path):
    root = tmp_path / "out"
    summary = coco.write_coco(root, world(tmp_path), CLASSES, per_split=True, with_scores=True)
    assert summary.files == sorted(tree(root)) == [
        "annotations/instances_train.json", "annotations/instances_val.json",
        "images/train/cam0__a.jpg", "images/train/cam1__b.jpg", "images/train/neg.jpg",
        "images/val/neg.jpg", "images/val/v1.png"]
    train = json.loads((root / "annotations/instances_train.json").read_text())
    val = json.loads((root / "annotations/instances_val.json").read_text())
    assert [i["file_name"] for i in train["images"]] == ["cam0__a.jpg", "cam1__b.jpg", "neg.jpg"]
    assert [i["id"] for i in val["images"]] == [1, 2] and val["annotations"][0]["image_id"] == 2
    assert [c["id"] for c in val["categories"]] == [1, 2, 3]
    assert [a.get("score") for a in train["annotations"]] == [None, 0.9, None]
    assert (summary.images, summary.boxes, summary.negatives) == (5, 4, 2)
    assert summary.per_split == {"train": 3, "val": 2}


def test_write_coco_is_byte_identical_across_runs(tmp_path):
    images = world(tmp_path)
    for per_split in (False, True):
        imgs = images if per_split else images[:4]
        coco.write_coco(tmp_path / f"a{per_split}", imgs, CLASSES, per_split=per_split)
        coco.write_coco(tmp_path / f"b{per_split}", list(reversed(imgs)), CLASSES, per_split=per_split)
        assert tree(tmp_path / f"a{per_split}") == tree(tmp_path / f"b{per_split}")


def test_coco_export_scores_perfect_ap_with_pycocotools(tmp_path):
    pytest.importorskip("pycocotools")
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    images = []
    for k in range(8):
        w, h = 320 + 40 * k, 240 + 30 * k
        boxes = []
        for j in range(6):  # small, medium and large boxes, a few crossing the border
            s = 8 * (j + 1) ** 2 * (1 + k % 3)
            x1, y1 = (37 * j + 11 * k) % w - 5, (53 * j + 7 * k) % h - 5
            boxes.append(Box(float(x1), float(y1), float(x1 + s), float(y1 + s * 0.75), (j + k) % 3))
        images.append(img(f"im{k:02d}.jpg", "train" if k < 6 else "val", boxes, w=w, h=h, id=k))
    coco.write_coco(tmp_path, images, CLASSES, copy=None)
    gt = COCO(str(tmp_path / "annotations.json"))
    ids = {im["file_name"]: im["id"] for im in gt.dataset["images"]}
    dets = []
    for im in images:
        for b in im.boxes:
            x1, y1, x2, y2 = clamp_xyxy(b.xyxy, im.width, im.height)
            dets.append({"image_id": ids[im.file_name], "category_id": b.class_idx + 1,
                         "bbox": [x1, y1, x2 - x1, y2 - y1], "score": 1.0})
    assert len(gt.dataset["annotations"]) == len(dets) == 48
    ev = COCOeval(gt, gt.loadRes(dets), "bbox")
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    assert ev.stats[0] == pytest.approx(1.0)
    assert ev.stats[3] == pytest.approx(1.0) and ev.stats[5] == pytest.approx(1.0)  # small and large boxes
