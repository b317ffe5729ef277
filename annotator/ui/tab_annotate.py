"""Annotate tab: review and correct boxes in our own editor (``editor.py``), keyboard first.

The editor holds the open image in the browser and calls its server functions directly; this tab only
feeds it: the project and the queue filters (its ``query`` prop), what the view hides (``view``) and the
project revision from the app's timer (``revision``). Around it: the key legend, the queue filters, the
hide-below-confidence controls, and the progress plots (the API's ``review_stats``, drawn).
"""

from __future__ import annotations

import gradio as gr
import pandas as pd

from .common import UIContext
from .editor import build_editor

STATUS_FILTERS = [("Unreviewed", "unreviewed"), ("Approved", "approved"), ("Rejected", "rejected"), ("All", "all")]
SORTS = [("Upload order", "upload"), ("Most uncertain first", "uncertain"),
         ("Most informative first (uncertain and unlike the approved)", "informative"),
         ("Likely label errors, worst first (from a label check: Health tab)", "errors")]
ANY = "(any)"

LEGEND = """Keys work as soon as an image is shown, never while you type in a field.

- **A** approve → next · **R** reject → next · **Shift+R** reject, stay
- **←** / **→** previous / next (saves first) · **Ctrl+S** save
- **drag** on the image: a box of the current class (**Shift**+drag over other boxes)
- **click** a box to select it, **drag** to move, handles resize
- **1–9** class of the selected (or hovered) box; nothing selected: class for new boxes
- **Q** or **/** every class: type to filter, ↑/↓, Enter
- **Del** / **Backspace** delete the selected box · **Esc** deselect · then **T**: a tracked box's track (#id)
  in the following frames too
- **Alt+arrows** nudge 1 px (**Alt+Shift** 10 px)
- **Ctrl+Z** / **Ctrl+Shift+Z** undo / redo · **X** discard this image's edits
- **wheel** zoom at the pointer · **F** fit · **middle-drag** or **Space+drag** pan
- a likely label error (magenta, from a label check): **Y** apply the model's suggestion and save · **N** dismiss it

Dashed boxes are the model's ("car 0.87"), solid ones a person's or imported."""


REVISION_JS = "(r) => { if (window.aaEditor) window.aaEditor.revisionChanged(r); return []; }"


def query(project, status, dataset, class_name, no_boxes, below, sort, nonce=0) -> dict:
    """The editor's ``query`` prop: which project and which of its images, in which order."""
    return {"project": project or None, "status": status or "unreviewed",
            "dataset": None if dataset in (None, "", ANY) else dataset,
            "class_name": None if class_name in (None, "", ANY) else class_name,
            "no_boxes": bool(no_boxes), "below": float(below) if below else None, "sort": sort or "upload",
            "nonce": int(nonce or 0)}


