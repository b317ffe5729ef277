"""`annotator users add|list|remove`: the password from stdin (no terminal), a 0600 users file in the data
folder that the app then reads and signs in with; the CLI's credentials for a running app with login."""

from __future__ import annotations

import asyncio
import io
import json
import os
import stat
import subprocess
import sys

import pytest

from annotator.cli import cli_credentials, main
from annotator.login import LoginThrottle
from annotator.settings import Settings
from annotator.types import UserError
from annotator.users import upsert_user

from .support import ROOT


def test_users_add_through_the_cli_entry_writes_a_file_the_app_accepts(tmp_path):
    data = tmp_path / "data"
    env = {**os.environ, "ANNOTATOR_DATA_DIR": str(data)}
    env.pop("ANNOTATOR_USERS_FILE", None)
    env.pop("ANNOTATOR_AUTH", None)
    proc = subprocess.run([sys.executable, "-m", "annotator", "users", "add", "ann", "--role", "annotator"],
                          input="s3cret pass\nignored second line\n", cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    path = data / "users.txt"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert "s3cret" not in path.read_text() and "ann:scrypt$" in path.read_text()

    settings = Settings.from_env({"ANNOTATOR_DATA_DIR": str(data)})  # read by default from the data folder
    assert settings.users.role("ann") == "annotator"
    login = LoginThrottle(settings.users)
    assert asyncio.run(login.check("ann", "s3cret pass", "10.1.1.1"))
    assert not asyncio.run(login.check("ann", "s3cret", "10.1.1.1"))
    settings.with_overrides(host="0.0.0.0").validate_launch()  # login configured: may listen on the network


def _cli(monkeypatch, capsys, *args, stdin=""):
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    rc = main(list(args))
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_users_list_update_remove(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ANNOTATOR_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("ANNOTATOR_AUTH", raising=False)
    monkeypatch.delenv("ANNOTATOR_USERS_FILE", raising=False)
    assert _cli(monkeypatch, capsys, "users", "add", "bob", "--role", "viewer", stdin="pw1\n")[0] == 0
    rc, _, err = _cli(monkeypatch, capsys, "users", "add", "bob", "--role", "admin", stdin="pw2\n")
    assert rc == 2 and "already exists" in err and "--update" in err
    assert _cli(monkeypatch, capsys, "users", "add", "bob", "--role", "admin", "--update", stdin="pw2\n")[0] == 0
    rc, _, err = _cli(monkeypatch, capsys, "users", "add", "cy", stdin="\n")
    assert rc == 2 and "empty" in err
    rc, out, _ = _cli(monkeypatch, capsys, "users", "list", "--json")
    assert rc == 0 and json.loads(out) == [{"name": "bob", "role": "admin", "hashed": True}]
    users = Settings.from_env({"ANNOTATOR_DATA_DIR": str(tmp_path)}).users
    assert users.verify("bob", "pw2") and not users.verify("bob", "pw1")
    assert _cli(monkeypatch, capsys, "users", "remove", "bob")[0] == 0
    assert Settings.from_env({"ANNOTATOR_DATA_DIR": str(tmp_path)}).users.role("bob") == "admin"  # no users: no login
    rc, _, err = _cli(monkeypatch, capsys, "users", "remove", "bob")
    assert rc == 2 and "no user 'bob'" in err


def test_users_add_writes_the_configured_file_even_when_it_does_not_exist_yet(tmp_path, monkeypatch, capsys):
    path = tmp_path / "etc" / "team.txt"
    monkeypatch.setenv("ANNOTATOR_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("ANNOTATOR_USERS_FILE", str(path))
    assert _cli(monkeypatch, capsys, "users", "add", "ann", "--role", "admin", stdin="pw\n")[0] == 0
    assert Settings.from_env().users.role("ann") == "admin"


def test_cli_credentials_for_the_running_app(tmp_path):
    no_login = Settings.from_env({"ANNOTATOR_DATA_DIR": str(tmp_path)})
    assert cli_credentials(no_login, env={}) is None
    assert cli_credentials(no_login, env={"ANNOTATOR_CLI_USER": "bob", "ANNOTATOR_CLI_PASSWORD": "x"}) == ("bob", "x")
    env_auth = Settings.from_env({"ANNOTATOR_DATA_DIR": str(tmp_path), "ANNOTATOR_AUTH": "ann:a-pass"})
    assert cli_credentials(env_auth, env={}) == ("ann", "a-pass")
    assert cli_credentials(env_auth, env={"ANNOTATOR_CLI_USER": "bob", "ANNOTATOR_CLI_PASSWORD": "b"}) == ("bob", "b")
    upsert_user(tmp_path / "users.txt", "cy", "c-pass", "viewer")
    hashed = Settings.from_env({"ANNOTATOR_DATA_DIR": str(tmp_path)})
    with pytest.raises(UserError, match="ANNOTATOR_CLI_USER and ANNOTATOR_CLI_PASSWORD"):
        cli_credentials(hashed, env={}, tty=False)


@pytest.mark.slow
def test_the_cli_through_a_running_app_acts_with_its_user_s_role(tmp_path, monkeypatch):
    from annotator.cli import Backend
    from annotator.launch import start

    from .support import free_port

    data = tmp_path / "data"
    upsert_user(data / "users.txt", "ann", "a-pass", "admin")
    upsert_user(data / "users.txt", "cy", "c-pass", "viewer")
    settings = Settings.from_env({"ANNOTATOR_DATA_DIR": str(data), "ANNOTATOR_DEMO": "0",
                                  "ANNOTATOR_LOCAL_WORKER": "0"}).with_overrides(port=free_port())
    app = start(settings, block=False, quiet=True)
    try:
        monkeypatch.setenv("ANNOTATOR_CLI_USER", "cy")
        monkeypatch.setenv("ANNOTATOR_CLI_PASSWORD", "c-pass")
        viewer = Backend.remote(app.url, settings)
        try:
            with pytest.raises(UserError, match="Creating a project needs the admin role; cy is a viewer"):
                viewer.call("projects", "create_project", name="Lot", classes=["car"])
            assert viewer.call("projects", "list_projects") == []
        finally:
            viewer.close()
        monkeypatch.setenv("ANNOTATOR_CLI_USER", "ann")
        monkeypatch.setenv("ANNOTATOR_CLI_PASSWORD", "a-pass")
        admin = Backend.remote(app.url, settings)
        try:
            assert admin.call("projects", "create_project", name="Lot", classes=["car"])["name"] == "Lot"
            assert admin.call("users", "whoami") == {"user": "ann", "role": "admin", "login": True,
                                                     "can": ["viewer", "annotator", "admin"]}
        finally:
            admin.close()
    finally:
        app.close()
