"""Dataset health numbers on a hand-built project counted by hand (every key), histogram edges, when the
imbalance and drift warnings speak and when they don't, and an empty project."""

from __future__ import annotations

import json

import numpy as np
import pytest

from annotator.health import compute_health, drift, imbalance_warning

CLASSES = ["car", "dog", "bird"]
IMAGES = [
    (1, "train", "approved", 100, 100),
    (2, "train", "approved", 200, 100),
    (3, "val", "approved", 100, 100),
    (4, None, "unreviewed", 100, 100),
    (5, "test", "rejected", 100, 100),
    (6, "val", "approved", 100, 100),
]
BOXES = [  # image, class, x1, y1, x2, y2   (side = sqrt(box area / image area); aspect = w:h)
    (1, 0, 0, 0, 50, 50),       # car train    side .50 -> bin 5   1:1
    (1, 0, 10, 10, 30, 20),     # car train    side .14 -> bin 1   2:1
    (1, 1, 0, 0, 4, 40),        # dog train    side .13 -> bin 1   1:10 -> <=1:8   tiny (4 px)
    (2, 0, 0, 0, 200, 100),     # car train    side 1.0 -> bin 9   2:1
    (3, 1, 0, 0, 30, 31),       # dog val      side .305 -> bin 3  1:1
    (3, 1, 50, 50, 80, 110),    # dog val      side .42 -> bin 4   1:2
    (4, 0, 0, 0, 10, 7),        # car unassigned  side .08 -> bin 0  log2 0.51 -> 2:1   tiny (7 px)
    (99, 2, 0, 0, 10, 10),      # an image not listed: ignored
]


def test_every_number_on_a_hand_built_project():
    h = compute_health(IMAGES, BOXES, CLASSES, duplicate_groups=[[1, 3], [2, 4, 1]], straddling=1)
    assert h["images"] == {"total": 6, "with_boxes": 4,
                           "per_split": {"train": 2, "val": 2, "test": 1, "unassigned": 1},
                           "per_status": {"unreviewed": 1, "approved": 4, "rejected": 1}}
    assert h["boxes"] == {"total": 7, "per_split": {"train": 4, "val": 2, "test": 0, "unassigned": 1}}
    assert h["per_class"] == [
        {"class_idx": 0, "class": "car", "boxes": 4, "images": 3, "share": pytest.approx(4 / 7),
         "per_split": {"train": 3, "val": 0, "test": 0, "unassigned": 1}},
        {"class_idx": 1, "class": "dog", "boxes": 3, "images": 2, "share": pytest.approx(3 / 7),
         "per_split": {"train": 1, "val": 2, "test": 0, "unassigned": 0}},
        {"class_idx": 2, "class": "bird", "boxes": 0, "images": 0, "share": 0.0,
         "per_split": {"train": 0, "val": 0, "test": 0, "unassigned": 0}},
    ]
    assert h["objects_per_image"] == {"labels": ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10+"],
                                      "counts": [2, 2, 1, 1, 0, 0, 0, 0, 0, 0, 0]}
    assert h["images_without_boxes"] == {"count": 2, "examples": [5, 6], "approved": 1, "approved_examples": [6]}
    assert h["tiny_boxes"] == {"min_side_px": 8, "count": 2,
                               "examples": [{"image_id": 1, "class": "dog"}, {"image_id": 4, "class": "car"}]}
    assert h["box_size"]["edges"] == pytest.approx([i / 10 for i in range(11)])
    assert h["box_size"]["counts"] == [1, 2, 0, 1, 1, 1, 0, 0, 0, 1]
    assert h["box_aspect"] == {"log2": [-3, -2, -1, 0, 1, 2, 3],
                               "labels": ["<=1:8", "1:4", "1:2", "1:1", "2:1", "4:1", ">=8:1"],
                               "counts": [1, 0, 1, 2, 3, 0, 0]}
    assert h["duplicates"] == {"groups": 2, "images": 4, "straddling": 1}
    assert h["imbalance"] == "Class imbalance: 'bird' has no boxes."
    d = h["drift"]
    assert [(r["class"], r["train_share"], r["val_share"], r["diff_pp"]) for r in d["per_class"]] == [
        ("car", 0.75, 0.0, -75.0), ("dog", 0.25, 1.0, 75.0), ("bird", 0.0, 0.0, 0.0)]
    assert d["warning"] == "Train and val differ: 'car' is only in train; 'dog' is 25% of train boxes but 100% of val."
    assert h["warnings"] == [
        h["imbalance"], d["warning"],
        "2 boxes have a side under 8 px: too small to learn well.",
        "1 approved image has no boxes: fine for pictures of nothing to label, a miss otherwise.",
        "1 group of near-duplicate images straddles train and val: val scores will read high.",
    ]
    assert json.loads(json.dumps(h)) == h
    # an (n, 6) array gives the same answer as a list of tuples
    assert compute_health(IMAGES, np.array(BOXES, dtype=float), CLASSES, [[1, 3], [2, 4, 1]], 1) == h


