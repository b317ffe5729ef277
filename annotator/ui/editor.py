"""The annotation editor: one ``gr.HTML`` component whose page script (``assets/editor.js``, styled by
``assets/editor.css``) holds the open image's boxes in the browser and calls a few server functions.

The script calls them directly and asynchronously (``await server.aa_save({...})``), without a Gradio
event per action; each takes ONE JSON object and returns one, ``{"ok": true, ...}`` or
``{"ok": false, "error": "...", "conflict": {...}?}`` (a ``Conflict`` says who or which job changed the
image and when). They are thin: the services do the work; here we only add what a page needs (file URLs,
class colours, the counters). Every call goes through the public API's functions (``ui/api.py``, by
name and keyword, as gradio_client users call them), so the editor can do nothing the API cannot. Boxes
travel in stored-image pixels; all view maths is in the browser.

Python drives the editor through three props (``gr.HTML(query=...)`` as an event's output):

- ``query``: the project and the queue filters (a change reopens the queue, saving the open image first);
- ``view``: ``min_conf`` / ``hide_all`` (what is hidden) and ``drop_hidden`` (approving drops exactly that);
- ``revision``: ``"project:revision"`` from the app's one revision timer (a change makes the editor ask
  what changed: a notice on the open image, never a silent replacement; counters, queue, filmstrip).

Test hook (stable, used by the browser tests and the benchmark): ``#aa-editor`` carries
``data-image-id``, ``data-version``, ``data-dirty`` ("0"/"1") and ``data-ready`` ("1" once the image and
its boxes are drawn); ``window.aaEditor.boxes()`` and ``window.aaEditor.toScreen(x, y)``.
"""

from __future__ import annotations

import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import quote

import gradio as gr

from ..services import Services
from ..types import REVIEW_STATES, Conflict, UserError, disk_problem
from .api import Api
from .common import username

log = logging.getLogger(__name__)

ASSETS = Path(__file__).parent / "assets"
FILMSTRIP = 24  # thumbnails around the current image
WARM_AHEAD = 8  # display copies made in the background for the images after the page's prefetch window

TEMPLATE = """
<div id="aa-editor" data-image-id="" data-version="" data-dirty="0" data-ready="0" aria-label="Annotation editor">
  <div class="aa-toolbar">
    <div class="aa-row">
      <button type="button" data-act="prev" title="Previous image, saving first (←)">◀ Prev</button>
      <button type="button" data-act="save" title="Save this image (Ctrl+S)">Save</button>
      <button type="button" data-act="approve" class="aa-primary" title="Approve and go to the next image (A)">✓ Approve <kbd>A</kbd></button>
      <button type="button" data-act="reject" title="Reject and go to the next image (R); Shift+R rejects and stays">✗ Reject <kbd>R</kbd></button>
      <button type="button" data-act="next" title="Next image, saving first (→)">Next ▶</button>
      <span class="aa-sep"></span>
      <button type="button" data-act="picker" class="aa-class" title="Class for new boxes: 1–9, or Q / for all classes"></button>
      <span class="aa-sep"></span>
      <button type="button" data-act="undo" title="Undo (Ctrl+Z)">↶ Undo</button>
      <button type="button" data-act="redo" title="Redo (Ctrl+Shift+Z)">↷ Redo</button>
      <button type="button" data-act="discard" title="Discard this image's unsaved edits (X)">Discard <kbd>X</kbd></button>
      <button type="button" data-act="copy" title="Copy the previous image's boxes onto this one">Copy prev.</button>
    </div>
    <div class="aa-row aa-info">
      <span class="aa-zoombox">
        <button type="button" data-act="zoom-out" title="Zoom out (mouse wheel)">−</button>
        <span class="aa-zoom" title="Zoom: screen pixels per stored image pixel">100%</span>
        <button type="button" data-act="zoom-in" title="Zoom in (mouse wheel)">+</button>
        <button type="button" data-act="fit" title="Fit the image (F)">Fit</button>
        <button type="button" data-act="one" title="Stored pixels 1:1">1:1</button>
      </span>
      <span class="aa-file"></span><span class="aa-counter"></span>
    </div>
  </div>
  <div class="aa-stage">
    <canvas class="aa-canvas"></canvas>
    <div class="aa-empty">Pick a project at the top.</div>
    <div class="aa-notice" hidden><span class="aa-notice-text"></span> <button type="button" data-act="reload">Reload</button></div>
    <div class="aa-msg" role="status" aria-live="polite"></div>
    <div class="aa-findbar" role="status" hidden></div>
    <div class="aa-dialog aa-picker" hidden role="dialog" aria-label="Pick a class">
      <input type="text" class="aa-pick-input" placeholder="Type to filter the classes" autocomplete="off" spellcheck="false">
      <ul class="aa-pick-list" role="listbox"></ul>
      <div class="aa-hint">↑/↓ move · Enter picks · Esc closes · only the project's classes</div>
    </div>
    <div class="aa-dialog aa-ask" hidden role="alertdialog">
      <div class="aa-ask-title"></div>
      <div class="aa-ask-text"></div>
      <div class="aa-ask-buttons"></div>
    </div>
  </div>
  <div class="aa-film" aria-label="Queue"></div>
</div>
"""


