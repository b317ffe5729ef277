"""jobs/tracking.py: ByteTrack ids for our own per-frame detections (synthetic tracks, the demo model on a moving
shapes clip, and the clear error when lap is missing)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from jobs.tracking import LAP_MISSING, NO_ID, FrameTracker, assign_tracks

FRAMES = 40


def _synthetic(seed: int = 0):
    """40 frames: A crosses the whole clip, B appears at frame 10, C leaves after frame 29 (straight lines, ~1 px
    of seeded noise); a lone low-confidence false positive at frame 20 and a one-frame confident one at frame 25.
    Each frame's rows are shuffled. Returns the frames and, per frame, the object name of each row."""
    rng = np.random.default_rng(seed)
    objects = {  # name: (first frame, last frame, start xyxy, velocity px/frame, class)
        "A": (0, FRAMES - 1, (10, 20, 60, 70), (4, 1), 0),
        "B": (10, FRAMES - 1, (300, 200, 350, 240), (-3, -2), 1),
        "C": (0, 29, (200, 20, 240, 80), (0, 3), 2),
    }
    frames, names = [], []
    for k in range(FRAMES):
        rows, who = [], []
        for name, (first, last, box, (vx, vy), c) in objects.items():
            if first <= k <= last:
                t = k - first
                xyxy = np.array(box, float) + [vx * t, vy * t, vx * t, vy * t] + rng.normal(0, 1, 4)
                rows.append((*xyxy, rng.uniform(0.7, 0.95), c))
                who.append(name)
        if k == 20:
            rows.append((500, 400, 530, 430, 0.15, 0))
            who.append("low")
        if k == 25:
            rows.append((450, 20, 490, 60, 0.9, 1))
            who.append("blip")
        order = rng.permutation(len(rows))
        arr = np.array(rows, float)[order]
        frames.append((arr[:, :4], arr[:, 4], arr[:, 5].astype(int)))
        names.append([who[i] for i in order])
    return frames, names


def _ids_by_name(frames_ids, names) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for ids, who in zip(frames_ids, names):
        assert ids.dtype == np.int64 and ids.shape == (len(who),)
        for i, name in zip(ids.tolist(), who):
            out.setdefault(name, []).append(i)
    return out


def test_each_object_keeps_one_id_and_false_positives_get_none():
    frames, names = _synthetic()
    by = _ids_by_name(assign_tracks(frames), names)
    for name in "ABC":
        assert len(set(by[name])) == 1 and by[name][0] != NO_ID, (name, by[name])
    assert len({by[n][0] for n in "ABC"}) == 3
    assert by["low"] == [NO_ID]  # a low score only extends a track, never starts one
    assert by["blip"] == [NO_ID]  # a track seen once is never confirmed
    assert len(by["A"]) == FRAMES and len(by["B"]) == 30 and len(by["C"]) == 30


def test_update_reports_a_new_track_from_its_second_frame_and_backfills_the_first():
    frames, names = _synthetic()
    tracker = FrameTracker()
    answers, backfills = [], {}
    for k, frame in enumerate(frames):
        answers.append(tracker.update(*frame))
        backfills[k] = list(tracker.backfill)
    by = _ids_by_name(answers, names)
    assert NO_ID not in by["A"] + by["C"]  # present on the first frame: confirmed at once
    b_id = by["B"][1]
    assert by["B"] == [NO_ID] + [b_id] * 29  # appears at frame 10: no id there, then one id
    assert backfills[11] == [(10, names[10].index("B"), b_id)]  # ... and frame 11 names frame 10's row
    assert all(not v for k, v in backfills.items() if k != 11)  # the blip was never confirmed: nothing backfilled
    assert sorted({by["A"][0], by["C"][0], b_id}) == [1, 2, 3]  # ids per tracker, from 1

    tracker.reset()  # another video: ids from 1 again, and its first frame confirms at once
    first = tracker.update(*frames[10])
    assert sorted(first.tolist()) == [1, 2, 3] and tracker.frame_index == 0


def test_a_missed_detection_keeps_the_id_and_frame_rate_sets_how_long():
    """An object undetected for 5 fed frames: at 30 fps (buffer 30 frames) its track waits; at 3 fps (every
    10th frame kept: buffer int(3 / 30 * 30) = 3 fed frames = 1 s of video) it was given up, and it comes back
    under a new id."""
    def frames():
        out = []
        for k in range(20):
            box = np.array([[50 + 2 * k, 50, 100 + 2 * k, 100]], float)
            if 8 <= k < 13:
                out.append((np.zeros((0, 4)), np.zeros(0), np.zeros(0, int)))  # empty frames are fine
            else:
                out.append((box, np.array([0.9]), np.array([0])))
        return out

    at_30 = [ids.tolist() for ids in assign_tracks(frames(), frame_rate=30)]
    assert {i for ids in at_30 for i in ids} == {1}
    at_3 = assign_tracks(frames(), frame_rate=3)
    before, after = {int(i) for ids in at_3[:8] for i in ids}, {int(i) for ids in at_3[13:] for i in ids}
    assert before == {1} and len(after) == 1 and after != before and NO_ID not in after
    assert FrameTracker(frame_rate=3).max_frames_lost == 3
    assert FrameTracker(frame_rate=3, track_buffer=90).max_frames_lost == 9
    assert FrameTracker(frame_rate=0.5).max_frames_lost == 1  # at least one fed frame


