"""fsck: the data folder against the store (orphans found and removed, referenced files kept, rows whose file
is missing reported), and the sweep at start-up that removes what an interrupted commit left."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

from annotator.services import Services
from annotator.settings import Settings

from ..imagegen import jpeg_bytes
from ..support import ROOT


def _upload(services, tmp_path, name="P", n=4, seed=0):
    archive = tmp_path / f"{name}-{seed}.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for i in range(n):
            zf.writestr(f"cam/{i}.jpg", jpeg_bytes(96, 64, seed=seed + i))
    return services.images.add_images(name, [archive], dataset="cam")


def _kinds(report) -> dict[str, int]:
    return {p["kind"]: p["count"] for p in report["problems"]}


def _old(path: Path) -> None:
    """Made by an earlier run: an hour before this one started."""
    t = time.time() - 3600
    for p in [path, *path.rglob("*")] if path.is_dir() else [path]:
        os.utime(p, (t, t), follow_symlinks=False)


def _referenced(services, project_id) -> list[Path]:
    s = services.settings
    out = []
    for img in services.images.list_images(project_id, page_size=500).images:
        out += [s.project_file(project_id, img.file), s.project_file(project_id, img.thumb)]
    return out


def test_a_fresh_data_folder_is_clean(services, tmp_path):
    services.projects.create_project("P", ["a", "b"])
    _upload(services, tmp_path)
    report = services.fsck.fsck()
    assert report["clean"] and report["remaining"] == 0 and report["problems"] == []
    assert report["checked"]["images"] == 4 and report["checked"]["files"] == 8


def test_fsck_finds_and_repair_removes_planted_orphans_and_nothing_else(services, tmp_path):
    s = services.settings
    p = services.projects.create_project("P", ["a", "b"])
    _upload(services, tmp_path)
    pdir = s.project_dir(p.id)
    sha = "ab" * 32
    planted = {
        "orphan_images": pdir / "images" / "ab" / f"{sha}.jpg",
        "orphan_thumbs": pdir / "thumbs" / "ab" / f"{sha}.jpg",
        "orphan_models": pdir / "models" / f"{'cd' * 32}.pt",
        "orphan_display": pdir / "display" / f"{'ef' * 32}-2560.jpg",
        "leftover_staging": s.staging_dir(p.id) / "0123abcd",
        "leftover_parts": pdir / "exports" / "P-yolo-20240101-000000.part",
        "leftover_tmp": s.tmp_dir / "tmpq1w2e3r4",
        "orphan_projects": s.projects_dir / "999",
        "orphan_jobs": s.jobs_dir / "77",
    }
    for kind, path in planted.items():
        if kind in ("leftover_staging", "leftover_tmp", "orphan_projects", "orphan_jobs"):
            (path / "sub").mkdir(parents=True)
            (path / "sub" / "file.bin").write_bytes(b"x" * 100)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"y" * 50)
        _old(path)
    # Legitimately unreferenced: never reported as a problem, never removed.
    keep = [s.db_path, s.data_dir / "users.txt", s.app_info_path, s.tmp_dir / "overlays" / "1-abc.jpg",
            s.tmp_dir / "gradio" / "f00" / "upload.zip", s.config_dir / "settings.json",
            s.backups_dir / "backup-20240101-000000-ab12.tar"]
    for path in keep[1:]:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"keep")
    referenced = _referenced(services, p.id)
    assert len(referenced) == 8

    report = services.fsck.fsck()
    found = _kinds(report)
    assert found == {k: 1 for k in planted}, report
    assert report["remaining"] == len(planted) and not report["clean"]
    images = next(x for x in report["problems"] if x["kind"] == "orphan_images")
    assert images["examples"] == [f"projects/{p.id}/images/ab/{sha}.jpg"] and images["bytes"] == 50
    assert images["action"] == "would remove"
    assert {n["kind"] for n in report["notes"]} == {"backups"}
    assert all(path.exists() for path in planted.values())  # a check alone changes nothing

    repaired = services.fsck.fsck(repair=True)
    assert repaired["remaining"] == 0 and _kinds(repaired) == found
    assert not [path for path in planted.values() if path.exists()]
    assert all(path.exists() for path in referenced + keep)
    after = services.fsck.fsck()
    assert after["clean"] and after["remaining"] == 0
    assert services.images.list_images(p.id).total == 4


def test_rows_whose_file_is_missing_are_reported_and_kept(services, tmp_path):
    s = services.settings
    p = services.projects.create_project("P", ["a", "b"])
    _upload(services, tmp_path)
    img, other = services.images.list_images(p.id).images[:2]
    loaded = services.review.load_image(p.id, img.id)
    services.review.save_image(p.id, img.id, [{"class_idx": 1, "x1": 5, "y1": 5, "x2": 40, "y2": 30}],
                               loaded["version"])
    s.project_file(p.id, img.file).unlink()
    s.project_file(p.id, other.thumb).unlink()

    report = services.fsck.fsck()
    assert _kinds(report) == {"missing_images": 1, "missing_thumbs": 1}
    missing = next(x for x in report["problems"] if x["kind"] == "missing_images")
    assert missing["examples"] == [f"projects/{p.id}/{img.file}"]

    repaired = services.fsck.fsck(repair=True)
    assert repaired["remaining"] == 1  # the image: nothing here can bring its pixels back
    assert next(x for x in repaired["problems"] if x["kind"] == "missing_images")["action"].startswith("left")
    assert [b.class_idx for b in services.ctx.store.boxes_for_image(img.id)] == [1]  # a person's work stays
    assert s.project_file(p.id, other.thumb).read_bytes()[:2] == b"\xff\xd8"  # made again from its image
    assert _kinds(services.fsck.fsck()) == {"missing_images": 1}


def test_a_commit_under_way_is_not_an_orphan(services, tmp_path):
    """While an upload's commit holds the lock, its files (placed, rows not yet committed) are not removed."""
    import threading

    s = services.settings
    p = services.projects.create_project("P", ["a"])
    pdir = s.project_dir(p.id)
    placed = pdir / "images" / "aa" / ("aa" * 32 + ".jpg")
    placed.parent.mkdir(parents=True)
    placed.write_bytes(b"z")
    result = {}
    with services.ctx.commit_lock:  # the commit under way
        t = threading.Thread(target=lambda: result.update(services.fsck.fsck(repair=True)))
        t.start()
        t.join(0.5)
        assert t.is_alive() and placed.exists()  # fsck waits for the commit
    t.join(10)
    assert _kinds(result) == {"orphan_images": 1}  # the commit ended without a row: now it is an orphan


