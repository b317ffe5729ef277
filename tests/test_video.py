"""Video files to sampled frames (annotator/video.py), on small videos generated here with cv2.VideoWriter.

Every generated frame carries a white MARKER square whose x position encodes the frame number (x = 8 + 3 * i),
so a test can tell which frame came out, and a red patch in the top-left corner, so it can tell RGB from BGR.
"""

from __future__ import annotations

import re
import struct
from pathlib import Path

import cv2
import numpy as np
import pytest

from annotator.video import (BadVideo, Extraction, Sampling, _frame_time, difference, _thumb, format_time,
                             iter_frames, probe)

W, H = 320, 240
MARKER_ROW, MARKER = 100, 20  # the marker spans rows 100..119, 20 px wide
FPS = 30
N = 90  # 3 s at 30 fps; the marker's x stays inside the 320 px frame up to frame 97


def marker_x(i: int) -> int:
    return 8 + 3 * i


def frame_bgr(i: int, background: int = 30) -> np.ndarray:
    f = np.full((H, W, 3), background, np.uint8)
    f[MARKER_ROW:MARKER_ROW + MARKER, marker_x(i):marker_x(i) + MARKER] = 255
    f[10:40, 10:40] = (0, 0, 255)  # red in BGR
    return f


def write_video(path: Path, frames, fps: float, fourcc: str = "mp4v") -> Path:
    frames = iter(frames)
    first = next(frames)
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (first.shape[1], first.shape[0]))
    assert vw.isOpened(), path
    vw.write(first)
    for f in frames:
        vw.write(f)
    vw.release()
    return path


def marker_index(rgb: np.ndarray) -> int:
    """The frame number a frame_bgr() frame shows, from the marker's centre."""
    band = rgb[MARKER_ROW:MARKER_ROW + MARKER].min(axis=2)
    xs = np.nonzero(band.mean(axis=0) > 128)[0]
    return round((xs.mean() - 8 - (MARKER - 1) / 2) / 3)


def collect(path: Path, spec: str) -> tuple[list, Extraction]:
    result = Extraction()
    frames = list(iter_frames(path, Sampling.parse(spec), result))
    return frames, result


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """3 s of 320x240 at 30 fps, .mp4 (mp4v): the marker moves 3 px a frame."""
    return write_video(tmp_path_factory.mktemp("video") / "clip.mp4", (frame_bgr(i) for i in range(N)), FPS)


# --- probe and the frames themselves -------------------------------------------------------------------------
def test_probe_reads_size_rate_length_and_codec(clip):
    info = probe(clip)
    assert (info.width, info.height, info.fps, info.frames, info.rotation) == (W, H, 30.0, N, 0)
    assert info.duration_s == pytest.approx(3.0) and info.codec == "FMP4"  # FFmpeg's tag for mp4v


def test_all_frames_come_out_in_order_rgb_with_timestamps(clip):
    frames, result = collect(clip, "all")
    assert [f.index for f in frames] == list(range(N)) and (result.read, result.kept, result.stopped) == (N, N, "")
    # each frame its own array (no reused buffer): every one still shows its own marker after the loop
    assert [marker_index(f.image) for f in frames] == list(range(N))
    f = frames[0].image
    assert f.shape == (H, W, 3) and f.dtype == np.uint8 and f.flags["C_CONTIGUOUS"]
    assert f[25, 25, 0] > 200 and f[25, 25, 2] < 60  # the red patch is red: RGB, not BGR
    assert [f.time_s for f in frames] == pytest.approx([i / FPS for i in range(N)], abs=1e-3)


def test_every_nth_frame(clip):
    frames, result = collect(clip, "every:7")
    assert [f.index for f in frames] == list(range(0, N, 7))
    assert [marker_index(f.image) for f in frames] == list(range(0, N, 7))
    assert (result.read, result.kept) == (N, 13)
    assert [f.index for f in collect(clip, "every:1")[0]] == list(range(N))


