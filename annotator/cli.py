"""``python -m annotator ...``: the same services as the app, scriptable (``--json`` on every command).

While the app runs it holds the DuckDB lock. Commands then go through the running app's Gradio API
(found via ``data/app.json``); if no app answers, the error says which process holds the database.
"""

from __future__ import annotations

import argparse
import html
import json
import os
import sys
import tempfile
import zipfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .settings import Settings
from .types import StoreBusy, UserError


# --- backends: the services in this process, or the running app over HTTP ----------------------------
class LocalBackend:
    def __init__(self, settings: Settings):
        from .services import Services

        self.services = Services.open(settings)

    def close(self) -> None:
        self.services.close()

    def create_project(self, name: str, classes: list[str], description: str) -> dict:
        p = self.services.create_project(name, classes, description, user=os.environ.get("USER") or "cli")
        return self.services.project_details(p).as_dict()

    def list_projects(self) -> list[dict]:
        return [p.as_dict() for p in self.services.list_projects()]

    def ingest(self, project: str, paths: list[Path], dataset: str | None) -> dict:
        def progress(done: int, total: int, name: str) -> None:
            if sys.stderr.isatty():
                print(f"\r{done}/{total} {name[-60:]:<60}", end="", file=sys.stderr, flush=True)

        report = self.services.add_images(project, paths, dataset, user=os.environ.get("USER") or "cli",
                                          progress=progress)
        if sys.stderr.isatty():
            print(file=sys.stderr)
        return report.as_dict()


class RemoteBackend:
    """Talks to the running app through its Gradio API (the endpoints the UI uses)."""

    def _call(self, *args, api_name: str):
        from gradio_client.exceptions import AppError

        try:
            return self.client.predict(*args, api_name=api_name)
        except AppError as e:  # the app's own message (HTML-escaped for the browser)
            raise UserError(html.unescape(getattr(e, "message", None) or str(e))) from None

    def __init__(self, url: str, settings: Settings):
        from gradio_client import Client

        auth = settings.auth[0] if settings.auth else None
        self.client = Client(url, auth=auth, verbose=False)
        self.url = url

    def close(self) -> None:
        self.client.close()

    def create_project(self, name: str, classes: list[str], description: str) -> dict:
        return self._call(name, "\n".join(classes), description, api_name="/create_project")

    def list_projects(self) -> list[dict]:
        return self._call(api_name="/list_projects")

    def ingest(self, project: str, paths: list[Path], dataset: str | None) -> dict:
        from gradio_client import handle_file

        with tempfile.TemporaryDirectory(prefix="annotator-cli-") as tmp:
            files = []
            for path in paths:
                if path.is_dir():  # the API takes files: send a folder as an uncompressed zip
                    archive = Path(tmp) / f"{path.name or 'folder'}.zip"
                    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as zf:
                        for f in sorted(path.rglob("*")):
                            if f.is_file() and not f.is_symlink():
                                zf.write(f, f.relative_to(path).as_posix())
                    path = archive
                files.append(handle_file(str(path)))
            return self._call(project, files, dataset or "", api_name="/upload_images")


