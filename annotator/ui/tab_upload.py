"""Upload tab: zips / image files into a dataset, the upload report, label imports, and a paged gallery.

Uploads and imports call the public API (``ui/api.py``); the gallery (thumbnails with the boxes drawn on)
is this tab's own view. Renderers next, wiring last; every event is private.
"""

from __future__ import annotations

import gradio as gr

from ..services import Services
from ..types import IMAGE_EXTENSIONS as ACCEPTED_EXTENSIONS, REVIEW_STATES, VIDEO_EXTENSIONS, UserError
from .api import reporting
from .common import UIContext, table, user_errors, with_keywords

PAGE_SIZE = 48
ALL = "All datasets"
STATUSES = [("All", ""), ("Unreviewed", "unreviewed"), ("Approved", "approved"), ("Rejected", "rejected")]
SKIPPED_HEADERS = ["file", "reason"]
DUP_HEADERS = ["file", "same content as"]
UPLOAD_HEADERS = ["when", "dataset", "source", "added", "duplicates", "skipped", "by"]


SAMPLING_MODES = [("Frames per second", "fps"), ("Every Nth frame", "every"), ("On scene change", "scene"),
                  ("All frames", "all")]
SAMPLING_DEFAULTS = {"fps": 2, "every": 10, "scene": 0.2, "all": 0}
SAMPLING_LABELS = {"fps": "Frames per second", "every": "Keep every Nth frame (N)",
                   "scene": "Scene change threshold (0-1: how different a frame must be from the last kept one)",
                   "all": "(no value needed)"}


def sampling_text(mode: str, value, max_frames) -> str:
    """The API's ``sampling`` string from the tab's video controls ("" = the app's default)."""
    if not mode:
        return ""
    text = "all" if mode == "all" else f"{mode}:{'' if value in (None, '') else _num(value)}"
    if max_frames not in (None, "", 0):
        text += f",max:{_num(max_frames)}"
    return text


def _num(v) -> str:
    f = float(v)
    return str(int(f)) if f.is_integer() else str(f)


