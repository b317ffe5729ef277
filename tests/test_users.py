"""Users and roles: scrypt hashes (round trip, wrong password, a bad hash), the users file (errors name the file
and the line), plain ANNOTATOR_AUTH users as admins, and the file the CLI writes (mode 0600) read back."""

from __future__ import annotations

import asyncio
import logging
import stat

import pytest

from annotator.login import LoginThrottle
from annotator.settings import Settings
from annotator.types import UserError
from annotator.users import (Users, hash_password, parse_users_file, read_users_file, remove_user, upsert_user,
                             verify_password)

FAST = {"n": 2**4}  # tiny scrypt cost where the test is about parsing, not strength


def test_hash_round_trip_and_wrong_password():
    h = hash_password("correct horse")
    assert h.startswith("scrypt$16384$8$1$") and "correct horse" not in h
    assert verify_password("correct horse", h)
    assert not verify_password("correct hors", h)
    assert not verify_password("", h)
    assert hash_password("correct horse") != h  # a random salt each time
    assert not verify_password("x", "scrypt$16384$8$1$bad$bad")  # a damaged hash never verifies
    with pytest.raises(UserError, match="empty"):
        hash_password("")


def _line(name, password, role, **kw):
    return f"{name}:{hash_password(password, **kw)}:{role}"


def test_users_file_with_roles_comments_and_blank_lines(tmp_path):
    text = "# team\n\n" + "\n".join([_line("ann", "a-pass", "admin", **FAST), _line("bob", "b-pass", "annotator", **FAST),
                                     _line("cy", "c-pass", "viewer", **FAST)]) + "\n"
    users = Users(parse_users_file(text, "users file X"))
    assert [(u.name, u.role) for u in users] == [("ann", "admin"), ("bob", "annotator"), ("cy", "viewer")]
    assert users.verify("bob", "b-pass") and not users.verify("bob", "a-pass") and not users.verify("zed", "b-pass")
    assert users.role("cy") == "viewer" and users.role("zed") is None
    assert Users().role("anyone") == "admin"  # no login configured: single-user, everyone is an admin
    assert "b-pass" not in repr(users) and "scrypt" not in repr(users)


@pytest.mark.parametrize("line, words", [
    ("justaname", ["line 3", "justaname"]),
    ("bob:{hash}:superuser", ["line 3", "unknown role 'superuser'"]),
    ("bob:{hash}", ["line 3", "bob", "no role"]),
    ("bob:scrypt$1$2$3$x$y:admin", ["line 3", "bad password hash"]),
    ("ann:{hash}:viewer", ["line 3", "'ann' is listed twice", "line 2"]),
])
def test_users_file_errors_name_file_and_line(tmp_path, line, words):
    path = tmp_path / "users.txt"
    path.write_text("# comment\n" + _line("ann", "p", "admin", **FAST) + "\n"
                    + line.replace("{hash}", hash_password("p", **FAST)) + "\n", encoding="utf-8")
    with pytest.raises(UserError) as e:
        Settings.from_env({"ANNOTATOR_DATA_DIR": str(tmp_path), "ANNOTATOR_USERS_FILE": str(path)})
    for w in [str(path), *words]:
        assert w in str(e.value), (w, str(e.value))


def test_old_style_plain_line_is_an_admin_with_a_warning(tmp_path, caplog):
    path = tmp_path / "users.txt"
    path.write_text("carol:c:pass\n", encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="annotator.users"):
        s = Settings.from_env({"ANNOTATOR_DATA_DIR": str(tmp_path), "ANNOTATOR_USERS_FILE": str(path)})
    assert s.users.role("carol") == "admin" and s.users.verify("carol", "c:pass")
    assert "annotator users add carol" in caplog.text and "c:pass" not in caplog.text


def test_env_auth_users_are_admins_and_the_data_folder_file_is_read_by_default(tmp_path):
    upsert_user(tmp_path / "users.txt", "vi", "v-pass", "viewer")
    s = Settings.from_env({"ANNOTATOR_DATA_DIR": str(tmp_path), "ANNOTATOR_AUTH": "ann:secret"})
    assert s.users.role("ann") == "admin" and s.users.role("vi") == "viewer"
    assert s.auth == (("ann", "secret"),)  # the plain ones: what the CLI signs in with
    assert s.users_path == tmp_path / "users.txt"
    with pytest.raises(UserError, match="listed twice: vi"):
        Settings.from_env({"ANNOTATOR_DATA_DIR": str(tmp_path), "ANNOTATOR_AUTH": "vi:x"})


