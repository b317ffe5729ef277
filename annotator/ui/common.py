"""Shared UI plumbing: the context handed to each tab, error mapping, who is acting."""

from __future__ import annotations

import functools
import html
from dataclasses import dataclass
from typing import Any, Callable

import gradio as gr

from ..services import Services
from ..types import UserError


@dataclass
class UIContext:
    services: Services
    project: gr.Dropdown  # the project picked in the header, shared by every tab
    projects_json: gr.JSON  # result of list_projects, re-rendered into the picker


def username(request: gr.Request | None) -> str:
    """The Gradio auth user, or "local" when the app runs without login."""
    name = getattr(request, "username", None) if request is not None else None
    return name or "local"


def user_errors(fn: Callable) -> Callable:
    """Turn UserError into gr.Error so the browser shows the message and the API client gets it."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except UserError as e:
            raise gr.Error(html.escape(str(e), quote=False), print_exception=False) from None  # names are user input

    return wrapper


def table(rows: list[list[Any]], headers: list[str]) -> dict:
    """A value for gr.Dataframe that keeps its headers even when empty."""
    return {"data": rows or [], "headers": headers}
