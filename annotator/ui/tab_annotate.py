"""Annotate tab: review and correct boxes in ``gradio_image_annotation``, keyboard first.

The editor's session lives in a ``gr.State`` (per browser tab)::

    {"project", "queue": [image ids], "pos": index in queue, "image": load_image() result,
     "boxes": working boxes (dicts, see annotator.review), "shown": indices of boxes in the widget,
     "new_class": the class for new boxes}

and a second ``gr.State``, ``seen``: the widget's boxes as the server last saw them, to spot a box just
drawn (the widget gives it its first class; the page script asks for a relabel on pointer-up, and every
handler that reads the widget settles a relabel still in flight, so the result does not depend on timing).

Every move away from an image (arrows, A, the filmstrip, a new queue) first saves it when it changed; a
failed save (a conflict) keeps the user on the image with their edits in the widget.
"""

from __future__ import annotations

import html
import threading
from pathlib import PurePath
from urllib.parse import quote

import gradio as gr
import pandas as pd
from gradio.utils import is_static_file
from gradio_image_annotation import image_annotator

from ..overlay import class_colours
from ..services import Services
from ..types import UserError
from .common import UIContext, user_errors, username, with_keywords
from .widget import from_widget, relabel_new_box, same_boxes, to_widget

STATUS_FILTERS = [("Unreviewed", "unreviewed"), ("Approved", "approved"), ("Rejected", "rejected"), ("All", "all")]
SORTS = [("Upload order", "upload"), ("Most uncertain first", "uncertain")]
BADGE = {"unreviewed": "•", "approved": "✓", "rejected": "✗"}
FILMSTRIP = 24  # images around the current one
ANY = "(any)"

LEGEND = """**Keys** (not while typing in a field): **←/→** previous/next (saves first) · **Ctrl+S** save ·
**A** approve and next · **R** reject · **1–9** class for new boxes · **Del/Backspace** delete the selected box ·
the editor's own: **C** draw, **D** drag/select, **E** change the selected box's class, **Space** fit the image.
Double-click a box to change its class. Mouse wheel zooms."""

