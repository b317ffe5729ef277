"""Health tab: does the dataset tell the truth? Per class and split, box sizes and shapes, objects per image,
near-duplicates and the train/val line, imbalance and drift (plots, with the warnings above them), and a label
check that runs a model over the approved images to find likely label errors for the Annotate tab's queue.

Everything comes from the public API (``health``, ``near_duplicates``, ``start_label_check``); renderers
first, wiring last.
"""

from __future__ import annotations

import gradio as gr
import pandas as pd

from .common import UIContext, user_errors

SCOPES = [("Approved images (what training learns from)", "approved"), ("Every image and box", "all")]
# One colour per split, always the same (a plot whose only split is "unassigned" drew no bars without it).
SPLIT_COLOURS = {"train": "#4c78a8", "val": "#f58518", "test": "#54a24b", "unassigned": "#9ca3af"}


def health_markdown(h: dict) -> str:
    if not h:
        return "Choose a project first."
    im, bx, dup = h["images"], h["boxes"], h["duplicates"]
    splits = " · ".join(f"{k} {v}" for k, v in im["per_split"].items() if v) or "none"
    lines = [f"### {h['project']}: {im['total']} image(s), {bx['total']} box(es)",
             f"Per split: {splits} · without boxes: {h['images_without_boxes']['count']} · boxes under "
             f"{h['tiny_boxes']['min_side_px']} px: {h['tiny_boxes']['count']} · near-duplicate groups: "
             f"{dup['groups']} ({dup['images']} images; {dup['straddling']} on both sides of train/val)"]
    warnings = h.get("warnings") or []
    lines.append("\n".join(f"- ⚠ {w}" for w in warnings) if warnings else "No warnings.")
    return "\n\n".join(lines)


def class_frame(h: dict) -> pd.DataFrame:
    """Boxes per class and split. Every split is in every frame (zero rows where it has none): a Gradio bar
    plot keeps the colours of the first frame it drew, and draws no bar of a split that frame lacked."""
    classes = h.get("per_class") or [{"class": "(none)", "per_split": {}}]
    rows = [{"class": c["class"], "split": s, "boxes": c["per_split"].get(s, 0)} for c in classes for s in SPLIT_COLOURS]
    return pd.DataFrame(rows)


# The histograms' bars, in their own order: a bar plot sorts category labels as text ("10+" before "2")
# unless told. Order and y axis are set once, when the plot is built: a Gradio bar plot updated with new
# props (sort, y_lim) after a frame of zeros draws no bars at all; updated with data alone it does.
SIZE_LABELS = [f"≤{k / 10:.1f}" for k in range(1, 11)]  # health.box_size: 10 bins over 0..1
ASPECT_LABELS = ["<=1:8", "1:4", "1:2", "1:1", "2:1", "4:1", ">=8:1"]  # health.box_aspect
OBJECT_LABELS = [str(k) for k in range(10)] + ["10+"]  # health.objects_per_image


def hist_frame(hist: dict, x: str, labels=None) -> pd.DataFrame:
    labels = [str(v) for v in (labels or hist.get("labels") or [])]
    return pd.DataFrame({x: labels, "count": list(hist.get("counts") or [0] * len(labels))})


def size_labels(edges) -> list[str]:
    """Each bin by its upper edge, a share of the image's side ("≤0.1"): short enough to stay legible (the
    labels of SIZE_LABELS for health's 10 bins)."""
    return [f"≤{b:.1f}" for b in edges[1:]]


def drift_frame(h: dict) -> pd.DataFrame:
    d = h.get("drift") or {}
    rows = [{"class": c["class"], "split": s, "share %": round(100 * c[f"{s}_share"], 1)}
            for c in d.get("per_class", []) for s in ("train", "val")]
    return pd.DataFrame(rows or [{"class": "(no train or val boxes yet)", "split": s, "share %": 0.0}
                                 for s in ("train", "val")])


def duplicates_rows(r: dict) -> list[list]:
    return [[len(g), "  ≈  ".join(f"{x['name']} [{x['split'] or '-'}]" for x in g[:6]) + (" …" if len(g) > 6 else "")]
            for g in r.get("largest", [])]