def file_url(path) -> str:
    """A stored file (image, display copy, thumbnail) as the page fetches it: served in place from the data
    folder (launch sets it as a static path), relative to the page."""
    return "gradio_api/file=" + quote(str(path))


def _server_fn(name: str, fn):
    """A server function: one JSON object in, one out; user errors and conflicts come back as data (the
    page shows them), anything else is logged and reported without a stack trace."""

    def call(req, request: gr.Request = None):
        try:
            out = fn(req if isinstance(req, dict) else {}, username(request))
            return {"ok": True, **out}
        except Conflict as e:
            return {"ok": False, "error": str(e), "conflict": e.as_dict()}
        except UserError as e:
            return {"ok": False, "error": str(e)}
        except Exception as e:  # noqa: BLE001 - a page must never get a stack trace
            problem = disk_problem(e)
            if problem is not None:  # a full disk, a read-only data folder: said in words, nothing stored
                log.warning("editor server function %s: %s", name, problem)
                return {"ok": False, "error": str(problem)}
            log.exception("editor server function %s failed", name)
            return {"ok": False, "error": f"The app failed ({type(e).__name__}); its log has the details. "
                                          "Nothing else changed."}

    call.__name__ = name
    return call


def _background_priority() -> None:
    """Run this thread at a lower CPU priority (Linux: a thread is scheduled on its own), so the copies made
    ahead never slow down what a reviewer waits for (a save, the picture on screen)."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
    except (AttributeError, OSError):  # not Linux, or not allowed: the normal priority
        pass


def _int(value, what: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise UserError(f"{what} must be a number, got {value!r}") from None


class EditorFunctions:
    """The editor's server functions, as plain methods ``(req, user) -> dict`` (testable without a page)."""

    def __init__(self, api: Api):
        self.api = api
        self._warmer = None  # one background thread making display copies ahead of the reviewer
        self._warming: set[int] = set()
        self._lock = threading.Lock()
        self._image_locks: dict[int, threading.Lock] = {}  # one maker per display copy (warm-up vs. page load)

    @property
    def services(self) -> Services:
        return self.api.services

    def _image_lock(self, image_id: int) -> threading.Lock:
        with self._lock:
            if len(self._image_locks) > 10_000:
                self._image_locks.clear()
            return self._image_locks.setdefault(int(image_id), threading.Lock())

    # -- helpers
    def warm(self, image_ids) -> None:
        """Make the display copies of these images (large ones only) in the background, one at a time, so
        that the page's prefetch finds them ready. (Not an API call: nothing a client asks for, only work
        done ahead of time.)"""
        if not self.services.settings.editor_max_side:
            return
        with self._lock:
            if self._warmer is None:
                self._warmer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="aa-display-copies",
                                                  initializer=_background_priority)
            todo = [int(i) for i in image_ids[:WARM_AHEAD] if int(i) not in self._warming]
            self._warming.update(todo)
        for image_id in todo:
            self._warmer.submit(self._warm_one, image_id)

    def _warm_one(self, image_id: int) -> None:
        try:
            with self._image_lock(image_id):
                self.services.review.warm_display(image_id)
        finally:
            with self._lock:
                self._warming.discard(image_id)

    def image(self, project: str, image_id) -> dict:
        """An image for the editor: load_image() plus the URLs of the picture the page shows (the display
        copy of a large image) and of the stored original (loaded when zoomed past the copy)."""
        image_id = _int(image_id, "image id")
        with self._image_lock(image_id):  # a copy being made in the background: wait for it, do not redo it
            d = self.api.call("load_image", project=project, image_id=image_id)
        keep = ("id", "project", "rel_path", "dataset", "frame", "width", "height", "split", "status", "version",
                "reviewed_by", "reviewed_at", "edited_by", "edited_at", "changed_by", "changed_at", "boxes",
                "findings")
        return {**{k: d[k] for k in keep}, "url": file_url(d["file"]),
                "display": {"url": file_url(d["display"]["file"]), "width": d["display"]["width"],
                            "height": d["display"]["height"]}}

    def _counts(self, project: str) -> dict:
        c = self.api.call("review_stats_counts", project=project)
        return {s: int(c.get(s, 0)) for s in REVIEW_STATES}

    def _queue(self, project: str, q: dict) -> list[int]:
        below = q.get("below")
        return self.api.call(
            "review_queue_ids", project=project, status=q.get("status") or "unreviewed",
            dataset=q.get("dataset") or None, class_name=q.get("class_name") or None,
            no_boxes=bool(q.get("no_boxes")), below_conf=float(below) if below else None,
            sort=q.get("sort") or "upload")

    def _project(self, req: dict) -> dict:
        """The request's project (its name, classes and their colours), looked up once per call."""
        p = self.api.call("get_project", project=self._name(req))
        return {"name": p["name"], "classes": [c["name"] for c in sorted(p["classes"], key=lambda c: c["index"])],
                "colours": self.api.call("class_colours", project=p["name"])}

    # -- server functions
    def open(self, req: dict, user: str) -> dict:
        """The queue for a project and its filters: ids in order, classes and colours, counters."""
        p = self._project(req)
        name = p["name"]
        counts = self._counts(name)  # before the queue: an image added in between is found by the next check
        ids = self._queue(name, req)
        self.warm(ids[1:])
        return {"project": name, "classes": p["classes"], "colours": p["colours"], "ids": ids, "counts": counts,
                "revision": self.api.call("project_revision", project=name)}

    def load(self, req: dict, user: str) -> dict:
        """An image with its boxes; ``ahead``: ids the page will want next (their display copies are made
        in the background)."""
        name = self._name(req)
        out = {"image": self.image(name, req.get("id"))}
        if req.get("ahead"):
            self.warm([_int(i, "image id") for i in req["ahead"]])
        return out

    def save(self, req: dict, user: str) -> dict:
        """Save the boxes if the image is still at ``version``; back come its new version and its boxes as
        stored now (ids and provenance), and the project's revision after it (a page that sees the revision
        its own write made needs no second look). A save changes no review counter: none are sent."""
        name = self._name(req)
        saved = self.api.call("save_image", user=user, project=name, image_id=_int(req.get("id"), "image id"),
                              boxes=req.get("boxes") or [], version=req.get("version"))
        stored = saved.pop("stored")
        return {"saved": saved, "version": saved["version"], "boxes": stored, "by": user, "project": name,
                "revision": saved.pop("revision")}

    def review(self, req: dict, user: str) -> dict:
        """Approve / reject / reset the image the reviewer saw at ``version``: its edits (``boxes``, when
        given) are saved first, with the same version check; approving with ``drop_below`` drops the machine
        boxes under that confidence (the ones the view hides). With ``stay`` the image comes back too."""
        name = self._name(req)
        image_id = _int(req.get("id"), "image id")
        version = req.get("version")
        saved = None
        if req.get("boxes") is not None:
            saved = self.api.call("save_image", user=user, project=name, image_id=image_id, boxes=req["boxes"],
                                  version=version)
            saved.pop("stored")
            version = saved["version"]
        drop = req.get("drop_below")
        try:
            done = self.api.call("set_review_status", user=user, project=name, image_ids=[image_id],
                                 status=str(req.get("status") or ""),
                                 drop_machine_below=float(drop) if drop else None, version=version)
        except Conflict as e:
            if saved is None:
                raise
            raise Conflict(f"Your boxes were saved, but the review was not: {e}", image_id=e.image_id,
                           version=e.version, changed_by=e.changed_by, changed_at=e.changed_at) from None
        out = {"status": done["status"], "version": done["version"], "saved": saved, "counts": self._counts(name),
               "project": name, "revision": self.api.call("project_revision", project=name)}
        if req.get("stay"):
            out["image"] = self.image(name, image_id)
        return out

    def copy(self, req: dict, user: str) -> dict:
        """The previous image's boxes as new boxes for this one (nothing saved)."""
        return {"boxes": self.api.call("copy_boxes", user=user, project=self._name(req),
                                       from_image=_int(req.get("from"), "image id"),
                                       to_image=_int(req.get("to"), "image id"))}

    def finding(self, req: dict, user: str) -> dict:
        """Resolve a likely label error: ``accepted`` (the page applied its suggestion and saved) or
        ``dismissed`` (the label is right)."""
        done = self.api.call("resolve_label_error", user=user, project=self._name(req),
                             error_id=_int(req.get("id"), "finding id"), status=str(req.get("status") or ""))
        return {"finding": done}

    def track(self, req: dict, user: str) -> dict:
        """Delete a machine track in the frames after this one (the page deleted the box on this frame)."""
        return {"track": self.api.call("delete_track", user=user, project=self._name(req),
                                       image_id=_int(req.get("id"), "image id"), job_id=_int(req.get("job"), "job id"),
                                       track_id=_int(req.get("track"), "track id"))}

    def thumbs(self, req: dict, user: str) -> dict:
        """Filmstrip entries: thumbnail URL, review state, box count, lowest machine confidence."""
        ids = [_int(i, "image id") for i in (req.get("ids") or [])][:200]
        return {"items": self._thumbs(self._name(req), ids)}

    def _thumbs(self, project: str, ids: list[int]) -> list[dict]:
        return [{**{k: it[k] for k in ("id", "status", "rel_path", "boxes", "min_conf")}, "thumb": file_url(it["thumb"])}
                for it in self.api.call("queue_thumbs", project=project, image_ids=ids)]

    def changes(self, req: dict, user: str) -> dict:
        """What an open editor checks when the project's revision moved: the versions (and who changed
        them, when) of the images it holds, the counters, the classes, the filmstrip entries it shows, and
        the queue as it is now when the project has other than ``total`` images."""
        p = self._project(req)
        name = p["name"]
        ids = [_int(i, "image id") for i in (req.get("ids") or [])][:50]
        film = [_int(i, "image id") for i in (req.get("film") or [])][:200]
        out = {"revision": self.api.call("project_revision", project=name), "counts": self._counts(name),
               "classes": p["classes"], "colours": p["colours"],
               "images": self.api.call("image_changes", project=name, image_ids=ids),
               "film": self._thumbs(name, film) if film else []}
        # The queue only grows (uploads, imports): ask for it again only when the project has more images
        # than the page counted (most changes are reviews and saves: no new image, no query).
        total = sum(out["counts"].values())
        if isinstance(req.get("query"), dict) and (req.get("total") is None or int(req["total"]) != total):
            out["ids"] = self._queue(name, req["query"])
        return out

    @staticmethod
    def _name(req: dict) -> str:
        """The request's project name (the API resolves it; an unknown one is its clear error)."""
        name = req.get("project")
        if not name:
            raise UserError("Choose a project first")
        return str(name)

    def server_functions(self) -> list:
        return [_server_fn(f"aa_{name}", getattr(self, name))
                for name in ("open", "load", "save", "review", "copy", "finding", "track", "thumbs",
                             "changes")]


def read_asset(name: str) -> str:
    return (ASSETS / name).read_text(encoding="utf-8")


def build_editor(api: Api) -> gr.HTML:
    """The editor component (place it inside the Annotate tab's layout)."""
    return gr.HTML(
        value="",
        html_template=TEMPLATE,
        css_template=read_asset("editor.css"),
        js_on_load=read_asset("editor.js"),
        server_functions=EditorFunctions(api).server_functions(),
        apply_default_css=False,
        elem_id="aa-editor-block",
        query={"project": None},
        view={"min_conf": 0.0, "hide_all": False, "drop_hidden": False},
        revision="",
        film=FILMSTRIP,
    )


__all__ = ["build_editor", "EditorFunctions", "file_url", "TEMPLATE", "FILMSTRIP"]
