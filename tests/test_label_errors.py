"""Likely label errors on hand-built images: each kind planted alone is found with its fix, a perfect label
set and near-misses of each rule are not, one box / one prediction is never used twice, ranking is stable."""

from __future__ import annotations

import random

import pytest

from annotator.geometry import iou_xyxy
from annotator.label_errors import LabelError, find_label_errors, image_score, rank
from annotator.types import Box

W, H = 1000, 800
NAMES = ["car", "dog", "cat", "truck"]
CAR, DOG, CAT, TRUCK = range(4)


def box(cls, x1, y1, x2, y2, box_id):
    return (cls, x1, y1, x2, y2, box_id)


def pred(cls, x1, y1, x2, y2, conf):
    return (cls, x1, y1, x2, y2, conf)


def find(approved, preds, conf=0.5):
    return find_label_errors(approved, preds, W, H, conf, class_names=NAMES)


LABELS = [box(CAR, 100, 100, 300, 250, 1), box(DOG, 500, 400, 650, 600, 2)]


def test_a_perfect_label_set_yields_nothing():
    preds = [pred(CAR, 100, 100, 300, 250, 0.93), pred(DOG, 500, 400, 650, 600, 0.71)]
    assert find(LABELS, preds) == []
    assert find([], []) == []
    # a low-confidence echo of another class on a confirmed box accuses nothing either
    assert find(LABELS, preds + [pred(CAT, 505, 405, 650, 600, 0.3)]) == []


def test_a_missed_object_suggests_adding_the_prediction():
    preds = [pred(CAR, 100, 100, 300, 250, 0.93), pred(DOG, 500, 400, 650, 600, 0.71),
             pred(CAT, 700, 100, 800, 200, 0.91)]
    [e] = find(LABELS, preds)
    assert (e.kind, e.action, e.box_id, e.box) == ("missed", "add", None, None)
    assert (e.class_idx, e.suggestion_class, e.suggestion_box) == (CAT, CAT, (700.0, 100.0, 800.0, 200.0))
    assert e.score == e.confidence == 0.91
    assert e.message == "the model sees a 'cat' (0.91) with no label here"


def test_predictions_below_conf_are_not_missed():
    low = pred(CAT, 700, 100, 800, 200, 0.45)
    preds = [pred(CAR, 100, 100, 300, 250, 0.93), pred(DOG, 500, 400, 650, 600, 0.71), low]
    assert find(LABELS, preds) == []
    assert [e.kind for e in find(LABELS, preds, conf=0.4)] == ["missed"]


def test_one_unlabelled_object_seen_as_two_classes_is_one_miss():
    preds = [pred(CAR, 700, 100, 800, 200, 0.9), pred(TRUCK, 702, 101, 800, 200, 0.6)]
    [e] = find([], preds)
    assert (e.kind, e.suggestion_class) == ("missed", CAR)


def test_a_prediction_on_a_box_of_another_class_is_not_missed():
    # IoU 0.3..0.5 with a cat box: not a miss (it touches a label) and too loose to say "wrong class"
    assert find([box(CAT, 0, 0, 100, 100, 7)], [pred(CAT, 0, 0, 100, 100, 0.9), pred(DOG, 40, 0, 140, 100, 0.9)]) == []


def test_a_box_nothing_overlaps_is_spurious():
    preds = [pred(CAR, 100, 100, 300, 250, 0.93)]
    [e] = find(LABELS, preds)
    assert (e.kind, e.action, e.box_id, e.class_idx) == ("spurious", "delete", 2, DOG)
    assert e.box == (500.0, 400.0, 650.0, 600.0)
    assert (e.suggestion_class, e.suggestion_box, e.confidence) == (None, None, None)
    assert e.message == "no prediction overlaps this 'dog' box"


