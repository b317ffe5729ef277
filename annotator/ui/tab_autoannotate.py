"""Auto-annotate tab: the project's model registry, the run form with its class-mapping table, System.

Every action calls the public API (``ui/api.py``); renderers next, wiring last; every event is private.
"""

from __future__ import annotations

import gradio as gr

from .common import UIContext, conf_hint, imgsz_hint, table, user_errors, with_keywords

MODEL_HEADERS = ["name", "source", "classes", "imgsz", "size MB", "sha256", "added"]
MAP_HEADERS = ["model index", "model class", "project class"]
SKIP = "(skip)"
SCOPES = [("Unreviewed images (default)", "unreviewed"), ("Unreviewed + rejected images", "untouched")]
PICKLE_WARNING = (
    "Models must be ultralytics *detection* checkpoints (YOLOv5u/v8/v9/v10/11 detect); classification, "
    "segmentation, pose and OBB models are refused. A `.pt` file is a Python pickle, which could run code when "
    "loaded: before loading, the app reads what the file's pickle imports and refuses anything a detection "
    "checkpoint never needs (nothing of it runs)."
)
TRUST_ALL_WARNING = (
    "**This app trusts every checkpoint** (`ANNOTATOR_TRUST_ALL_CHECKPOINTS=1`): files are registered without "
    "that check, so a `.pt` can run code on this server when loaded. Only upload weights you trust."
)


def overrides_from_table(rows) -> dict:
    """Mapping-table rows (model index, model class, project class) -> the API's ``overrides``."""
    if rows is None:
        return {}
    if hasattr(rows, "values"):  # a pandas frame from the Dataframe component
        rows = rows.values.tolist()
    elif isinstance(rows, dict):
        rows = rows.get("data") or []
    out = {}
    for row in rows:
        if len(row) < 3 or (row[0] in (None, "") and not str(row[1] or "").strip()):
            continue
        target = str(row[2] or "").strip()
        key = str(row[1] or "").strip() or str(row[0])
        out[key] = None if target in ("", SKIP, "skip") else target
    return out


# --- renderers (private) -------------------------------------------------------------------------------
def render_models(models: list[dict], current: str | None):
    rows = [[m["name"], m["source"], ", ".join(m["classes"][:8]) + (" ..." if len(m["classes"]) > 8 else ""),
             m.get("imgsz") or "", round(m["size_bytes"] / 2**20, 1), m["sha256"][:12],
             (m.get("created_at") or "").replace("T", " ")] for m in models or []]
    names = [m["name"] for m in models or []]
    value = current if current in names else (names[-1] if names else None)
    return table(rows, MODEL_HEADERS), gr.Dropdown(choices=names, value=value)


def system_markdown(info: dict) -> str:
    def block(title: str, i: dict) -> str:
        gpus = ", ".join(f"GPU {g['index']}: {g['name']} ({g['memory_gb']} GB)" for g in i.get("gpus", [])) or "none"
        return (f"**{title}** · torch {i.get('torch')} · ultralytics {i.get('ultralytics')} · "
                f"CUDA available: **{i.get('cuda_available')}** · GPUs: {gpus} · jobs use "
                f"**{i.get('device_label') or i.get('device')}**")

    lines = [block("This app", info.get("app", {}))]
    workers = info.get("workers", [])
    if not workers:
        lines.append("**No worker is running**: jobs wait in the queue. `python app.py` starts one; on other "
                     "hosts run `annotator worker`.")
    for w in workers:
        lines.append(block(f"Worker {w.get('worker')}", w))
    return "\n\n".join(lines)


