"""Uploads: zips, folders and loose files -> EXIF-normalized images, thumbnails and rows, safely."""

import hashlib
import io
import json
import stat
import time
import zipfile

import cv2
import numpy as np
import pytest
from PIL import Image

from . import imagegen
from annotator import ingest
from annotator.ingest import BadImage, Limits, decode_image, safe_relpath, skip_reason_for_name
from annotator.services import Services
from annotator.settings import Settings

FORMATS = [("JPEG", "jpg", "JPEG", "jpg"), ("PNG", "png", "PNG", "png"), ("WEBP", "webp", "WEBP", "webp"),
           ("TIFF", "tif", "PNG", "png"), ("BMP", "bmp", "BMP", "bmp")]


@pytest.fixture
def open_services(tmp_path):
    """Services over a data folder of their own, with extra ANNOTATOR_* environment (ingest limits)."""
    opened = []

    def make(**env):
        data = tmp_path / f"data-limits-{len(opened)}"
        svc = Services.open(Settings.from_env({"ANNOTATOR_DATA_DIR": str(data), **env}))
        opened.append(svc)
        return svc, svc.projects.create_project("Shapes", ["circle", "square", "triangle"])

    yield make
    for svc in opened:
        svc.close()


def _images(services, project, dataset=None):
    return services.images.list_images(project, dataset=dataset, page_size=500).images


def _skip_reasons(report):
    return {s.name: s.reason for s in report.skipped}


def _files_under(folder):
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def _bright_corner(arr: np.ndarray) -> str:
    """Which corner holds the white marker: 'tl', 'tr', 'bl' or 'br' (exactly one must be bright)."""
    h, w = arr.shape[:2]
    k = max(2, imagegen.marker_size(min(w, h), min(w, h)) // 2)
    patches = {"tl": arr[:k, :k], "tr": arr[:k, w - k:], "bl": arr[h - k:, :k], "br": arr[h - k:, w - k:]}
    bright = [name for name, p in patches.items() if p.mean() > 200]
    dark = [name for name, p in patches.items() if p.mean() < 130]
    assert len(bright) == 1 and len(dark) == 3, {n: float(p.mean()) for n, p in patches.items()}
    return bright[0]


# --- names -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name,expected",
    [("a/b/c.jpg", "a/b/c.jpg"), ("./x//y.png", "x/y.png"), ("dir\\win.jpg", "dir/win.jpg")],
)
def test_safe_relpath_accepts(name, expected):
    assert safe_relpath(name) == expected


@pytest.mark.parametrize(
    "name,why",
    [("../evil.jpg", "zip-slip"), ("/abs/evil.jpg", "zip-slip"), ("a/../../evil.jpg", "zip-slip"),
     ("..\\evil.jpg", "zip-slip"), ("C:/evil.jpg", "zip-slip"), ("C:\\evil.jpg", "zip-slip"), ("./", "empty")],
)
def test_safe_relpath_refuses(name, why):
    with pytest.raises(ValueError, match=why):
        safe_relpath(name)


@pytest.mark.parametrize(
    "name,fragment",
    [("__MACOSX/a/._x.jpg", "__MACOSX"), (".DS_Store", "hidden"), ("a/.cache/x.jpg", "hidden"),
     ("notes.txt", ".txt"), ("README", "no extension"), ("x.JPG", None), ("a/b.TIFF", None)],
)
def test_skip_reason_for_name(name, fragment):
    reason = skip_reason_for_name(name)
    if fragment is None:
        assert reason is None
    else:
        assert fragment in reason


# --- decode_image ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("orientation,corner", [(6, "tr"), (8, "bl"), (3, "br"), (1, "tl"), (None, "tl")])
def test_decode_applies_exif_orientation(orientation, corner):
    raw = imagegen.jpeg_bytes(80, 40, seed=3, orientation=orientation)
    dec = decode_image(raw, Limits())
    rotated = orientation in (6, 8)
    assert (dec.width, dec.height) == ((40, 80) if rotated else (80, 40))
    stored = Image.open(io.BytesIO(dec.data))
    assert stored.format == "JPEG" and stored.size == (dec.width, dec.height)
    assert stored.getexif().get(imagegen.ORIENTATION_TAG, 1) == 1
    assert _bright_corner(np.asarray(stored.convert("RGB"))) == corner
    if orientation in (None, 1):
        assert dec.data == raw and dec.normalized == ""  # stored byte-identical
    else:
        assert f"orientation {orientation}" in dec.normalized
    thumb = Image.open(io.BytesIO(dec.thumb))
    assert thumb.size == stored.size  # smaller than the thumbnail size: not enlarged


