"""A full disk or a read-only data folder: refused before writing with the figures, or said in words when it
happens mid-write; nothing half-written stays; the app keeps serving and works again once space is back.

The end-to-end cases use a real small file system (a tmpfs mounted for the test: needs root, as in CI's
container); where mounting is impossible they are skipped and say so. The unit cases need no mount.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from annotator import diskspace
from annotator.services import Services
from annotator.settings import Settings
from annotator.types import DiskProblem, UserError, disk_problem
from tests.imagegen import jpeg_bytes, make_zip
from tests.support import ROOT, free_port

MB = 1024 * 1024


# ---- a small real file system ------------------------------------------------------------------------------
def _mount(path: Path, size_mb: int, read_only: bool = False) -> None:
    path.mkdir(parents=True, exist_ok=True)
    opts = f"size={size_mb}m" + (",ro" if read_only else "")
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path)], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({proc.stderr.strip() or proc.returncode}): the disk-full and "
                    "read-only cases need root with CAP_SYS_ADMIN")


def _umount(path: Path) -> None:
    subprocess.run(["umount", "-l", str(path)], capture_output=True)


@pytest.fixture
def small_disk(tmp_path):
    """A fresh 100 MB tmpfs: mount point in, unmounted after."""
    mnt = tmp_path / "disk"
    _mount(mnt, 100)
    try:
        yield mnt
    finally:
        _umount(mnt)


def _fill(folder: Path, leave_bytes: int) -> Path:
    """Fill ``folder``'s disk until ``leave_bytes`` are free; the filler file is returned (delete to free)."""
    filler = folder / "filler.bin"
    with open(filler, "wb") as f:
        chunk = b"\0" * MB
        while diskspace.free_bytes(folder) - len(chunk) > leave_bytes:
            f.write(chunk)
            f.flush()
        rest = diskspace.free_bytes(folder) - leave_bytes
        if rest > 0:
            f.write(b"\0" * rest)
    return filler


def _photos(folder: Path, n: int, w: int = 640, h: int = 480) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        (folder / f"p{i:03d}.jpg").write_bytes(jpeg_bytes(w, h, seed=i))
    return folder


# ---- no mount needed ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("exc, words", [
    (OSError(errno.ENOSPC, "No space left on device"), "The disk is full"),
    (OSError(errno.EROFS, "Read-only file system"), "read-only file system"),
    (OSError(errno.EACCES, "Permission denied"), "No permission to write"),
    (RuntimeError('TransactionContext Error: Failed to commit: Could not write file "/x/m.duckdb.wal": '
                  "No space left on device"), "The disk is full"),
])
def test_disk_problems_are_named_in_words(exc, words, tmp_path):
    problem = disk_problem(exc, tmp_path)
    assert isinstance(problem, DiskProblem) and isinstance(problem, UserError)
    assert words in str(problem)
    if words == "The disk is full":
        assert "MB free in" in str(problem) and str(tmp_path) in str(problem)


def test_a_disk_problem_is_found_through_the_chain_and_nothing_else_is():
    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError as e:
            raise ValueError("writing the zip failed") from e
    except ValueError as outer:
        assert "The disk is full" in str(disk_problem(outer))
    assert disk_problem(ValueError("bad box")) is None
    assert disk_problem(OSError(errno.ENOENT, "No such file")) is None


def test_require_space_refuses_with_the_figures(monkeypatch, tmp_path):
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(diskspace.shutil, "disk_usage", lambda path: usage(200 * MB, 100 * MB, 100 * MB))
    diskspace.require_space(tmp_path, 10 * MB, "upload a.zip")  # 10 MB + margin + reserve fits in 100 MB
    with pytest.raises(DiskProblem) as err:
        diskspace.require_space(tmp_path / "not" / "yet", 50 * MB, "upload big.zip")
    text = str(err.value)
    assert "upload big.zip" in text and "MB needed" in text and "105 MB free in" in text
    assert str(tmp_path) in text  # the nearest existing folder, on the disk that was asked about


def test_sources_size_reads_declared_sizes_without_unpacking(tmp_path):
    z = make_zip(tmp_path / "a.zip", {"x/a.jpg": b"\0" * 300_000, "b.jpg": b"\0" * 200_000})
    assert z.stat().st_size < 100_000  # deflated zeros: the declared sizes count, not the zip's
    folder = _photos(tmp_path / "f", 2)
    single = tmp_path / "one.bin"
    single.write_bytes(b"1" * 1234)
    expected = 500_000 + sum(p.stat().st_size for p in folder.iterdir()) + 1234
    assert diskspace.sources_size([z, folder, single, tmp_path / "missing.zip"]) == expected