def test_spurious_looks_down_to_the_floor_but_not_below():
    faint = pred(DOG, 510, 410, 650, 600, 0.06)  # the model is unsure, but it saw something there
    noise = pred(DOG, 510, 410, 650, 600, 0.04)  # below PRED_FLOOR: as if absent
    car = pred(CAR, 100, 100, 300, 250, 0.93)
    assert find(LABELS, [car, faint]) == []
    assert [e.kind for e in find(LABELS, [car, noise])] == ["spurious"]


def test_a_big_spurious_box_outranks_a_tiny_one():
    big, tiny = box(CAR, 0, 0, 500, 400, 1), box(CAR, 900, 700, 910, 710, 2)
    errors = find([tiny, big], [])
    assert [e.box_id for e in errors] == [1, 2]
    assert errors[0].score == pytest.approx(0.8)  # side ratio 0.5 >= 0.25: the full weight
    assert errors[1].score == pytest.approx(0.8 * (10 / (W * H) ** 0.5) / 0.25)


def test_a_wrong_class_suggests_the_models_class():
    preds = [pred(CAR, 100, 100, 300, 250, 0.93), pred(CAT, 500, 405, 650, 600, 0.88)]
    [e] = find(LABELS, preds)
    assert (e.kind, e.action, e.box_id, e.class_idx, e.box) == ("wrong_class", "reclass", 2, DOG,
                                                               (500.0, 400.0, 650.0, 600.0))
    assert (e.suggestion_class, e.suggestion_box, e.confidence) == (CAT, None, 0.88)
    assert e.score == pytest.approx(0.88 * iou_xyxy((500, 400, 650, 600), (500, 405, 650, 600)))
    assert e.message == "labelled 'dog', the model says 'cat' (0.88)"


def test_the_labelled_class_stands_when_the_model_also_votes_for_it():
    other = pred(CAT, 500, 405, 650, 600, 0.88)
    car = pred(CAR, 100, 100, 300, 250, 0.93)
    assert find(LABELS, [car, other, pred(DOG, 500, 400, 650, 600, 0.6)]) == []  # 0.6 >= half of 0.86
    faint = find(LABELS, [car, other, pred(DOG, 500, 400, 650, 600, 0.1)])  # a faint dog vote does not answer
    assert [(e.kind, e.box_id) for e in faint] == [("wrong_class", 2)]


def test_a_loose_box_suggests_the_predictions_corners():
    approved = [box(CAR, 100, 100, 330, 200, 5)]  # 2.3x the car the model sees in its left part
    [e] = find(approved, [pred(CAR, 100, 100, 200, 200, 0.9)])
    assert (e.kind, e.action, e.box_id, e.class_idx) == ("loose", "resize", 5, CAR)
    assert (e.suggestion_class, e.suggestion_box, e.confidence) == (CAR, (100.0, 100.0, 200.0, 200.0), 0.9)
    assert e.score == pytest.approx(0.9 * (1 - 100 / 230))
    assert e.message == "box is 2.3x the model's 'car' box"
    # also when the pair is close enough to match (IoU 0.56 >= 0.5)
    [e] = find([box(CAR, 100, 100, 280, 200, 6)], [pred(CAR, 100, 100, 200, 200, 0.9)])
    assert (e.kind, e.box_id) == ("loose", 6)


def test_near_misses_of_loose_are_fine():
    car = pred(CAR, 100, 100, 200, 200, 0.9)
    shifted = box(CAR, 100, 108, 200, 208, 1)  # IoU 0.85
    assert iou_xyxy(shifted[1:5], car[1:5]) == pytest.approx(0.85, abs=0.01)
    assert find([shifted], [car]) == []
    assert find([box(CAR, 100, 100, 140 + 100, 200, 1)], [car]) == []  # 1.4x: under LOOSE_AREA
    assert find([box(CAR, 60, 100, 260, 200, 1)], [pred(CAR, 40, 100, 140, 200, 0.9)]) == []  # 20% sticks out
    assert find([box(CAR, 100, 100, 330, 200, 1)], [pred(CAR, 100, 100, 200, 200, 0.4)]) == []  # not confident