def view(min_conf, hide_all, drop_hidden) -> dict:
    """The editor's ``view`` prop: the one threshold that hides machine boxes AND that approving drops."""
    return {"min_conf": float(min_conf or 0), "hide_all": bool(hide_all), "drop_hidden": bool(drop_hidden)}


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
    project = ctx.project
    with gr.Row(equal_height=False):
        with gr.Column(scale=5, min_width=640):
            editor = build_editor(ctx.api)
        with gr.Column(scale=1, min_width=250):
            with gr.Accordion("Keys", open=True):
                gr.Markdown(LEGEND, elem_id="aa-legend")
            with gr.Accordion("View", open=True):
                min_conf = gr.Slider(0.0, 1.0, value=0.0, step=0.01, elem_id="aa-min-conf",
                                     label="Hide machine boxes below confidence")
                hide_all = gr.Checkbox(False, label="Hide all boxes", elem_id="aa-hide-all")
                drop_hidden = gr.Checkbox(False, label="Approve drops the hidden machine boxes", elem_id="aa-drop-hidden")
            with gr.Accordion("Queue", open=True):
                f_status = gr.Radio(STATUS_FILTERS, value="unreviewed", label="Status")
                f_sort = gr.Radio(SORTS, value="upload", label="Order")
                f_dataset = gr.Dropdown([ANY], value=ANY, label="Dataset")
                f_class = gr.Dropdown([ANY], value=ANY, label="Has a box of class")
                f_none = gr.Checkbox(False, label="Only images with no boxes")
                f_below = gr.Slider(0.0, 1.0, value=0.0, step=0.05, label="Has a machine box below confidence (0 = any)")
                reload_btn = gr.Button("Reload queue", size="sm", elem_id="aa-reload-queue")
    with gr.Accordion("Project progress", open=False) as progress:
        with gr.Row():
            class_plot = gr.BarPlot(x="class", y="boxes", color="source", label="Boxes per class (not rejected)")
            status_plot = gr.BarPlot(x="status", y="images", label="Images by review state")
            progress_plot = gr.BarPlot(x="day", y="images", color="status", label="Reviews per day")
        stats_btn = gr.Button("Refresh", size="sm")
    progress_open = gr.State(False)
    nonce = gr.State(0)

    common = dict(api_visibility="private", show_progress="hidden", queue=False)
    filters = [project, f_status, f_dataset, f_class, f_none, f_below, f_sort, nonce]

    def on_project(p, *rest):
        if not p:
            return gr.Dropdown(choices=[ANY], value=ANY), gr.Dropdown(choices=[ANY], value=ANY), \
                gr.HTML(query=query(None, *rest[:1], None, None, *rest[3:]))
        try:
            names = services.projects.get_project(p).class_names
            datasets = [d.name for d in services.images.datasets(p)]
        except Exception:  # noqa: BLE001 - a name being typed: the editor says what is wrong
            names, datasets = [], []
        status, _, _, no_boxes, below, sort, n = rest
        return (gr.Dropdown(choices=[ANY, *datasets], value=ANY), gr.Dropdown(choices=[ANY, *names], value=ANY),
                gr.HTML(query=query(p, status, ANY, ANY, no_boxes, below, sort, n)))

    project.change(on_project, filters, [f_dataset, f_class, editor], **common)

    def choices(p, dataset, class_name, tab):
        """Coming back to the tab: datasets made since (an upload on the Upload tab, a video) and renamed or
        added classes appear in the filters; the choices made stay."""
        if tab != "annotate" or not p:
            return gr.skip(), gr.skip()
        try:
            names = services.projects.get_project(p).class_names
            datasets = [d.name for d in services.images.datasets(p)]
        except Exception:  # noqa: BLE001 - a deleted project: the editor says what is wrong
            return gr.skip(), gr.skip()
        return (gr.Dropdown(choices=[ANY, *datasets], value=dataset if dataset in datasets else ANY),
                gr.Dropdown(choices=[ANY, *names], value=class_name if class_name in names else ANY))

    if ctx.active_tab is not None:
        ctx.active_tab.change(choices, [project, f_dataset, f_class, ctx.active_tab], [f_dataset, f_class], **common)
    for trigger in (f_status.input, f_sort.input, f_none.input, f_dataset.input, f_class.input, f_below.release):
        trigger(lambda *a: gr.HTML(query=query(*a)), filters, editor, **common)
    reload_btn.click(lambda n: n + 1, nonce, nonce, **common).then(
        lambda *a: gr.HTML(query=query(*a)), filters, editor, **common)
    # The slider's box and its handle are one value: .change fires for a typed number and a drag alike,
    # and the editor hides and (when asked) drops by exactly that value.
    for trigger in (min_conf.change, hide_all.change, drop_hidden.change):
        trigger(lambda m, a, d: gr.HTML(view=view(m, a, d)), [min_conf, hide_all, drop_hidden], editor, **common)

    revision = ctx.revision("annotate")
    if revision is not None:
        # In the page only (no server round trip, no re-render of the editor component): the editor asks
        # its server function what changed.
        revision.change(None, revision, None, js=REVISION_JS, api_visibility="private", show_progress="hidden")

    review_stats = ctx.api.review_stats  # the API's, drawn
    # Progress plots: drawn when the accordion is opened (and on Refresh); not on every revision, which would
    # cost the page a Gradio event per review.
    def plots(p, is_open):
        if not p or not is_open:
            return gr.skip(), gr.skip(), gr.skip()
        try:
            s = review_stats(project=p)
        except Exception:  # noqa: BLE001 - no such project (yet): nothing to draw
            return gr.skip(), gr.skip(), gr.skip()
        return (*stats_frames(s), progress_frame(s))

    plot_outputs = [class_plot, status_plot, progress_plot]
    progress.expand(lambda: True, None, progress_open, **common).then(plots, [project, progress_open], plot_outputs,
                                                                      **common)
    progress.collapse(lambda: False, None, progress_open, **common)
    project.change(plots, [project, progress_open], plot_outputs, **common)
    stats_btn.click(lambda p: plots(p, True), project, plot_outputs, **common)
