"""The embedded demo: synthetic scenes are deterministic with exact boxes, and the committed shapes model
loads offline and finds the shapes in scenes it never saw."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from annotator.demo import build, scenes
from annotator.types import Box

# Seeds far from the training seeds (0 .. n_train + n_val - 1 of the committed model).
FRESH_SEEDS = range(scenes.TEST_SEED, scenes.TEST_SEED + 10)


@pytest.mark.slow
def test_importing_demo_does_not_import_torch_or_ultralytics():
    code = ("import sys, annotator.demo.scenes, annotator.demo.build; "
            "print(sorted({'torch', 'ultralytics'} & set(sys.modules)))")
    root = Path(scenes.__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("seed", [0, 7, 123456])
def test_scene_is_deterministic(seed):
    a, boxes_a = scenes.scene(seed)
    b, boxes_b = scenes.scene(seed)
    assert a.mode == "RGB" and a.size == (640, 480)
    assert a.tobytes() == b.tobytes()
    assert boxes_a == boxes_b
    assert scenes.scene_jpeg(seed) == scenes.scene_jpeg(seed)
    other, _ = scenes.scene(seed + 1)
    assert other.tobytes() != a.tobytes()


def test_scene_jpeg_decodes_to_the_scene():
    data, boxes = scenes.scene_jpeg(3, quality=95)
    image, same_boxes = scenes.scene(3)
    decoded = Image.open(io.BytesIO(data))
    assert decoded.format == "JPEG" and decoded.size == image.size
    assert boxes == same_boxes
    diff = np.abs(np.asarray(decoded.convert("RGB"), dtype=int) - np.asarray(image, dtype=int))
    assert diff.mean() < 4


@pytest.mark.parametrize("size", [(640, 480), (320, 240), (500, 700)])
def test_scene_boxes_are_inside_tight_and_valid(size):
    width, height = size
    counts = set()
    classes_seen = set()
    for seed in range(12):
        image, boxes = scenes.scene(seed, width, height)
        assert image.size == (width, height)
        assert 1 <= len(boxes) <= scenes.MAX_SHAPES
        counts.add(len(boxes))
        img = np.asarray(image, dtype=int)
        bg = np.asarray(scenes.background(seed, width, height), dtype=int)
        changed = np.abs(img - bg).max(axis=2) > 0
        inside_any = np.zeros((height, width), dtype=bool)
        for box in boxes:
            assert isinstance(box, Box)
            cls, x1, y1, x2, y2 = box.class_idx, *box.xyxy
            assert cls in (0, 1, 2)
            classes_seen.add(cls)
            assert 0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height
            assert all(float(v).is_integer() for v in (x1, y1, x2, y2))
            x1, y1, x2, y2 = int(x1), int(y1), int(x2), int(y2)
            assert scenes.MIN_SIZE - 2 <= max(x2 - x1, y2 - y1) <= scenes.MAX_SIZE
            inside_any[y1:y2, x1:x2] = True
            inner = changed[y1:y2, x1:x2]
            # tight: the shape touches all four sides of its box
            assert inner[0].any() and inner[-1].any() and inner[:, 0].any() and inner[:, -1].any()
            if cls in (0, 1):  # the centre of a circle or a square is the shape, not the background
                cy, cx = (y1 + y2) // 2, (x1 + x2) // 2
                assert np.abs(img[cy, cx] - bg[cy, cx]).sum() > 60
            if cls == 1:
                assert inner.all()  # a square fills its box
        # nothing was drawn outside the boxes
        assert not changed[~inside_any].any()
    assert classes_seen == {0, 1, 2}
    assert len(counts) > 1


@pytest.mark.slow
def test_scene_shapes_are_separate_and_their_boxes_exact():
    """Each shape is one connected blob of changed pixels, apart from the others, and its box is exactly the
    blob's bounding box."""
    cv2 = pytest.importorskip("cv2")
    for seed in range(25):
        image, boxes = scenes.scene(seed)
        changed = np.abs(np.asarray(image, dtype=int) - np.asarray(scenes.background(seed), dtype=int)).max(axis=2) > 0
        _, _, stats, _ = cv2.connectedComponentsWithStats(changed.astype(np.uint8), connectivity=8)
        blobs = sorted((int(x), int(y), int(x + w), int(y + h)) for x, y, w, h, _area in stats[1:])
        assert blobs == sorted(tuple(int(v) for v in b.xyxy) for b in boxes), seed


def test_write_scenes_names_files_by_position_or_seed(tmp_path):
    truth = scenes.write_scenes(tmp_path / "a", [5, 9], 320, 240, name="s{i}_{seed}.jpg")
    assert list(truth) == ["s0_5.jpg", "s1_9.jpg"]
    assert (tmp_path / "a" / "s1_9.jpg").read_bytes() == scenes.scene_jpeg(9, 320, 240)[0]
    assert truth["s1_9.jpg"] == scenes.scene(9, 320, 240)[1]
    assert list(scenes.write_scenes(tmp_path / "b", [12])) == ["scene_0000012.jpg"]