def test_one_prediction_explains_one_finding_and_a_box_is_flagged_once():
    # the car inside the loose box is not also "missed"; the cat on the dog box is not also "missed"
    approved = [box(CAR, 0, 0, 400, 300, 1), box(DOG, 500, 400, 650, 600, 2), box(DOG, 505, 400, 650, 600, 3)]
    preds = [pred(CAR, 0, 0, 100, 100, 0.9), pred(CAT, 500, 400, 650, 600, 0.9)]
    errors = find(approved, preds)
    assert sorted((e.kind, e.box_id) for e in errors) == [("loose", 1), ("wrong_class", 2)]


def test_messy_images_never_reuse_a_box_or_a_prediction():
    rnd = random.Random(3)
    for _ in range(50):
        def rand_box():
            x, y = rnd.uniform(0, 800), rnd.uniform(0, 600)
            return (x, y, x + rnd.uniform(5, 200), y + rnd.uniform(5, 200))
        approved = [box(rnd.randrange(3), *rand_box(), i) for i in range(rnd.randrange(8))]
        preds = [pred(rnd.randrange(3), *rand_box(), rnd.uniform(0, 1)) for _ in range(rnd.randrange(10))]
        preds += [pred(rnd.randrange(3), *b[1:5], rnd.uniform(0.3, 1)) for b in approved if rnd.random() < 0.5]
        errors = find(approved, preds)
        box_ids = [e.box_id for e in errors if e.box_id is not None]
        assert len(box_ids) == len(set(box_ids))
        added = [e.suggestion_box for e in errors if e.kind == "missed"]
        assert len(added) == len(set(added))
        assert all(0.0 <= e.score <= 1.0 for e in errors)
        assert [e.score for e in errors] == sorted((e.score for e in errors), reverse=True)
        assert find(approved, preds) == errors  # deterministic


def test_box_objects_are_accepted():
    approved = [Box(100, 100, 300, 250, CAR, id=11)]
    preds = [Box(100, 100, 300, 250, CAR, confidence=0.9, source="model"),
             Box(700, 100, 800, 200, DOG, confidence=0.8, source="model")]
    assert [(e.kind, e.suggestion_class) for e in find(approved, preds)] == [("missed", DOG)]
    with pytest.raises(ValueError, match="confidence"):
        find(approved, [Box(0, 0, 1, 1, CAR)])
    with pytest.raises(ValueError, match="size"):
        find_label_errors(approved, [], 0, 10)


def test_rank_orders_findings_worst_first_with_stable_ties():
    def e(kind, score, box_id):
        return LabelError(kind, score, box_id, 0, (0.0, 0.0, 1.0, 1.0), 0, None, 0.9, "")
    per_image = {
        7: [e("missed", 0.9, None), e("spurious", 0.2, 4)],
        3: [e("loose", 0.5, 2), e("wrong_class", 0.5, 1)],
        5: [e("spurious", 0.5, 9), e("loose", 0.5, 1)],
        9: [],
    }
    order = [(i, x.kind, x.box_id) for i, x in rank(per_image)]
    assert order == [(7, "missed", None), (3, "loose", 2), (3, "wrong_class", 1), (5, "loose", 1),
                     (5, "spurious", 9), (7, "spurious", 4)]
    shuffled = {k: list(reversed(v)) for k, v in reversed(list(per_image.items()))}
    assert rank(shuffled) == rank(per_image)
    assert image_score(per_image[7]) == 0.9 and image_score([]) == 0.0


def test_as_dict_is_plain():
    [e] = find([], [pred(CAT, 700, 100, 800, 200, 0.91)])
    d = e.as_dict()
    assert d["kind"] == "missed" and d["action"] == "add" and d["suggestion_box"] == [700.0, 100.0, 800.0, 200.0]
