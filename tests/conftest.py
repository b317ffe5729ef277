"""Shared fixtures. At import time, before anything imports gradio or ultralytics, every config/temp
folder those libraries use is pointed at a throw-away session folder, and both are forced offline.
Tests never touch the real data/ folder."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

SESSION_DIR = Path(tempfile.mkdtemp(prefix="annotator-tests-"))
for _key, _sub in (
    ("ANNOTATOR_DATA_DIR", "data"),
    ("YOLO_CONFIG_DIR", "yolo-config"),
    ("GRADIO_TEMP_DIR", "gradio-tmp"),
    ("MPLCONFIGDIR", "mpl-config"),
):
    (SESSION_DIR / _sub).mkdir(parents=True, exist_ok=True)
    os.environ[_key] = str(SESSION_DIR / _sub)
os.environ.update(
    YOLO_OFFLINE="1", YOLO_AUTOINSTALL="False", GRADIO_ANALYTICS_ENABLED="False", HF_HUB_OFFLINE="1"
)

import pytest  # noqa: E402

from annotator.services import Services  # noqa: E402
from annotator.settings import Settings  # noqa: E402

# Settings.prepare() writes these into os.environ; each test gets them back as they were.
PREPARE_ENV_KEYS = (
    "YOLO_CONFIG_DIR", "GRADIO_TEMP_DIR", "MPLCONFIGDIR", "YOLO_OFFLINE", "YOLO_AUTOINSTALL",
    "GRADIO_ANALYTICS_ENABLED", "HF_HUB_OFFLINE", "HF_HUB_DISABLE_TELEMETRY", "DO_NOT_TRACK",
)


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(SESSION_DIR, ignore_errors=True)


@pytest.fixture(autouse=True)
def _restore_prepared_env(monkeypatch):
    for key in PREPARE_ENV_KEYS:
        if key in os.environ:
            monkeypatch.setenv(key, os.environ[key])
        else:
            monkeypatch.delenv(key, raising=False)


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings.from_env({"ANNOTATOR_DATA_DIR": str(tmp_path / "data")})


@pytest.fixture
def services(settings):
    svc = Services.open(settings)
    try:
        yield svc
    finally:
        svc.close()


@pytest.fixture
def project(services):
    return services.projects.create_project("Shapes", ["circle", "square", "triangle"])
