"""Safe exposure: the app refuses a network address without login (exit 2, naming ANNOTATOR_HOST and the
fixes); the Docker image's first start creates `admin` with a random password, stores only its hash and
prints the password once; later starts create nothing and print no password."""

from __future__ import annotations

import asyncio
import io
import stat

import pytest

from annotator.cli import main
from annotator.launch import prepare_launch
from annotator.login import LoginThrottle
from annotator.settings import Settings
from annotator.types import UserError


def test_serve_on_all_interfaces_without_login_exits_2(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ANNOTATOR_DATA_DIR", str(tmp_path / "data"))
    for var in ("ANNOTATOR_AUTH", "ANNOTATOR_USERS_FILE", "ANNOTATOR_ALLOW_ANONYMOUS", "ANNOTATOR_FIRST_ADMIN"):
        monkeypatch.delenv(var, raising=False)
    assert main(["serve", "--host", "0.0.0.0"]) == 2
    err = capsys.readouterr().err
    assert "ANNOTATOR_HOST=0.0.0.0" in err and "ANNOTATOR_ALLOW_ANONYMOUS=1" in err and "annotator users add" in err
    assert not (tmp_path / "data" / "metadata.duckdb").exists()  # refused before anything started


def _docker_like(tmp_path, **extra):
    return Settings.from_env({"ANNOTATOR_DATA_DIR": str(tmp_path / "data"), "ANNOTATOR_HOST": "0.0.0.0",
                              "ANNOTATOR_FIRST_ADMIN": "1", **extra})


def test_first_start_creates_admin_and_prints_the_password_once(tmp_path):
    out = io.StringIO()
    settings = prepare_launch(_docker_like(tmp_path), out)
    text = out.getvalue()
    line = next(x for x in text.splitlines() if "created user admin with password" in x)
    password = line.split("with password ", 1)[1].strip(" |")
    assert len(password) >= 12 and "annotator users add admin --update" in text
    path = tmp_path / "data" / "users.txt"
    stored = path.read_text()
    assert password not in stored and "admin:scrypt$" in stored and stored.rstrip().endswith(":admin")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert settings.users.role("admin") == "admin"
    assert asyncio.run(LoginThrottle(settings.users).check("admin", password, "10.0.0.2"))

    again = io.StringIO()
    later = prepare_launch(_docker_like(tmp_path), again)  # the second start: the file is there
    assert again.getvalue() == "" and path.read_text() == stored
    assert later.users.verify("admin", password)


def test_first_admin_is_not_created_when_users_are_configured(tmp_path):
    out = io.StringIO()
    settings = prepare_launch(_docker_like(tmp_path, ANNOTATOR_AUTH="ann:secret"), out)
    assert out.getvalue() == "" and not (tmp_path / "data" / "users.txt").exists()
    assert [u.name for u in settings.users] == ["ann"]


def test_without_first_admin_a_public_address_still_needs_login(tmp_path):
    settings = Settings.from_env({"ANNOTATOR_DATA_DIR": str(tmp_path / "data"), "ANNOTATOR_HOST": "0.0.0.0"})
    with pytest.raises(UserError, match="ANNOTATOR_HOST=0.0.0.0"):
        prepare_launch(settings, io.StringIO())
    assert not (tmp_path / "data" / "users.txt").exists()
    prepare_launch(settings.with_overrides(allow_anonymous=True), io.StringIO())


def test_the_served_app_logs_who_changed_what_on_stderr(monkeypatch, capsys):
    import logging

    from annotator.launch import log_to_stderr

    ours, root = logging.getLogger("annotator"), logging.getLogger()
    monkeypatch.setattr(ours, "handlers", [])
    monkeypatch.setattr(root, "handlers", [])
    monkeypatch.setattr(ours, "level", ours.level)
    log_to_stderr()
    logging.getLogger("annotator.audit").info("%s: deleted project %r", "ann", "Yard")
    assert "annotator.audit INFO ann: deleted project 'Yard'" in capsys.readouterr().err
