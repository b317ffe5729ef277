"""Exports through the services, checked by the tools that will read them: ultralytics and pycocotools."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from annotator.demo import scenes
from annotator.types import Box, UserError

from .. import imagegen

# Class order differs from alphabetical order on purpose: exports must keep the project's order.
CLASSES = ["triangle", "circle", "square"]
DEMO_TO_PROJECT = {0: 1, 1: 2, 2: 0}  # scenes.CLASSES (circle, square, triangle) -> CLASSES


@pytest.fixture
def world(services, tmp_path):
    p = services.projects.create_project("Export", CLASSES)
    src = tmp_path / "src"
    for i in range(8):
        folder = src / ("north" if i % 2 else "south")
        folder.mkdir(parents=True, exist_ok=True)
        # the same base name in two folders: export names must stay unique per split
        (folder / f"frame_{i // 2}.jpg").write_bytes(scenes.scene_jpeg(90_000 + i)[0])
    (src / "rotated.jpg").write_bytes(imagegen.jpeg_bytes(200, 100, seed=4, orientation=6))  # stored 100x200
    (src / "negative.png").write_bytes(imagegen.image_bytes("PNG", 64, 48, seed=5))
    services.images.add_images(p, [(src, "cams")], dataset="cams")
    images = {i.rel_path: i for i in services.images.list_images(p, page_size=100).images}
    rows = []
    for i in range(8):
        img = images[f"{'north' if i % 2 else 'south'}/frame_{i // 2}.jpg"]
        for b in scenes.scene(90_000 + i)[1]:
            rows.append((img.id, Box(*b.xyxy, class_idx=DEMO_TO_PROJECT[b.class_idx], source="human")))
    rot = images["rotated.jpg"]
    assert (rot.width, rot.height) == (100, 200)
    rows.append((rot.id, Box(80, 150, 140, 260, class_idx=0, source="human")))  # crosses the border: clamped
    rows.append((rot.id, Box(120, 10, 130, 20, class_idx=1, source="human")))  # outside: zero area, dropped
    services.ctx.store.insert_boxes(rows)
    unapproved = images["south/frame_3.jpg"]
    rejected = images["north/frame_3.jpg"]
    services.ctx.store.set_review_status([i.id for i in images.values() if i.id not in (unapproved.id, rejected.id)],
                                     "approved", "ann")
    services.ctx.store.set_review_status([rejected.id], "rejected", "ann")
    return p, images


def _unzip(path: str, to: Path) -> Path:
    with zipfile.ZipFile(path) as zf:
        zf.extractall(to)
    return to


@pytest.mark.slow
def test_yolo_export_is_accepted_by_ultralytics(services, world, tmp_path):
    p, _ = world
    r = services.transfer.export_dataset(p, "yolo", val_ratio=0.25)
    assert r["images"] == 8 and r["negatives"] == 1  # 6 scenes + rotated + negative; not unapproved/rejected
    assert [d["reason"] for d in r["dropped"]] and all("zero" in d["reason"] or "area" in d["reason"]
                                                        for d in r["dropped"])
    assert any("no stored split" in n for n in r["notes"])
    root = _unzip(r["file"], tmp_path / "yolo")
    data = (root / "data.yaml").read_text()
    assert str(tmp_path) not in data and "/work" not in data
    import yaml

    spec = yaml.safe_load(data)
    assert spec["names"] == {0: "triangle", 1: "circle", 2: "square"} and spec["nc"] == 3
    labels = sorted((root / "labels").rglob("*.txt"))
    images = sorted((root / "images").rglob("*.*"))
    assert len(labels) == len(images) == 8
    # frame_0.jpg from north and south did not collide (names are unique per split; which split each
    # lands in is the split manager's choice)
    assert sum("frame_0" in f.name for f in images) == 2
    for f in labels:
        for line in f.read_text().splitlines():
            cls, *vals = line.split()
            assert int(cls) in (0, 1, 2) and all(0.0 <= float(v) <= 1.0 for v in vals)
            assert all(len(v.split(".")[1]) >= 6 for v in vals)

    from ultralytics.data.utils import check_det_dataset

    checked = check_det_dataset(str(root / "data.yaml"))
    assert checked["nc"] == 3
    from ultralytics import YOLO

    model = YOLO("yolov8n.yaml")
    model.train(data=str(root / "data.yaml"), epochs=1, imgsz=64, batch=4, workers=0, device="cpu",
                plots=False, val=True, project=str(tmp_path / "runs"), name="t", exist_ok=True, verbose=False)
    cache = sorted((root / "labels").glob("*.cache"))
    assert cache, "ultralytics cached its label check"
    import numpy as np

    for c in cache:
        info = np.load(c, allow_pickle=True).item()
        assert info["hash"] and info["results"][3] == 0, f"corrupt labels reported in {c.name}: {info['msgs']}"


def test_coco_export_passes_cocoeval(services, world, tmp_path):
    p, _ = world
    r = services.transfer.export_dataset(p, "coco", with_scores=False)
    root = _unzip(r["file"], tmp_path / "coco")
    ann_file = root / "annotations.json"
    doc = json.loads(ann_file.read_text())
    assert [c["id"] for c in doc["categories"]] == [1, 2, 3]
    assert [c["name"] for c in doc["categories"]] == CLASSES
    assert len(doc["images"]) == 8 and len({a["id"] for a in doc["annotations"]}) == len(doc["annotations"])
    for im in doc["images"]:
        assert (root / "images" / im["file_name"]).is_file()
    rotated = [im for im in doc["images"] if im["file_name"].startswith("rotated")]
    assert [(im["width"], im["height"]) for im in rotated] == [(100, 200)]  # EXIF-corrected

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt = COCO(str(ann_file))
    dets = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 1.0}
            for a in doc["annotations"]]
    ev = COCOeval(gt, gt.loadRes(dets), "bbox")
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    assert ev.stats[0] == pytest.approx(1.0)


def test_labels_are_deterministic_and_refusals_are_clear(services, world, tmp_path):
    p, _ = world
    a = services.transfer.export_dataset(p, "yolo", include_images=False)
    b = services.transfer.export_dataset(p, "yolo", include_images=False)

    def labels(path):
        with zipfile.ZipFile(path) as zf:
            return {n: zf.read(n) for n in zf.namelist() if not n.startswith("images/")}

    assert labels(a["file"]) == labels(b["file"]) and len(labels(a["file"])) == 9  # 8 labels + data.yaml
    assert [e["format"] for e in services.transfer.exports(p)] == ["yolo", "yolo"]
    with pytest.raises(UserError, match="format must be"):
        services.transfer.export_dataset(p, "voc")
    empty = services.projects.create_project("Empty", ["x"])
    with pytest.raises(UserError, match="Nothing to export"):
        services.transfer.export_dataset(empty, "coco")
    everything = services.transfer.export_dataset(p, "coco", approved_only=False, include_images=False)
    assert everything["images"] == 9  # + the unapproved image that has boxes; the rejected one never


@pytest.mark.slow
def test_cli_export_writes_the_zip_where_asked(tmp_path):
    from ..support import run_cli

    data = tmp_path / "data"
    src = tmp_path / "one"
    src.mkdir()
    (src / "a.jpg").write_bytes(scenes.scene_jpeg(5)[0])
    run_cli(data, "project", "create", "C", "--classes", "circle,square,triangle")
    run_cli(data, "ingest", "C", str(src))
    refused = run_cli(data, "export", "C", "--format", "yolo", check=False)
    assert refused.returncode == 2 and "Nothing to export" in refused.stderr  # nothing approved yet
    out = tmp_path / "out" / "c.zip"
    # approve through the store the CLI would own, then export
    from annotator.services import Services
    from annotator.settings import Settings

    services = Services.open(Settings.from_env({"ANNOTATOR_DATA_DIR": str(data)}))
    try:
        (img,) = services.images.list_images("C").images
        services.ctx.store.set_review_status([img.id], "approved", "ann")
    finally:
        services.close()
    r = json.loads(run_cli(data, "export", "C", "--format", "coco", "--out", str(out), "--json").stdout)
    assert r["file"] == str(out) and r["images"] == 1 and r["negatives"] == 1
    with zipfile.ZipFile(out) as zf:
        assert sorted(zf.namelist()) == ["annotations.json", "images/a.jpg"]


def test_same_stem_different_formats_get_distinct_label_files(services, tmp_path):
    p = services.projects.create_project("Stems", ["x"])
    src = tmp_path / "s"
    src.mkdir()
    (src / "a.jpg").write_bytes(imagegen.jpeg_bytes(40, 30, seed=1))
    (src / "a.png").write_bytes(imagegen.image_bytes("PNG", 40, 30, seed=2))
    (src / "A.bmp").write_bytes(imagegen.image_bytes("BMP", 40, 30, seed=3))
    services.images.add_images(p, [src], dataset="d")
    services.ctx.store.set_review_status([i.id for i in services.images.list_images(p).images], "approved", "ann")
    r = services.transfer.export_dataset(p, "yolo", include_images=True, val_ratio=0.0)
    with zipfile.ZipFile(r["file"]) as zf:
        labels = [n for n in zf.namelist() if n.startswith("labels/")]
        images = [n for n in zf.namelist() if n.startswith("images/")]
    assert len(labels) == len(images) == 3
    assert len({Path(n).stem.lower() for n in labels}) == 3


def test_long_and_odd_file_names_export_names_any_unzip_can_create(services, tmp_path):
    """Was: a 300-character file name was accepted, the export held a name `unzip` cannot create (exit 50)
    and every training job on the project failed with "File name too long". Stored names are NFC with
    control characters replaced; exported names are at most 120 bytes, cut with a hash, unique."""
    import shutil
    import subprocess
    import unicodedata

    p = services.projects.create_project("Names", ["x"])
    long_a, long_b = "a" * 290 + "-one", "a" * 290 + "-two"  # the same first 290 characters
    decomposed = unicodedata.normalize("NFD", "café")
    archive = tmp_path / "odd.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr(f"{long_a}.jpg", imagegen.jpeg_bytes(40, 30, seed=1))
        zf.writestr(f"{long_b}.jpg", imagegen.jpeg_bytes(40, 30, seed=2))
        zf.writestr(f"{'é' * 150}.png", imagegen.image_bytes("PNG", 40, 30, seed=3))  # 300 bytes of UTF-8
        zf.writestr(f"{decomposed}\x07bell.jpg", imagegen.jpeg_bytes(40, 30, seed=4))
    report = services.images.add_images(p, [archive], dataset="d")
    assert len(report.added) == 4 and not report.skipped
    stored = {i.rel_path for i in services.images.list_images(p).images}
    assert "café_bell.jpg" in stored  # NFC, the control character replaced
    services.ctx.store.set_review_status([i.id for i in services.images.list_images(p).images], "approved", "ann")
    r = services.transfer.export_dataset(p, "yolo", include_images=True, val_ratio=0.0)
    with zipfile.ZipFile(r["file"]) as zf:
        names = [n for n in zf.namelist() if n.startswith(("images/", "labels/"))]
    leaves = [n.rsplit("/", 1)[-1] for n in names]
    assert len(leaves) == 8 and max(len(n.encode()) for n in leaves) <= 120, leaves
    assert len({Path(n).stem.lower() for n in leaves if n.endswith(".txt")}) == 4  # the two long ones stay apart
    if shutil.which("unzip"):
        out = subprocess.run(["unzip", "-q", r["file"], "-d", str(tmp_path / "x")], capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        assert len(list((tmp_path / "x").rglob("*.txt"))) == 4
