import os
from pathlib import Path

import pytest

from annotator.settings import DEFAULT_PORT, Settings, parse_auth
from annotator.types import UserError


def test_defaults(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    s = Settings.from_env({})
    assert s.data_dir == (tmp_path / "data").resolve()
    assert (s.host, s.port, s.share, s.auth, s.device) == ("127.0.0.1", DEFAULT_PORT, False, (), "auto")
    assert s.max_image_pixels == 178_956_970 and s.max_zip_ratio == 200 and s.ingest_threads == 0
    assert s.db_path == s.data_dir / "metadata.duckdb"
    assert s.project_dir(7) == s.data_dir / "projects" / "7"
    assert not (tmp_path / "data").exists(), "from_env must not create anything"


def test_overrides(tmp_path):
    s = Settings.from_env({
        "ANNOTATOR_DATA_DIR": str(tmp_path / "d"),
        "ANNOTATOR_HOST": "0.0.0.0",
        "ANNOTATOR_PORT": "8080",
        "ANNOTATOR_SHARE": "yes",
        "ANNOTATOR_AUTH": "ann:secret",
        "ANNOTATOR_DEVICE": " cuda:1 ",
        "ANNOTATOR_MAX_IMAGE_PIXELS": "1_000_000",
        "ANNOTATOR_MAX_FILE_BYTES": "2048",
        "ANNOTATOR_MAX_UPLOAD_BYTES": "4096",
        "ANNOTATOR_MAX_ZIP_RATIO": "50",
        "ANNOTATOR_INGEST_THREADS": "3",
    })
    assert s.data_dir == tmp_path / "d"
    assert (s.host, s.port, s.share, s.device) == ("0.0.0.0", 8080, True, "cuda:1")
    assert s.auth == (("ann", "secret"),)
    assert (s.max_image_pixels, s.max_file_bytes, s.max_upload_bytes, s.max_zip_ratio, s.ingest_threads) == (
        1_000_000, 2048, 4096, 50, 3)
    s.validate_launch()  # share with auth is fine


def test_with_overrides_ignores_none(tmp_path):
    s = Settings.from_env({"ANNOTATOR_DATA_DIR": str(tmp_path)})
    t = s.with_overrides(port=9000, host=None)
    assert t.port == 9000 and t.host == s.host and s.port == DEFAULT_PORT


@pytest.mark.parametrize("raw,expected", [("1", True), ("true", True), (" ON ", True), ("No", False),
                                          ("0", False), ("", False)])
def test_boolean_values(tmp_path, raw, expected):
    s = Settings.from_env({"ANNOTATOR_DATA_DIR": str(tmp_path), "ANNOTATOR_SHARE": raw})
    assert s.share is expected


@pytest.mark.parametrize("raw", ["maybe", "2", "yess"])
def test_bad_boolean_names_variable(tmp_path, raw):
    with pytest.raises(UserError) as e:
        Settings.from_env({"ANNOTATOR_DATA_DIR": str(tmp_path), "ANNOTATOR_SHARE": raw})
    assert "ANNOTATOR_SHARE" in str(e.value) and raw in str(e.value)


@pytest.mark.parametrize(
    "var,raw",
    [
        ("ANNOTATOR_PORT", "http"),
        ("ANNOTATOR_PORT", "0"),
        ("ANNOTATOR_PORT", "80.5"),
        ("ANNOTATOR_MAX_IMAGE_PIXELS", "lots"),
        ("ANNOTATOR_MAX_UPLOAD_BYTES", "0"),
        ("ANNOTATOR_MAX_ZIP_RATIO", "-3"),
        ("ANNOTATOR_INGEST_THREADS", "four"),
        ("ANNOTATOR_INGEST_THREADS", "-1"),
    ],
)
def test_bad_int_names_variable(tmp_path, var, raw):
    with pytest.raises(UserError) as e:
        Settings.from_env({"ANNOTATOR_DATA_DIR": str(tmp_path), var: raw})
    assert var in str(e.value)


def test_auth_pairs():
    assert parse_auth("u:p, u2:p2:with:colons ,", "X") == (("u", "p"), ("u2", "p2:with:colons"))
    assert parse_auth("a:1\n# comment\n\nb:2\n", "X") == (("a", "1"), ("b", "2"))


@pytest.mark.parametrize("text,entry", [("u:p,nopassword", 2), ("u:p,u2:", 2), (":p", 1), ("a:1,b:2,  :x", 3)])
def test_auth_bad_entry_is_named(text, entry):
    with pytest.raises(UserError) as e:
        parse_auth(text, "ANNOTATOR_AUTH")
    msg = str(e.value)
    assert msg.startswith("ANNOTATOR_AUTH") and f"entry {entry}" in msg


def test_auth_duplicate_user():
    with pytest.raises(UserError, match="listed twice: bob"):
        parse_auth("bob:1,amy:2,bob:3", "ANNOTATOR_AUTH")


def test_auth_from_env_and_users_file(tmp_path):
    users = tmp_path / "users.txt"
    users.write_text("# team\ncarol:c-pass\n\ndave:d:pass\n", encoding="utf-8")
    s = Settings.from_env({"ANNOTATOR_DATA_DIR": str(tmp_path), "ANNOTATOR_AUTH": "ann:a",
                           "ANNOTATOR_USERS_FILE": str(users)})
    assert s.auth == (("ann", "a"), ("carol", "c-pass"), ("dave", "d:pass"))
    assert "c-pass" not in repr(s), "passwords must not show in repr"


def test_users_file_bad_line_names_file_and_line(tmp_path):
    users = tmp_path / "users.txt"
    users.write_text("carol:c\njustaname\n", encoding="utf-8")
    with pytest.raises(UserError) as e:
        Settings.from_env({"ANNOTATOR_DATA_DIR": str(tmp_path), "ANNOTATOR_USERS_FILE": str(users)})
    assert str(users) in str(e.value) and "line 2" in str(e.value) and "justaname" in str(e.value)


def test_users_file_missing(tmp_path):
    with pytest.raises(UserError, match="ANNOTATOR_USERS_FILE.*no such file"):
        Settings.from_env({"ANNOTATOR_DATA_DIR": str(tmp_path), "ANNOTATOR_USERS_FILE": str(tmp_path / "nope")})


def test_user_in_both_env_and_file_is_refused(tmp_path):
    users = tmp_path / "users.txt"
    users.write_text("ann:other\n", encoding="utf-8")
    with pytest.raises(UserError, match="listed twice: ann"):
        Settings.from_env({"ANNOTATOR_DATA_DIR": str(tmp_path), "ANNOTATOR_AUTH": "ann:a",
                           "ANNOTATOR_USERS_FILE": str(users)})


def test_validate_launch_refuses_share_without_auth(tmp_path):
    s = Settings.from_env({"ANNOTATOR_DATA_DIR": str(tmp_path), "ANNOTATOR_SHARE": "1"})
    with pytest.raises(UserError, match="ANNOTATOR_AUTH"):
        s.validate_launch()
    Settings.from_env({"ANNOTATOR_DATA_DIR": str(tmp_path)}).validate_launch()  # no share: fine


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20", "example.org"])
def test_validate_launch_refuses_a_public_address_without_login(tmp_path, host):
    s = Settings.from_env({"ANNOTATOR_DATA_DIR": str(tmp_path), "ANNOTATOR_HOST": host})
    with pytest.raises(UserError) as e:
        s.validate_launch()
    assert f"ANNOTATOR_HOST={host}" in str(e.value) and "ANNOTATOR_ALLOW_ANONYMOUS=1" in str(e.value)
    assert "annotator users add" in str(e.value)
    Settings.from_env({"ANNOTATOR_DATA_DIR": str(tmp_path), "ANNOTATOR_HOST": host,
                       "ANNOTATOR_ALLOW_ANONYMOUS": "1"}).validate_launch()
    Settings.from_env({"ANNOTATOR_DATA_DIR": str(tmp_path), "ANNOTATOR_HOST": host,
                       "ANNOTATOR_AUTH": "ann:secret"}).validate_launch()


@pytest.mark.parametrize("host", ["127.0.0.1", "127.3.2.1", "::1", "localhost", "[::1]"])
def test_validate_launch_allows_loopback_without_login(tmp_path, host):
    Settings.from_env({"ANNOTATOR_DATA_DIR": str(tmp_path), "ANNOTATOR_HOST": host}).validate_launch()


def test_validate_launch_port_range(tmp_path):
    s = Settings.from_env({"ANNOTATOR_DATA_DIR": str(tmp_path), "ANNOTATOR_PORT": "70000"})
    with pytest.raises(UserError, match="70000"):
        s.validate_launch()


def test_prepare_creates_folders_and_contains_env(tmp_path):
    s = Settings.from_env({"ANNOTATOR_DATA_DIR": str(tmp_path / "data")})
    assert s.prepare() is s
    for d in (s.data_dir, s.projects_dir, s.tmp_dir / "gradio", s.config_dir / "Ultralytics"):
        assert d.is_dir(), d
    assert Path(os.environ["YOLO_CONFIG_DIR"]) == s.config_dir
    assert Path(os.environ["GRADIO_TEMP_DIR"]) == s.tmp_dir / "gradio"
    for key in ("YOLO_CONFIG_DIR", "GRADIO_TEMP_DIR", "MPLCONFIGDIR"):
        assert Path(os.environ[key]).is_relative_to(s.data_dir), key
    assert os.environ["YOLO_OFFLINE"] == "1" and os.environ["HF_HUB_OFFLINE"] == "1"
    for font in ("Arial.ttf", "Arial.Unicode.ttf"):
        f = s.config_dir / "Ultralytics" / font
        assert f.is_file() and f.stat().st_size > 10_000, font
        assert f.read_bytes()[:4] in (b"\x00\x01\x00\x00", b"true"), "a TrueType font"
    assert not list((s.config_dir / "Ultralytics").glob("*.tmp"))
    s.prepare()  # idempotent


def test_prepare_keeps_explicit_offline_opt_out(tmp_path, monkeypatch):
    monkeypatch.setenv("YOLO_OFFLINE", "0")
    Settings.from_env({"ANNOTATOR_DATA_DIR": str(tmp_path)}).prepare()
    assert os.environ["YOLO_OFFLINE"] == "0"


def test_suite_environment_is_contained():
    repo_data = (Path(__file__).resolve().parents[1] / "data").resolve()
    s = Settings.from_env()  # the process environment, as conftest left it
    assert s.data_dir != repo_data and not s.data_dir.is_relative_to(repo_data)
    assert Path(os.environ["ANNOTATOR_DATA_DIR"]).name == "data"
    assert Path(os.environ["ANNOTATOR_DATA_DIR"]).parent.name.startswith("annotator-tests-")
    for key in ("YOLO_CONFIG_DIR", "GRADIO_TEMP_DIR", "MPLCONFIGDIR"):
        assert Path(os.environ[key]).parent == Path(os.environ["ANNOTATOR_DATA_DIR"]).parent, key
    assert os.environ["YOLO_OFFLINE"] == "1" and os.environ["HF_HUB_OFFLINE"] == "1"
    assert os.environ["GRADIO_ANALYTICS_ENABLED"] == "False" and os.environ["YOLO_AUTOINSTALL"] == "False"