def test_decode_rejects_with_reasons():
    good = imagegen.jpeg_bytes(120, 90)
    cases = {
        b"": "empty",
        b"\x00\x01garbage" * 20: "not a readable image",
        good[: len(good) // 2]: "truncated",
        imagegen.png_header_only(100_000, 100_000): "decompression bomb",
    }
    for data, fragment in cases.items():
        with pytest.raises(BadImage, match=fragment):
            decode_image(data, Limits())
    with pytest.raises(BadImage, match=r"decompression bomb: 120x90 = 10,800 pixels.*ANNOTATOR_MAX_IMAGE_PIXELS"):
        decode_image(good, Limits(max_pixels=10_000))
    gif = io.BytesIO()
    imagegen.pil_image(8, 8).save(gif, "GIF")
    with pytest.raises(BadImage, match="unsupported image format GIF"):
        decode_image(gif.getvalue(), Limits())


def test_decode_pixel_limit_can_be_raised_above_pillows_default():
    """ANNOTATOR_MAX_IMAGE_PIXELS=400M must let a 15000x15000 (225M pixel) image past the pixel check.

    This header-only PNG has no pixel data, so the right outcome is a truncated/corrupt image; calling it
    "more than 400,000,000 pixels" is false."""
    with pytest.raises(BadImage) as e:
        decode_image(imagegen.png_header_only(15_000, 15_000), Limits(max_pixels=400_000_000))
    assert "decompression bomb" not in str(e.value)


# --- through services.add_images ---------------------------------------------------------------------------
@pytest.mark.parametrize("orientation,corner", [(6, "tr"), (8, "bl")])
def test_exif_rotated_upload_is_stored_upright(services, project, tmp_path, orientation, corner):
    raw = imagegen.jpeg_bytes(96, 48, seed=5, orientation=orientation)
    src = tmp_path / "phone.jpg"
    src.write_bytes(raw)
    report = services.images.add_images(project, [src], dataset="cam")
    assert report.added == ["phone.jpg"]
    assert report.notes == [f"phone.jpg: rotated per EXIF orientation {orientation}"]
    (img,) = _images(services, project)
    assert (img.width, img.height) == (48, 96)
    assert img.sha256 == hashlib.sha256(raw).hexdigest()
    path = services.images.image_file(img)
    assert img.size_bytes == path.stat().st_size
    with Image.open(path) as im:
        assert im.size == (48, 96)
        assert im.getexif().get(imagegen.ORIENTATION_TAG, 1) == 1
        assert _bright_corner(np.asarray(im.convert("RGB"))) == corner
    cv = cv2.imread(str(path))  # OpenCV applies EXIF orientation itself: it must see the same picture
    assert cv is not None and cv.shape[:2] == (96, 48)
    assert _bright_corner(cv) == corner
    with Image.open(services.images.thumb_file(img)) as th:
        assert th.size == (48, 96)
        assert _bright_corner(np.asarray(th.convert("RGB"))) == corner


@pytest.mark.parametrize("fmt,frames,note", [
    ("TIFF", 200, "converted TIFF to PNG, kept page 1 of 200"),
    ("PNG", 3, "animated (3 frames): kept the first frame"),
    ("WEBP", 4, "animated (4 frames): kept the first frame"),
])
def test_multi_page_and_animated_images_keep_the_first_frame_and_say_so(services, project, tmp_path, fmt, frames,
                                                                        note):
    """Was: a 200-page TIFF was stored as page 1 saying only "converted TIFF to PNG", and an animated WebP
    was accepted silently (the model saw frame 1 while a browser animated it)."""
    pages = [Image.new("RGB", (64, 48), (40 * k % 256, 255 - 40 * k % 256, 90)) for k in range(frames)]
    buf = io.BytesIO()
    kwargs = {"lossless": True} if fmt == "WEBP" else {}
    pages[0].save(buf, fmt, save_all=True, append_images=pages[1:], **kwargs)
    ext = {"TIFF": "tif", "PNG": "png", "WEBP": "webp"}[fmt]
    src = tmp_path / f"many.{ext}"
    src.write_bytes(buf.getvalue())
    report = services.images.add_images(project, [src], dataset="frames")
    assert report.added == [f"many.{ext}"] and report.notes == [f"many.{ext}: {note}"]
    (img,) = _images(services, project)
    with Image.open(services.images.image_file(img)) as im:
        assert getattr(im, "n_frames", 1) == 1 and im.size == (64, 48)
        got, first = im.convert("RGB").getpixel((5, 5)), pages[0].getpixel((5, 5))
        assert all(abs(a - b) <= 3 for a, b in zip(got, first)), (got, first)  # frame 1 (WebP re-encodes lossy)


@pytest.mark.parametrize("fmt,ext,stored_format,stored_ext", FORMATS)
def test_every_accepted_format(services, project, tmp_path, fmt, ext, stored_format, stored_ext):
    data = imagegen.image_bytes(fmt, 320, 200, seed=7)
    src = tmp_path / f"pic.{ext}"
    src.write_bytes(data)
    report = services.images.add_images(project, [src], dataset="fmt")
    assert report.added == [f"pic.{ext}"] and not report.skipped
    (img,) = _images(services, project)
    assert (img.width, img.height, img.format) == (320, 200, stored_format)
    path = services.images.image_file(img)
    assert path.suffix == f".{stored_ext}" and path.is_file()
    assert path.is_relative_to(services.settings.project_dir(project.id) / "images")
    with Image.open(path) as im:
        assert im.format == stored_format and im.size == (320, 200)
        assert _bright_corner(np.asarray(im.convert("RGB"))) == "tl"
    if fmt == "TIFF":
        assert report.notes == ["pic.tif: converted TIFF to PNG"]
    else:
        assert path.read_bytes() == data and report.notes == []
    thumb = services.images.thumb_file(img)
    assert thumb.is_file()
    with Image.open(thumb) as th:
        # JPEG thumbnails keep the decoder's DCT scale (long side between 1x and 2x thumb_size, never
        # larger than the image); other formats are resampled to thumb_size.
        assert th.size == ((320, 200) if fmt == "JPEG" else (256, 160))
        assert max(th.size) <= 2 * services.settings.thumb_size


def test_zip_keeps_nested_paths_and_skips_clutter(services, project, tmp_path):
    z = imagegen.make_zip(tmp_path / "Batch One.zip", {
        "top.jpg": imagegen.jpeg_bytes(40, 30, seed=1),
        "a/b/deep.png": imagegen.image_bytes("PNG", 40, 30, seed=2),
        "a/side.webp": imagegen.image_bytes("WEBP", 40, 30, seed=3),
        "__MACOSX/a/._side.webp": b"\x00\x05\x16\x07 apple double",
        ".DS_Store": b"\x00\x00\x00\x01Bud1",
        "a/.hidden.jpg": imagegen.jpeg_bytes(40, 30, seed=4),
        "labels/notes.txt": b"circle 0.5 0.5 0.1 0.1\n",
    })
    report = services.images.add_images(project, [z])
    assert report.dataset == "Batch One"
    assert sorted(report.added) == ["a/b/deep.png", "a/side.webp", "top.jpg"]
    assert sorted(i.rel_path for i in _images(services, project, "Batch One")) == sorted(report.added)
    reasons = _skip_reasons(report)
    assert set(reasons) == {f"Batch One.zip:{n}" for n in
                            ("__MACOSX/a/._side.webp", ".DS_Store", "a/.hidden.jpg", "labels/notes.txt")}
    assert "__MACOSX" in reasons["Batch One.zip:__MACOSX/a/._side.webp"]
    assert "hidden" in reasons["Batch One.zip:.DS_Store"]
    assert "hidden" in reasons["Batch One.zip:a/.hidden.jpg"]
    assert "not an image" in reasons["Batch One.zip:labels/notes.txt"]
    assert services.images.uploads(project)[0]["added"] == 3


def test_folder_source_keeps_nested_paths(services, project, tmp_path):
    root = tmp_path / "field-day"
    (root / "north" / "cam1").mkdir(parents=True)
    (root / "south").mkdir()
    (root / "north" / "cam1" / "a.jpg").write_bytes(imagegen.jpeg_bytes(40, 30, seed=1))
    (root / "south" / "b.bmp").write_bytes(imagegen.image_bytes("BMP", 40, 30, seed=2))
    (root / "c.png").write_bytes(imagegen.image_bytes("PNG", 40, 30, seed=3))
    (root / "south" / "readme.txt").write_text("hi")
    report = services.images.add_images(project, [root])
    assert report.dataset == "field-day"
    assert sorted(report.added) == ["c.png", "north/cam1/a.jpg", "south/b.bmp"]
    assert [s.name for s in report.skipped] == ["south/readme.txt"]
    assert sorted(i.rel_path for i in _images(services, project, "field-day")) == sorted(report.added)


def test_loose_files(services, project, tmp_path):
    a = tmp_path / "one.jpg"
    a.write_bytes(imagegen.jpeg_bytes(40, 30, seed=1))
    uploaded = tmp_path / "gradio-tmp-9f8e7d"  # a browser upload: temp path plus the original name
    uploaded.write_bytes(imagegen.image_bytes("PNG", 50, 20, seed=2))
    report = services.images.add_images(project, [a, (uploaded, "two.png")])
    assert report.dataset.startswith("upload-")
    images = {i.rel_path: i for i in _images(services, project)}
    assert set(images) == {"one.jpg", "two.png"}
    assert (images["two.png"].width, images["two.png"].height) == (50, 20)


def test_several_zips_are_prefixed_by_their_stem(services, project, tmp_path):
    z1 = imagegen.make_zip(tmp_path / "z1.zip", {"img.jpg": imagegen.jpeg_bytes(40, 30, seed=1)})
    z2 = imagegen.make_zip(tmp_path / "z2.zip", {"img.jpg": imagegen.jpeg_bytes(40, 30, seed=2)})
    report = services.images.add_images(project, [z1, z2], dataset="both")
    assert sorted(report.added) == ["z1/img.jpg", "z2/img.jpg"]


def test_duplicates_within_one_zip_stored_once(services, project, tmp_path):
    same = imagegen.jpeg_bytes(40, 30, seed=11)
    z = imagegen.make_zip(tmp_path / "dups.zip", {
        "a.jpg": same, "copies/a-copy.jpg": same, "b.jpg": imagegen.jpeg_bytes(40, 30, seed=12),
    })
    report = services.images.add_images(project, [z])
    assert sorted(report.added) == ["a.jpg", "b.jpg"]
    assert [(d.name, d.same_as) for d in report.duplicates] == [("copies/a-copy.jpg", "a.jpg (earlier in this upload)")]
    assert len(_images(services, project)) == 2
    pdir = services.settings.project_dir(project.id)
    assert len(_files_under(pdir / "images")) == 2 and len(_files_under(pdir / "thumbs")) == 2


def test_duplicates_against_another_dataset(services, project, tmp_path):
    same = imagegen.jpeg_bytes(40, 30, seed=21)
    first = tmp_path / "first"
    (first / "sub").mkdir(parents=True)
    (first / "sub" / "orig.jpg").write_bytes(same)
    services.images.add_images(project, [first], dataset="first")
    z = imagegen.make_zip(tmp_path / "second.zip", {"again.jpg": same, "new.jpg": imagegen.jpeg_bytes(40, 30, seed=22)})
    report = services.images.add_images(project, [z], dataset="second")
    assert report.added == ["new.jpg"]
    assert [(d.name, d.same_as) for d in report.duplicates] == [("again.jpg", "first/sub/orig.jpg")]
    assert [i.rel_path for i in _images(services, project, "second")] == ["new.jpg"]
    assert len(_files_under(services.settings.project_dir(project.id) / "images")) == 2


def test_bad_files_skipped_good_ones_added(services, project, tmp_path):
    good = imagegen.jpeg_bytes(120, 90, seed=31)
    corrupt = bytes(np.random.default_rng(5).integers(0, 256, 3000, dtype=np.uint8))
    z = imagegen.make_zip(tmp_path / "mixed.zip", {
        "good.jpg": good,
        "good.png": imagegen.image_bytes("PNG", 60, 40, seed=32),
        "corrupt.jpg": corrupt,
        "corrupt-again.jpg": corrupt,  # a duplicate of a bad file is reported as bad, not as a duplicate
        "truncated.jpg": imagegen.jpeg_bytes(120, 90, seed=33)[:1500],
        "empty.jpg": b"",
    })
    report = services.images.add_images(project, [z])
    assert sorted(report.added) == ["good.jpg", "good.png"]
    assert report.duplicates == []
    reasons = _skip_reasons(report)
    assert len(report.skipped) == 4, reasons
    again = [r for n, r in reasons.items() if n.endswith("corrupt-again.jpg")]
    assert again == [reasons["mixed.zip:corrupt.jpg"]]
    assert "not a readable image" in reasons["mixed.zip:corrupt.jpg"]
    assert "truncated" in reasons["mixed.zip:truncated.jpg"]
    assert "empty" in reasons["mixed.zip:empty.jpg"] and "0 bytes" in reasons["mixed.zip:empty.jpg"]
    assert sorted(i.rel_path for i in _images(services, project)) == ["good.jpg", "good.png"]


def test_pixel_bomb_skipped(open_services, tmp_path):
    services, project = open_services(ANNOTATOR_MAX_IMAGE_PIXELS="10000")
    z = imagegen.make_zip(tmp_path / "bombs.zip", {
        "small.jpg": imagegen.jpeg_bytes(80, 60, seed=1),  # 4,800 pixels
        "big.png": imagegen.image_bytes("PNG", 200, 100, seed=2),  # 20,000 pixels
        "huge-header.png": imagegen.png_header_only(100_000, 100_000),
    })
    report = services.images.add_images(project, [z])
    assert report.added == ["small.jpg"]
    reasons = _skip_reasons(report)
    assert "decompression bomb" in reasons["bombs.zip:big.png"]
    assert "20,000" in reasons["bombs.zip:big.png"] and "ANNOTATOR_MAX_IMAGE_PIXELS" in reasons["bombs.zip:big.png"]
    assert "decompression bomb" in reasons["bombs.zip:huge-header.png"]


def test_zip_slip_members_skipped_and_nothing_escapes(services, project, tmp_path):
    z = imagegen.zipslip_zip(tmp_path / "in" / "slip.zip")
    report = services.images.add_images(project, [z], dataset="slip")
    assert report.added == []
    reasons = _skip_reasons(report)
    assert set(reasons) == {f"slip.zip:{n}" for n in imagegen.ZIPSLIP_NAMES}
    assert all("zip-slip" in r for r in reasons.values()), reasons
    assert list(tmp_path.rglob("evil.jpg")) == []
    assert list(tmp_path.parent.glob("evil.jpg")) == [] and not (tmp_path / "abs").exists()
    assert _images(services, project) == []
    assert _files_under(services.settings.project_dir(project.id)) == []


def test_zip_bomb_refused_by_ratio_quickly(services, project, tmp_path):
    z = imagegen.zip_bomb(tmp_path / "bomb.zip")
    extra = imagegen.jpeg_bytes(40, 30, seed=3)
    with zipfile.ZipFile(z, "a") as zf:
        zf.writestr("fine.jpg", extra)
    t0 = time.perf_counter()
    report = services.images.add_images(project, [z])
    assert time.perf_counter() - t0 < 5
    assert report.added == ["fine.jpg"]
    reason = _skip_reasons(report)["bomb.zip:bomb.jpg"]
    assert "compression ratio" in reason and "ANNOTATOR_MAX_ZIP_RATIO" in reason
    assert list(tmp_path.rglob("*.tmp")) == []


def test_total_upload_limit_skips_overflow(open_services, tmp_path):
    members = {f"{i}.png": imagegen.image_bytes("PNG", 40, 30, seed=i) for i in range(4)}
    limit = len(members["0.png"]) + len(members["1.png"])
    services, project = open_services(ANNOTATOR_MAX_UPLOAD_BYTES=str(limit))
    report = services.images.add_images(project, [imagegen.make_zip(tmp_path / "big.zip", members)])
    assert sorted(report.added) == ["0.png", "1.png"]
    reasons = _skip_reasons(report)
    assert set(reasons) == {"big.zip:2.png", "big.zip:3.png"}
    assert all("ANNOTATOR_MAX_UPLOAD_BYTES" in r for r in reasons.values())


def test_per_file_limit(open_services, tmp_path):
    services, project = open_services(ANNOTATOR_MAX_FILE_BYTES="2000")
    folder = tmp_path / "f"
    folder.mkdir()
    (folder / "small.jpg").write_bytes(imagegen.jpeg_bytes(16, 16, seed=1))
    (folder / "large.bmp").write_bytes(imagegen.image_bytes("BMP", 100, 100, seed=2))
    report = services.images.add_images(project, [folder])
    assert report.added == ["small.jpg"]
    assert "ANNOTATOR_MAX_FILE_BYTES" in _skip_reasons(report)["large.bmp"]


def test_not_a_zip(services, project, tmp_path):
    fake = tmp_path / "photos.zip"
    fake.write_bytes(b"this is not a zip archive at all" * 10)
    report = services.images.add_images(project, [fake])
    assert report.added == []
    assert "not a readable zip archive" in _skip_reasons(report)["photos.zip"]
    assert _images(services, project) == []


def test_failed_commit_leaves_nothing_behind(services, project, tmp_path, monkeypatch):
    z = imagegen.make_zip(tmp_path / "u.zip", {f"{i}.jpg": imagegen.jpeg_bytes(40, 30, seed=i) for i in range(5)})

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(services.ctx.store, "add_images", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        services.images.add_images(project, [z])
    pdir = services.settings.project_dir(project.id)
    assert _files_under(pdir / "images") == [] and _files_under(pdir / "thumbs") == []
    assert _files_under(pdir / "staging") == []
    assert not (pdir / "staging").exists() or list((pdir / "staging").iterdir()) == []
    monkeypatch.undo()
    assert services.ctx.store.count_images(project.id) == 0 and services.images.datasets(project) == []
    assert services.images.uploads(project) == []


def test_same_path_different_image_in_same_dataset_is_skipped(services, project, tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    original = imagegen.jpeg_bytes(40, 30, seed=41)
    (first / "a.jpg").write_bytes(original)
    (second / "a.jpg").write_bytes(imagegen.jpeg_bytes(40, 30, seed=42))
    services.images.add_images(project, [first], dataset="d")
    report = services.images.add_images(project, [second], dataset="d")
    assert report.added == []
    assert "already in the dataset" in _skip_reasons(report)["a.jpg"]
    (img,) = _images(services, project, "d")
    assert img.sha256 == hashlib.sha256(original).hexdigest()


def test_same_path_twice_in_one_upload(services, project, tmp_path):
    z1 = tmp_path / "one"
    z1.mkdir()
    (z1 / "x.jpg").write_bytes(imagegen.jpeg_bytes(40, 30, seed=1))
    loose = tmp_path / "x.jpg"
    loose.write_bytes(imagegen.jpeg_bytes(40, 30, seed=2))
    report = services.images.add_images(project, [z1, loose], dataset="d")
    assert report.added == ["x.jpg"]
    assert "already in the dataset" in _skip_reasons(report)["x.jpg"]


def test_second_upload_appends_to_existing_dataset(services, project, tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    (first / "a.jpg").write_bytes(imagegen.jpeg_bytes(40, 30, seed=51))
    (second / "b.jpg").write_bytes(imagegen.jpeg_bytes(40, 30, seed=52))
    services.images.add_images(project, [first], dataset="d")
    report = services.images.add_images(project, [second], dataset="D")
    assert report.dataset == "d" and report.added == ["b.jpg"]
    assert sorted(i.rel_path for i in _images(services, project, "d")) == ["a.jpg", "b.jpg"]


def test_progress_reaches_total(services, project, tmp_path):
    members = {f"{i:02d}.jpg": imagegen.jpeg_bytes(40, 30, seed=i) for i in range(12)}
    members["dup.jpg"] = members["00.jpg"]
    members["notes.txt"] = b"x"
    members["bad.jpg"] = b"nope" * 10
    calls = []
    report = services.images.add_images(project, [imagegen.make_zip(tmp_path / "p.zip", members)],
                                 progress=lambda done, total, name: calls.append((done, total, name)))
    assert len(report.added) == 12
    assert calls, "progress was never called"
    totals = {t for _, t, _ in calls}
    assert totals == {15}
    dones = [d for d, _, _ in calls]
    assert dones == sorted(dones) and dones[-1] == 15


def test_stage_and_store_names_are_content_addressed():
    sha = "ab" + "0" * 62
    assert ingest.stored_names(sha, "png") == (f"images/ab/{sha}.png", f"thumbs/ab/{sha}.jpg")


def test_corrupt_zip_member_and_symlink_skipped(services, project, tmp_path):
    good = imagegen.jpeg_bytes(40, 30, seed=61)
    victim = imagegen.image_bytes("BMP", 40, 30, seed=62)
    z = tmp_path / "damaged.zip"
    with zipfile.ZipFile(z, "w", compression=zipfile.ZIP_STORED) as zf:
        zf.writestr("good.jpg", good)
        zf.writestr("victim.bmp", victim)
        link = zipfile.ZipInfo("link.jpg")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(link, "/etc/passwd")
    raw = bytearray(z.read_bytes())
    at = raw.index(victim) + len(victim) // 2  # flip a pixel byte: the CRC no longer matches
    raw[at] ^= 0xFF
    z.write_bytes(bytes(raw))
    report = services.images.add_images(project, [z])
    assert report.added == ["good.jpg"]
    reasons = _skip_reasons(report)
    assert "corrupt zip member" in reasons["damaged.zip:victim.bmp"] and "CRC" in reasons["damaged.zip:victim.bmp"]
    assert "symbolic link" in reasons["damaged.zip:link.jpg"]


def test_reupload_of_the_same_zip_adds_nothing(services, project, tmp_path):
    z = imagegen.make_zip(tmp_path / "same.zip", {f"{i}.jpg": imagegen.jpeg_bytes(40, 30, seed=70 + i) for i in range(3)})
    first = services.images.add_images(project, [z])
    again = services.images.add_images(project, [z])
    assert len(first.added) == 3
    assert again.added == [] and again.skipped == []
    assert sorted((d.name, d.same_as) for d in again.duplicates) == [(f"{i}.jpg", f"same/{i}.jpg") for i in range(3)]
    assert services.ctx.store.count_images(project.id) == 3


def test_folder_symlink_not_followed(services, project, tmp_path):
    outside = tmp_path / "outside.jpg"
    outside.write_bytes(imagegen.jpeg_bytes(40, 30, seed=80))
    folder = tmp_path / "f"
    folder.mkdir()
    (folder / "real.jpg").write_bytes(imagegen.jpeg_bytes(40, 30, seed=81))
    (folder / "link.jpg").symlink_to(outside)
    report = services.images.add_images(project, [folder])
    assert report.added == ["real.jpg"]
    assert "symbolic link" in _skip_reasons(report)["link.jpg"]


def test_rotation_keeps_icc_profile():
    from PIL import ImageCms

    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    exif = Image.Exif()
    exif[imagegen.ORIENTATION_TAG] = 6
    exif[0x010F] = "TestCam"  # Make: other EXIF survives, only the orientation goes
    out = io.BytesIO()
    imagegen.pil_image(40, 30).save(out, "JPEG", quality=90, icc_profile=icc, exif=exif.tobytes())
    dec = decode_image(out.getvalue(), Limits())
    with Image.open(io.BytesIO(dec.data)) as im:
        assert im.size == (30, 40)
        assert im.info.get("icc_profile") == icc
        stored = im.getexif()
        assert stored.get(0x010F) == "TestCam" and imagegen.ORIENTATION_TAG not in stored


def test_stored_upload_report_matches_returned_report(services, project, tmp_path):
    """The uploads table keeps the upload's report: it must be the one the user was shown."""
    z = imagegen.make_zip(tmp_path / "r.zip", {
        "turned.jpg": imagegen.jpeg_bytes(40, 30, seed=90, orientation=6),
        "scan.tif": imagegen.image_bytes("TIFF", 40, 30, seed=91),
        "notes.txt": b"x",
    })
    report = services.images.add_images(project, [z])
    assert sorted(report.notes) == ["scan.tif: converted TIFF to PNG", "turned.jpg: rotated per EXIF orientation 6"]
    (stored,) = services.ctx.store._one("SELECT report FROM uploads WHERE project_id = ?", [project.id])
    stored = json.loads(stored)
    shown = report.as_dict()
    for key in ("added", "duplicates", "skipped", "added_files", "skipped_files", "notes"):
        assert stored[key] == shown[key], key


def test_garbage_is_skipped_after_ultralytics_patched_pil(services, project, tmp_path):
    """Importing ultralytics (a model upload does) patches PIL.Image.open to try a HEIF plugin that is not
    installed; a corrupt file must still be a per-file skip, not a crash of the whole upload."""
    import ultralytics.utils.patches  # noqa: F401 - applies the patch in this process

    good = tmp_path / "good.jpg"
    good.write_bytes(imagegen.jpeg_bytes(40, 30, seed=3))
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"definitely not an image" * 10)
    report = services.images.add_images(project, [good, bad], dataset="after-patch")
    assert report.added == ["good.jpg"]
    assert [(s.name, s.reason) for s in report.skipped] == [
        ("bad.jpg", "not a readable image (unknown format or damaged header)")]


def test_extract_archive_applies_the_upload_safety_rules_and_keeps_label_files(tmp_path):
    """Label imports extract through the same zip walk as uploads: images and label files (an empty label
    file is a negative, kept) land; zip-slip, links, hidden files, other files and zip bombs do not."""
    z = imagegen.zip_bomb(tmp_path / "in" / "labelled.zip", size=4 << 20, name="labels/bomb.txt")
    img = imagegen.jpeg_bytes(40, 30, seed=71)
    with zipfile.ZipFile(z, "a") as zf:
        zf.writestr("images/a.jpg", img)
        zf.writestr("labels/a.txt", "0 0.5 0.5 0.2 0.2\n")
        zf.writestr("labels/neg.txt", "")
        zf.writestr("data.yaml", "names: [a]\n")
        zf.writestr("../escape.txt", "0 0.5 0.5 0.1 0.1\n")
        zf.writestr("labels/.hidden.txt", "x")
        zf.writestr("__MACOSX/labels/._a.txt", "x")
        zf.writestr("notes.md", "not a label")
        link = zipfile.ZipInfo("labels/link.txt")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(link, "/etc/passwd")
    dest = tmp_path / "out"
    skipped = {s.name: s.reason for s in ingest.extract_archive(z, "labelled.zip", dest, Limits())}
    assert _files_under(dest) == ["data.yaml", "images/a.jpg", "labels/a.txt", "labels/neg.txt"]
    assert (dest / "images" / "a.jpg").read_bytes() == img and (dest / "labels" / "neg.txt").read_bytes() == b""
    assert set(skipped) == {f"labelled.zip:{n}" for n in ("labels/bomb.txt", "../escape.txt", "labels/.hidden.txt",
                                                          "__MACOSX/labels/._a.txt", "notes.md", "labels/link.txt")}
    assert "compression ratio" in skipped["labelled.zip:labels/bomb.txt"]
    assert "zip-slip" in skipped["labelled.zip:../escape.txt"]
    assert skipped["labelled.zip:labels/.hidden.txt"] == skipped["labelled.zip:__MACOSX/labels/._a.txt"] == (
        "hidden file or folder")
    assert "not an image file" in skipped["labelled.zip:notes.md"]
    assert "symbolic link" in skipped["labelled.zip:labels/link.txt"]
    assert list(tmp_path.rglob("escape.txt")) == []
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"not a zip")
    (only,) = ingest.extract_archive(bad, "bad.zip", dest, Limits())
    assert only.name == "bad.zip" and "not a readable zip archive" in only.reason
