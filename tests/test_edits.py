"""The reviewer-edit metric on hand-built cases: each kind of edit, a class change counted once."""

from __future__ import annotations

from annotator.edits import count_edits
from annotator.types import Box


def b(cls, x1, y1, x2, y2):
    return (cls, x1, y1, x2, y2)


def test_approved_as_shown_is_zero_edits():
    shown = [b(0, 0, 0, 10, 10), b(1, 20, 20, 40, 40)]
    assert count_edits(shown, list(reversed(shown))).as_dict() == {
        "deleted": 0, "added": 0, "reclassed": 0, "adjusted": 0, "total": 0}
    assert count_edits([], []).total == 0


def test_each_kind_of_edit():
    shown = [b(0, 0, 0, 100, 100),     # kept as is
             b(0, 200, 200, 300, 300),  # resized: IoU 0.64 with its final box -> adjusted
             b(1, 400, 400, 500, 500),  # a false positive -> deleted
             b(2, 600, 600, 700, 700)]  # right place, wrong class -> reclassed
    final = [b(0, 0, 0, 100, 100), b(0, 200, 200, 280, 280), b(1, 600, 600, 700, 700),
             b(2, 800, 800, 900, 900)]  # a miss -> added
    e = count_edits(shown, final)
    assert (e.deleted, e.added, e.reclassed, e.adjusted, e.total) == (1, 1, 1, 1, 4)


def test_a_class_change_is_one_edit_and_a_moved_one_two():
    assert count_edits([b(0, 0, 0, 10, 10)], [b(1, 0, 0, 10, 10)]).total == 1  # not a delete plus an add
    moved = count_edits([b(0, 0, 0, 10, 10)], [b(1, 0, 0, 10, 8)])  # IoU 0.8: reclassed AND adjusted
    assert (moved.reclassed, moved.adjusted, moved.total) == (1, 1, 2)


def test_below_match_iou_is_a_delete_and_an_add():
    e = count_edits([b(0, 0, 0, 10, 10)], [b(0, 6, 6, 16, 16)])  # IoU 16/184
    assert (e.deleted, e.added, e.total) == (1, 1, 2)


def test_same_class_partners_win_over_closer_other_class_ones():
    shown = [b(0, 0, 0, 10, 10), b(1, 0, 0, 10, 9)]
    final = [b(0, 0, 0, 10, 9)]  # the class-0 box matches (IoU 0.9): the class-1 box was deleted
    e = count_edits(shown, final)
    assert (e.deleted, e.reclassed, e.adjusted, e.total) == (1, 0, 0, 1)


def test_boxes_objects_work_too():
    e = count_edits([Box(0, 0, 10, 10, 0, confidence=0.5, source="model")], [Box(0, 0, 10, 10, 1)])
    assert e.reclassed == 1 and e.total == 1
