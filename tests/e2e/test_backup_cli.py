"""`annotator backup` and `annotator fsck` while the app runs: they go through its API (the app owns DuckDB)."""

from __future__ import annotations

import json
import zipfile

import pytest

from annotator.services import Services
from annotator.services.backup import restore
from annotator.settings import Settings

from ..imagegen import jpeg_bytes
from ..support import free_port, run_cli

pytestmark = [pytest.mark.slow]


@pytest.fixture
def app(tmp_path):
    from annotator.launch import start

    settings = Settings.from_env({"ANNOTATOR_DATA_DIR": str(tmp_path / "data"), "ANNOTATOR_DEMO": "0",
                                  "ANNOTATOR_LOCAL_WORKER": "0"}).with_overrides(port=free_port())
    running = start(settings, block=False, quiet=True)
    try:
        yield running
    finally:
        running.close()


def test_backup_and_fsck_through_the_running_app(app, tmp_path):
    svc = app.services
    data = svc.settings.data_dir
    svc.projects.create_project("Live", ["a", "b"])
    archive = tmp_path / "photos.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for i in range(4):
            zf.writestr(f"{i}.jpg", jpeg_bytes(64, 48, seed=i))
    svc.images.add_images("Live", [archive])
    out = tmp_path / "out" / "live.tar"

    done = run_cli(data, "backup", str(out), "--json")
    assert "going through its API" in done.stderr
    report = json.loads(done.stdout)
    assert report["file"] == str(out) and out.stat().st_size == report["size_bytes"]
    assert report["rows"]["images"] == 4
    assert not list(svc.settings.backups_dir.glob("*.tar"))  # the app's copy was removed once fetched
    again = run_cli(data, "backup", str(out), check=False)
    assert again.returncode == 2 and "exists" in again.stderr

    restore(out, tmp_path / "restored")
    copy = Services.open(Settings.from_env({"ANNOTATOR_DATA_DIR": str(tmp_path / "restored"), "ANNOTATOR_DEMO": "0"}))
    try:
        assert [(p.name, p.num_images) for p in copy.projects.list_projects()] == [("Live", 4)]
    finally:
        copy.close()

    orphan = svc.settings.project_dir(1) / "images" / "zz" / ("ab" * 32 + ".jpg")
    orphan.parent.mkdir(parents=True)
    orphan.write_bytes(b"left by a crash")
    found = run_cli(data, "fsck", "--json", check=False)
    assert found.returncode == 1, found.stderr
    assert {p["kind"]: p["count"] for p in json.loads(found.stdout)["problems"]} == {"orphan_images": 1}
    run_cli(data, "fsck", "--repair")  # exit 0
    assert not orphan.exists() and run_cli(data, "fsck").returncode == 0


def test_backup_through_an_app_with_login(tmp_path, monkeypatch, capsys):
    """With auth on, the tar is fetched with the CLI's session (the file route is behind the login too)."""
    import contextlib

    from annotator import cli
    from annotator.launch import start

    settings = Settings.from_env({"ANNOTATOR_DATA_DIR": str(tmp_path / "data"), "ANNOTATOR_DEMO": "0",
                                  "ANNOTATOR_LOCAL_WORKER": "0", "ANNOTATOR_AUTH": "ann:secret"}
                                 ).with_overrides(port=free_port())
    running = start(settings, block=False, quiet=True)
    remote = cli.Backend.remote(running.url, settings)
    try:
        running.services.projects.create_project("Locked", ["a"], user="ann")  # ann: an admin (ANNOTATOR_AUTH)

        @contextlib.contextmanager
        def backend(_settings):
            yield remote

        monkeypatch.setattr(cli, "backend", backend)
        out = tmp_path / "locked.tar"
        assert cli.main(["backup", str(out), "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["rows"]["projects"] == 1
        restored = restore(out, tmp_path / "restored")
        assert restored["rows"]["projects"] == 1
        import httpx

        waiting = remote.call("backup", "backup")  # made, not yet discarded: not served without the session
        path = settings.backups_dir / waiting["name"]
        assert path.is_file()
        anonymous = httpx.get(f"{running.url}/gradio_api/file={path}", follow_redirects=False)
        assert anonymous.status_code != 200 and not anonymous.content.startswith(b"metadata.duckdb")
        assert remote.call("backup", "discard_backup", name=waiting["name"])["removed"] and not path.exists()
    finally:
        remote.close()
        running.close()
