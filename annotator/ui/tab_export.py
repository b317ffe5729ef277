"""Export tab: YOLO or COCO zip of the project's labels (and images), with a summary and a history."""

from __future__ import annotations

import gradio as gr

from ..services import Services
from .common import UIContext, table, user_errors, username

HISTORY_HEADERS = ["when", "format", "images", "boxes", "negatives", "options", "file", "by"]


def make_handlers(services: Services):
    @user_errors
    def export_dataset(project: str, fmt: str, datasets: list, approved_only: bool, include_images: bool,
                       val_ratio: float, per_split: bool, with_scores: bool, request: gr.Request = None,
                       progress=gr.Progress()):
        def tick(done: int, total: int, name: str) -> None:
            progress((done, total), desc=f"Copying {name}", unit="images")

        result = services.transfer.export_dataset(
            project, fmt, datasets=[d for d in (datasets or []) if d], approved_only=bool(approved_only),
            include_images=bool(include_images), val_ratio=float(val_ratio or 0), per_split=bool(per_split),
            with_scores=bool(with_scores), user=username(request), progress=tick,
        )
        return result, result["file"]

    @user_errors
    def history(project: str):
        if not project:
            return table([], HISTORY_HEADERS)
        rows = []
        for e in services.transfer.exports(project):
            s, o = e["summary"], e["options"]
            opts = ", ".join(k for k in ("approved_only", "include_images", "per_split", "with_scores") if o.get(k))
            rows.append([e["created_at"].isoformat(timespec="seconds").replace("T", " "), e["format"], s["images"],
                         s["boxes"], s["negatives"], opts, e["file"], e["created_by"] or ""])
        return table(rows, HISTORY_HEADERS)

    return {"export_dataset": export_dataset, "history": history}


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
    h = make_handlers(ctx.services)
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
            export_btn = gr.Button("Export", variant="primary")
        with gr.Column(scale=3):
            summary = gr.Markdown()
            download = gr.File(label="Download", interactive=False)
    with gr.Accordion("Past exports", open=False):
        history = gr.Dataframe(value=table([], HISTORY_HEADERS), interactive=False, wrap=True)
    result_json = gr.JSON(visible=False)

    exported = export_btn.click(
        h["export_dataset"], [project, fmt, datasets, approved_only, include_images, val_ratio, per_split,
                              with_scores], [result_json, download], api_name="export_dataset",
        concurrency_limit=2,
    )
    exported.success(summary_markdown, result_json, summary, api_visibility="private").then(
        h["history"], project, history, api_visibility="private")
    project.change(h["history"], project, history, api_visibility="private")
    project.change(lambda p: gr.Dropdown(choices=[d.name for d in ctx.services.images.datasets(p)] if p else [], value=[]),
                   project, datasets, api_visibility="private")