def test_fps_keeps_the_frame_nearest_each_step(clip):
    frames, _ = collect(clip, "fps:2")
    assert [f.index for f in frames] == [0, 15, 30, 45, 60, 75]
    assert [f.time_s for f in frames] == pytest.approx([0, 0.5, 1, 1.5, 2, 2.5], abs=1e-3)
    assert [marker_index(f.image) for f in frames] == [0, 15, 30, 45, 60, 75]
    # 0.25 s = frame 7.5: a tie goes to the earlier frame, every time
    assert [f.index for f in collect(clip, "fps:4")[0]] == [0, 7, 15, 22, 30, 37, 45, 52, 60, 67, 75, 82]
    assert [f.index for f in collect(clip, "fps:0.5")[0]] == [0, 60]
    # never more than the video's own rate
    assert [f.index for f in collect(clip, "fps:100")[0]] == list(range(N))
    assert [f.index for f in collect(clip, "fps:30")[0]] == list(range(N))


def test_fps_at_a_rate_that_does_not_divide_the_video_rate(tmp_path):
    video = write_video(tmp_path / "25.mp4", (frame_bgr(i) for i in range(50)), 25)  # 2 s at 25 fps
    frames, _ = collect(video, "fps:2")  # steps 0, 0.5, 1, 1.5 s = frames 0, 12.5, 25, 37.5
    assert [f.index for f in frames] == [0, 12, 25, 37]
    assert [f.index for f in collect(video, "fps:3")[0]] == [0, 8, 17, 25, 33, 42]  # 8.33, 16.67, 33.33, 41.67


def test_max_frames_stops_decoding(clip):
    frames, result = collect(clip, "all,max:5")
    assert [f.index for f in frames] == [0, 1, 2, 3, 4] and (result.read, result.kept, result.stopped) == (5, 5, "")
    frames, result = collect(clip, "every:10,max:3")
    assert [f.index for f in frames] == [0, 10, 20] and result.read == 21  # nothing decoded after the 3rd
    frames, result = collect(clip, "fps:2,max:100")
    assert len(frames) == 6 and result.read == N and result.stopped == ""


def test_frames_stream_one_at_a_time_and_closing_early_is_clean(clip):
    result = Extraction()
    it = iter_frames(clip, Sampling.parse("fps:2"), result)
    assert next(it).index == 0 and result.read == 1  # nothing read ahead
    assert next(it).index == 15 and result.read == 16
    it.close()
    assert result.read == 16 and result.stopped == ""


