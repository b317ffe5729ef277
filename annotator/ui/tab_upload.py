"""Upload tab: zips / image files into a dataset, the upload report, label imports, and a paged gallery.

Uploads and imports call the public API (``ui/api.py``); the gallery (thumbnails with the boxes drawn on)
is this tab's own view. Renderers next, wiring last; every event is private.
"""

from __future__ import annotations

import gradio as gr

from ..services import Services
from ..types import IMAGE_EXTENSIONS as ACCEPTED_EXTENSIONS, REVIEW_STATES, UserError
from .api import reporting
from .common import UIContext, table, user_errors, with_keywords

PAGE_SIZE = 48
ALL = "All datasets"
STATUSES = [("All", ""), ("Unreviewed", "unreviewed"), ("Approved", "approved"), ("Rejected", "rejected")]
SKIPPED_HEADERS = ["file", "reason"]
DUP_HEADERS = ["file", "same content as"]
UPLOAD_HEADERS = ["when", "dataset", "source", "added", "duplicates", "skipped", "by"]


def gallery_page(services: Services, project: str, dataset: str = "", status: str = "", page: float = 1) -> dict:
    """A page of the project's images for the gallery (page from 1), thumbnails with their boxes drawn on,
    with the datasets, review counts, active jobs and upload history the tab shows around it."""
    if not project:
        return {"total": 0, "page": 1, "pages": 1, "images": [], "datasets": [], "status": {}}
    p = services.projects.get_project(project)
    ds = None if dataset in ("", None, ALL) else dataset
    result = services.images.list_images(p, ds, status or None, int(page or 1) - 1, PAGE_SIZE)
    details = services.projects.project_details(p)
    thumbs = services.images.gallery_thumbs(result.images)
    return {
        "project": p.name,
        "total": result.total,
        "page": result.page + 1,
        "pages": result.pages,
        "datasets": [{"name": d.name, "images": d.num_images} for d in details.datasets],
        "status": details.status_counts,
        "images": [
            {"id": i.id, "dataset": i.dataset, "rel_path": i.rel_path, "status": i.status, "thumb": str(thumb),
             "boxes": n}
            for i, (thumb, n) in zip(result.images, thumbs)
        ],
        "active_jobs": sum(1 for j in services.jobs.list_jobs(p, limit=20) if j.active),
        "uploads": [
            {**u, "created_at": u["created_at"].isoformat(timespec="seconds")}
            for u in services.images.uploads(p)
        ],
    }


def mapping_from_table(rows) -> dict:
    """The import's class-mapping table (source class, boxes, project class) -> the API's ``mapping``."""
    if rows is None:
        return {}
    if hasattr(rows, "values"):
        rows = rows.values.tolist()
    elif isinstance(rows, dict):
        rows = rows.get("data") or []
    out = {}
    for row in rows:
        if len(row) >= 3 and str(row[0] or "").strip():
            target = str(row[2] or "").strip()
            if target and target != NEW_CLASS:
                out[str(row[0]).strip()] = None if target == SKIP_CLASS else target
    return out


def mapping_table(analysis: dict) -> dict:
    rows = [[c["source"], c["boxes"], c["project"] or NEW_CLASS] for c in analysis["classes"]]
    return {"headers": IMPORT_HEADERS, "data": rows}


IMPORT_HEADERS = ["source class", "boxes", "project class"]
NEW_CLASS = "(new class / drop)"
SKIP_CLASS = "(skip)"


def import_markdown(r: dict) -> str:
    if not r:
        return ""
    per_class = ", ".join(f"{k}: {v}" for k, v in r["per_class"].items()) or "none"
    lines = [f"### Imported {r['boxes']} box(es) on {r['labelled_images']} image(s) ({r['format'].upper()})",
             f"{per_class} · {r['negatives']} negative(s) · {r['images_added']} new image(s), {r['duplicates']} "
             f"already in the project · {r['approved']} approved · {r.get('replaced_machine', 0)} machine box(es) "
             f"replaced · {r['protected']} left alone (a person got there first)"
             + (f" · {r['replaced_protected']} labelled by a person replaced" if r.get("replaced_protected") else "")]
    if r["added_classes"]:
        lines.append("New classes: " + ", ".join(r["added_classes"]))
    if r["dropped_by_class"]:
        lines.append("Dropped (class not mapped): " + ", ".join(f"{k}: {v}" for k, v in r["dropped_by_class"].items()))
    for p in (r["problems"] + [{"file": x["name"], "reason": x["reason"]} for x in r["skipped"]])[:30]:
        lines.append(f"- `{p['file']}`: {p['reason']}")
    return "\n\n".join(lines[:2]) + ("\n\n" + "\n".join(lines[2:]) if lines[2:] else "")