def test_frame_rate_does_not_help_matching_an_object_that_jumps_past_its_box():
    """Matching is by overlap: a 40 px box moving 45 px a fed frame keeps no track, whatever frame_rate says."""
    frames = [(np.array([[10 + 45 * k, 50, 50 + 45 * k, 90]], float), np.array([0.9]), np.array([0]))
              for k in range(8)]
    for rate in (30, 3):
        ids = [int(i[0]) for i in assign_tracks(frames, frame_rate=rate)]
        assert ids == [1] + [NO_ID] * 7  # the first frame confirms at once; after that each box starts a track
        # that the next frame's box does not overlap, so none is confirmed


def test_settings_are_checked():
    with pytest.raises(ValueError, match="unknown ByteTrack setting"):
        FrameTracker(track_treshold=0.5)
    with pytest.raises(ValueError, match="frame_rate"):
        FrameTracker(frame_rate=0)
    with pytest.raises(ValueError, match="differ in length"):
        FrameTracker().update(np.zeros((2, 4)), np.zeros(1), np.zeros(2))
    # a raised new_track_thresh: a 0.5 detection starts nothing, even on the first frame
    ids = FrameTracker(new_track_thresh=0.6).update(np.array([[0, 0, 10, 10]]), np.array([0.5]), np.array([0]))
    assert ids.tolist() == [NO_ID]


def test_importing_the_module_imports_neither_lap_nor_ultralytics():
    code = "import sys, jobs.tracking; print(sorted({'lap', 'ultralytics', 'torch'} & set(sys.modules)))"
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_missing_lap_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "lap", None)  # `import lap` raises ImportError
    with pytest.raises(RuntimeError) as e:
        FrameTracker()
    assert str(e.value) == LAP_MISSING == "tracking needs the 'lap' package: pip install 'lap>=0.5.12'"


# --- the demo model on a moving-shapes clip -------------------------------------------------------------------

W, H = 320, 240


def _clip(n: int = 20):
    """BGR frames of a circle moving right, a square moving left, and a triangle moving down from frame 5;
    with each frame's true boxes {shape: xyxy}."""
    frames, truth = [], []
    for k in range(n):
        image = Image.new("RGB", (W, H), (200, 200, 200))
        draw = ImageDraw.Draw(image)
        boxes = {}
        x = 20 + 4 * k
        draw.ellipse((x, 30, x + 50, 80), fill=(200, 30, 30))
        boxes["circle"] = (x, 30, x + 51, 81)
        x = 250 - 4 * k
        draw.rectangle((x, 140, x + 45, 185), fill=(30, 30, 200))
        boxes["square"] = (x, 140, x + 46, 186)
        if k >= 5:
            y = 20 + 3 * (k - 5)
            draw.polygon([(150, y + 50), (200, y + 50), (175, y)], fill=(20, 120, 20))
            boxes["triangle"] = (150, y, 201, y + 51)
        frames.append(np.asarray(image)[:, :, ::-1].copy())
        truth.append(boxes)
    return frames, truth


def _iou(a, b) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


@pytest.mark.slow
def test_demo_model_detections_get_one_id_per_moving_shape():
    from ultralytics import YOLO

    from annotator.demo import scenes

    model = YOLO(str(scenes.DEMO_MODEL_PATH), task="detect")
    frames, truth = _clip()
    tracker = FrameTracker()
    answers, names = [], []
    for k, (image, boxes) in enumerate(zip(frames, truth)):
        b = model.predict(image, imgsz=320, conf=0.25, verbose=False)[0].boxes
        xyxy, conf, cls = b.xyxy.numpy(), b.conf.numpy(), b.cls.numpy().astype(int)
        answers.append(tracker.update(xyxy, conf, cls, image))
        for frame_index, row, track_id in tracker.backfill:  # the triangle's first frame
            answers[frame_index][row] = track_id
        who = []
        for box in xyxy:
            name = max(boxes, key=lambda s: _iou(box, boxes[s]))
            assert _iou(box, boxes[name]) > 0.5, (k, box.tolist(), boxes)  # no stray detections in this clip
            who.append(name)
        names.append(who)
    by = _ids_by_name(answers, names)
    assert set(by) == {"circle", "square", "triangle"}
    assert len(by["circle"]) >= 18 and len(by["square"]) >= 18 and len(by["triangle"]) >= 13  # a miss or two
    for name, ids in by.items():
        assert len(set(ids)) == 1 and ids[0] != NO_ID, (name, ids)  # one id from the frame it appears
    assert len({ids[0] for ids in by.values()}) == 3