def test_write_yolo_dataset(tmp_path):
    yaml_path = build.write_yolo_dataset(tmp_path / "ds", n_train=3, n_val=2, seed=10)
    root = (tmp_path / "ds").resolve()
    assert yaml_path == root / "data.yaml"  # the app's YOLO writer: no 'path', ultralytics resolves beside it
    data = yaml.safe_load(yaml_path.read_text())
    assert data == {"train": "images/train", "val": "images/val", "nc": 3,
                    "names": {0: "circle", 1: "square", 2: "triangle"}}
    assert sorted(p.name for p in root.iterdir()) == ["data.yaml", "images", "labels"]  # no staging left
    assert sorted(p.name for p in (root / "images" / "train").iterdir()) == [
        f"scene_{s:07d}.jpg" for s in (10, 11, 12)
    ]
    assert sorted(p.stem for p in (root / "labels" / "val").iterdir()) == ["scene_0000013", "scene_0000014"]
    _, boxes = scenes.scene(13)
    lines = (root / "labels" / "val" / "scene_0000013.txt").read_text().splitlines()
    assert len(lines) == len(boxes)
    for line, box in zip(lines, boxes):
        cls, x1, y1, x2, y2 = box.class_idx, *box.xyxy
        parts = line.split()
        assert int(parts[0]) == cls
        assert all(len(p.split(".")[1]) == 6 for p in parts[1:])
        xc, yc, w, h = map(float, parts[1:])
        assert xc == pytest.approx((x1 + x2) / 2 / 640, abs=1e-6)
        assert yc == pytest.approx((y1 + y2) / 2 / 480, abs=1e-6)
        assert w == pytest.approx((x2 - x1) / 640, abs=1e-6)
        assert h == pytest.approx((y2 - y1) / 480, abs=1e-6)


@pytest.mark.slow
def test_command_line_writes_one_scene_and_its_labels(tmp_path):
    root = Path(scenes.__file__).resolve().parents[2]
    out = tmp_path / "s" / "scene.jpg"
    done = subprocess.run([sys.executable, "-m", "annotator.demo", "scene", "13", str(out)], cwd=root,
                          capture_output=True, text=True, check=True)
    data, boxes = scenes.scene_jpeg(13)
    assert done.stdout.strip() == f"{out}: {len(boxes)} shapes"
    assert out.read_bytes() == data
    lines = out.with_suffix(".txt").read_text().splitlines()
    assert [int(line.split()[0]) for line in lines] == [b.class_idx for b in boxes]


def test_match_boxes_is_greedy_by_confidence_class_and_iou():
    truths = [Box(0, 0, 10, 10, class_idx=0), Box(20, 20, 30, 30, class_idx=1)]

    def pred(cls, conf, *xyxy):
        return Box(*xyxy, class_idx=cls, confidence=conf, source="model")

    preds = [
        pred(0, 0.8, 0, 0, 10, 10),  # duplicate: its truth is taken by the more confident one below
        pred(0, 0.9, 0, 0, 10, 10),  # TP
        pred(2, 0.7, 20, 20, 30, 30),  # wrong class
        pred(1, 0.6, 24, 24, 34, 34),  # IoU 36/164 < 0.5
    ]
    assert build.match_boxes(preds, truths) == 1
    assert build.match_boxes([pred(1, 0.5, 21, 20, 30, 30)], truths) == 1


# --- the committed model -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def demo_model():
    assert scenes.DEMO_MODEL_PATH.is_file(), f"missing committed model {scenes.DEMO_MODEL_PATH}"
    from ultralytics import YOLO

    return YOLO(str(scenes.DEMO_MODEL_PATH))


@pytest.mark.slow
def test_demo_model_is_small_and_loads_offline(demo_model):
    assert scenes.DEMO_MODEL_PATH.stat().st_size < 8_000_000
    assert demo_model.task == "detect"
    assert demo_model.names == {0: "circle", 1: "square", 2: "triangle"}
    assert build.model_imgsz(demo_model) == scenes.DEFAULT_IMGSZ
    assert demo_model.ckpt.get("optimizer") is None  # stripped: inference-only checkpoint


@pytest.mark.slow
def test_demo_model_finds_shapes_in_fresh_scenes(demo_model):
    result = build.evaluate(scenes.DEMO_MODEL_PATH, FRESH_SEEDS, conf=0.25)
    assert result["imgsz"] == scenes.DEFAULT_IMGSZ
    assert result["ground_truth"] >= 20
    assert result["recall"] >= 0.85, result
    assert result["precision"] >= 0.7, result