def render(h: dict, dups: dict):
    box = h.get("box_size") or {"edges": [0, 1], "counts": [0]}
    return (
        health_markdown(h),
        class_frame(h),
        hist_frame(box, "side share", size_labels(box["edges"])),
        hist_frame(h.get("box_aspect") or {}, "width:height"),
        hist_frame(h.get("objects_per_image") or {}, "objects"),
        drift_frame(h),
        {"headers": ["images", "group"], "data": duplicates_rows(dups) or [[0, "no near-duplicates"]]},
    )


def build_health_tab(ctx: UIContext) -> None:
    api, project = ctx.api, ctx.project
    with gr.Row():
        scope = gr.Radio(SCOPES, value="approved", label="Count", scale=3)
        refresh = gr.Button("↻ Refresh", scale=1)
    summary = gr.Markdown()
    with gr.Row():
        per_class = gr.BarPlot(x="class", y="boxes", color="split", label="Boxes per class and split", height=320,
                               color_map=SPLIT_COLOURS, y_lim=[0, None])
        drift = gr.BarPlot(x="class", y="share %", color="split", label="Class share of boxes: train vs val "
                                                                       "(drift)", height=320, color_map=SPLIT_COLOURS, y_lim=[0, 100])
    with gr.Row():
        sizes = gr.BarPlot(x="side share", y="count", label="Box size (√ box area / image area)", height=280,
                           sort=SIZE_LABELS, y_lim=[0, None])
        aspects = gr.BarPlot(x="width:height", y="count", label="Box aspect (width:height)", height=280,
                             sort=ASPECT_LABELS, y_lim=[0, None])
        objects = gr.BarPlot(x="objects", y="count", label="Objects per image", height=280, sort=OBJECT_LABELS,
                             y_lim=[0, None])
    dup_table = gr.Dataframe(headers=["images", "group"], label="Largest near-duplicate groups (kept in one split)",
                             interactive=False, wrap=True)
    with gr.Accordion("Find likely label errors", open=True):
        gr.Markdown("A model predicts on every approved image; confident disagreements with the labels (a missed "
                    "object, a box on nothing, another class, a loose box) become the Annotate tab's queue "
                    "**Likely label errors, worst first**, where **Y** applies the model's suggestion and **N** "
                    "dismisses it. A training job runs this check with its new model by itself.")
        with gr.Row():
            model = gr.Dropdown(label="Model", choices=[], allow_custom_value=True, scale=2)
            conf = gr.Slider(0.1, 0.95, value=0.5, step=0.05, label="Flag when the model is at least this sure",
                             scale=2)
            check = gr.Button("Check labels", variant="primary", scale=1, elem_classes=["aa-needs-annotator"])
        check_md = gr.Markdown()

    outputs = [summary, per_class, sizes, aspects, objects, drift, dup_table]
    private = dict(api_visibility="private")

    def load(p, sc):
        if not p:
            return render({}, {})
        return render(api.health(project=p, scope=sc), api.near_duplicates(project=p))

    def models(p):
        names = [m["name"] for m in api.list_models(project=p)] if p else []
        return gr.Dropdown(choices=names, value=names[-1] if names else None)

    def start(p, m, c, request: gr.Request = None):
        job = api.start_label_check(project=p, model=m, conf=c, request=request)
        return (f"Queued label check job {job['id']} on {job['total']} approved image(s): the Jobs panel follows "
                "it; then open the Annotate tab's queue *Likely label errors*.")

    for ev in (scope.input, refresh.click):
        ev(user_errors(load), [project, scope], outputs, **private)
    project.change(user_errors(models), project, model, **private)
    check.click(user_errors(start), [project, model, conf], check_md, **private)
    # The numbers are computed when the tab is on screen (and on a project change while it is), not for
    # every project picked on another tab: at 100k images they take about a second.
    if ctx.active_tab is not None:
        for ev in (project.change, ctx.active_tab.change):
            ev(user_errors(lambda p, sc, tab: load(p, sc) if tab == "health" else [gr.skip()] * len(outputs)),
               [project, scope, ctx.active_tab], outputs, **private, show_progress="hidden")
