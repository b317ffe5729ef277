"""Shared UI plumbing: the context handed to each tab, error mapping, who is acting."""

from __future__ import annotations

import functools
import html
import inspect
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

import gradio as gr

from ..services import Services
from ..types import UserError, disk_problem

if TYPE_CHECKING:
    from .api import Api


@dataclass
class UIContext:
    services: Services
    api: "Api"  # the public API: the tabs' handlers call it
    project: gr.Dropdown  # the project picked in the header, shared by every tab
    projects_json: gr.JSON  # result of list_projects, re-rendered into the picker
    # tab id -> "project:revision" from the app's one timer, written only while that tab is on screen:
    # changes whenever the picked project's boxes, reviews, images, splits or classes change (the tab
    # refreshes what it shows on .change, and again when it comes back: see active_tab)
    revisions: dict[str, gr.Textbox] | None = None
    active_tab: gr.Textbox | None = None  # id of the tab on screen ("upload", "annotate", "train", ...)
    jobs_key: gr.Textbox | None = None  # changes when a job is added or moves (the Jobs panel refreshes)

    def revision(self, tab: str) -> gr.Textbox | None:
        return (self.revisions or {}).get(tab)


def username(request) -> str:
    """The signed-in Gradio user of an event, an API call or an editor server function, or "local" when the
    app runs without login. An event's ``gr.Request`` says it; a server function gets the raw request, whose
    name comes from Gradio's session cookie (as Gradio's own /user route finds it)."""
    name = getattr(request, "username", None) if request is not None else None
    if name:
        return name
    app = getattr(request, "app", None)
    try:
        cookie = getattr(app, "cookie_id", None)
        token = request.cookies.get(f"access-token-{cookie}") or request.cookies.get(f"access-token-unsecure-{cookie}")
        return app.tokens.get(token) or "local"
    except Exception:  # noqa: BLE001 - no auth, or not a Gradio app: the local user
        return "local"


def user_errors(fn: Callable) -> Callable:
    """Turn UserError into gr.Error so the browser shows the message and the API client gets it; a full
    disk or a read-only data folder becomes its message too (types.disk_problem), never Gradio's generic
    "the upstream app raised an exception"."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except UserError as e:
            raise gr.Error(html.escape(str(e), quote=False), print_exception=False) from None  # names are user input
        except Exception as e:
            problem = disk_problem(e)
            if problem is None:
                raise
            raise gr.Error(html.escape(str(problem), quote=False), print_exception=False) from None

    return wrapper


def imgsz_hint(api, project: str | None, model: str | None, device: str | None) -> str:
    """The line under an image-size field: what 0 means for this project now (api.suggest_imgsz)."""
    if not project:
        return ""
    try:
        advice = api.suggest_imgsz(project=project, model=model or None, device=device or None)
    except Exception:  # noqa: BLE001 - a name being typed, a project without images: no hint
        return ""
    return f"<small>0 = from the data: {html.escape(advice['reason'], quote=False)}</small>"


def conf_hint(api, project: str | None, model: str | None) -> str:
    """The line under the confidence slider: what 0 means with this model (api.suggest_conf)."""
    if not project or not model:
        return ""
    try:
        advice = api.suggest_conf(project=project, model=model)
    except Exception:  # noqa: BLE001 - a name being typed: no hint
        return ""
    return f"<br><small>confidence 0 = the model's own: {html.escape(advice['reason'], quote=False)}</small>"


def with_keywords(fn: Callable, *names: str) -> Callable:
    """An event handler passing the event's inputs to ``fn`` as the keyword arguments ``names`` (and the
    request, when ``fn`` takes one): the order of a tab's widgets never decides which parameter gets which
    value. Gradio reads the handler's signature (``names`` [+ request]) to pass the inputs and the request."""
    takes_request = "request" in inspect.signature(fn).parameters

    def handler(*values):
        request = None
        if takes_request:
            *values, request = values
        kwargs = dict(zip(names, values, strict=True))
        return fn(**kwargs, request=request) if takes_request else fn(**kwargs)

    params = [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD) for n in names]
    if takes_request:
        params.append(inspect.Parameter("request", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None,
                                        annotation=gr.Request))
    handler.__signature__ = inspect.Signature(params)
    handler.__annotations__ = {"request": gr.Request} if takes_request else {}
    handler.__name__ = handler.__qualname__ = f"{fn.__name__}_ui"
    return handler


def table(rows: list[list[Any]], headers: list[str]) -> dict:
    """A value for gr.Dataframe that keeps its headers even when empty."""
    return {"data": rows or [], "headers": headers}