def _running_app_url(settings: Settings) -> str | None:
    try:
        info = json.loads(settings.app_info_path.read_text())
        os.kill(int(info["pid"]), 0)
        return str(info["url"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


@contextmanager
def backend(settings: Settings) -> Iterator[LocalBackend | RemoteBackend]:
    try:
        b = LocalBackend(settings)
    except StoreBusy as busy:
        url = _running_app_url(settings)
        if url is None:
            raise
        try:
            b = RemoteBackend(url, settings)
        except Exception as e:  # noqa: BLE001 - any connection failure: say what we tried
            raise UserError(f"{busy} The app's API at {url} did not answer: {e}") from None
        print(f"(the app is running: going through its API at {url})", file=sys.stderr)
    try:
        yield b
    finally:
        b.close()


# --- commands ------------------------------------------------------------------------------------------
def _print(args, data, human: str) -> None:
    print(json.dumps(data, indent=2, default=str) if args.json else human)


def cmd_serve(args, settings: Settings) -> int:
    from .launch import start

    start(settings.with_overrides(host=args.host, port=args.port, share=args.share or None))
    return 0


def cmd_project_create(args, settings: Settings) -> int:
    classes = [c for c in args.classes.split(",")] if args.classes else []
    with backend(settings) as b:
        d = b.create_project(args.name, classes, args.description or "")
    names = ", ".join(f"{c['index']}:{c['name']}" for c in d["classes"])
    _print(args, d, f"Created project {d['name']!r} (id {d['id']}) with classes {names}")
    return 0


def cmd_project_list(args, settings: Settings) -> int:
    with backend(settings) as b:
        rows = b.list_projects()
    if not rows:
        _print(args, rows, "No projects yet. Create one: python -m annotator project create NAME --classes a,b,c")
        return 0
    width = max(len(r["name"]) for r in rows)
    lines = [f"{'name':<{width}}  {'images':>7} {'approved':>8} {'boxes':>8} {'classes':>7} {'datasets':>8}"]
    for r in rows:
        lines.append(f"{r['name']:<{width}}  {r['images']:>7} {r['approved']:>8} {r['boxes']:>8} "
                     f"{r['classes']:>7} {r['datasets']:>8}")
    _print(args, rows, "\n".join(lines))
    return 0


def cmd_ingest(args, settings: Settings) -> int:
    paths = [Path(p).expanduser() for p in args.paths]
    for p in paths:
        if not p.exists():
            raise UserError(f"{p}: no such file or folder")
    with backend(settings) as b:
        r = b.ingest(args.project, paths, args.dataset)
    lines = [f"Added {r['added']} image(s) to {r['project']}/{r['dataset']}; "
             f"{r['duplicates']} duplicate(s), {r['skipped']} skipped ({r['seconds']:.1f} s)"]
    lines += [f"  duplicate  {d['name']}  (same as {d['same_as']})" for d in r["duplicate_files"]]
    lines += [f"  skipped    {s['name']}: {s['reason']}" for s in r["skipped_files"]]
    _print(args, r, "\n".join(lines))
    return 0


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="print machine-readable JSON")
    parser = argparse.ArgumentParser(
        prog="python -m annotator",
        description="Auto Annotator. Without a command: serve the app. Data folder: $ANNOTATOR_DATA_DIR (./data).",
    )
    sub = parser.add_subparsers(dest="command")

    serve = sub.add_parser("serve", help="start the web app (default)")
    add_serve_args(serve)
    serve.set_defaults(func=cmd_serve)

    project = sub.add_parser("project", help="create or list projects")
    psub = project.add_subparsers(dest="project_command", required=True)
    create = psub.add_parser("create", parents=[common], help="create a project with its ordered classes")
    create.add_argument("name")
    create.add_argument("--classes", required=True, help="comma-separated, in YOLO index order: a,b,c")
    create.add_argument("--description", default="")
    create.set_defaults(func=cmd_project_create)
    plist = psub.add_parser("list", parents=[common], help="list projects with counts")
    plist.set_defaults(func=cmd_project_list)

    ing = sub.add_parser("ingest", parents=[common], help="add a zip, a folder or image files to a project")
    ing.add_argument("project", help="project name (or id)")
    ing.add_argument("paths", nargs="+", help="zip file(s), folder(s) or image file(s)")
    ing.add_argument("--dataset", help="dataset name (default: the zip's or folder's name)")
    ing.set_defaults(func=cmd_ingest)
    return parser


def add_serve_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", help="interface to listen on (default 127.0.0.1; 0.0.0.0 for the whole network)")
    p.add_argument("--port", type=int, help="port (default 7860)")
    p.add_argument("--share", action="store_true", help="also publish a shareable Gradio link (requires auth)")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0].startswith("--") and argv[0] not in ("-h", "--help"):
        argv = ["serve", *argv]
    args = build_parser().parse_args(argv)
    try:
        settings = Settings.from_env()
        return args.func(args, settings)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
