"""`python -m annotator ...` as a user runs it: in a subprocess, with its own data folder."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from ..imagegen import jpeg_bytes
from ..support import ROOT, free_port, run_cli

pytestmark = [pytest.mark.slow]



@pytest.fixture
def photos(tmp_path) -> Path:
    archive = tmp_path / "photos.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("day1/a.jpg", jpeg_bytes(64, 48, seed=1))
        zf.writestr("day1/b.jpg", jpeg_bytes(64, 48, seed=2))
        zf.writestr("day1/broken.jpg", jpeg_bytes(64, 48, seed=3)[:100])
    return archive


def test_create_list_ingest_with_json(tmp_path, photos):
    data = tmp_path / "data"
    created = json.loads(run_cli(data, "project", "create", "Birds", "--classes", "gull,tern", "--json").stdout)
    assert [c["name"] for c in created["classes"]] == ["gull", "tern"]

    report = json.loads(run_cli(data, "ingest", "Birds", str(photos), "--dataset", "coast", "--json").stdout)
    assert report["dataset"] == "coast"
    assert sorted(report["added_files"]) == ["day1/a.jpg", "day1/b.jpg"]
    assert report["skipped_files"][0]["name"] == "photos.zip:day1/broken.jpg"

    listed = json.loads(run_cli(data, "project", "list", "--json").stdout)
    assert [(p["name"], p["images"], p["datasets"]) for p in listed] == [("Birds", 2, 1)]

    human = run_cli(data, "project", "list").stdout
    assert "Birds" in human and "images" in human

    stats = json.loads(run_cli(data, "review-stats", "Birds", "--json").stdout)
    assert stats["status"] == {"unreviewed": 2, "approved": 0, "rejected": 0}
    assert [r["class"] for r in stats["per_class"]] == ["gull", "tern"]
    text = run_cli(data, "review-stats", "Birds").stdout
    assert "2 image(s)" in text and "0% reviewed" in text and "gull" in text


def test_bad_input_exits_2_with_a_message(tmp_path, photos):
    data = tmp_path / "data"
    dup = run_cli(data, "project", "create", "X", "--classes", "a,A", check=False)
    assert dup.returncode == 2 and "listed twice" in dup.stderr and "Traceback" not in dup.stderr
    missing = run_cli(data, "ingest", "Nope", str(photos), check=False)
    assert missing.returncode == 2 and "No project named 'Nope'" in missing.stderr
    nofile = run_cli(data, "ingest", "Nope", str(tmp_path / "absent.zip"), check=False)
    assert nofile.returncode == 2 and "absent.zip: no such file" in nofile.stderr



def test_while_the_app_runs_the_cli_goes_through_its_api(tmp_path, photos):
    data = tmp_path / "data"
    port = free_port()
    env = {**os.environ, "ANNOTATOR_DATA_DIR": str(data), "ANNOTATOR_PORT": str(port), "ANNOTATOR_DEMO": "0",
           "ANNOTATOR_DEVICE": "cpu"}
    app = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 90
        while time.time() < deadline:
            if (data / "app.json").exists():
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    pass
            assert app.poll() is None, app.stdout.read()
            time.sleep(0.5)
        else:
            pytest.fail("app did not start")

        created = run_cli(data, "project", "create", "Live", "--classes", "a,b", "--json")
        assert "going through its API" in created.stderr
        assert json.loads(created.stdout)["name"] == "Live"
        report = json.loads(run_cli(data, "ingest", "Live", str(photos), "--json").stdout)
        assert report["added"] == 2
        again = run_cli(data, "project", "create", "live", "--classes", "a", check=False)
        assert again.returncode == 2 and "already exists" in again.stderr and "&#x27;" not in again.stderr

        # Models and auto-annotation through the app's API: its worker runs the job, the CLI follows it.
        from annotator.demo import scenes

        run_cli(data, "models", "add", "Live", str(scenes.DEMO_MODEL_PATH), "--name", "demo")
        assert "demo" in run_cli(data, "models", "list", "Live").stdout
        done = run_cli(data, "annotate", "Live", "--model", "demo", "--map", "circle=a", "--map", "square=b",
                       "--map", "triangle=skip", "--wait", "--json")
        job = json.loads(done.stdout)
        assert job["status"] == "succeeded" and job["done"] == 2 and "succeeded: 2/2" in done.stderr
        assert job["params"]["mapping_named"] == {"circle": "a", "square": "b", "triangle": None}
        stats = json.loads(run_cli(data, "review-stats", "Live", "--json").stdout)  # the API's review_stats
        assert stats["total"] == 2 and sum(r["model"] for r in stats["per_class"]) == job["result"]["boxes"]

        # A video through the API (uploaded, sampled by the app), then the health and duplicates endpoints.
        from ..test_video import frame_bgr, write_video

        clip = write_video(tmp_path / "clip.mp4", (frame_bgr(i) for i in range(40)), 10)
        video = json.loads(run_cli(data, "ingest", "Live", str(clip), "--sampling", "every:10", "--json").stdout)
        assert (video["dataset"], video["added"]) == ("clip", 4)
        assert [(v["read"], v["kept"], v["sampling"]) for v in video["videos"]] == [(40, 4, "every 10th frame")]
        health = json.loads(run_cli(data, "health", "Live", "--scope", "all", "--json").stdout)
        assert health["images"]["total"] == 6 and health["project"] == "Live"
        assert "6 image(s)" in run_cli(data, "health", "Live", "--scope", "all").stdout
        dups = json.loads(run_cli(data, "duplicates", "Live", "--json").stdout)
        assert dups["max_bits"] == 8 and dups["groups"] >= 1  # the clip's frames
        nothing = run_cli(data, "check-labels", "Live", "--model", "demo", "--map", "circle=a", "--map", "square=b",
                          check=False)
        assert nothing.returncode == 2 and "no approved images" in nothing.stderr
    finally:
        app.terminate()
        app.wait(timeout=30)

    # With the app gone, the CLI opens the store itself and sees what the app wrote.
    listed = json.loads(run_cli(data, "project", "list", "--json").stdout)
    assert [(p["name"], p["images"]) for p in listed] == [("Live", 6)]
    assert not (data / "app.json").exists()


def test_a_foreign_lock_holder_is_named(tmp_path):
    data = tmp_path / "data"
    run_cli(data, "project", "list")  # creates the database
    holder = subprocess.Popen(
        [sys.executable, "-c", "import duckdb, sys, time; con = duckdb.connect(sys.argv[1]); print('ok', flush=True); "
         "time.sleep(60)", str(data / "metadata.duckdb")],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "ok"
        proc = run_cli(data, "project", "list", check=False)
        assert proc.returncode == 2
        assert f"in use by process {holder.pid}" in proc.stderr
        assert "Traceback" not in proc.stderr
    finally:
        holder.kill()
        holder.wait()


def test_models_and_annotate_wait_without_the_app(tmp_path):
    """No app running: the CLI owns the store, starts its own worker and prints progress until done."""
    from annotator.demo import scenes

    data = tmp_path / "data"
    folder = tmp_path / "scenes"
    folder.mkdir()
    for i in range(5):
        (folder / f"s{i}.jpg").write_bytes(scenes.scene_jpeg(80_000 + i)[0])
    run_cli(data, "project", "create", "Shapes", "--classes", "circle,square,triangle")
    run_cli(data, "ingest", "Shapes", str(folder))
    added = json.loads(run_cli(data, "models", "add", "Shapes", str(scenes.DEMO_MODEL_PATH), "--name", "demo",
                               "--json").stdout)
    assert added["classes"] == ["circle", "square", "triangle"] and added["source"] == "uploaded"
    listed = run_cli(data, "models", "list", "Shapes").stdout
    assert "demo" in listed and added["sha256"][:12] in listed

    queued = run_cli(data, "annotate", "Shapes", "--model", "demo", "--device", "cpu", "--json")
    job = json.loads(queued.stdout)  # stdout stays the job's JSON; the note goes to stderr
    assert job["status"] == "queued" and f"job {job['id']} stays queued until the app" in queued.stderr
    assert "--wait" in queued.stderr
    run_cli(data, "jobs", "cancel", str(job["id"]))

    done = run_cli(data, "annotate", "Shapes", "--model", "demo", "--device", "cpu", "--wait")
    assert "job 2 succeeded: 5/5 images" in done.stderr
    assert "Job 2 succeeded:" in done.stdout and "on 5 image(s)" in done.stdout
    status = json.loads(run_cli(data, "jobs", "status", "2", "--json").stdout)
    assert status["status"] == "succeeded" and status["result"]["boxes"] > 0

    bad = tmp_path / "notes.pt"
    bad.write_text("not a model")
    refused = run_cli(data, "models", "add", "Shapes", str(bad), check=False)
    assert refused.returncode == 2 and "notes.pt" in refused.stderr


def test_doctor_reports_torch_and_the_device(tmp_path):
    out = run_cli(tmp_path / "data", "doctor", "--json").stdout
    info = json.loads(out)
    assert info["torch"] and info["device"] in ("cpu", "0", "mps") and "cuda_available" in info


@pytest.fixture
def running_app(tmp_path):
    """The app in this process (no worker: jobs stay queued) and the CLI's backend to its API."""
    from annotator import cli
    from annotator.launch import start
    from annotator.settings import Settings

    settings = Settings.from_env({"ANNOTATOR_DATA_DIR": str(tmp_path / "data"), "ANNOTATOR_DEMO": "0",
                                  "ANNOTATOR_LOCAL_WORKER": "0"}).with_overrides(port=free_port())
    app = start(settings, block=False, quiet=True)
    remote = cli.Backend.remote(app.url, settings)
    try:
        yield app, remote
    finally:
        remote.close()
        app.close()