# --- renderers (private) -------------------------------------------------------------------------------
def report_markdown(r: dict) -> str:
    if not r:
        return ""
    head = (
        f"### Added {r['added']} image(s) to `{r['project']}` / `{r['dataset']}`\n"
        f"{r['duplicates']} duplicate(s) not stored again · {r['skipped']} file(s) skipped · {r['seconds']:.1f} s"
    )
    notes = r.get("notes") or []
    if notes:
        shown = "\n".join(f"- {n}" for n in notes[:20])
        more = f"\n- ... and {len(notes) - 20} more" if len(notes) > 20 else ""
        head += f"\n\nNormalized at ingest (so every tool sees the same pixels):\n{shown}{more}"
    return head


def render_report(r: dict):
    skipped = [[s["name"], s["reason"]] for s in r.get("skipped_files", [])]
    dups = [[d["name"], d["same_as"]] for d in r.get("duplicate_files", [])]
    return (
        report_markdown(r),
        gr.Dataframe(value=table(skipped, SKIPPED_HEADERS), visible=bool(skipped)),
        gr.Dataframe(value=table(dups, DUP_HEADERS), visible=bool(dups)),
        None,  # clear the file picker
        gr.Dropdown(value=ALL),
        1,
    )


def render_gallery(g: dict, current_dataset: str):
    images = g.get("images", [])
    items = [(i["thumb"], f"{i['dataset']}/{i['rel_path']} · {i['boxes']} box(es) · {i['status']}") for i in images]
    status = g.get("status", {})
    counts = " · ".join(f"{status.get(k, 0)} {k}" for k in REVIEW_STATES)
    if g.get("project"):
        info = (f"**{g['total']}** image(s) shown by this filter · page {g['page']} of {g['pages']}  \n"
                f"Project total: {sum(status.values())} ({counts})")
    else:
        info = "Choose or create a project first (Projects tab)."
    names = [ALL] + [d["name"] for d in g.get("datasets", [])]
    uploads = [[u["created_at"].replace("T", " "), u["dataset"], u["source"], u["added"], u["duplicates"],
                u["skipped"], u["created_by"] or ""] for u in g.get("uploads", [])]
    return (
        gr.Gallery(value=items),
        info,
        gr.Dropdown(choices=names, value=current_dataset if current_dataset in names else ALL),
        gr.Number(value=g.get("page", 1), maximum=g.get("pages", 1)),
        gr.Dropdown(choices=[d["name"] for d in g.get("datasets", [])]),
        table(uploads, UPLOAD_HEADERS),
    )