# --- wiring ------------------------------------------------------------------------------------------
def build_autoannotate_tab(ctx: UIContext):
    """Returns the event of a successful Run, for the app to chain a Jobs-panel refresh onto."""
    api, services = ctx.api, ctx.services
    project = ctx.project
    with gr.Row():
        with gr.Column(scale=2, min_width=320):
            gr.Markdown("### Models")
            gr.Markdown(PICKLE_WARNING)
            if services.settings.trust_all_checkpoints:
                gr.Markdown(TRUST_ALL_WARNING, elem_id="aa-trust-all")
            model_file = gr.File(label="Upload an ultralytics .pt", file_types=[".pt"], file_count="single")
            model_name = gr.Textbox(label="Name in the registry (default: the file name)")
            upload_btn = gr.Button("Register model", elem_classes=["aa-needs-admin"])
            models_table = gr.Dataframe(value=table([], MODEL_HEADERS), label="Registered models",
                                        interactive=False, wrap=True)
        with gr.Column(scale=3, min_width=420):
            gr.Markdown("### Run")
            with gr.Row():
                model = gr.Dropdown(label="Model", choices=[], allow_custom_value=True)
                datasets = gr.Dropdown(label="Datasets (empty = all)", choices=[], multiselect=True,
                                       allow_custom_value=True)
            scope = gr.Radio(SCOPES, value="unreviewed", label="Images",
                             info="Images a person saved or approved are never touched; machine boxes of "
                                  "the others are replaced.")
            track = gr.Checkbox(False, label="Track objects through each video's frames (ByteTrack): every machine "
                                             "box gets a track id, and deleting one in the editor can delete its "
                                             "track in the following frames")
            with gr.Row():
                conf = gr.Slider(0.0, 1.0, value=0.0, step=0.01, label="Confidence threshold (0 = the model's own)")
                iou = gr.Slider(0.05, 1.0, value=0.7, step=0.05, label="IoU threshold (NMS)")
            with gr.Row():
                imgsz = gr.Number(label="Image size (0 = from the data)", value=0, precision=0, minimum=0)
                max_det = gr.Number(label="Max detections", value=300, precision=0, minimum=1)
                device = gr.Dropdown(label="Device", choices=["auto", "cpu", "0", "1", "2", "3"], value="auto",
                                     allow_custom_value=True)
                batch = gr.Number(label="Batch (0 = auto)", value=0, precision=0, minimum=0)
            imgsz_note = gr.Markdown(elem_id="aa-annotate-imgsz")
            mapping = gr.Dataframe(
                value=table([], MAP_HEADERS), label="Class mapping: model class -> project class "
                "(edit the last column; (skip) drops those predictions)", interactive=True,
                static_columns=[0, 1], wrap=True,
            )
            run_btn = gr.Button("Run auto-annotation", variant="primary", elem_classes=["aa-needs-annotator"])
            run_result = gr.Markdown()
    with gr.Accordion("System", open=False):
        system_md = gr.Markdown("Press *Check* to see torch, CUDA, the GPUs and the device jobs will use.")
        system_btn = gr.Button("Check", size="sm")

    models_json = gr.JSON(visible=False)
    job_json = gr.JSON(visible=False)
    info_json = gr.JSON(visible=False)
    private = dict(api_visibility="private")

    def list_models(project_name):
        return api.list_models(project=project_name) if project_name else []

    def mapping_rows(project_name, model_name):
        """The class-mapping table: every model class with the project class it maps to (by name)."""
        if not project_name or not model_name:
            return table([], MAP_HEADERS)
        mapping = api.class_mapping(project=project_name, model=model_name)
        model_classes = services.models.get_model(project_name, model_name).class_names
        classes = services.projects.get_project(project_name).class_names
        return table([[i, name, classes[mapping[str(i)]] if mapping.get(str(i)) is not None else SKIP]
                      for i, name in enumerate(model_classes)], MAP_HEADERS)

    def run(project_name, model_name, datasets_, conf_, iou_, imgsz_, max_det_, device_, batch_, scope_, track_,
            rows, request: gr.Request = None):
        if not model_name:
            raise gr.Error("Choose a model (upload one on the left, or use the Demo project's demo-shapes)")
        return api.start_annotation(project=project_name, model=model_name, datasets=datasets_, conf=conf_, iou=iou_,
                                    imgsz=int(imgsz_ or 0) or None, max_det=int(max_det_ or 300),
                                    device=device_ or None, batch=int(batch_ or 0), scope=scope_,
                                    overrides=overrides_from_table(rows), track=bool(track_), request=request)

    def show_models(ev):
        return ev.success(render_models, [models_json, model], [models_table, model], **private)

    def show_mapping(ev):
        return ev.then(user_errors(mapping_rows), [project, model], mapping, **private)

    model.input(user_errors(mapping_rows), [project, model], mapping, **private)
    show_mapping(show_models(project.change(list_models, project, models_json, **private)))
    for trigger in (project.change, model.change, device.change):
        trigger(lambda p, m, d: imgsz_hint(api, p, m, d) + conf_hint(api, p, m), [project, model, device], imgsz_note,
                **private,
                show_progress="hidden")
    project.change(user_errors(lambda p: gr.Dropdown(choices=[d.name for d in services.images.datasets(p)] if p else [],
                                                      value=[])), project, datasets, **private)

    uploaded = upload_btn.click(with_keywords(api.add_model, "project", "path", "name"), [project, model_file, model_name],
                                models_json, **private)
    show_mapping(uploaded.success(list_models, project, models_json, **private).success(
        lambda models: render_models(models, models[-1]["name"] if models else None), models_json,
        [models_table, model], **private,
    )).then(lambda: (None, ""), None, [model_file, model_name], **private)

    ran = run_btn.click(run, [project, model, datasets, conf, iou, imgsz, max_det, device, batch, scope, track, mapping],
                        job_json, **private)
    queued = ran.success(lambda j: f"Queued job **{j['id']}**: {j['total']} image(s). Progress below, under *Jobs*.",
                         job_json, run_result, **private)

    system_btn.click(api.system_info, None, info_json, **private).success(
        system_markdown, info_json, system_md, **private)
    return queued