def test_startup_removes_what_a_killed_commit_left(tmp_path):
    """kill -9 between moving an upload's files into images/ and committing their rows: the next start removes
    those files (through the commit's journal) and the staging folder, and keeps every committed image."""
    data = tmp_path / "data"
    archive = tmp_path / "second.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for i in range(6):
            zf.writestr(f"{i}.jpg", jpeg_bytes(80, 60, seed=100 + i))
    script = (
        "import os, sys, zipfile\n"
        "from annotator.settings import Settings\n"
        "from annotator.services import Services\n"
        "from tests.imagegen import jpeg_bytes\n"
        "svc = Services.open(Settings.from_env({'ANNOTATOR_DATA_DIR': sys.argv[1]}))\n"
        "svc.projects.create_project('P', ['a'])\n"
        "first = os.path.join(os.path.dirname(sys.argv[1]), 'first.zip')\n"
        "with zipfile.ZipFile(first, 'w') as zf:\n"
        "    [zf.writestr(f'{i}.jpg', jpeg_bytes(80, 60, seed=i)) for i in range(3)]\n"
        "svc.images.add_images('P', [first])\n"
        "svc.ctx.store.add_images = lambda *a, **k: os._exit(9)  # killed right before the rows commit\n"
        "svc.images.add_images('P', [sys.argv[2]])\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "ANNOTATOR_DEMO": "0"}
    proc = subprocess.run([sys.executable, "-c", script, str(data), str(archive)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 9, proc.stderr
    pdir = data / "projects" / "1"
    assert len(list((pdir / "images").rglob("*.jpg"))) == 9  # 3 committed + 6 placed without rows
    assert list((pdir / "staging").glob("*.commit"))

    services = Services.open(Settings.from_env({"ANNOTATOR_DATA_DIR": str(data), "ANNOTATOR_DEMO": "0"}))
    try:
        assert services.swept["files"] == 12 and services.swept["staging"] == 1  # 6 images + 6 thumbnails
        assert not (pdir / "staging").exists()
        assert len(list((pdir / "images").rglob("*.jpg"))) == 3
        assert services.fsck.fsck()["clean"]
        again = _upload(services, tmp_path, n=2, seed=100)  # the same pictures upload again, as new
        assert again.added and len(again.added) == 2
    finally:
        services.close()


def test_startup_sweep_removes_staging_parts_and_temp_folders(settings):
    svc = Services.open(settings)
    p = svc.projects.create_project("P", ["a"])
    svc.close()
    s = settings
    staging = s.staging_dir(p.id) / "0f0f"
    staging.mkdir(parents=True)
    (staging / "x.jpg").write_bytes(b"1")
    part = s.project_dir(p.id) / "models" / ("ab" * 32 + ".part")
    part.parent.mkdir(parents=True)
    part.write_bytes(b"12")
    tmp = s.tmp_dir / "tmpzzzz"
    tmp.mkdir()
    (tmp / "import").mkdir()
    restore_work = s.data_dir / ".restore-0a1b2c3d"  # a restore killed half-way
    (restore_work / "projects").mkdir(parents=True)
    overlay = s.overlays_dir / "1-x.jpg"
    overlay.parent.mkdir(parents=True, exist_ok=True)
    overlay.write_bytes(b"o")
    svc = Services.open(settings)
    try:
        assert not s.staging_dir(p.id).exists() and not part.exists() and not tmp.exists()
        assert not restore_work.exists()
        assert overlay.exists() and (s.tmp_dir / "gradio").exists() and s.db_path.exists()
        assert (svc.swept["staging"], svc.swept["parts"], svc.swept["tmp"]) == (1, 1, 2)
    finally:
        svc.close()