def gallery_page(services: Services, project: str, dataset: str = "", status: str = "", page: float = 1,
                 similar: bool = False) -> dict:
    """A page of the project's images for the gallery (page from 1), thumbnails with their boxes drawn on,
    with the datasets, review counts, active jobs and upload history the tab shows around it. ``similar``:
    only images with a near-duplicate, group after group."""
    if not project:
        return {"total": 0, "page": 1, "pages": 1, "images": [], "datasets": [], "status": {}}
    p = services.projects.get_project(project)
    ds = None if dataset in ("", None, ALL) else dataset
    result = services.images.list_images(p, ds, status or None, int(page or 1) - 1, PAGE_SIZE, bool(similar))
    details = services.projects.project_details(p)
    thumbs = services.images.gallery_thumbs(result.images)
    return {
        "project": p.name,
        "similar": bool(similar),
        "total": result.total,
        "page": result.page + 1,
        "pages": result.pages,
        "datasets": [{"name": d.name, "images": d.num_images} for d in details.datasets],
        "status": details.status_counts,
        "images": [
            {"id": i.id, "dataset": i.dataset, "rel_path": i.rel_path, "status": i.status, "thumb": str(thumb),
             "boxes": n, "frame": i.frame_label}
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
    for v in r.get("videos") or []:
        head += (f"\n\n**Video** `{v['name']}`: {v['duration']}, {v['size']} at {v['fps']} fps"
                 + (f", rotated {v['rotation']}°" if v.get("rotation") else "")
                 + f" · {v['sampling']} · {v['read']} frames read, {v['kept']} kept, {v['added']} added"
                 + (f"  \n⚠ {v['stopped']}" if v.get("stopped") else ""))
    similar = r.get("similar") or []
    if similar:
        shown = "\n".join(f"- `{x['name']}` ≈ `{x['similar_to']}` ({x['distance']} bits)" for x in similar[:20])
        more = f"\n- ... and {len(similar) - 20} more" if len(similar) > 20 else ""
        head += (f"\n\n**{len(similar)} near-duplicate(s)** of images already in the project (or of each "
                 f"other); they stay in one split. The gallery's *Similar images* filter shows them:\n{shown}{more}")
    notes = [n for n in r.get("notes") or [] if not any(n.startswith(v["name"] + ":") for v in r.get("videos") or [])]
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
    items = [(i["thumb"], f"{i['dataset']}/{i['rel_path']}" + (f" · {i['frame']}" if i.get("frame") else "")
              + f" · {i['boxes']} box(es) · {i['status']}") for i in images]
    status = g.get("status", {})
    counts = " · ".join(f"{status.get(k, 0)} {k}" for k in REVIEW_STATES)
    if g.get("project"):
        what = "image(s) with a near-duplicate, group by group," if g.get("similar") else "image(s)"
        info = (f"**{g['total']}** {what} shown by this filter · page {g['page']} of {g['pages']}  \n"
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
                label="Drop a .zip (folders inside are kept), image files (JPG, PNG, WebP, TIFF, BMP) or videos "
                      "(MP4, MOV, AVI, MKV, WebM)",
                file_count="multiple",
                file_types=[".zip", *sorted(ACCEPTED_EXTENSIONS), *sorted(VIDEO_EXTENSIONS)],
            )
            dataset = gr.Dropdown(
                label="Dataset (pick one to add to, or type a new name; empty = the zip's or video's name)",
                choices=[], value=None, allow_custom_value=True,
            )
            with gr.Accordion("Video frames", open=False):
                sample_mode = gr.Radio(SAMPLING_MODES, value="fps", label="Which frames become images")
                sample_value = gr.Number(value=SAMPLING_DEFAULTS["fps"], label=SAMPLING_LABELS["fps"], minimum=0)
                sample_max = gr.Number(value=0, precision=0, minimum=0, label="At most this many frames per video "
                                                                               "(0 = no limit)")
                keep_video = gr.Checkbox(value=False, label="Keep the video file too (default: frames only)")
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
        filter_similar = gr.Checkbox(value=False, label="Similar images", scale=1,
                                     info="near-duplicates only, group by group")
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
    listing = user_errors(lambda p, d, st, pg, sim: gallery_page(services, p, d, st, pg, sim))
    filters = [project, filter_dataset, filter_status, page, filter_similar]

    def refresh(ev):
        return ev.then(listing, filters, gallery_json, **private).success(
            render_gallery, [gallery_json, filter_dataset], gallery_outputs, **private)

    def upload(project_name, files, dataset_name, mode, value, max_frames, keep, request: gr.Request = None,
               progress=gr.Progress()):
        with reporting(progress, "Ingesting", "files"):
            return api.add_images(project=project_name, sources=files, dataset=dataset_name or None,
                                  sampling=sampling_text(mode, value, max_frames) or None, keep_video=bool(keep),
                                  request=request)

    def import_labels(project_name, files, fmt, dataset_name, table_value, add_new_classes, approve_them,
                      replace_them, request: gr.Request = None, progress=gr.Progress()):
        with reporting(progress, "Ingesting", "files"):
            return api.import_labels(project=project_name, sources=files, fmt=fmt, dataset=dataset_name or None,
                                     mapping=mapping_from_table(table_value), add_new_classes=add_new_classes,
                                     approve=approve_them, replace=replace_them, request=request)

    refresh_btn.click(listing, filters, gallery_json, **private).success(
        render_gallery, [gallery_json, filter_dataset], gallery_outputs, **private)
    sample_mode.input(lambda m: gr.Number(value=SAMPLING_DEFAULTS.get(m, 0), label=SAMPLING_LABELS.get(m, ""),
                                          interactive=m != "all"), sample_mode, sample_value, **private, queue=False)
    analysis_json = gr.JSON(visible=False)
    import_json = gr.JSON(visible=False)
    analyze_btn.click(with_keywords(api.analyze_labels, "project", "sources", "fmt"), [project, import_files, import_fmt],
                      analysis_json, **private).success(
        mapping_table, analysis_json, import_map, **private)
    imported = import_btn.click(import_labels, [project, import_files, import_fmt, import_dataset, import_map,
                                                add_new, approve, replace], import_json, **private,
                                concurrency_limit=2, concurrency_id="import_labels")
    refresh(imported.success(import_markdown, import_json, import_report, **private))
    up = upload_btn.click(upload, [project, files, dataset, sample_mode, sample_value, sample_max, keep_video],
                          report_json, **private, concurrency_limit=2, concurrency_id="add_images")
    refresh(up.success(render_report, report_json, [report, skipped, dups, files, filter_dataset, page], **private))
    # A new project or filter starts at page 1.
    for trigger in (project.change, filter_dataset.input, filter_status.input, filter_similar.input):
        refresh(trigger(lambda: 1, None, page, **private, queue=False))
    refresh(page.submit(lambda p: max(1, int(p or 1)), page, page, **private, queue=False))
    refresh(prev_btn.click(lambda p: max(1, int(p or 1) - 1), page, page, **private, queue=False))
    refresh(next_btn.click(lambda p: int(p or 1) + 1, page, page, **private, queue=False))

    # Live: when the project's revision moves (a job's results, an import, reviews, another tab's upload),
    # the gallery shows it without a click; only while this tab is on screen, and once on coming back.
    def live(project_name, dataset_name, status, page_no, similar, tab):
        if not project_name or tab != "upload":
            return [gr.skip()] * (1 + len(gallery_outputs))
        try:
            g = gallery_page(services, project_name, dataset_name, status, page_no, similar)
        except UserError:  # a name being typed, a deleted project: the picker says so
            return [gr.skip()] * (1 + len(gallery_outputs))
        return [g, *render_gallery(g, dataset_name)]

    if ctx.revision("upload") is not None and ctx.active_tab is not None:
        for trigger in (ctx.revision("upload").change, ctx.active_tab.change):
            trigger(live, [*filters, ctx.active_tab],
                    [gallery_json, *gallery_outputs], **private, show_progress="hidden")
