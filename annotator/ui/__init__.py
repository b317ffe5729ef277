"""The Gradio app: the public API (``api.py``), a header with the shared project picker, then one tab per
module and the Jobs panel.

``build_app(services)`` only builds; launching lives in ``annotator.launch``.
"""

from __future__ import annotations

import gradio as gr

from ..services import Services
from .api import Api
from .common import UIContext
from .jobs_panel import build_jobs_panel
from .tab_annotate import CSS as EDITOR_CSS, HEAD, build_annotate_tab
from .tab_autoannotate import build_autoannotate_tab
from .tab_export import build_export_tab
from .tab_projects import build_projects_tab, render_picker
from .tab_train import build_train_tab
from .tab_upload import build_upload_tab

TITLE = "Auto Annotator"
CSS = """
#aa-header { align-items: end; }
#aa-header h1 { margin: 0; }
.aa-jobs { width: 100%; font-size: 0.9em; }
.aa-jobs td, .aa-jobs th { padding: 4px 8px; text-align: left; vertical-align: top; }
""" + EDITOR_CSS


def build_app(services: Services) -> gr.Blocks:
    api = Api(services)
    # Gradio's cache (GRADIO_TEMP_DIR, inside the data folder) holds uploads and rendered files: files older
    # than a day are removed every hour. Stored images are served in place (static paths), never copied.
    with gr.Blocks(title=TITLE, delete_cache=(3600, 86400)) as demo:
        api.publish()  # first: every public name is claimed by its gr.api endpoint; all UI events are private
        with gr.Row(elem_id="aa-header"):
            gr.Markdown(f"# {TITLE}\nUpload · auto-annotate · review · train · export — one place, your data.")
            project = gr.Dropdown(
                label="Project", choices=[p.name for p in services.projects.list_projects()], value=None,
                allow_custom_value=True, scale=0, min_width=260, elem_id="aa-project",
            )
            refresh = gr.Button("↻", scale=0, min_width=40, elem_id="aa-refresh-projects")
        projects_json = gr.JSON(visible=False)

        def pick(projects, current):
            return render_picker(projects, current)

        # On page load and on refresh: the project list, rendered into the picker.
        for ev in (demo.load(api.list_projects, None, projects_json, api_visibility="private"),
                   refresh.click(api.list_projects, None, projects_json, api_visibility="private")):
            ev.success(pick, [projects_json, project], project, api_visibility="private")

        ctx = UIContext(services=services, api=api, project=project, projects_json=projects_json)
        with gr.Tabs():
            with gr.Tab("Projects", id="projects"):
                build_projects_tab(ctx)
            with gr.Tab("Upload", id="upload"):
                build_upload_tab(ctx)
            with gr.Tab("Auto-annotate", id="autoannotate"):
                queued = build_autoannotate_tab(ctx)
            with gr.Tab("Annotate", id="annotate"):
                build_annotate_tab(ctx)
            with gr.Tab("Train", id="train"):
                train_events = build_train_tab(ctx)
            with gr.Tab("Export", id="export"):
                build_export_tab(ctx)
        refresh_jobs = build_jobs_panel(ctx)  # under every tab
        queued.then(*refresh_jobs, api_visibility="private")
        for ev in train_events:
            ev.then(*refresh_jobs, api_visibility="private")
    return demo


__all__ = ["build_app", "CSS", "HEAD", "TITLE"]