# The app's keys, bound once for the page (Gradio takes this in launch(head=...)).
HEAD = """
<script>
(() => {
  if (window.__aaKeys) return;
  window.__aaKeys = true;
  const typing = (el) => el && (el.isContentEditable || el.tagName === 'TEXTAREA' || el.tagName === 'SELECT' ||
      (el.tagName === 'INPUT' && !['checkbox', 'radio', 'range', 'button'].includes(el.type)));
  const shown = () => { const e = document.getElementById('aa-editor'); return !!(e && e.offsetParent !== null); };
  const click = (id) => { const b = document.getElementById(id); if (b && !b.disabled) b.click(); };
  document.addEventListener('keydown', (ev) => {
    if (!shown() || ev.repeat && ev.key !== 'ArrowLeft' && ev.key !== 'ArrowRight') return;
    const t = ev.target;
    if ((ev.ctrlKey || ev.metaKey) && !ev.altKey && ev.key.toLowerCase() === 's') {
      ev.preventDefault(); click('aa-save'); return;
    }
    if (typing(t) || ev.ctrlKey || ev.metaKey || ev.altKey) return;
    if (document.querySelector('#aa-editor .modal')) return;  // the editor's class picker is open
    if (ev.key === 'ArrowLeft') { ev.preventDefault(); click('aa-prev'); }
    else if (ev.key === 'ArrowRight') { ev.preventDefault(); click('aa-next'); }
    else if (ev.key === 'a' || ev.key === 'A') { ev.preventDefault(); click('aa-approve'); }
    else if (ev.key === 'r' || ev.key === 'R') { ev.preventDefault(); click('aa-reject'); }
    else if (ev.key === 'Delete') { window.__aaDirty = true; }
    else if (ev.key === 'Backspace') {
      // The widget binds Delete only; Backspace deletes the selected box too.
      const canvas = t && t.closest && t.closest('#aa-editor [tabindex]');
      if (canvas) {
        ev.preventDefault(); window.__aaDirty = true;
        canvas.dispatchEvent(new KeyboardEvent('keydown', {key: 'Delete', bubbles: true}));
      }
    } else if (/^[1-9]$/.test(ev.key)) {
      const r = document.querySelectorAll('#aa-new-class input[type=radio]')[Number(ev.key) - 1];
      if (r) { ev.preventDefault(); r.click(); }
    }
  }, true);
  // Unsaved edits: any pointer-up or delete in the editor may have changed a box; the buttons that save
  // (or move on, which saves) clear it. Closing the page with edits asks first.
  window.__aaDirty = false;
  const saving = ['aa-save', 'aa-prev', 'aa-next', 'aa-approve', 'aa-reject', 'aa-reset', 'aa-jump-btn', 'aa-open-queue'];
  document.addEventListener('click', (ev) => {
    const b = ev.target.closest && ev.target.closest('button');
    if (b && saving.includes(b.id)) window.__aaDirty = false;
  }, true);
  window.addEventListener('beforeunload', (ev) => {
    if (window.__aaDirty && shown()) { ev.preventDefault(); ev.returnValue = ''; }
  });
  // A filmstrip thumbnail: jump there (saving the current image first, like the arrows).
  document.addEventListener('click', (ev) => {
    const it = ev.target.closest && ev.target.closest('.aa-film-item');
    const box = document.querySelector('#aa-jump input');
    if (!it || !box) return;
    box.value = it.dataset.pos;
    box.dispatchEvent(new Event('input', {bubbles: true}));
    setTimeout(() => click('aa-jump-btn'), 0);
  });
  // A box was just drawn (the widget labels it with its first class, or nothing): ask the server to give it
  // the class picked for new boxes. Not on the widget's change event: answering that one mid-drag resets
  // the box being drawn.
  document.addEventListener('pointerup', (ev) => {
    const path = ev.composedPath ? ev.composedPath() : [];
    if (!path.some((e) => e && e.tagName === 'CANVAS') || !path.some((e) => e && e.id === 'aa-editor')) return;
    window.__aaDirty = true;
    setTimeout(() => click('aa-relabel'), 30);
  }, true);
})();
</script>
"""

CSS = """
#aa-editor button[aria-label^="Rotate"] { display: none !important; }
.aa-hidden { display: none !important; }
.aa-film { display: flex; gap: 6px; overflow-x: auto; padding: 4px 0; }
.aa-film-item { position: relative; flex: 0 0 auto; width: 96px; height: 72px; padding: 0; cursor: pointer;
  border: 2px solid transparent; border-radius: 6px; background: #0001; overflow: hidden; }
.aa-film-item img { width: 100%; height: 100%; object-fit: cover; display: block; }
.aa-film-item.aa-current { border-color: var(--color-accent, #f97316); box-shadow: 0 0 0 2px #f9731655; }
.aa-badge { position: absolute; top: 2px; left: 2px; min-width: 18px; height: 18px; border-radius: 9px;
  font-size: 12px; line-height: 18px; color: #fff; background: #6b7280; text-align: center; }
.aa-approved .aa-badge { background: #16a34a; }
.aa-rejected .aa-badge { background: #dc2626; }
.aa-meta { position: absolute; bottom: 0; right: 0; left: 0; font-size: 11px; color: #fff; background: #0008;
  text-align: right; padding: 0 4px; }
"""


def _stored_image_path(original):
    """The widget re-encodes its image into Gradio's cache on every edit event (each mouse-up). For our
    stored images, served in place from the data folder (gr.set_static_paths), the path is all we need.
    Patched on the class: Gradio rebuilds the component for each session update, so an instance
    attribute would not survive."""
    def preprocess_image(self, image):
        if image is not None and is_static_file(image):
            return image.path
        return original(self, image)
    preprocess_image.__wrapped_original__ = original
    return preprocess_image


if not hasattr(image_annotator.preprocess_image, "__wrapped_original__"):
    image_annotator.preprocess_image = _stored_image_path(image_annotator.preprocess_image)


