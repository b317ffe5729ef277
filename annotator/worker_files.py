"""The app's file endpoint for workers without the data folder (jobs/fetch.py is the other side).

``GET /aa-worker/v1/file/<path in the data folder>`` streams a project's stored image or model file to a
worker that presents the deployment's worker token (``ANNOTATOR_WORKER_TOKEN``, in the header
``X-Annotator-Worker-Token``), never a user's password. Off (404) until the token is set; only
``projects/<id>/images/...`` and ``projects/<id>/models/...`` are served, nothing else of the data folder.
"""

from __future__ import annotations

import hmac
from pathlib import Path

from jobs.protocol import FILE_ENDPOINT, TOKEN_HEADER

from .settings import Settings

SERVED = ("images", "models")


def served_file(settings: Settings, rel: str) -> Path | None:
    """The file ``rel`` names, if it is a project's stored image or model that exists; else None."""
    parts = Path(rel).parts
    if len(parts) < 4 or parts[0] != "projects" or not parts[1].isdigit() or parts[2] not in SERVED:
        return None
    if any(p in ("..", "") or p.startswith("/") for p in parts):
        return None
    target = (settings.data_dir / rel).resolve()
    try:
        target.relative_to((settings.projects_dir / parts[1] / parts[2]).resolve())
    except ValueError:  # a link out of the folder
        return None
    return target if target.is_file() else None


def worker_routes(settings: Settings) -> list:
    """The routes to give the app's FastAPI (``launch(app_kwargs={"routes": ...})``)."""
    from starlette.responses import FileResponse, PlainTextResponse
    from starlette.routing import Route

    token = (settings.worker_token or "").encode()

    async def file(request):
        if not token:
            return PlainTextResponse("worker file access is off: set ANNOTATOR_WORKER_TOKEN on the app and on the "
                                     "workers that have no data folder", status_code=404)
        given = request.headers.get(TOKEN_HEADER, "").encode()
        if not hmac.compare_digest(given, token):
            return PlainTextResponse(f"wrong or missing worker token ({TOKEN_HEADER}: ANNOTATOR_WORKER_TOKEN)",
                                     status_code=401)
        rel = request.path_params["path"]
        target = served_file(settings, rel)
        if target is None:
            return PlainTextResponse(f"no stored image or model file {rel!r}", status_code=404)
        return FileResponse(target)  # streamed in blocks

    return [Route(FILE_ENDPOINT + "{path:path}", file, methods=["GET"])]