def test_histogram_edges():
    images = [(1, "train", "approved", 100, 50), (2, "train", "approved", 100, 100)]
    boxes = [
        (1, 0, 0, 0, 100, 50),     # the whole image: side exactly 1.0 -> the last bin (closed)
        (1, 0, -20, -20, 150, 80),  # larger than the image: clipped to 1.0
        (1, 0, 5, 5, 5, 20),       # zero width: side 0 -> the first bin; no aspect
        (2, 0, 0, 0, 10, 160),     # 1:16 -> "<=1:8"
        (2, 0, 0, 0, 100, 5),      # 20:1 -> ">=8:1"
        (2, 0, 0, 0, 40, 10),      # 4:1 exactly
    ] + [(2, 1, i, i, i + 10, i + 11) for i in range(9)]  # image 2 holds 12 boxes: "10+"
    h = compute_health(images, boxes, ["a", "b"])
    assert h["box_size"]["counts"][-1] == 2 and h["box_size"]["counts"][0] == 1
    assert sum(h["box_size"]["counts"]) == len(boxes)
    assert h["box_aspect"]["counts"] == [1, 0, 0, 9, 2, 1, 1]
    assert h["objects_per_image"]["counts"] == [0, 0, 0, 1] + [0] * 6 + [1]
    assert h["tiny_boxes"]["count"] == 2  # the zero-width one and the 5 px high one; 10x11 is not tiny
    # examples stop at 20, lowest image ids first
    many = [(i, None, "approved", 10, 10) for i in range(30, 0, -1)]
    h = compute_health(many, [], ["a"])
    assert h["images_without_boxes"]["examples"] == list(range(1, 21)) and h["images_without_boxes"]["count"] == 30


def test_imbalance_speaks_at_ten_to_one():
    assert imbalance_warning(["a", "b", "c"], [100, 10, 40]) == "Class imbalance: 'a' has 100 boxes, 10x the 10 of 'b'."
    assert imbalance_warning(["a", "b", "c"], [99, 10, 40]) is None
    assert imbalance_warning(["a", "b"], [5, 0]) == "Class imbalance: 'b' has no boxes."
    assert imbalance_warning(["a", "b", "c"], [2000, 0, 0]) == "Class imbalance: 'b', 'c' have no boxes."
    assert imbalance_warning(["a", "b"], [0, 0]) is None  # nothing labelled yet: nothing to weigh
    assert imbalance_warning([], []) is None
    h = compute_health([(1, "train", "approved", 10, 10)], [(1, 1, 0, 0, 9, 9)] * 12 + [(1, 0, 0, 0, 9, 9)], ["x", "y"])
    assert h["imbalance"] == "Class imbalance: 'y' has 12 boxes, 12x the 1 of 'x'." and h["imbalance"] in h["warnings"]


def test_drift_speaks_past_ten_points_or_one_sided():
    names = ["a", "b"]
    assert drift(names, [50, 50], [55, 45])["warning"] is None  # 5 points
    assert drift(names, [50, 50], [60, 40])["warning"] is None  # 10 points: not more than 10
    assert drift(names, [50, 50], [61, 39])["warning"] == (
        "Train and val differ: 'a' is 50% of train boxes but 61% of val; 'b' is 50% of train boxes but 39% of val.")
    assert drift(names, [0, 50], [1, 49])["warning"] == "Train and val differ: 'a' is only in val."
    assert drift(names, [10, 10], [0, 0]) is None and drift(names, [0, 0], [3, 1]) is None
    # in compute_health: no val boxes, no drift and no drift warning
    images = [(1, "train", "approved", 99, 99), (2, "val", "approved", 99, 99)]
    h = compute_health(images, [(1, 0, 0, 0, 50, 50)], ["a"])
    assert h["drift"] is None and h["warnings"] == ["1 approved image has no boxes: fine for pictures of nothing to "
                                                    "label, a miss otherwise."]


def test_an_empty_project_is_all_zeros():
    for classes in ([], ["a", "b"]):
        h = compute_health([], [], classes)
        assert h["images"] == {"total": 0, "with_boxes": 0, "per_split": dict.fromkeys(("train", "val", "test",
                               "unassigned"), 0), "per_status": {"unreviewed": 0, "approved": 0, "rejected": 0}}
        assert h["boxes"]["total"] == 0 and [c["boxes"] for c in h["per_class"]] == [0] * len(classes)
        assert sum(h["objects_per_image"]["counts"]) == sum(h["box_size"]["counts"]) == 0
        assert h["images_without_boxes"]["count"] == h["tiny_boxes"]["count"] == 0
        assert h["duplicates"] == {"groups": 0, "images": 0, "straddling": 0}
        assert (h["imbalance"], h["drift"], h["warnings"]) == (None, None, [])
        json.dumps(h)


def test_unnamed_classes_and_bad_rows():
    h = compute_health([(1, "train", "approved", 10, 10)], [(1, 3, 0, 0, 9, 9)], ["a"])
    assert [c["class"] for c in h["per_class"]] == ["a", "class 1", "class 2", "class 3"]
    with pytest.raises(ValueError, match="class"):
        compute_health([(1, "train", "approved", 10, 10)], [(1, -1, 0, 0, 9, 9)], ["a"])