def _through(monkeypatch, remote):
    """Make the CLI's commands use ``remote`` (the app holds the store: the CLI goes through its API)."""
    import contextlib

    from annotator import cli

    @contextlib.contextmanager
    def backend(settings):
        yield remote

    monkeypatch.setattr(cli, "backend", backend)
    return cli


def test_remote_annotate_reaches_start_annotation_with_exactly_the_options_given(running_app, monkeypatch, capsys,
                                                                                  tmp_path):
    """The old remote path sent 11 positional values in the tab's widget order: keywords cannot land on the
    wrong parameter. Every option differs from its default here, and the stored job says what it got."""
    from annotator.demo import scenes as demo

    app, remote = running_app
    svc = app.services
    p = svc.projects.create_project("Yard", ["disc", "box", "triangle"])
    folder = tmp_path / "cams"
    (folder / "north").mkdir(parents=True)
    for i in range(3):
        (folder / "north" / f"s{i}.jpg").write_bytes(demo.scene_jpeg(90_000 + i)[0])
    cli = _through(monkeypatch, remote)
    assert cli.main(["ingest", "Yard", str(folder), "--dataset", "north", "--json"]) == 0  # a folder goes zipped
    assert json.loads(capsys.readouterr().out)["added"] == 3
    assert cli.main(["models", "add", "Yard", str(demo.DEMO_MODEL_PATH), "--name", "shapes"]) == 0
    capsys.readouterr()
    args = ["annotate", "Yard", "--model", "shapes", "--dataset", "north", "--conf", "0.41", "--iou", "0.55",
            "--imgsz", "320", "--max-det", "17", "--device", "cpu", "--batch", "3", "--scope", "untouched",
            "--map", "circle=disc", "--map", "square=box", "--map", "triangle=skip", "--json"]
    assert cli.main(args) == 0
    printed = json.loads(capsys.readouterr().out)
    params = svc.jobs.get_job(printed["id"]).params
    assert {k: params[k] for k in ("datasets", "conf", "iou", "imgsz", "max_det", "device", "batch", "scope")} == {
        "datasets": ["north"], "conf": 0.41, "iou": 0.55, "imgsz": 320, "max_det": 17, "device": "cpu", "batch": 3,
        "scope": "untouched"}
    assert params["mapping_named"] == {"circle": "disc", "square": "box", "triangle": None}
    assert printed["params"] == params and svc.jobs.get_job(printed["id"]).created_by == "local"  # no login
    assert svc.projects.get_project(p.id).class_names == ["disc", "box", "triangle"]