def _scale(img: dict) -> tuple[float, float]:
    """Shown pixels per stored pixel (x, y): the editor may show a smaller copy of a large image."""
    return img["display"]["width"] / img["width"], img["display"]["height"] / img["height"]


def _colours(n: int) -> list[tuple[int, int, int]]:
    return class_colours(n)


# ---- the editor session ------------------------------------------------------------------------------------

class Editor:
    """The private handlers behind the tab; all state goes in and out through ``state``."""

    def __init__(self, services: Services):
        self.services = services

    # -- helpers
    def _working(self, state: dict, canvas: dict | None) -> list[dict]:
        """The working boxes with the widget's edits applied."""
        img = state.get("image")
        if not img:
            return []
        if canvas is None:
            return list(state.get("boxes") or [])
        if canvas.get("image") and PurePath(str(canvas["image"])).name != PurePath(img["display"]["file"]).name:
            # Never write one image's boxes onto another: the widget and the session disagree.
            raise UserError("The editor shows another image than the one open here (a fast double action?). "
                            "Nothing was saved; press Load queue to resync.")
        default = img["classes"].index(state["new_class"]) if state.get("new_class") in img["classes"] else None
        return from_widget(canvas, state["boxes"], state["shown"], img["classes"], img["width"], img["height"],
                           default_class=default, scale=_scale(img))

    def _dirty(self, state: dict, boxes: list[dict]) -> bool:
        img = state.get("image")
        return bool(img) and not same_boxes(boxes, img["boxes"])

    def _save(self, state: dict, boxes: list[dict], user: str) -> bool:
        """Save the current image if its boxes changed; True when something was written."""
        img = state["image"]
        if not self._dirty(state, boxes):
            return False
        res = self.services.review.save_image(state["project"], img["id"], boxes, img["version"], user=user)
        if res["dropped"]:
            gr.Warning("Not saved: " + "; ".join(res["dropped"]))
        return True

    def _load(self, state: dict, pos: int) -> dict:
        queue = state.get("queue") or []
        if not queue:
            return {**state, "pos": 0, "image": None, "boxes": [], "shown": []}
        pos = max(0, min(int(pos), len(queue) - 1))
        img = self.services.review.load_image(state["project"], queue[pos])
        return {**state, "pos": pos, "image": img, "boxes": [dict(b) for b in img["boxes"]]}

    def render(self, state: dict, min_conf: float, hide_all: bool, filmstrip: bool = True):
        """-> canvas, state, info, counter, filmstrip (or skip), the widget's boxes as sent."""
        img = state.get("image")
        if not img:
            empty = ("No images in this queue. Change the filters (status *All* shows everything) or upload "
                     "images." if state.get("project") else "Pick a project at the top.")
            return (None, {**state, "shown": []}, empty, self._counter(state),
                    "" if filmstrip else gr.skip(), [])
        colours = _colours(len(img["classes"]))
        value, shown = to_widget(img["display"]["file"], state["boxes"], img["classes"], colours,
                                 float(min_conf or 0), bool(hide_all), scale=_scale(img))
        state = {**state, "shown": shown}
        self._prefetch(state)
        canvas = image_annotator(value=value, label_list=list(img["classes"]), label_colors=colours)
        return (canvas, state, self._info(state), self._counter(state),
                self._filmstrip(state) if filmstrip else gr.skip(), [dict(b) for b in value["boxes"]])

    def _prefetch(self, state: dict) -> None:
        """Make the next image's display copy in the background, so moving on does not wait for it."""
        queue, pos = state.get("queue") or [], int(state.get("pos", 0))
        if pos + 1 < len(queue) and self.services.settings.editor_max_side:
            threading.Thread(target=self._warm, args=(queue[pos + 1],), daemon=True).start()

    def _warm(self, image_id: int) -> None:
        try:
            self.services.review.display_image(self.services.ctx.store.get_image(image_id))
        except Exception:  # noqa: BLE001 - a prefetch only; the real load reports any problem
            pass

    def _info(self, state: dict) -> str:
        img = state["image"]
        boxes = state["boxes"]
        machine = sum(b["source"] == "model" for b in boxes)
        hidden = len(boxes) - len(state["shown"])
        who = ""
        if img["reviewed_by"]:
            who = f" by {img['reviewed_by']} at {img['reviewed_at'].replace('T', ' ')}"
        saved = f" · saved by {img['edited_by']} at {img['edited_at'].replace('T', ' ')}" if img["edited_by"] else ""
        return (f"**{img['rel_path']}** ({img['dataset']}) · {img['width']}×{img['height']} · "
                f"**{img['status']}**{who}{saved}\n\n{len(boxes)} box(es): {machine} machine, "
                f"{len(boxes) - machine} person/import" + (f" · {hidden} hidden in the view" if hidden else ""))

    def _counter(self, state: dict) -> str:
        if not state.get("project"):
            return ""
        st = self.services.review.review_stats_counts(state["project"])
        total = sum(st.values())
        queue = state.get("queue") or []
        where = f" · image **{state.get('pos', 0) + 1}** of {len(queue)} in this queue" if queue else ""
        return (f"### approved {st.get('approved', 0)} / total {total}\n"
                f"rejected {st.get('rejected', 0)} · unreviewed {st.get('unreviewed', 0)}{where}")

    def _filmstrip(self, state: dict) -> str:
        queue = state.get("queue") or []
        if not queue:
            return ""
        start = max(0, min(state["pos"] - FILMSTRIP // 3, len(queue) - FILMSTRIP))
        items = self.services.review.queue_thumbs(state["project"], queue[start:start + FILMSTRIP])
        return filmstrip_html(items, start, state["pos"])

    # -- events
    def open_queue(self, project, status, dataset, class_name, no_boxes, below, sort, min_conf, hide_all, canvas,
                   state, seen=None, new_class=None, request: gr.Request = None):
        canvas, state = self.settle(canvas, state, seen, new_class)
        if state.get("image"):  # the image open before (maybe of another project) is saved first
            self._save(state, self._working(state, canvas), username(request))
        if not project:
            return self.render({}, min_conf, hide_all)
        queue = self.services.review.review_queue_ids(
            project, status=status, dataset=None if dataset in (None, "", ANY) else dataset,
            class_name=None if class_name in (None, "", ANY) else class_name, no_boxes=bool(no_boxes),
            below_conf=float(below) if below else None, sort=sort or "upload")
        state = {"project": project, "queue": queue, "pos": 0, "new_class": state.get("new_class")}
        return self.render(self._load(state, 0), min_conf, hide_all)

    def go(self, delta: int, canvas, state, min_conf, hide_all, request: gr.Request = None, absolute=None):
        state = dict(state or {})
        if not state.get("image"):
            return self.render(state, min_conf, hide_all)
        self._save(state, self._working(state, canvas), username(request))
        pos = absolute if absolute is not None else state["pos"] + delta
        if not 0 <= pos < len(state["queue"]):
            gr.Info("That was the last image of this queue." if delta > 0 else "This is the first image.")
            pos = max(0, min(pos, len(state["queue"]) - 1))
        return self.render(self._load(state, pos), min_conf, hide_all)

    def save(self, canvas, state, min_conf, hide_all, request: gr.Request = None):
        state = dict(state or {})
        if not state.get("image"):
            raise UserError("No image open")
        wrote = self._save(state, self._working(state, canvas), username(request))
        gr.Info("Saved" if wrote else "Nothing changed")
        return self.render(self._load(state, state["pos"]), min_conf, hide_all)

    def review(self, status: str, advance: bool, canvas, state, min_conf, hide_all, drop_hidden,
               request: gr.Request = None):
        state = dict(state or {})
        if not state.get("image"):
            raise UserError("No image open")
        user = username(request)
        self._save(state, self._working(state, canvas), user)
        drop = float(min_conf) if (status == "approved" and drop_hidden and float(min_conf or 0) > 0) else None
        self.services.review.set_review_status(state["project"], [state["image"]["id"]], status, user=user,
                                        drop_machine_below=drop)
        pos = state["pos"] + (1 if advance and state["pos"] + 1 < len(state["queue"]) else 0)
        if advance and pos == state["pos"]:
            gr.Info("That was the last image of this queue.")
        return self.render(self._load(state, pos), min_conf, hide_all)

    def jump(self, target, canvas, state, min_conf, hide_all, request: gr.Request = None):
        """A filmstrip thumbnail was clicked: ``target`` is its position in the queue."""
        return self.go(0, canvas, state, min_conf, hide_all, request, absolute=int(target or 0))

    def view(self, canvas, state, min_conf, hide_all):
        """The slider or "hide all" changed: re-render with the edits so far kept (not saved)."""
        state = dict(state or {})
        if not state.get("image"):
            return self.render(state, min_conf, hide_all, filmstrip=False)
        state["boxes"] = self._working(state, canvas)
        return self.render(state, min_conf, hide_all, filmstrip=False)

    def copy_previous(self, canvas, state, min_conf, hide_all):
        state = dict(state or {})
        if not state.get("image"):
            raise UserError("No image open")
        if state["pos"] == 0:
            raise UserError("This is the first image of the queue: there is no previous one to copy from")
        boxes = self._working(state, canvas)
        copied = self.services.review.copy_boxes(state["project"], state["queue"][state["pos"] - 1], state["image"]["id"])
        if not copied:
            gr.Info("The previous image has no boxes")
        state["boxes"] = boxes + copied
        out = self.render(state, min_conf, hide_all, filmstrip=False)
        gr.Info(f"Copied {len(copied)} box(es) from the previous image: Ctrl+S or moving on saves them")
        return out

    def settle(self, canvas, state, seen, new_class):
        """The widget's value as the server would have it once a pending relabel (see ``relabel``) landed,
        and the session with the class for new boxes: so a save right after drawing, before the relabel
        round trip is back, gives the drawn box the same class."""
        state = {**(state or {}), "new_class": new_class}
        img = state.get("image")
        if not img or canvas is None or new_class not in img["classes"]:
            return canvas, state
        colour = _colours(len(img["classes"]))[img["classes"].index(new_class)]
        return relabel_new_box(canvas, seen, new_class, colour) or canvas, state

    def relabel(self, canvas, state, new_class, seen):
        """A box was just drawn: give it the class picked for new boxes (keys 1-9). ``seen`` (its own
        gr.State) is the widget's boxes as last seen here; the session state is never written."""
        fixed, state = self.settle(canvas, state, seen, new_class)
        now = [dict(b) for b in ((fixed or {}).get("boxes") or [])]
        if fixed is canvas:
            return gr.skip(), now
        return image_annotator(value={**fixed, "image": state["image"]["display"]["file"]}), now


def filmstrip_html(items: list[dict], start: int, current: int) -> str:
    """Thumbnails of the queue around the current image, each with its review badge, box count and lowest
    machine confidence; a click jumps there (the page script turns it into a jump event)."""
    cells = []
    for k, it in enumerate(items):
        pos = start + k
        conf = f" · {it['min_conf']:.2f}" if it["min_conf"] is not None else ""
        title = html.escape(f"{pos + 1}. {it['rel_path']} — {it['status']}, {it['boxes']} box(es){conf}")
        src = "gradio_api/file=" + quote(it["thumb"])
        cells.append(
            f'<button type="button" class="aa-film-item aa-{it["status"]}{" aa-current" if pos == current else ""}" '
            f'data-pos="{pos}" title="{title}"><img src="{src}" loading="lazy" alt="">'
            f'<span class="aa-badge">{BADGE[it["status"]]}</span><span class="aa-meta">{it["boxes"]}{conf}</span>'
            "</button>")
    return f'<div class="aa-film">{"".join(cells)}</div>'


def stats_frames(stats: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    per_class = pd.DataFrame(
        [{"class": r["class"], "source": s, "boxes": r[s]} for r in stats["per_class"] for s in ("human", "model", "import")],
        columns=["class", "source", "boxes"])
    status = pd.DataFrame([{"status": k, "images": v} for k, v in stats["status"].items()], columns=["status", "images"])
    return per_class, status


def progress_frame(stats: dict) -> pd.DataFrame:
    """Reviews per day by outcome (a bar per day: it reads even when there is only one day)."""
    rows = [{"day": d["day"], "status": d["status"], "images": d["images"]} for d in stats["per_day"]]
    return pd.DataFrame(rows, columns=["day", "status", "images"])


def build_annotate_tab(ctx: UIContext) -> None:
    services = ctx.services
    ed = Editor(services)
    project = ctx.project
    state = gr.State({})
    seen = gr.State([])  # the widget's boxes as last seen, to spot a box just drawn
    with gr.Row():
        with gr.Column(scale=4, min_width=520):
            with gr.Row():
                prev_btn = gr.Button("◀ Prev (←)", elem_id="aa-prev", size="sm", min_width=60)
                save_btn = gr.Button("Save (Ctrl+S)", elem_id="aa-save", size="sm", min_width=60)
                approve_btn = gr.Button("✓ Approve & next (A)", elem_id="aa-approve", variant="primary", size="sm",
                                        min_width=60)
                reject_btn = gr.Button("✗ Reject (R)", elem_id="aa-reject", size="sm", min_width=60)
                reset_btn = gr.Button("Reset", elem_id="aa-reset", size="sm", min_width=60)
                next_btn = gr.Button("Next (→) ▶", elem_id="aa-next", size="sm", min_width=60)
            canvas = image_annotator(
                value=None, label_list=[], elem_id="aa-editor", image_type="filepath", sources=[],
                show_label=False, height=640, use_default_label=True, show_clear_button=False,
                show_download_button=False, show_share_button=False, show_remove_button=True,
                box_min_size=4, handle_size=8, boxes_alpha=0.25,
            )
            filmstrip = gr.HTML(elem_id="aa-filmstrip")
            info = gr.Markdown()
        with gr.Column(scale=1, min_width=300):
            counter = gr.Markdown()
            new_class = gr.Radio([], label="Class for new boxes (keys 1–9)", elem_id="aa-new-class")
            min_conf = gr.Slider(0.0, 1.0, value=0.0, step=0.05, label="Hide machine boxes below confidence")
            with gr.Row():
                hide_all = gr.Checkbox(False, label="Hide all boxes")
                drop_hidden = gr.Checkbox(False, label="Approve drops the hidden machine boxes")
            copy_btn = gr.Button("Copy boxes from previous image", size="sm")
            relabel_btn = gr.Button("relabel", elem_id="aa-relabel", elem_classes=["aa-hidden"])
            with gr.Accordion("Queue", open=True):
                f_status = gr.Radio(STATUS_FILTERS, value="unreviewed", label="Status")
                f_sort = gr.Radio(SORTS, value="upload", label="Order")
                f_dataset = gr.Dropdown([ANY], value=ANY, label="Dataset")
                f_class = gr.Dropdown([ANY], value=ANY, label="Has a box of class")
                f_none = gr.Checkbox(False, label="Only images with no boxes")
                f_below = gr.Slider(0.0, 1.0, value=0.0, step=0.05,
                                    label="Has a machine box below confidence (0 = any)")
                open_btn = gr.Button("Load queue", variant="secondary", elem_id="aa-open-queue")
            gr.Markdown(LEGEND)
    jump_to = gr.Number(elem_id="aa-jump", elem_classes=["aa-hidden"], precision=0)
    jump_btn = gr.Button("jump", elem_id="aa-jump-btn", elem_classes=["aa-hidden"])
    with gr.Accordion("Project progress", open=False):
        with gr.Row():
            class_plot = gr.BarPlot(x="class", y="boxes", color="source", label="Boxes per class (not rejected)")
            status_plot = gr.BarPlot(x="status", y="images", label="Images by review state")
            progress_plot = gr.BarPlot(x="day", y="images", color="status", label="Reviews per day")
        stats_btn = gr.Button("Refresh", size="sm")

    stats_json = gr.JSON(visible=False)

    outputs = [canvas, state, info, counter, filmstrip, seen]
    common = dict(api_visibility="private", show_progress="hidden")

    def stats(ev):  # the API's review_stats, drawn
        ev.then(with_keywords(ctx.api.review_stats, "project"), project, stats_json, **common).success(
            lambda s: (*stats_frames(s), progress_frame(s)), stats_json, [class_plot, status_plot, progress_plot],
            **common)

    def on_project(p):
        if not p:
            return gr.Radio(choices=[], value=None), gr.Dropdown(choices=[ANY], value=ANY), \
                gr.Dropdown(choices=[ANY], value=ANY)
        proj = services.projects.get_project(p)
        names = proj.class_names
        return (gr.Radio(choices=[f"{n}" for n in names], value=names[0] if names else None),
                gr.Dropdown(choices=[ANY, *[d.name for d in services.images.datasets(p)]], value=ANY),
                gr.Dropdown(choices=[ANY, *names], value=ANY))

    queue_inputs = [project, f_status, f_dataset, f_class, f_none, f_below, f_sort, min_conf, hide_all, canvas, state,
                    seen, new_class]
    changed = project.change(user_errors(on_project), project, [new_class, f_dataset, f_class], **common)
    stats(changed.then(user_errors(ed.open_queue), queue_inputs, outputs, **common))
    stats(open_btn.click(user_errors(ed.open_queue), queue_inputs, outputs, **common))
    for trigger in (f_status.input, f_sort.input, f_none.input, f_dataset.input, f_class.input, f_below.release):
        trigger(user_errors(ed.open_queue), queue_inputs, outputs, **common)

    # Every handler that reads the widget also gets what the relabel step last saw and the class for new
    # boxes, and settles a pending relabel first (Editor.settle).
    nav = [canvas, seen, new_class, state, min_conf, hide_all]

    def stepper(delta: int):
        @user_errors
        def step(c, seen_, nc, s, m, hd, request: gr.Request = None):
            c, s = ed.settle(c, s, seen_, nc)
            return ed.go(delta, c, s, m, hd, request)
        return step

    def reviewer(status: str, advance: bool):
        @user_errors
        def review(c, seen_, nc, s, m, hd, d, request: gr.Request = None):
            c, s = ed.settle(c, s, seen_, nc)
            return ed.review(status, advance, c, s, m, hd, d, request)
        return review

    @user_errors
    def save(c, seen_, nc, s, m, hd, request: gr.Request = None):
        c, s = ed.settle(c, s, seen_, nc)
        return ed.save(c, s, m, hd, request)

    @user_errors
    def jump(target, c, seen_, nc, s, m, hd, request: gr.Request = None):
        c, s = ed.settle(c, s, seen_, nc)
        return ed.jump(target, c, s, m, hd, request)

    @user_errors
    def view(c, seen_, nc, s, m, hd):
        c, s = ed.settle(c, s, seen_, nc)
        return ed.view(c, s, m, hd)

    @user_errors
    def copy_previous(c, seen_, nc, s, m, hd):
        c, s = ed.settle(c, s, seen_, nc)
        return ed.copy_previous(c, s, m, hd)

    prev_btn.click(stepper(-1), nav, outputs, **common, trigger_mode="once")
    next_btn.click(stepper(1), nav, outputs, **common, trigger_mode="once")
    save_btn.click(save, nav, outputs, **common, trigger_mode="once")
    for btn, status, advance in ((approve_btn, "approved", True), (reject_btn, "rejected", False),
                                 (reset_btn, "unreviewed", False)):
        stats(btn.click(reviewer(status, advance), [*nav, drop_hidden], outputs, **common, trigger_mode="once"))
    jump_btn.click(jump, [jump_to, *nav], outputs, **common, trigger_mode="once")
    for trigger in (min_conf.release, hide_all.input):
        trigger(view, nav, outputs, **common)
    copy_btn.click(copy_previous, nav, outputs, **common)
    relabel_btn.click(ed.relabel, [canvas, state, new_class, seen], [canvas, seen], **common)
    stats(stats_btn.click(lambda: None, None, None, **common))
