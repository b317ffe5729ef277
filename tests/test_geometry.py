import pytest

from annotator.geometry import (
    area_xyxy,
    clamp_xyxy,
    iou_xyxy,
    overlap_of_smaller_xyxy,
    xywh_to_xyxy,
    xyxy_to_xywh,
    xyxy_to_yolo,
    yolo_to_xyxy,
)

BOXES = [
    ((0.0, 0.0, 10.0, 20.0), 100, 50),
    ((12.5, 7.25, 80.0, 41.0), 640, 480),
    ((0.0, 0.0, 640.0, 480.0), 640, 480),
    ((3.0, 4.0, 3.0, 4.0), 17, 9),  # zero-size box
    ((1919.5, 0.5, 1920.0, 1080.0), 1920, 1080),
]


@pytest.mark.parametrize("box,w,h", BOXES)
def test_xyxy_xywh_round_trip(box, w, h):
    xywh = xyxy_to_xywh(box)
    assert xywh[2] == pytest.approx(box[2] - box[0]) and xywh[3] == pytest.approx(box[3] - box[1])
    assert xywh_to_xyxy(xywh) == pytest.approx(box)


@pytest.mark.parametrize("box,w,h", BOXES)
def test_xyxy_yolo_round_trip(box, w, h):
    yolo = xyxy_to_yolo(box, w, h)
    assert all(0.0 <= v <= 1.0 for v in yolo)
    assert yolo_to_xyxy(yolo, w, h) == pytest.approx(box)


@pytest.mark.parametrize("box,w,h", BOXES)
def test_xywh_to_yolo_via_xyxy_round_trip(box, w, h):
    xywh = xyxy_to_xywh(box)
    back = xyxy_to_xywh(yolo_to_xyxy(xyxy_to_yolo(xywh_to_xyxy(xywh), w, h), w, h))
    assert back == pytest.approx(xywh)


def test_yolo_known_values():
    assert xyxy_to_yolo((10, 20, 30, 60), 100, 200) == pytest.approx((0.2, 0.2, 0.2, 0.2))
    assert yolo_to_xyxy((0.5, 0.5, 1.0, 1.0), 640, 480) == pytest.approx((0, 0, 640, 480))
    assert xyxy_to_xywh((10, 20, 30, 60)) == (10, 20, 20, 40)


@pytest.mark.parametrize("w,h", [(0, 10), (10, 0), (-1, 5)])
def test_yolo_refuses_empty_image(w, h):
    with pytest.raises(ValueError, match="positive"):
        xyxy_to_yolo((0, 0, 1, 1), w, h)
    with pytest.raises(ValueError, match="positive"):
        yolo_to_xyxy((0.5, 0.5, 0.1, 0.1), w, h)


@pytest.mark.parametrize(
    "box,expected",
    [
        ((10, 10, 20, 20), (10, 10, 20, 20)),  # inside: unchanged
        ((-5, -7, 20, 30), (0, 0, 20, 30)),
        ((90, 40, 150, 80), (90, 40, 100, 50)),
        ((-10, -10, 200, 200), (0, 0, 100, 50)),
        ((30, 20, 10, 5), (10, 5, 30, 20)),  # swapped corners come back ordered
        ((120, 60, 150, 90), (100, 50, 100, 50)),  # fully outside collapses onto the edge
    ],
)
def test_clamp(box, expected):
    assert clamp_xyxy(box, 100, 50) == pytest.approx(expected)


@pytest.mark.parametrize(
    "a,b,expected",
    [
        ((0, 0, 10, 10), (0, 0, 10, 10), 1.0),
        ((0, 0, 10, 10), (20, 20, 30, 30), 0.0),
        ((0, 0, 10, 10), (10, 0, 20, 10), 0.0),  # touching edges
        ((0, 0, 10, 10), (5, 0, 15, 10), 50 / 150),
        ((0, 0, 10, 10), (2, 2, 4, 4), 4 / 100),  # contained
        ((0, 0, 0, 0), (0, 0, 0, 0), 0.0),  # empty boxes: no division by zero
    ],
)
def test_iou(a, b, expected):
    assert iou_xyxy(a, b) == pytest.approx(expected)
    assert iou_xyxy(b, a) == pytest.approx(expected)


@pytest.mark.parametrize(
    "a,b,expected",
    [
        ((0, 0, 10, 10), (2, 2, 4, 4), 1.0),  # contained: all of the smaller box is covered (IoU 0.04)
        ((0, 0, 10, 10), (5, 0, 25, 10), 0.5),
        ((0, 0, 10, 10), (10, 0, 20, 10), 0.0),  # touching edges
        ((0, 0, 0, 0), (0, 0, 10, 10), 0.0),  # an empty box: no division by zero
    ],
)
def test_overlap_of_smaller(a, b, expected):
    assert overlap_of_smaller_xyxy(a, b) == pytest.approx(expected)
    assert overlap_of_smaller_xyxy(b, a) == pytest.approx(expected)


def test_area():
    assert area_xyxy((1, 2, 4, 6)) == 12
    assert area_xyxy((4, 6, 1, 2)) == 0