def test_remote_and_local_answer_alike(running_app, tmp_path):
    """Backend.call gives the same JSON through the app's API as the services give in this process."""
    from annotator import cli

    app, remote = running_app
    local = cli.Backend(services=app.services)
    remote.call("projects", "create_project", name="Same", classes=["a", "b"], description="one")
    for domain, name, kwargs in (("projects", "list_projects", {}), ("projects", "project_details", {"project": "Same"}),
                                 ("images", "list_images", {"project": "Same", "page_size": 5}),
                                 ("review", "review_stats", {"project": "Same"}),
                                 ("splits", "split_summary", {"project": "Same"})):
        assert remote.call(domain, name, **kwargs) == local.call(domain, name, **kwargs), name
    with pytest.raises(cli.UserError, match="No project named 'Nope'"):
        remote.call("projects", "project_details", project="Nope")


def test_wait_says_the_app_stopped_instead_of_a_traceback():
    """Was: `--wait` through the app crashed with a traceback when the app died; now the CLI says which job is
    still recorded how (and exits 2, like every UserError)."""
    import httpx

    from annotator import cli
    from annotator.types import UserError

    class DeadApp:  # a remote backend whose app went away after the job was queued
        services = None

        def run_jobs_here(self):
            return None

        def call(self, domain, name, **kwargs):
            raise httpx.ConnectError("[Errno 111] Connection refused")

    job = {"id": 12, "status": "running", "done": 3, "total": 9}
    with pytest.raises(UserError, match=r"The app stopped answering \(ConnectError\); job 12 is still recorded as "
                                        r"running\..*annotator jobs resume 12"):
        cli._follow(None, DeadApp(), job, lambda j: "")


