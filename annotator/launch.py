"""Start the app: open the store, build the UI, launch Gradio, and tell the CLI where we are.

While the app runs it owns DuckDB; ``data/app.json`` (pid + local URL) lets ``annotator ...``
go through the app's API instead of failing on the database lock.
"""

from __future__ import annotations

import atexit
import gc
import json
import os
import signal
import secrets
import socket
import sys
import threading
from dataclasses import dataclass, replace
from pathlib import Path

from .login import LoginThrottle
from .settings import Settings
from .types import UserError
from .users import Users, read_users_file, upsert_user
from .worker_files import worker_routes


@dataclass
class RunningApp:
    url: str
    services: object
    demo: object
    info_path: Path
    monitor: object = None

    def close(self) -> None:
        try:
            self.demo.close()
        finally:
            if self.monitor is not None:
                self.monitor.stop()
            self.services.close()
            _remove_info(self.info_path)


def local_url(host: str, port: int) -> str:
    reach = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    return f"http://{reach}:{port}"


def _remove_info(path: Path) -> None:
    try:
        if json.loads(path.read_text()).get("pid") == os.getpid():
            path.unlink()
    except (OSError, ValueError):
        pass


def _sigterm_as_interrupt(signum, frame):
    raise KeyboardInterrupt


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def start_jobs(services, local_worker: bool, interval: float = 0.5):
    """The job monitor (ingests what workers report, reconciles jobs left running by a previous run) and,
    with ``local_worker``, a worker child process it keeps alive. Returns the started monitor."""
    from jobs.worker import LocalWorker

    from .services.monitor import JobMonitor

    worker = LocalWorker(services.settings) if local_worker else None
    return JobMonitor(services.ctx, interval=interval, worker=worker).start()


FIRST_ADMIN = "admin"


def ensure_first_admin(settings: Settings, out=None) -> Settings:
    """With ``ANNOTATOR_FIRST_ADMIN=1`` (the Docker image) and no user configured anywhere, on the first
    start: create the user ``admin`` with a random password in the users file (only its hash is stored) and
    print the password once, in a box, like a notebook server's token. Later starts find the file (or the
    users) and print nothing secret. Returns the settings with the users as they are now."""
    if not settings.first_admin or settings.users or settings.users_path.exists():
        return settings
    out = out if out is not None else sys.stdout
    password = secrets.token_urlsafe(12)
    upsert_user(settings.users_path, FIRST_ADMIN, password, "admin")
    lines = [f"Auto Annotator: first start, created user {FIRST_ADMIN} with password {password}",
             f"(only its hash is stored, in {settings.users_path}; this is the only time it is shown)",
             f"Change it with: annotator users add {FIRST_ADMIN} --update"]
    width = max(len(line) for line in lines)
    box = ["+" + "-" * (width + 2) + "+", *(f"| {line:<{width}} |" for line in lines), "+" + "-" * (width + 2) + "+"]
    print("\n".join(box), file=out, flush=True)
    return replace(settings, users=Users(read_users_file(settings.users_path)))


def log_to_stderr() -> None:
    """The app's own log lines (who changed a class or deleted a project, refused actions, sign-in failures,
    users-file reloads) on stderr, timestamped, unless the embedding program configured logging itself."""
    import logging

    ours = logging.getLogger("annotator")
    if ours.handlers or logging.getLogger().handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    ours.addHandler(handler)
    ours.setLevel(logging.INFO)


def prepare_launch(settings: Settings, out=None) -> Settings:
    """Before anything starts: the first-start admin (when configured), then the checks that refuse an unsafe
    or impossible launch (a public address or --share without login, a bad port)."""
    settings = ensure_first_admin(settings, out)
    settings.validate_launch()
    return settings


def start(settings: Settings, *, block: bool = True, quiet: bool = False) -> RunningApp:
    """Launch the app. With ``block=False`` it returns once the server is up (tests, embedding)."""
    settings = prepare_launch(settings)
    if block:  # the real server (tests and embedders that launch with block=False keep their logging)
        log_to_stderr()
    settings.prepare()  # before importing gradio: it reads GRADIO_TEMP_DIR at import time
    if not _port_free(settings.host, settings.port):
        raise UserError(
            f"Port {settings.port} on {settings.host} is already in use (another Auto Annotator?). "
            "Stop it or choose another port with --port / ANNOTATOR_PORT."
        )
    from .services import Services

    services = Services.open(settings)
    monitor = None
    try:
        if settings.demo:
            services.images.ensure_demo()
        # Reconciles jobs left running by a previous run, ingests results, keeps the local worker alive.
        monitor = start_jobs(services, settings.local_worker)
        services.similar.start_backfill()  # near-duplicate hashes of images uploaded before they were made
        import gradio as gr

        from .ui import CSS, TITLE, build_app
        from .ui.uploads import sweep_leftovers

        sweep_leftovers(settings.tmp_dir / "gradio")  # partial uploads of a run that was killed

        # Thumbnails and images are served from the data folder directly, without copies in the cache.
        gr.set_static_paths([str(settings.projects_dir)])
        demo = build_app(services)
        demo.queue(default_concurrency_limit=8)
        url = local_url(settings.host, settings.port)
        info = {"pid": os.getpid(), "url": url, "data_dir": str(settings.data_dir)}
        settings.app_info_path.write_text(json.dumps(info))
        atexit.register(_remove_info, settings.app_info_path)
        if not quiet:
            print(f"{TITLE}: data in {settings.data_dir}; open {url}", flush=True)
        # The app's long-lived objects (Gradio's blocks, modules) out of the garbage collector's sight: a full
        # collection of them paused the server for ~0.3 s now and then, in the middle of an editor's save.
        gc.collect()
        gc.freeze()
        if block and threading.current_thread() is threading.main_thread():
            # docker stop / kill send SIGTERM: shut down like Ctrl+C so the store closes cleanly.
            signal.signal(signal.SIGTERM, _sigterm_as_interrupt)
        demo.launch(
            server_name=settings.host,
            server_port=settings.port,
            share=settings.share,
            # a coroutine function; it checks the users file as it is at each sign-in
            auth=LoginThrottle(services.ctx.users_source).check if settings.users else None,
            auth_message="Auto Annotator: sign in" if settings.users else None,
            prevent_thread_lock=not block,
            quiet=quiet,
            theme=gr.themes.Soft(),
            css=CSS,
            footer_links=["api", "settings"],
            app_kwargs={"routes": worker_routes(settings)},  # files for workers without the data folder
        )
    except BaseException:
        if monitor is not None:
            monitor.stop()
        services.close()
        _remove_info(settings.app_info_path)
        raise
    running = RunningApp(url, services, demo, settings.app_info_path, monitor)
    if block:  # launch() returned: the server stopped
        running.close()
    return running