# --- wiring ------------------------------------------------------------------------------------------
def build_upload_tab(ctx: UIContext) -> None:
    api, services = ctx.api, ctx.services
    project = ctx.project
    with gr.Row():
        with gr.Column(scale=1, min_width=320):
            files = gr.File(
                label="Drop a .zip (folders inside are kept) or image files: JPG, PNG, WebP, TIFF, BMP",
                file_count="multiple",
                file_types=[".zip", *sorted(ACCEPTED_EXTENSIONS)],
            )
            dataset = gr.Dropdown(
                label="Dataset (pick one to add to, or type a new name; empty = the zip's name)",
                choices=[], value=None, allow_custom_value=True,
            )
            upload_btn = gr.Button("Upload", variant="primary", elem_classes=["aa-needs-annotator"])
        with gr.Column(scale=2):
            report = gr.Markdown()
            skipped = gr.Dataframe(value=table([], SKIPPED_HEADERS), label="Skipped files and why",
                                   interactive=False, wrap=True, visible=False)
            dups = gr.Dataframe(value=table([], DUP_HEADERS), label="Duplicates (stored once)",
                                interactive=False, wrap=True, visible=False)
    with gr.Accordion("Import existing labels (YOLO or COCO, from CVAT, Label Studio, Roboflow, a past training)",
                      open=False):
        with gr.Row():
            with gr.Column(scale=1, min_width=320):
                import_files = gr.File(label="A .zip (or files) with images and labels", file_count="multiple",
                                       file_types=[".zip", ".json", ".txt", ".yaml", *sorted(ACCEPTED_EXTENSIONS)])
                import_fmt = gr.Radio([("YOLO", "yolo"), ("COCO", "coco")], value="yolo", label="Format")
                import_dataset = gr.Textbox(label="Dataset for the images (empty = the zip's name)")
                add_new = gr.Checkbox(value=False, label="Add classes the project does not have yet")
                approve = gr.Checkbox(value=False, label="Mark the imported images approved")
                replace = gr.Checkbox(value=False, label="Also replace the boxes of images a person edited or "
                                                         "approved (default: left alone; machine boxes are "
                                                         "always replaced)")
                with gr.Row():
                    analyze_btn = gr.Button("Check classes", elem_classes=["aa-needs-annotator"])
                    import_btn = gr.Button("Import", variant="primary", elem_classes=["aa-needs-annotator"])
            with gr.Column(scale=2):
                import_map = gr.Dataframe(
                    value=table([], IMPORT_HEADERS), label="Class mapping (edit 'project class'; (skip) drops it)",
                    interactive=True, static_columns=[0, 1], wrap=True,
                )
                import_report = gr.Markdown()
    gr.Markdown("### Images")
    with gr.Row():
        filter_dataset = gr.Dropdown(label="Dataset", choices=[ALL], value=ALL, allow_custom_value=True, scale=2)
        filter_status = gr.Radio(STATUSES, value="", label="Review status", scale=3)
        page = gr.Number(label="Page", value=1, minimum=1, precision=0, scale=1)
        prev_btn = gr.Button("◀ Previous", scale=1)
        next_btn = gr.Button("Next ▶", scale=1)
        refresh_btn = gr.Button("↻ Refresh", scale=1)
    info = gr.Markdown()
    gallery = gr.Gallery(label="Images", columns=8, height=560, object_fit="contain", preview=False,
                         allow_preview=True, show_label=False, elem_id="aa-gallery")
    with gr.Accordion("Upload history", open=False):
        history = gr.Dataframe(value=table([], UPLOAD_HEADERS), interactive=False, wrap=True)

    gallery_json = gr.JSON(visible=False)
    report_json = gr.JSON(visible=False)
    gallery_outputs = [gallery, info, filter_dataset, page, dataset, history]
    private = dict(api_visibility="private")
    listing = user_errors(lambda p, d, st, pg: gallery_page(services, p, d, st, pg))

    def refresh(ev):
        return ev.then(listing, [project, filter_dataset, filter_status, page], gallery_json, **private).success(
            render_gallery, [gallery_json, filter_dataset], gallery_outputs, **private)

    def upload(project_name, files, dataset_name, request: gr.Request = None, progress=gr.Progress()):
        with reporting(progress, "Ingesting", "files"):
            return api.add_images(project=project_name, sources=files, dataset=dataset_name or None, request=request)

    def import_labels(project_name, files, fmt, dataset_name, table_value, add_new_classes, approve_them,
                      replace_them, request: gr.Request = None, progress=gr.Progress()):
        with reporting(progress, "Ingesting", "files"):
            return api.import_labels(project=project_name, sources=files, fmt=fmt, dataset=dataset_name or None,
                                     mapping=mapping_from_table(table_value), add_new_classes=add_new_classes,
                                     approve=approve_them, replace=replace_them, request=request)

    refresh_btn.click(listing, [project, filter_dataset, filter_status, page], gallery_json, **private).success(
        render_gallery, [gallery_json, filter_dataset], gallery_outputs, **private)
    analysis_json = gr.JSON(visible=False)
    import_json = gr.JSON(visible=False)
    analyze_btn.click(with_keywords(api.analyze_labels, "project", "sources", "fmt"), [project, import_files, import_fmt],
                      analysis_json, **private).success(
        mapping_table, analysis_json, import_map, **private)
    imported = import_btn.click(import_labels, [project, import_files, import_fmt, import_dataset, import_map,
                                                add_new, approve, replace], import_json, **private,
                                concurrency_limit=2, concurrency_id="import_labels")
    refresh(imported.success(import_markdown, import_json, import_report, **private))
    up = upload_btn.click(upload, [project, files, dataset], report_json, **private, concurrency_limit=2,
                          concurrency_id="add_images")
    refresh(up.success(render_report, report_json, [report, skipped, dups, files, filter_dataset, page], **private))
    # A new project or filter starts at page 1.
    for trigger in (project.change, filter_dataset.input, filter_status.input):
        refresh(trigger(lambda: 1, None, page, **private, queue=False))
    refresh(page.submit(lambda p: max(1, int(p or 1)), page, page, **private, queue=False))
    refresh(prev_btn.click(lambda p: max(1, int(p or 1) - 1), page, page, **private, queue=False))
    refresh(next_btn.click(lambda p: int(p or 1) + 1, page, page, **private, queue=False))

    # Live: when the project's revision moves (a job's results, an import, reviews, another tab's upload),
    # the gallery shows it without a click; only while this tab is on screen, and once on coming back.
    def live(project_name, dataset_name, status, page_no, tab):
        if not project_name or tab != "upload":
            return [gr.skip()] * (1 + len(gallery_outputs))
        try:
            g = gallery_page(services, project_name, dataset_name, status, page_no)
        except UserError:  # a name being typed, a deleted project: the picker says so
            return [gr.skip()] * (1 + len(gallery_outputs))
        return [g, *render_gallery(g, dataset_name)]

    if ctx.revision("upload") is not None and ctx.active_tab is not None:
        for trigger in (ctx.revision("upload").change, ctx.active_tab.change):
            trigger(live, [project, filter_dataset, filter_status, page, ctx.active_tab],
                    [gallery_json, *gallery_outputs], **private, show_progress="hidden")
