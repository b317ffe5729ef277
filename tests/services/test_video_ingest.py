"""Videos through the upload service, the CLI and the API: frames as images with their index and time, a
damaged video keeps what was read before the damage, a phone's rotation tag gives upright frames, videos
inside a zip, the video file kept only when asked; near-duplicates reported at upload and listed by the
gallery's filter; health numbers equal a direct count."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from annotator.types import UserError

from ..test_video import frame_bgr, rotate_tag, write_video


def _clip(path: Path, n: int = 40, fps: float = 10, fourcc: str = "mp4v") -> Path:
    return write_video(path, (frame_bgr(i) for i in range(n)), fps, fourcc=fourcc)


def test_a_video_becomes_timestamped_frames_in_a_dataset_named_after_it(services, project, tmp_path):
    video = _clip(tmp_path / "drive.mp4")
    r = services.images.add_images(project, [video], sampling="every:10")
    assert r.dataset == "drive" and len(r.added) == 4 and not r.skipped
    assert r.added == [f"drive/frame_{i:06d}.jpg" for i in (0, 10, 20, 30)]
    (v,) = r.videos
    assert (v["read"], v["kept"], v["added"], v["stopped"], v["size"], v["duration"]) == \
        (40, 4, 4, "", "320x240", "00:04.0")
    page = services.images.list_images(project, "drive")
    assert [(i.frame_index, i.frame_time) for i in page.images] == [(0, 0.0), (10, 1.0), (20, 2.0), (30, 3.0)]
    assert page.images[2].frame_label == "frame 20 · 00:02.0"
    shown = services.review.load_image(project, page.images[2].id)
    assert shown["frame"] == "frame 20 · 00:02.0" and shown["video_id"] == page.images[0].video_id
    with Image.open(services.images.image_file(page.images[1])) as im:
        assert im.size == (320, 240) and im.format == "JPEG"
    # Nothing of the video itself is kept, unless asked.
    pdir = services.settings.project_dir(project.id)
    assert not (pdir / "videos").exists()
    # The same video again: every frame is a duplicate, nothing added.
    again = services.images.add_images(project, [video], sampling="every:10", dataset="drive")
    assert not again.added and len(again.duplicates) == 4


def test_default_sampling_the_cap_and_bad_sampling_text(services, project, tmp_path):
    video = _clip(tmp_path / "walk.mp4", n=50)
    r = services.images.add_images(project, [video])  # the setting's default: 2 frames per second
    assert r.videos[0]["sampling"] == "2 frames per second" and len(r.added) == 10
    r = services.images.add_images(project, [video], sampling="all,max:7", dataset="capped")
    # frames 0 and 5 are stored already (the same bytes): duplicates, not added twice
    assert len(r.added) == 5 and len(r.duplicates) == 2 and r.videos[0]["read"] == 7
    with pytest.raises(UserError, match="video sampling"):
        services.images.add_images(project, [video], sampling="every:0")
    with pytest.raises(UserError, match="video sampling"):
        services.images.add_images(project, [video], sampling="sometimes")


def test_a_damaged_video_keeps_its_first_frames_and_says_where_it_stopped(services, project, tmp_path):
    whole = _clip(tmp_path / "whole.avi", n=30, fourcc="MJPG")
    cut = tmp_path / "cut.avi"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    r = services.images.add_images(project, [cut], sampling="all")
    (v,) = r.videos
    assert 5 <= v["read"] <= 25 and v["added"] == v["read"] == len(r.added)
    assert v["stopped"].startswith(f"stopped at frame {v['read']}") and "damaged or truncated" in v["stopped"]
    assert any("stopped at frame" in n for n in r.notes)


def test_unreadable_videos_are_skipped_with_the_reason_and_the_rest_is_added(services, project, tmp_path):
    (tmp_path / "fake.mp4").write_bytes(b"not a video at all" * 100)
    good = _clip(tmp_path / "good.mp4", n=20)
    r = services.images.add_images(project, [tmp_path / "fake.mp4", good], sampling="every:10", dataset="mixed")
    assert [s.name for s in r.skipped] == ["fake.mp4"] and "fake.mp4" in r.skipped[0].reason
    assert len(r.added) == 2


def test_a_phone_video_gives_upright_frames(services, project, tmp_path):
    landscape = write_video(tmp_path / "land.mp4", (np.full((120, 160, 3), 60, np.uint8) for _ in range(10)), 10)
    phone = rotate_tag(landscape, tmp_path / "phone.mp4", 90)
    r = services.images.add_images(project, [phone], sampling="every:5")
    assert r.videos[0]["rotation"] == 90 and r.videos[0]["size"] == "120x160"
    img = services.images.list_images(project, "phone").images[0]
    assert (img.width, img.height) == (120, 160)


def test_videos_inside_a_zip_and_kept_when_asked(services, project, tmp_path):
    video = _clip(tmp_path / "cam.mp4", n=20)
    buf = tmp_path / "trip.zip"
    still = io.BytesIO()
    Image.new("RGB", (64, 48), (10, 200, 30)).save(still, "PNG")
    with zipfile.ZipFile(buf, "w") as zf:
        zf.write(video, "day1/cam.mp4")
        zf.writestr("day1/still.png", still.getvalue())
    r = services.images.add_images(project, [buf], sampling="every:10", keep_video=True)
    assert r.dataset == "trip"
    assert sorted(r.added) == ["day1/cam/frame_000000.jpg", "day1/cam/frame_000010.jpg", "day1/still.png"]
    assert r.videos[0]["name"] == "trip.zip:day1/cam.mp4"
    kept = list((services.settings.project_dir(project.id) / "videos").rglob("*.mp4"))
    assert len(kept) == 1 and kept[0].read_bytes() == video.read_bytes()
    # ... and a video in a folder (annotator ingest P folder/ --keep-video)
    folder = tmp_path / "walks"
    folder.mkdir()
    other = write_video(folder / "walk.mp4", (frame_bgr(i, background=90) for i in range(12)), 12)
    r = services.images.add_images(project, [folder], sampling="every:6", keep_video=True)
    assert r.added == ["walk/frame_000000.jpg", "walk/frame_000006.jpg"]
    kept = list((services.settings.project_dir(project.id) / "videos").rglob("*.mp4"))
    assert sorted(k.read_bytes() for k in kept) == sorted([video.read_bytes(), other.read_bytes()])
    assert other.exists()  # the user's file is copied, never moved
    # No staging or temporary video left behind.
    assert not list(services.settings.staging_dir(project.id).glob("*")) if \
        services.settings.staging_dir(project.id).exists() else True


def test_near_duplicates_are_reported_at_upload_and_listed_by_the_gallery_filter(services, project, tmp_path):
    rng = np.random.default_rng(3)
    folder = tmp_path / "imgs"
    folder.mkdir()
    base = []
    for k in range(4):  # unrelated textured images
        px = (rng.random((120, 160, 3)) * 255).astype(np.uint8)
        px = np.array(Image.fromarray(px).resize((320, 240), Image.Resampling.BILINEAR))
        base.append(px)
        Image.fromarray(px).save(folder / f"img{k}.jpg", quality=95)
    services.images.add_images(project, [folder], dataset="first")
    copies = tmp_path / "copies"
    copies.mkdir()
    Image.fromarray(base[1]).save(copies / "recoded.jpg", quality=40)  # the same picture, re-encoded
    Image.fromarray(base[2]).resize((160, 120)).save(copies / "small.jpg", quality=90)  # resized
    r = services.images.add_images(project, [copies], dataset="second")
    assert sorted((s["name"], s["similar_to"]) for s in r.similar) == [
        ("recoded.jpg", "first/img1.jpg"), ("small.jpg", "first/img2.jpg")]
    page = services.images.list_images(project, similar=True)
    assert page.total == 4
    pairs = [(i.dataset, i.rel_path) for i in page.images]
    assert pairs == [("first", "img1.jpg"), ("second", "recoded.jpg"), ("first", "img2.jpg"), ("second", "small.jpg")]
    report = services.similar.near_duplicates(project)
    assert report["groups"] == 2 and report["images"] == 4


def test_health_numbers_equal_a_direct_count(services, project, tmp_path):
    folder = tmp_path / "h"
    folder.mkdir()
    for k in range(6):
        Image.new("RGB", (200, 100), (k * 40, 0, 0)).save(folder / f"{k}.png")
    services.images.add_images(project, [folder], dataset="h")
    imgs = services.images.list_images(project).images
    classes = project.class_names
    plan = {0: [(0, 10, 10, 60, 60), (1, 0, 0, 5, 5)], 1: [(0, 20, 20, 120, 90)], 2: [], 3: [(1, 0, 0, 200, 100)]}
    for k, boxes in plan.items():
        v = services.review.load_image(project, imgs[k].id)["version"]
        services.review.save_image(project, imgs[k].id, [{"class_idx": c, "x1": a, "y1": b, "x2": x, "y2": y}
                                                        for c, a, b, x, y in boxes], version=v)
        services.review.set_review_status(project, [imgs[k].id], "approved")
    h = services.health.health(project)  # approved images only
    assert h["images"]["total"] == 4 and h["boxes"]["total"] == 4
    assert [c["boxes"] for c in h["per_class"]][:2] == [2, 2]
    assert h["images_without_boxes"]["count"] == 1 and h["tiny_boxes"]["count"] == 1
    everything = services.health.health(project, "all")
    assert everything["images"]["total"] == 6 and everything["images_without_boxes"]["count"] == 3
    with pytest.raises(UserError, match="scope"):
        services.health.health(project, "most")
    assert classes  # the fixture's classes name the per-class rows


def test_splits_keep_near_duplicates_and_video_segments_together(services, project, tmp_path):
    rng = np.random.default_rng(11)
    folder = tmp_path / "g"
    folder.mkdir()
    for k in range(12):  # 12 unrelated pictures, each with a re-encoded and a resized copy
        px = np.array(Image.fromarray((rng.random((60, 80, 3)) * 255).astype(np.uint8)).resize(
            (320, 240), Image.Resampling.BILINEAR))
        Image.fromarray(px).save(folder / f"p{k:02d}.jpg", quality=95)
        Image.fromarray(px).save(folder / f"p{k:02d}_recoded.jpg", quality=40)
        Image.fromarray(px).resize((200, 150)).save(folder / f"p{k:02d}_small.jpg", quality=90)
    services.images.add_images(project, [folder], dataset="g")
    video = _clip(tmp_path / "cam.mp4", n=60)
    services.images.add_images(project, [video], sampling="every:5")  # 12 frames of one 6 s segment
    groups = services.similar.split_groups(services.ctx.store.get_project(project.id))
    assert sum(1 for g in groups if len(g) == 3) >= 12  # every picture with its two copies
    summary = services.splits.configure_splits(project, 50, 50, 0, reassign=True)
    splits = {i: s for i, _, s in services.ctx.store.image_splits(project.id)}
    for g in groups:
        assert len({splits[i] for i in g}) == 1, [(i, splits[i]) for i in g]
    assert summary["straddling"] == 0 and summary["splits"]["train"]["images"] > 0 and \
        summary["splits"]["val"]["images"] > 0
    # A copy uploaded later joins its group's split, whatever the seeded order says.
    later = tmp_path / "later"
    later.mkdir()
    with Image.open(folder / "p03.jpg") as im:
        im.resize((240, 180)).save(later / "p03_again.jpg", quality=70)
    r = services.images.add_images(project, [later], dataset="later")
    new_id = r.image_ids["p03_again.jpg"]
    p03 = next(i for i in services.images.list_images(project, "g").images if i.rel_path == "p03.jpg")
    assert services.splits.planned_splits(services.ctx.store.get_project(project.id))[new_id] == splits[p03.id]
    # Moving one member by hand is allowed, and the summary says a group now straddles.
    other = "val" if splits[p03.id] == "train" else "train"
    moved = services.splits.set_split(project, other, image_ids=[p03.id])
    assert moved["straddling"] == 1 and "near-duplicates or video frames" in moved["warning"]


def test_frames_waiting_to_be_stored_stay_within_the_pixel_budget(services, project, tmp_path):
    from annotator import pixels

    video = _clip(tmp_path / "long.mp4", n=60)
    frame = 320 * 240 * 3
    before = pixels.DECODE.limit
    pixels.DECODE.set_limit(3 * frame)
    pixels.DECODE.peak = 0
    try:
        r = services.images.add_images(project, [video], sampling="all")
    finally:
        pixels.DECODE.set_limit(before)
    assert len(r.added) == 60
    # frames were counted (at least one at a time), never more than 3 alive, and all given back
    assert frame <= pixels.DECODE.peak <= 3 * frame and pixels.DECODE.used == 0


def test_fsck_knows_kept_videos(services, project, tmp_path):
    video = _clip(tmp_path / "keep.mp4", n=10)
    services.images.add_images(project, [video], sampling="every:5", keep_video=True)
    report = services.fsck.fsck()
    assert report["clean"] and not [n for n in report["notes"] if n["kind"] == "unknown"]  # videos/ is known
    pdir = services.settings.project_dir(project.id)
    stray = pdir / "videos" / "ab" / ("ab" * 32 + ".mp4")
    stray.parent.mkdir(parents=True, exist_ok=True)
    stray.write_bytes(b"x" * 10)
    import os
    old = stray.stat().st_mtime - 3600
    os.utime(stray, (old, old))
    found = services.fsck.fsck(repair=True)
    assert [(x["kind"], x["count"]) for x in found["problems"]] == [("orphan_videos", 1)] and not stray.exists()
    assert list((pdir / "videos").rglob("*.mp4"))  # the kept one stays


def test_no_model_picked_says_what_to_do(services, project):
    with pytest.raises(UserError, match="has no model yet: register a .pt"):
        services.quality.start_label_check(project, None)
    with pytest.raises(UserError, match="has no model yet"):
        services.annotation.start_annotation(project, "")
