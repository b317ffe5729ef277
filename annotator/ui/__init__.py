"""The Gradio app: the public API (``api.py``), a header with the shared project picker, then one tab per
module and the Jobs panel.

``build_app(services)`` only builds; launching lives in ``annotator.launch``.
"""

from __future__ import annotations

import json

import gradio as gr

from ..services import Services
from .api import Api
from .common import UIContext, with_keywords
from .jobs_panel import build_jobs_panel
from .tab_annotate import build_annotate_tab
from .tab_autoannotate import build_autoannotate_tab
from .tab_export import build_export_tab
from .tab_health import build_health_tab
from .tab_projects import build_projects_tab, render_picker
from .tab_train import build_train_tab
from .tab_upload import build_upload_tab
from .uploads import install as _clean_failed_uploads

TITLE = "Auto Annotator"
CSS = """
#aa-header { align-items: end; }
#aa-header h1 { margin: 0; }
.aa-jobs { width: 100%; font-size: 0.9em; }
.aa-jobs td, .aa-jobs th { padding: 4px 8px; text-align: left; vertical-align: top; }
.aa-job-workers { margin: 2px 0 0 1em; padding: 0; font-size: 0.85em; }
#aa-legend { font-size: 12px; }
#aa-legend table { font-size: 12px; }
#aa-legend td, #aa-legend th { padding: 1px 4px; }
#aa-whoami { font-size: 0.85em; opacity: 0.75; text-align: right; }
/* The services refuse what a role may not do; the page also hides the buttons (the role comes from whoami). */
body[data-aa-role="viewer"] .aa-needs-annotator, body[data-aa-role="viewer"] .aa-needs-admin,
body[data-aa-role="annotator"] .aa-needs-admin { display: none !important; }
"""
# Puts the signed-in user's role on <body> (the CSS above hides what the role cannot use).
ROLE_JS = "(w) => { if (w && w.role) document.body.dataset.aaRole = w.role; else delete document.body.dataset.aaRole; }"


def render_whoami(w: dict) -> str:
    """"ann · annotator" in the header when the app has login; nothing without."""
    if not w or not w.get("login"):
        return ""
    return f"Signed in as **{w['user']}** · {w.get('role') or 'no role'}"
REVISION_POLL_S = 1.0  # the one timer behind every live view (editor, gallery, split table, Jobs panel)
LIVE_TABS = ("upload", "annotate", "train")  # tabs that follow the project's revision
# The timer's tick, in the page: ask the public API's project_revision and jobs_signature (plain fetches),
# move the boxes whose value changed (see build_app).
POLL_JS = """async (project, tab, ...last) => {
  const tabs = %s;
  const ask = async (name, data) => {
    const res = await fetch('gradio_api/run/' + name, {method: 'POST', headers: {'Content-Type': 'application/json'},
                                                       body: JSON.stringify({data})});
    if (!res.ok) return null;
    const out = await res.json();
    return out && Array.isArray(out.data) ? out.data[0] : null;
  };
  try {
    const i = tabs.indexOf(tab);
    const [revision, jobs] = await Promise.all([
      project && i >= 0 ? ask('project_revision', [project]).catch(() => null) : null,
      ask('jobs_signature', [12]).catch(() => null)]);
    const out = last.slice();
    if (revision !== null && revision !== undefined) out[i] = project + ':' + revision;
    if (jobs !== null && jobs !== undefined) out[out.length - 1] = jobs;
    return out;
  } catch (e) {
    return last;
  }
}""" % json.dumps(LIVE_TABS)


def build_app(services: Services) -> gr.Blocks:
    api = Api(services)
    _clean_failed_uploads()  # a failed or abandoned upload removes its partial file at once
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
        whoami_md = gr.Markdown("", elem_id="aa-whoami")
        projects_json = gr.JSON(visible=False)
        whoami_json = gr.JSON(visible=False)
        demo.load(with_keywords(api.whoami), None, whoami_json, api_visibility="private").success(
            render_whoami, whoami_json, whoami_md, api_visibility="private").then(
            None, whoami_json, None, js=ROLE_JS, api_visibility="private")

        def pick(projects, current):
            return render_picker(projects, current)

        # On page load and on refresh: the project list, rendered into the picker.
        for ev in (demo.load(api.list_projects, None, projects_json, api_visibility="private"),
                   refresh.click(api.list_projects, None, projects_json, api_visibility="private")):
            ev.success(pick, [projects_json, project], project, api_visibility="private")

        # Live state: ONE timer polls the picked project's revision (a number that moves with every change
        # of its boxes, reviews, images, splits and classes) and the jobs' signature, through the public API.
        # The tick runs in the page (plain fetches: no Gradio event, which costs the page's main thread
        # ~60 ms, enough to stutter the editor), and moves a hidden box only when its value changed: the
        # revision box of the tab on screen (one refresh, not one per tab; a tab refreshes when it comes
        # back) and the jobs box (the Jobs panel).
        revisions = {tab: gr.Textbox("", visible="hidden", elem_id=f"aa-revision-{tab}") for tab in LIVE_TABS}
        jobs_key = gr.Textbox("-", visible="hidden", elem_id="aa-jobs-key")  # "-": the first poll renders the panel
        active_tab = gr.Textbox("projects", visible="hidden", elem_id="aa-active-tab")
        gr.Timer(REVISION_POLL_S).tick(None, [project, active_tab, *revisions.values(), jobs_key],
                                       [*revisions.values(), jobs_key], js=POLL_JS, api_visibility="private",
                                       show_progress="hidden")

        ctx = UIContext(services=services, api=api, project=project, projects_json=projects_json,
                        revisions=revisions, active_tab=active_tab, jobs_key=jobs_key)
        tabs = []
        with gr.Tabs():
            with gr.Tab("Projects", id="projects") as tab:
                tabs.append(tab)
                build_projects_tab(ctx)
            with gr.Tab("Upload", id="upload") as tab:
                tabs.append(tab)
                build_upload_tab(ctx)
            with gr.Tab("Auto-annotate", id="autoannotate") as tab:
                tabs.append(tab)
                queued = build_autoannotate_tab(ctx)
            with gr.Tab("Annotate", id="annotate") as tab:
                tabs.append(tab)
                build_annotate_tab(ctx)
            with gr.Tab("Train", id="train") as tab:
                tabs.append(tab)
                train_events = build_train_tab(ctx)
            with gr.Tab("Health", id="health") as tab:
                tabs.append(tab)
                build_health_tab(ctx)
            with gr.Tab("Export", id="export") as tab:
                tabs.append(tab)
                build_export_tab(ctx)
        for tab in tabs:
            tab.select(lambda name=tab.id: name, None, active_tab, api_visibility="private", show_progress="hidden",
                       queue=False)
        refresh_jobs = build_jobs_panel(ctx)  # under every tab
        queued.then(*refresh_jobs, api_visibility="private")
        for ev in train_events:
            ev.then(*refresh_jobs, api_visibility="private")
    return demo


__all__ = ["build_app", "CSS", "TITLE"]