def test_ingest_of_several_folders_makes_a_dataset_per_folder(tmp_path, monkeypatch, capsys):
    """`ingest P north/ south/ a.jpg`: north and south each their own dataset (as --help says), the loose
    file in one upload-<time> dataset; --dataset puts everything into one."""
    from annotator import cli

    monkeypatch.setenv("ANNOTATOR_DATA_DIR", str(tmp_path / "data"))
    for name, seeds in (("north", (1, 2)), ("south", (3,))):
        (tmp_path / name).mkdir()
        for s in seeds:
            (tmp_path / name / f"{name}{s}.jpg").write_bytes(jpeg_bytes(64, 48, seed=s))
    (tmp_path / "loose.jpg").write_bytes(jpeg_bytes(64, 48, seed=4))
    assert cli.main(["project", "create", "Cams", "--classes", "car"]) == 0
    capsys.readouterr()
    assert cli.main(["ingest", "Cams", str(tmp_path / "north"), str(tmp_path / "south"), str(tmp_path / "loose.jpg"),
                     "--json"]) == 0
    uploads = json.loads(capsys.readouterr().out)["uploads"]
    assert [(u["dataset"], u["added"]) for u in uploads][:2] == [("north", 2), ("south", 1)]
    assert uploads[2]["dataset"].startswith("upload-") and uploads[2]["added"] == 1
    (tmp_path / "east").mkdir()
    (tmp_path / "east" / "e.jpg").write_bytes(jpeg_bytes(64, 48, seed=5))
    assert cli.main(["ingest", "Cams", str(tmp_path / "east"), str(tmp_path / "north"), "--dataset", "all",
                     "--json"]) == 0
    one = json.loads(capsys.readouterr().out)
    assert one["dataset"] == "all" and one["added"] == 1 and one["duplicates"] == 2