# --- scene changes -------------------------------------------------------------------------------------------
def shot_frame(shot: int, i: int) -> np.ndarray:
    """Four shots: flat dark, flat bright, a 40 px black/white checkerboard, flat mid-grey; a marker moves."""
    if shot == 2:
        yy, xx = np.mgrid[0:H, 0:W]
        f = np.repeat(np.where((yy // 40 + xx // 40) % 2 == 0, 0, 255).astype(np.uint8)[..., None], 3, axis=2)
    else:
        f = np.full((H, W, 3), (30, 200, 0, 120)[shot], np.uint8)
    f[MARKER_ROW:MARKER_ROW + MARKER, marker_x(i):marker_x(i) + MARKER] = 0 if shot == 1 else 255
    return f


def test_scene_keeps_the_first_frame_of_each_shot(tmp_path):
    video = write_video(tmp_path / "cuts.mp4", (shot_frame(i // 15, i) for i in range(60)), 15)
    frames, result = collect(video, "scene:0.2")
    # the cuts differ by ~0.66, ~0.50 and ~0.49; the moving marker by ~0.001 a frame (~0.01 over a shot)
    assert [f.index for f in frames] == [0, 15, 30, 45] and (result.read, result.kept) == (60, 4)
    assert [f.index for f in collect(video, "scene:0.25,max:2")[0]] == [0, 15]
    # compared with the LAST KEPT frame: at 0.6 only the first cut counts, and the grey shot (~0.31 from the
    # bright one that was kept, ~0.49 from the checkerboard that was not) is no change
    assert [f.index for f in collect(video, "scene:0.6")[0]] == [0, 15]


def test_scene_keeps_a_frame_each_time_a_slow_change_adds_up(tmp_path):
    """A fade, 5 grey levels (~0.02) a frame: no two neighbours differ by 0.2, yet a frame comes out every ~10."""
    video = write_video(tmp_path / "fade.mp4", (np.full((H, W, 3), 5 * i, np.uint8) for i in range(51)), 10)
    frames, _ = collect(video, "scene:0.2")
    kept = [f.index for f in frames]
    assert kept[0] == 0 and 4 <= len(kept) <= 6, kept
    assert all(9 <= b - a <= 12 for a, b in zip(kept, kept[1:])), kept


def test_scene_difference_measure():
    black, white = np.zeros((H, W, 3), np.uint8), np.full((H, W, 3), 255, np.uint8)
    assert difference(_thumb(black), _thumb(black)) == 0.0 and difference(_thumb(black), _thumb(white)) == 1.0
    assert _thumb(black).shape == (48, 64)  # 64 px wide, the frame's aspect ratio
    # a big frame is sampled down before it is averaged: close to averaging every pixel, noise included
    rng = np.random.default_rng(3)
    big = np.clip(cv2.resize(rng.integers(0, 256, (9, 16, 3), np.uint8), (1920, 1080), interpolation=cv2.INTER_LINEAR)
                  + rng.normal(0, 8, (1080, 1920, 3)), 0, 255).astype(np.uint8)
    exact = cv2.cvtColor(cv2.resize(big, (64, 36), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2GRAY)
    assert _thumb(big).shape == (36, 64) and difference(_thumb(big), exact) < 0.01


# --- rotation (phone videos) ---------------------------------------------------------------------------------
def rotate_tag(src: Path, dst: Path, degrees: int) -> Path:
    """A copy of an .mp4 whose track header (tkhd) carries the display matrix of a phone held at ``degrees``.
    OpenCV's writer cannot write the tag, so the 3x3 matrix (16.16 fixed point a, b, c, d; 2.30 w) is patched in
    the file's bytes: 90 is a=0, b=1, c=-1, d=0, as a phone writes it."""
    one = 0x10000
    a, b, c, d = {90: (0, one, -one, 0), 180: (-one, 0, 0, -one), 270: (0, -one, one, 0)}[degrees]
    data = bytearray(src.read_bytes())
    at = data.find(b"tkhd")
    assert at > 0 and data.count(b"tkhd") == 1
    version = data[at + 4]
    # after the type: version+flags 4, times/track id/duration 20 (v0) or 32 (v1), reserved 8, layer..volume 8
    matrix = at + 4 + 4 + (20 if version == 0 else 32) + 8 + 8
    assert struct.unpack_from(">9i", data, matrix) == (one, 0, 0, 0, one, 0, 0, 0, 0x40000000)  # identity
    struct.pack_into(">9i", data, matrix, a, b, 0, c, d, 0, 0, 0, 0x40000000)
    dst.write_bytes(bytes(data))
    return dst


@pytest.fixture(scope="module")
def landscape(tmp_path_factory) -> Path:
    """320x240, a bright 50 px square near the top-left corner, nothing else bright."""
    f = np.full((H, W, 3), 40, np.uint8)
    f[10:60, 10:60] = 255
    return write_video(tmp_path_factory.mktemp("rot") / "plain.mp4", [f] * 10, 10)


def bright_box(rgb: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(rgb.min(axis=2) > 200)
    return int(ys.min()), int(ys.max()), int(xs.min()), int(xs.max())


@pytest.mark.parametrize("degrees, shape, box", [
    (90, (320, 240), (10, 59, 180, 229)),  # turned clockwise: the top-left square lands top-right
    (180, (240, 320), (180, 229, 260, 309)),  # bottom-right
    (270, (320, 240), (260, 309, 10, 59)),  # bottom-left
])
def test_rotation_tag_is_applied_once(landscape, tmp_path, degrees, shape, box):
    video = rotate_tag(landscape, tmp_path / f"phone{degrees}.mp4", degrees)
    info = probe(video)
    assert info.rotation == degrees and (info.height, info.width) == shape
    frames, _ = collect(video, "all")
    assert len(frames) == 10 and all(f.image.shape == (*shape, 3) for f in frames)
    assert bright_box(frames[0].image) == pytest.approx(box, abs=1)
    # exactly the stored picture turned once (same bitstream, so the same pixels)
    plain = next(iter_frames(landscape, Sampling.parse("all"))).image
    assert np.array_equal(frames[0].image, np.rot90(plain, k=-degrees // 90))
    # and what OpenCV's own auto-rotation (on by default in OpenCV 5) shows
    cap = cv2.VideoCapture(str(video))
    ok, bgr = cap.read()
    cap.release()
    assert ok and np.array_equal(frames[0].image, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))


def test_an_untagged_video_is_not_rotated(landscape):
    assert probe(landscape).rotation == 0
    assert bright_box(next(iter_frames(landscape, Sampling())).image) == pytest.approx((10, 59, 10, 59), abs=1)


# --- damaged files and files that are not videos -------------------------------------------------------------
def test_a_truncated_video_keeps_its_first_frames_and_says_where_it_stopped(tmp_path):
    """AVI with MJPG frames: its headers come first and each frame is a self-contained JPEG, so a copy cut in
    half still opens (FFmpeg reads it without the index at the end) and decodes up to the cut. An .mp4 from
    cv2.VideoWriter does not survive this: see the next test."""
    whole = write_video(tmp_path / "whole.avi", (frame_bgr(i) for i in range(30)), 10, fourcc="MJPG")
    cut = tmp_path / "cut.avi"
    data = whole.read_bytes()
    cut.write_bytes(data[:len(data) // 2])

    assert probe(cut).frames == 30  # the header still claims 30
    frames, result = collect(cut, "all")
    assert 5 <= result.read <= 25 and result.kept == result.read
    assert [f.index for f in frames] == list(range(result.read))
    assert [marker_index(f.image) for f in frames] == list(range(result.read))
    assert result.stopped == (f"stopped at frame {result.read} ({format_time(result.read / 10)}) of about 30: "
                              "the file is damaged or truncated after that point")
    _, sparse = collect(cut, "fps:1")
    assert sparse.stopped == result.stopped  # where it stopped does not depend on what was kept
    _, intact = collect(whole, "all")
    assert (intact.read, intact.stopped) == (30, "")


def test_a_truncated_mp4_is_a_bad_video(clip, tmp_path):
    """cv2.VideoWriter's mp4 puts its index (the moov box) at the end: cut short, FFmpeg cannot open it."""
    cut = tmp_path / "holiday.mp4"
    cut.write_bytes(clip.read_bytes()[: clip.stat().st_size // 2])
    for call in (lambda: probe(cut), lambda: iter_frames(cut, Sampling())):
        with pytest.raises(BadVideo, match=r"holiday\.mp4 is not a readable video \(.*cut short"):
            call()


def test_files_that_are_not_videos_are_bad_videos_named(tmp_path):
    (tmp_path / "notes.mp4").write_text("not a video\n" * 50)
    (tmp_path / "notes.txt").write_text("FFmpeg renders text files as ANSI art\n" * 50)
    (tmp_path / "empty.mkv").write_bytes(b"")
    (tmp_path / "noise.avi").write_bytes(np.random.default_rng(0).integers(0, 256, 50_000, np.uint8).tobytes())
    ok, jpeg = cv2.imencode(".jpg", frame_bgr(0))
    (tmp_path / "photo.mov").write_bytes(jpeg.tobytes())  # FFmpeg alone would call this a 1-frame video
    (tmp_path / "folder.mp4").mkdir()
    cases = {"notes.mp4": "cannot open", "notes.txt": "text file", "empty.mkv": "cannot open",
             "noise.avi": "cannot open", "photo.mov": "still JPEG image", "folder.mp4": "folder",
             "missing.webm": "no such file"}
    for name, reason in cases.items():
        with pytest.raises(BadVideo, match=rf"^{re.escape(name)} is not a readable video \(.*{reason}"):
            probe(tmp_path / name)
        # at the call, before any iteration
        with pytest.raises(BadVideo, match=re.escape(name)):
            iter_frames(str(tmp_path / name), Sampling())


# --- sampling text, times ------------------------------------------------------------------------------------
@pytest.mark.parametrize("text, sampling, description", [
    ("all", Sampling("all"), "every frame"),
    ("every:10", Sampling("every", every=10), "every 10th frame"),
    ("every:2", Sampling("every", every=2), "every 2nd frame"),
    ("every:1", Sampling("every", every=1), "every frame"),
    ("fps:2", Sampling("fps", fps=2.0), "2 frames per second"),
    ("fps:1", Sampling("fps", fps=1.0), "1 frame per second"),
    ("fps:0.5,max:500", Sampling("fps", fps=0.5, max_frames=500), "0.5 frames per second, at most 500"),
    ("scene:0.25", Sampling("scene", scene=0.25), "a frame at each scene change (difference 0.25 or more)"),
    ("every:3,max:1", Sampling("every", every=3, max_frames=1), "every 3rd frame, at most 1"),
])
def test_sampling_text_round_trips(text, sampling, description):
    assert Sampling.parse(text) == sampling and sampling.spec() == text
    assert Sampling.parse(sampling.spec()) == sampling and sampling.describe() == description


def test_sampling_text_is_forgiving_about_case_and_spaces():
    assert Sampling.parse(" FPS: 2 , Max : 500 ") == Sampling("fps", fps=2.0, max_frames=500)
    assert Sampling.parse("fps:29.97").spec() == "fps:29.97"
    assert Sampling() == Sampling.parse("fps:2") and Sampling().describe() == "2 frames per second"


@pytest.mark.parametrize("text, named", [
    ("", '""'), ("sometimes", '"sometimes"'), ("all:3", '"all:3"'), ("every", '"every"'),
    ("every:0", '"0"'), ("every:1.5", '"1.5"'), ("every:x", '"x"'), ("fps:0", '"0"'), ("fps:-2", '"-2"'),
    ("fps:nan", '"nan"'), ("fps:inf", '"inf"'), ("scene:0", '"0"'), ("scene:1.5", '"1.5"'),
    ("fps:2,max:-1", '"-1"'), ("fps:2,max:ten", '"ten"'), ("fps:2,limit:5", '"limit:5"'),
    ("fps:2,max:5,max:6", '"fps:2,max:5,max:6"'),
])
def test_bad_sampling_text_names_the_value_and_the_accepted_forms(text, named):
    with pytest.raises(ValueError) as e:
        Sampling.parse(text)
    message = str(e.value)
    assert named in message and f'"{text}"' in message
    assert "all, every:N, fps:F, scene:T" in message and ",max:M" in message


def test_sampling_values_are_checked_when_built_directly():
    with pytest.raises(ValueError, match="every must be a whole number"):
        Sampling("every", every=0)
    with pytest.raises(ValueError, match="mode must be one of all, every, fps, scene"):
        Sampling("sometimes")


@pytest.mark.parametrize("seconds, text", [
    (0, "00:00.0"), (4.0, "00:04.0"), (62.5, "01:02.5"), (3723.5, "1:02:03.5"), (59.96, "01:00.0"),
    (0.04, "00:00.0"), (0.05, "00:00.1"), (36000, "10:00:00.0"), (-1, "00:00.0"), (float("nan"), "00:00.0"),
])
def test_format_time(seconds, text):
    assert format_time(seconds) == text


def test_timestamps_fall_back_to_index_over_fps_when_the_container_has_none():
    assert _frame_time(250.0, 3, 10.0, 0.2) == 0.25  # the container's, when it moves forward
    assert _frame_time(0.0, 0, 10.0, None) == 0.0
    assert _frame_time(0.0, 3, 10.0, 0.2) == pytest.approx(0.3)  # some backends answer 0 for every frame
    assert _frame_time(float("nan"), 3, 10.0, 0.2) == pytest.approx(0.3)
    assert _frame_time(100.0, 3, 10.0, 0.2) == pytest.approx(0.3)  # going backwards
    assert _frame_time(-1.0, 5, 0.0, None) == pytest.approx(0.2)  # no rate either: FFmpeg's default 25
