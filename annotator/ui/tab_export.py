"""Export tab: YOLO or COCO zip of the project's labels (and images), with a summary and a history.

The export is the public API's ``export_dataset`` (``ui/api.py``); every event here is private.
"""

from __future__ import annotations

import gradio as gr

from ..services import Services
from .api import reporting
from .common import UIContext, table, user_errors

HISTORY_HEADERS = ["when", "format", "images", "boxes", "negatives", "options", "file", "by"]


def history(services: Services, project: str):
    if not project:
        return table([], HISTORY_HEADERS)
    rows = []
    for e in services.transfer.exports(project):
        s, o = e["summary"], e["options"]
        opts = ", ".join(k for k in ("approved_only", "include_images", "per_split", "with_scores") if o.get(k))
        rows.append([e["created_at"].isoformat(timespec="seconds").replace("T", " "), e["format"], s["images"],
                     s["boxes"], s["negatives"], opts, e["file"], e["created_by"] or ""])
    return table(rows, HISTORY_HEADERS)


def summary_markdown(r: dict) -> str:
    if not r:
        return ""
    per_class = ", ".join(f"{k}: {v}" for k, v in r["per_class"].items()) or "none"
    per_split = ", ".join(f"{k}: {v}" for k, v in r["per_split"].items())
    lines = [f"### Exported {r['images']} image(s) as {r['format'].upper()}",
             f"**{r['boxes']}** boxes ({per_class}) · **{r['negatives']}** negatives · splits: {per_split} · "
             f"{r['size_bytes'] / 2**20:.1f} MB"]
    lines += [f"- {n}" for n in r.get("notes", [])]
    if r.get("dropped"):
        lines.append(f"Dropped {len(r['dropped'])} box(es):")
        lines += [f"- {d['file']}: {d['reason']}" for d in r["dropped"][:20]]
    return "\n\n".join(lines[:2]) + ("\n\n" + "\n".join(lines[2:]) if lines[2:] else "")


def build_export_tab(ctx: UIContext) -> None:
    api, services = ctx.api, ctx.services
    project = ctx.project
    with gr.Row():
        with gr.Column(scale=2, min_width=320):
            fmt = gr.Radio([("YOLO (ultralytics layout)", "yolo"), ("COCO (annotations.json)", "coco")],
                           value="yolo", label="Format")
            datasets = gr.Dropdown(label="Datasets (empty = all)", choices=[], multiselect=True,
                                   allow_custom_value=True)
            approved_only = gr.Checkbox(value=True, label="Approved images only")
            include_images = gr.Checkbox(value=True, label="Include the images (off = labels only)")
            val_ratio = gr.Slider(0.0, 0.5, value=0.2, step=0.05, label="Validation share for images without a split")
            with gr.Row():
                per_split = gr.Checkbox(value=False, label="COCO: one annotations file per split")
                with_scores = gr.Checkbox(value=False, label="COCO: keep machine confidence as 'score'")
            export_btn = gr.Button("Export", variant="primary", elem_classes=["aa-needs-annotator"])
        with gr.Column(scale=3):
            summary = gr.Markdown()
            download = gr.File(label="Download", interactive=False)
    with gr.Accordion("Past exports", open=False):
        history_table = gr.Dataframe(value=table([], HISTORY_HEADERS), interactive=False, wrap=True)
    result_json = gr.JSON(visible=False)
    private = dict(api_visibility="private")
    past = user_errors(lambda p: history(services, p))

    def export(project_name, fmt_, datasets_, approved_only_, include_images_, val_ratio_, per_split_,
               with_scores_, request: gr.Request = None, progress=gr.Progress()):
        with reporting(progress, "Copying", "images"):
            result = api.export_dataset(project=project_name, fmt=fmt_, datasets=datasets_,
                                        approved_only=approved_only_, include_images=include_images_,
                                        val_ratio=val_ratio_, per_split=per_split_, with_scores=with_scores_,
                                        request=request)
        return result, result["file"]

    exported = export_btn.click(
        export, [project, fmt, datasets, approved_only, include_images, val_ratio, per_split, with_scores],
        [result_json, download], **private, concurrency_limit=2, concurrency_id="export_dataset",
    )
    exported.success(summary_markdown, result_json, summary, **private).then(past, project, history_table, **private)
    project.change(past, project, history_table, **private)
    project.change(user_errors(lambda p: gr.Dropdown(choices=[d.name for d in services.images.datasets(p)] if p else [],
                                                      value=[])), project, datasets, **private)
