"""A worker without the data folder reads a job's files from the app over HTTP (jobs/fetch.py against the app's
endpoint, annotator/worker_files.py, served by uvicorn on a free loopback port): the worker token is required,
only stored images and models are served, and the worker's cache stays within its bound."""

from __future__ import annotations

import contextlib
import threading
import time

import pytest

from annotator.settings import Settings
from annotator.worker_files import served_file, worker_routes
from jobs.fetch import FetchError, FileSource, relative

from ..support import free_port

TOKEN = "s3cret-worker-token"


@contextlib.contextmanager
def file_server(settings: Settings):
    import uvicorn
    from starlette.applications import Starlette

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(Starlette(routes=worker_routes(settings)), host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 10
    while not server.started and time.time() < deadline:
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture
def app_data(tmp_path):
    """The app's data folder with a project's stored images (10 KB each), a model and a file never served."""
    settings = Settings.from_env({"ANNOTATOR_DATA_DIR": str(tmp_path / "app"), "ANNOTATOR_WORKER_TOKEN": TOKEN})
    images = []
    for n in range(6):
        f = settings.projects_dir / "1" / "images" / f"{n:02d}" / f"{n:02d}{'ab' * 31}.jpg"
        f.parent.mkdir(parents=True)
        f.write_bytes(bytes([n]) * 10_000)
        images.append(f)
    model = settings.projects_dir / "1" / "models" / "m.pt"
    model.parent.mkdir(parents=True)
    model.write_bytes(b"weights" * 1000)
    (settings.data_dir / "users.txt").write_text("admin:secret\n")
    return settings, images, model


def _source(settings, worker_dir, url, token=TOKEN, cache_bytes=1 << 20) -> FileSource:
    return FileSource(str(settings.data_dir), worker_dir, url, token, worker_dir / "cache" / "fetched", cache_bytes)


def test_a_worker_without_the_folder_fetches_and_caches(app_data, tmp_path):
    settings, images, model = app_data
    with file_server(settings) as url:
        src = _source(settings, tmp_path / "worker", url)
        moved = [str(p).replace(str(settings.data_dir), "/elsewhere/data") for p in images]  # not on this host
        src.root = "/elsewhere/data"
        got = src.local(moved[0])
        assert got != moved[0] and open(got, "rb").read() == images[0].read_bytes()
        assert src.fetched == 1 and src.local(moved[0]) == got and src.fetched == 1  # the second read is the cache
        assert open(src.local(str(model).replace(str(settings.data_dir), "/elsewhere/data")), "rb").read() == \
            model.read_bytes()


def test_files_on_this_host_are_read_in_place(app_data, tmp_path):
    settings, images, _ = app_data
    src = _source(settings, tmp_path / "worker", "http://127.0.0.1:9")  # nothing listens there
    assert src.local(str(images[0])) == str(images[0])  # a shared folder at the same path
    mounted = tmp_path / "mounted"  # the same folder mounted elsewhere: ANNOTATOR_DATA_DIR on this worker
    rel = images[1].relative_to(settings.data_dir)
    (mounted / rel).parent.mkdir(parents=True)
    (mounted / rel).write_bytes(images[1].read_bytes())
    src = FileSource("/app/data", mounted, None, None, None, 1)
    assert src.local(f"/app/data/{rel}") == str(mounted / rel) and src.fetched == 0


def test_the_cache_stays_within_its_bound(app_data, tmp_path):
    settings, images, _ = app_data
    with file_server(settings) as url:
        src = _source(settings, tmp_path / "worker", url, cache_bytes=25_000)  # room for two 10 KB images
        src.root = "/x"
        for p in images:
            assert open(src.local(str(p).replace(str(settings.data_dir), "/x")), "rb").read() == p.read_bytes()
        cached = [f for f in (tmp_path / "worker" / "cache").rglob("*") if f.is_file()]
        assert src.fetched == 6 and len(cached) == 2 and sum(f.stat().st_size for f in cached) <= 25_000
        # A new source in the same worker folder (a restarted worker) finds the cache and keeps the bound.
        again = _source(settings, tmp_path / "worker", url, cache_bytes=25_000)
        again.root = "/x"
        again.local(str(images[0]).replace(str(settings.data_dir), "/x"))
        assert again.cached_bytes <= 25_000


def test_the_endpoint_wants_the_worker_token_and_serves_only_images_and_models(app_data, tmp_path):
    settings, images, _ = app_data
    with file_server(settings) as url:
        wrong = _source(settings, tmp_path / "w1", url, token="guess")
        wrong.root = "/x"
        with pytest.raises(FetchError, match="HTTP 401.*worker token"):
            wrong.local(str(images[0]).replace(str(settings.data_dir), "/x"))
        ok = _source(settings, tmp_path / "w2", url)
        ok.root = "/x"
        with pytest.raises(FetchError, match="HTTP 404"):
            ok.local("/x/users.txt")  # inside the data folder, but not a project's image or model
        with pytest.raises(FetchError, match="HTTP 404"):
            ok.local("/x/projects/1/images/00/missing.jpg")
    assert served_file(settings, "users.txt") is None
    assert served_file(settings, "projects/1/exports/a.zip") is None
    assert served_file(settings, "projects/1/images/../../../users.txt") is None
    assert served_file(settings, str(images[0].relative_to(settings.data_dir))) == images[0].resolve()
    assert relative("/x/projects/1/images/../../../../etc/passwd", "/x") is None
    assert relative("/etc/passwd", "/x") is None


def test_without_a_token_the_endpoint_is_off(app_data, tmp_path):
    settings, images, _ = app_data
    off = Settings.from_env({"ANNOTATOR_DATA_DIR": str(settings.data_dir)})
    with file_server(off) as url:
        src = _source(off, tmp_path / "w", url)
        src.root = "/x"
        with pytest.raises(FetchError, match="HTTP 404 worker file access is off"):
            src.local(str(images[0]).replace(str(settings.data_dir), "/x"))


@pytest.mark.slow
def test_the_launched_app_serves_workers_by_token_and_never_by_login(tmp_path):
    """In the real app with login on: the worker token opens the endpoint, a signed-in user's session does not."""
    import httpx

    from annotator.demo import scenes
    from annotator.launch import start

    settings = Settings.from_env({"ANNOTATOR_DATA_DIR": str(tmp_path / "data"), "ANNOTATOR_DEMO": "0",
                                  "ANNOTATOR_LOCAL_WORKER": "0", "ANNOTATOR_AUTH": "ann:right-pass",
                                  "ANNOTATOR_WORKER_TOKEN": TOKEN}).with_overrides(port=free_port())
    app = start(settings, block=False, quiet=True)
    try:
        p = app.services.projects.create_project("P", list(scenes.CLASSES), user="ann")
        m = app.services.models.add_model(p, scenes.DEMO_MODEL_PATH, name="demo", user="ann")
        path = settings.project_file(p.id, m.file)
        url = "/aa-worker/v1/file/" + str(path.relative_to(settings.data_dir))
        with httpx.Client(base_url=app.url, timeout=30) as c:
            r = c.get(url, headers={"X-Annotator-Worker-Token": TOKEN})
            assert r.status_code == 200 and r.content == path.read_bytes()
            assert c.get(url).status_code == 401
            assert c.post("/login", data={"username": "ann", "password": "right-pass"}).status_code == 200
            assert c.get(url).status_code == 401  # a user's session is not a worker token
    finally:
        app.close()


def test_a_file_nowhere_to_be_had_is_named(tmp_path, monkeypatch):
    from annotator.types import UserError

    elsewhere = FileSource("/app/data", tmp_path / "worker", None, None, tmp_path / "cache", 1 << 20)
    with pytest.raises(FetchError, match=r"projects/1/images/a.jpg is not on this worker .*ANNOTATOR_APP_URL"):
        elsewhere.local("/app/data/projects/1/images/a.jpg")
    own = FileSource(str(tmp_path), tmp_path, None, None, None, 1)  # the app's own worker: the file is just missing
    assert own.local(str(tmp_path / "projects/1/images/a.jpg")) == str(tmp_path / "projects/1/images/a.jpg")
    env = {"ANNOTATOR_DATA_DIR": str(tmp_path)}
    with pytest.raises(UserError, match="ANNOTATOR_WORKER_CACHE_MB='lots' is not an integer"):
        FileSource.for_payload({"root": "/app/data"}, {**env, "ANNOTATOR_WORKER_CACHE_MB": "lots"})
    with pytest.raises(ValueError, match="ANNOTATOR_WORKER_FILES='copy': use auto"):
        FileSource.for_payload({"root": "/app/data"}, {**env, "ANNOTATOR_WORKER_FILES": "copy"})
    monkeypatch.chdir(tmp_path)  # no ANNOTATOR_DATA_DIR: the worker's ./data, as `annotator worker` uses
    src = FileSource.for_payload({"root": "/app/data"}, {"ANNOTATOR_APP_URL": "http://app:7860"})
    data = (tmp_path / "data").resolve()
    assert src.data_dir == data and src.cache_dir == data / "cache" / "fetched"
