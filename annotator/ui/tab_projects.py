"""Projects tab: create and delete projects, edit the class table (rename, add, delete with remap, reorder).

Every action calls the public API (``ui/api.py``); renderers turn its JSON into component updates; the
wiring is last, in ``build_projects_tab``. All events are private: the API names belong to ``gr.api``.
"""

from __future__ import annotations

import gradio as gr

from ..types import REVIEW_STATES
from .common import UIContext, table, with_keywords

CLASS_HEADERS = ["index", "name", "boxes"]
DELETE_POLICIES = [
    ("Refuse if any box uses it", "refuse"),
    ("Move its boxes to another class", "move"),
    ("Delete its boxes", "delete"),
]


# --- renderers (private) -------------------------------------------------------------------------------
def render_picker(projects: list[dict], current: str | None, prefer: str | None = None):
    names = [p["name"] for p in projects or []]
    value = prefer if prefer in names else (current if current in names else (names[0] if names else None))
    return gr.Dropdown(choices=names, value=value)


def summary_markdown(d: dict) -> str:
    if not d:
        return (
            "### No project selected\n"
            "Create your first project on the left: give it a name and its classes, one per line. "
            "The order of the classes is their YOLO index."
        )
    status = d.get("status", {})
    parts = [f"**{status.get(k, 0)}** {k}" for k in REVIEW_STATES]
    datasets = ", ".join(f"`{x['name']}` ({x['images']})" for x in d["datasets"]) or "none yet (use the Upload tab)"
    lines = [
        f"### {d['name']}",
        d["description"] or "",
        f"**{d['images']}** images · " + " · ".join(parts),
        f"Datasets: {datasets}",
        f"Created {d['created_at'].replace('T', ' ')}",
    ]
    outcome = d.get("outcome")
    if outcome:
        if "deleted_class" in outcome:
            lines.append(
                f"> Deleted class {outcome['index']} `{outcome['deleted_class']}`: {outcome['remapped']} box(es) moved, "
                f"{outcome['deleted']} deleted; {outcome['shifted']} later class(es) moved down one index."
            )
        elif "order" in outcome:
            lines.append(f"> New order applied; {outcome['remapped']} box(es) re-indexed to follow their class.")
    return "\n\n".join(x for x in lines if x)


def render_details(d: dict):
    classes = (d or {}).get("classes", [])
    names = [c["name"] for c in classes]
    rows = [[c["index"], c["name"], c["boxes"]] for c in classes]
    return (
        summary_markdown(d),
        table(rows, CLASS_HEADERS),
        gr.Dropdown(choices=names, value=None),
        gr.Dropdown(choices=names, value=None),
        gr.Dropdown(choices=names, value=None),
        "\n".join(names),
    )


# --- wiring ------------------------------------------------------------------------------------------
def build_projects_tab(ctx: UIContext) -> None:
    api = ctx.api
    with gr.Row():
        with gr.Column(scale=1, min_width=300):
            gr.Markdown("### New project")
            new_name = gr.Textbox(label="Project name", placeholder="e.g. Warehouse pallets")
            new_classes = gr.Textbox(
                label="Classes, one per line (order = YOLO index 0, 1, 2 ...)", lines=6,
                placeholder="person\ncar\nbicycle",
            )
            new_desc = gr.Textbox(label="Description (optional)")
            create_btn = gr.Button("Create project", variant="primary", elem_classes=["aa-needs-admin"])
        with gr.Column(scale=2):
            summary = gr.Markdown(summary_markdown({}))
            classes_table = gr.Dataframe(
                value=table([], CLASS_HEADERS), label="Classes", interactive=False, wrap=True,
            )
            with gr.Accordion("Edit classes", open=False):
                gr.Markdown(
                    "Renaming keeps a class's index. Deleting or reordering re-indexes the classes and "
                    "remaps every existing box explicitly; nothing changes silently."
                )
                with gr.Row():
                    rename_pick = gr.Dropdown(label="Class to rename", choices=[], allow_custom_value=True)
                    rename_to = gr.Textbox(label="New name")
                    rename_btn = gr.Button("Rename", elem_classes=["aa-needs-admin"])
                with gr.Row():
                    add_names = gr.Textbox(label="Add classes (one per line, appended at the end)", lines=2)
                    add_btn = gr.Button("Add", elem_classes=["aa-needs-admin"])
                with gr.Row():
                    delete_pick = gr.Dropdown(label="Class to delete", choices=[], allow_custom_value=True)
                    delete_policy = gr.Radio(DELETE_POLICIES, value="refuse", label="Its boxes")
                    move_to = gr.Dropdown(label="Move them to", choices=[], allow_custom_value=True)
                    delete_btn = gr.Button("Delete class", variant="stop", elem_classes=["aa-needs-admin"])
                with gr.Row():
                    order = gr.Textbox(label="Class order (one per line; edit the order, keep every name)", lines=4)
                    order_btn = gr.Button("Apply new order", elem_classes=["aa-needs-admin"])
            with gr.Accordion("Delete project", open=False):
                gr.Markdown("Deletes the project with all its images, boxes and files. This cannot be undone.")
                with gr.Row():
                    confirm = gr.Textbox(label="Type the project's name to confirm")
                    delete_project_btn = gr.Button("Delete project", variant="stop", elem_classes=["aa-needs-admin"])

    details_json = gr.JSON(visible=False)
    created_json = gr.JSON(visible=False)
    detail_outputs = [summary, classes_table, rename_pick, delete_pick, move_to, order]
    project = ctx.project
    private = dict(api_visibility="private")

    def details(project_name: str | None) -> dict:
        return api.project_details(project=project_name) if project_name else {}

    def then_details(action, *names):
        """An edit through the API (as the signed-in user), then the project's details (with the edit's
        outcome when it has one)."""
        def run(project_name, request: gr.Request = None, **values):
            outcome = action(project=project_name, **values, request=request)
            d = api.project_details(project=project_name)
            return {**d, "outcome": outcome} if "id" not in outcome else d
        return with_keywords(run, "project_name", *names)

    def show(ev):
        return ev.success(render_details, details_json, detail_outputs, **private)

    # Picking a project (or the list refreshing) shows its details.
    show(project.change(details, project, details_json, **private))

    created = create_btn.click(with_keywords(api.create_project, "name", "classes", "description"),
                               [new_name, new_classes, new_desc], created_json, **private)
    created.success(api.list_projects, None, ctx.projects_json, **private).success(
        lambda projects, p: render_picker(projects, None, prefer=(p or {}).get("name")),
        [ctx.projects_json, created_json], project, **private,
    ).success(lambda: ("", "", ""), None, [new_name, new_classes, new_desc], **private)

    show(rename_btn.click(then_details(api.rename_class, "class_ref", "new_name"), [project, rename_pick, rename_to],
                          details_json, **private))
    show(add_btn.click(then_details(api.add_classes, "names"), [project, add_names], details_json, **private)).success(
        lambda: "", None, add_names, **private
    )
    show(delete_btn.click(then_details(api.delete_class, "class_ref", "boxes", "move_to"),
                          [project, delete_pick, delete_policy, move_to], details_json, **private))
    show(order_btn.click(then_details(api.reorder_classes, "new_order"), [project, order], details_json, **private))

    delete_project_btn.click(with_keywords(api.delete_project, "project", "confirm"), [project, confirm], None,
                             **private).success(
        api.list_projects, None, ctx.projects_json, **private
    ).success(
        lambda projects: (render_picker(projects, None), ""), ctx.projects_json, [project, confirm], **private,
    )