def test_uploads_sweep_removes_only_top_level_leftovers(tmp_path):
    from annotator.ui.uploads import sweep_leftovers

    (tmp_path / "tmpabc123").write_bytes(b"\0" * 1000)  # a partial upload of a killed run
    kept = tmp_path / ("f" * 64) / "street.zip"  # what Gradio keeps: inside a hash folder
    kept.parent.mkdir()
    kept.write_bytes(b"zip")
    assert sweep_leftovers(tmp_path) == 1000
    assert not (tmp_path / "tmpabc123").exists() and kept.exists()


def test_a_job_that_hits_a_full_disk_fails_with_the_message():
    from jobs.runtime import run_attempt

    logged, done = [], {}

    class State:
        stage = "running"

        def snapshot(self):
            return {"stage": self.stage}

    class Channel:
        def log(self, line):
            logged.append(line)

        def __getattr__(self, name):  # progress, heartbeat, done markers: record the final one
            return lambda *a, **k: done.update({name: (a, k)})

    def body():
        raise OSError(errno.ENOSPC, "No space left on device", "/data/jobs/7/dataset/a.jpg")

    status = run_attempt(Channel(), State(), body)
    assert status == "failed"
    assert any("The disk is full" in line and "MB free in" in line for line in logged), logged


# ---- on a real small disk ----------------------------------------------------------------------------------
def test_an_upload_larger_than_the_free_space_is_refused_before_writing(small_disk, tmp_path):
    svc = Services.open(Settings.from_env({"ANNOTATOR_DATA_DIR": str(small_disk / "data")}))
    try:
        p = svc.projects.create_project("Disk", ["thing"])
        # 40 MB declared (zeros deflate to almost nothing): with the margin and the reserve, more than is free
        big = make_zip(tmp_path / "big.zip", {f"img{i}.jpg": b"\0" * (10 * MB) for i in range(4)})
        with pytest.raises(DiskProblem) as err:
            svc.images.add_images(p, [big], dataset="big")
        text = str(err.value)
        assert "MB needed" in text and "MB free in" in text and "big.zip" in text
        assert svc.ctx.store.list_images(p.id, offset=0, limit=10) == []
        staging = svc.settings.staging_dir(p.id)
        assert not staging.exists() or not any(staging.iterdir())
        # a small one goes in: the refusal changed nothing
        report = svc.images.add_images(p, [_photos(tmp_path / "small", 2)], dataset="small")
        assert len(report.added) == 2
    finally:
        svc.close()


def test_a_disk_that_fills_during_an_upload_says_so_and_keeps_nothing(small_disk, tmp_path, monkeypatch):
    """Another program fills the disk after the check passed: the write fails mid-way, the message says the
    disk is full (through the API's error mapping), staging is removed, no row is added, and once space is
    back the same upload works."""
    import gradio as gr

    from annotator.ui.api import Api

    svc = Services.open(Settings.from_env({"ANNOTATOR_DATA_DIR": str(small_disk / "data")}))
    try:
        p = svc.projects.create_project("Disk", ["thing"])
        photos = _photos(tmp_path / "photos", 6, 1600, 1200)
        monkeypatch.setattr("annotator.services.images.require_space", lambda *a, **k: None)  # the check passed
        filler = _fill(small_disk, 256 * 1024)
        api = Api(svc)
        with pytest.raises(gr.Error) as err:
            api.add_images(project="Disk", sources=[str(photos / n) for n in sorted(os.listdir(photos))])
        assert "The disk is full" in str(err.value) and "MB free in" in str(err.value)
        assert svc.ctx.store.list_images(p.id, offset=0, limit=10) == []
        staging = svc.settings.staging_dir(p.id)
        assert not staging.exists() or not any(staging.iterdir())
        images_dir = svc.settings.project_dir(p.id) / "images"
        assert not images_dir.exists() or not any(f for f in images_dir.rglob("*") if f.is_file())
        filler.unlink()
        report = svc.images.add_images(p, [photos], dataset="photos")
        assert len(report.added) == 6
        assert len(svc.ctx.store.list_images(p.id, offset=0, limit=10)) == 6
    finally:
        svc.close()