def test_upsert_writes_0600_atomically_and_update_changes_role(tmp_path):
    path = tmp_path / "sub" / "users.txt"
    upsert_user(path, "ann", "first-pass", "annotator")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert "first-pass" not in path.read_text()
    with pytest.raises(UserError, match="already exists.*--update"):
        upsert_user(path, "ann", "other", "admin")
    upsert_user(path, "ann", "second-pass", "admin", update=True)
    upsert_user(path, "bob", "b-pass", "viewer")
    users = Users(read_users_file(path))
    assert [(u.name, u.role) for u in users] == [("ann", "admin"), ("bob", "viewer")]
    assert users.verify("ann", "second-pass") and not users.verify("ann", "first-pass")
    remove_user(path, "bob")
    assert [u.name for u in read_users_file(path)] == ["ann"]
    with pytest.raises(UserError, match="no user 'bob'"):
        remove_user(path, "bob")
    assert [p.name for p in path.parent.iterdir()] == ["users.txt"]  # no temporary file left
    with pytest.raises(UserError, match="unknown role"):
        upsert_user(path, "cy", "x", "owner")


def test_login_accepts_the_hashed_password(tmp_path):
    path = tmp_path / "users.txt"
    upsert_user(path, "ann", "right-pass", "annotator")
    t = LoginThrottle(Users(read_users_file(path)))

    async def run():
        assert await t.check("ann", "right-pass", "10.0.0.1")
        assert not await t.check("ann", "wrong", "10.0.0.1")
        assert not await t.check("nobody", "right-pass", "10.0.0.1")

    asyncio.run(run())


def test_a_running_app_follows_the_users_file(tmp_path, caplog):
    """`annotator users add|remove` while the app runs: the next sign-in and the next write see the change."""
    from annotator.services import Services
    from annotator.types import Forbidden

    path = tmp_path / "users.txt"
    upsert_user(path, "ann", "a-pass", "admin", **{})
    upsert_user(path, "bob", "b-pass", "viewer")
    svc = Services.open(Settings.from_env({"ANNOTATOR_DATA_DIR": str(tmp_path), "ANNOTATOR_AUTH": "env:e-pass"}))
    try:
        login = LoginThrottle(svc.ctx.users_source)
        with pytest.raises(Forbidden, match="bob is a viewer"):
            svc.projects.create_project("P", ["a"], user="bob")
        upsert_user(path, "bob", "new-pass", "admin", update=True)
        assert svc.projects.create_project("P", ["a"], user="bob").name == "P"
        assert asyncio.run(login.check("bob", "new-pass", "10.9.9.9"))
        assert not asyncio.run(login.check("bob", "b-pass", "10.9.9.9"))
        remove_user(path, "bob")
        with pytest.raises(Forbidden, match="bob is not a user"):
            svc.projects.delete_project("P", "P", user="bob")
        path.write_text("broken line\n")  # a bad edit keeps the users as they were
        with caplog.at_level(logging.ERROR, logger="annotator.users"):
            assert svc.ctx.role("ann") == "admin"
        assert "line 1" in caplog.text
        path.unlink()  # no file left: only ANNOTATOR_AUTH users; nobody else (never "no login")
        assert svc.ctx.role("ann") is None and svc.ctx.role("env") == "admin" and svc.ctx.role("local") is None
    finally:
        svc.close()


def test_an_unknown_name_costs_a_hash_like_a_known_one(monkeypatch):
    import annotator.users as users_mod

    users = Users([users_mod.User("ann", "admin", password_hash=hash_password("a", **FAST)),
                   users_mod.User("env", "admin", plain="e")])
    calls = []
    real = users_mod.verify_password
    monkeypatch.setattr(users_mod, "verify_password", lambda p, h: calls.append(h) or real(p, h))
    assert not users.verify("nobody", "a") and not users.verify("env", "a") and users.verify("env", "e")
    assert users.verify("ann", "a")
    assert len(calls) == 4 and calls[0] == users_mod.dummy_hash()  # one hash per check, whoever is asked