def test_a_read_only_data_folder_gives_the_message_and_exit_2(tmp_path):
    mnt = tmp_path / "ro"
    _mount(mnt, 50)
    try:
        data = mnt / "data"
        Services.open(Settings.from_env({"ANNOTATOR_DATA_DIR": str(data)})).close()
        proc = subprocess.run(["mount", "-o", "remount,ro", str(mnt)], capture_output=True, text=True)
        if proc.returncode != 0:
            pytest.skip(f"cannot remount read-only: {proc.stderr.strip()}")
        env = {**os.environ, "ANNOTATOR_DATA_DIR": str(data), "ANNOTATOR_PORT": str(free_port()),
               "ANNOTATOR_LOCAL_WORKER": "0", "ANNOTATOR_DEMO": "0"}
        for args in (["project", "list"], ["serve"]):
            run = subprocess.run([sys.executable, "-m", "annotator", *args], cwd=ROOT, env=env, capture_output=True,
                                 text=True, timeout=120)
            assert run.returncode == 2, (args, run.stderr[-2000:])
            assert "read-only" in run.stderr and "Traceback" not in run.stderr, run.stderr[-2000:]
    finally:
        _umount(mnt)


@pytest.mark.slow
def test_a_failed_upload_leaves_no_partial_file_and_the_app_keeps_serving(tmp_path):
    """Gradio's own upload route on a full disk: the partial temp file is removed at once (Gradio itself
    leaves it for a day), the app answers, and an upload that fits works afterwards."""
    import http.client
    import urllib.request

    from annotator.launch import start

    mnt = tmp_path / "disk"
    _mount(mnt, 100)
    app = None
    try:
        settings = Settings.from_env({"ANNOTATOR_DATA_DIR": str(mnt / "data"), "ANNOTATOR_DEMO": "0",
                                      "ANNOTATOR_LOCAL_WORKER": "0"}).with_overrides(port=free_port())
        app = start(settings, block=False, quiet=True)
        temp = settings.tmp_dir / "gradio"
        filler = _fill(mnt, 4 * MB)

        def upload(size: int) -> int:
            boundary = "aaboundary"
            head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"big.zip\"\r\n"
                    "Content-Type: application/zip\r\n\r\n").encode()
            body = head + os.urandom(size) + f"\r\n--{boundary}--\r\n".encode()
            conn = http.client.HTTPConnection("127.0.0.1", settings.port, timeout=60)
            try:
                conn.request("POST", "/gradio_api/upload", body=body,
                             headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
                return conn.getresponse().status
            except (ConnectionError, http.client.HTTPException):
                return 599
            finally:
                conn.close()

        assert upload(12 * MB) >= 400  # more than is free
        leftovers = [p for p in temp.iterdir() if p.is_file()]
        assert leftovers == [], f"partial upload files left: {leftovers}"
        with urllib.request.urlopen(app.url, timeout=10) as r:
            assert r.status == 200
        filler.unlink()
        assert upload(1 * MB) == 200
    finally:
        if app is not None:
            app.close()
        _umount(mnt)


def test_an_export_larger_than_the_free_space_is_refused(small_disk, tmp_path):
    svc = Services.open(Settings.from_env({"ANNOTATOR_DATA_DIR": str(small_disk / "data")}))
    try:
        p = svc.projects.create_project("Disk", ["thing"])
        svc.images.add_images(p, [_photos(tmp_path / "photos", 3)], dataset="photos")
        ids = [i.id for i in svc.ctx.store.list_images(p.id, offset=0, limit=10)]
        svc.review.set_review_status(p, ids, "approved")
        filler = _fill(small_disk, 20 * MB)  # less than the reserve
        with pytest.raises(DiskProblem) as err:
            svc.transfer.export_dataset(p, "yolo")
        assert "export 3 images" in str(err.value) and "MB free in" in str(err.value)
        exports = svc.settings.exports_dir(p.id)
        assert not exports.exists() or not any(exports.iterdir())
        filler.unlink()
        assert Path(svc.transfer.export_dataset(p, "yolo")["file"]).is_file()
        assert zipfile.is_zipfile(svc.transfer.export_dataset(p, "coco")["file"])
    finally:
        svc.close()
