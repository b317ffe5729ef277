"""Projects tab: create and delete projects, edit the class table (rename, add, delete with remap, reorder).

Handlers first (plain functions returning JSON-able dicts, each an API endpoint), renderers next
(dict -> component updates, private), and the wiring last in ``build_projects_tab``.
"""

from __future__ import annotations

import gradio as gr

from ..services import Services
from .common import UIContext, table, user_errors, username

CLASS_HEADERS = ["index", "name", "boxes"]
DELETE_POLICIES = [
    ("Refuse if any box uses it", "refuse"),
    ("Move its boxes to another class", "move"),
    ("Delete its boxes", "delete"),
]


# --- handlers (API) ------------------------------------------------------------------------------------
def details_dict(services: Services, project: str) -> dict:
    return services.projects.project_details(project).as_dict()


def make_handlers(services: Services):
    @user_errors
    def list_projects() -> list[dict]:
        return [p.as_dict() for p in services.projects.list_projects()]

    @user_errors
    def create_project(name: str, classes: str, description: str = "", request: gr.Request = None) -> dict:
        p = services.projects.create_project(name, classes, description, user=username(request))
        return details_dict(services, p.name)

    @user_errors
    def project_details(project: str) -> dict:
        if not project:
            return {}
        return details_dict(services, project)

    @user_errors
    def rename_class(project: str, class_name: str, new_name: str) -> dict:
        services.projects.rename_class(project, class_name, new_name)
        return details_dict(services, project)

    @user_errors
    def add_classes(project: str, names: str) -> dict:
        services.projects.add_classes(project, names)
        return details_dict(services, project)

    @user_errors
    def delete_class(project: str, class_name: str, boxes: str, move_to: str | None) -> dict:
        outcome = services.projects.delete_class(project, class_name, boxes or "refuse", move_to)
        return {**details_dict(services, project), "outcome": outcome}

    @user_errors
    def reorder_classes(project: str, order: str) -> dict:
        outcome = services.projects.reorder_classes(project, order)
        return {**details_dict(services, project), "outcome": outcome}

    @user_errors
    def delete_project(project: str, confirm: str) -> dict:
        return {"deleted": services.projects.delete_project(project, confirm)}

    return {f.__name__: f for f in (list_projects, create_project, project_details, rename_class, add_classes,
                                    delete_class, reorder_classes, delete_project)}


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
    parts = [f"**{status.get(k, 0)}** {k}" for k in ("unreviewed", "approved", "rejected")]
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
    h = make_handlers(ctx.services)
    with gr.Row():
        with gr.Column(scale=1, min_width=300):
            gr.Markdown("### New project")
            new_name = gr.Textbox(label="Project name", placeholder="e.g. Warehouse pallets")
            new_classes = gr.Textbox(
                label="Classes, one per line (order = YOLO index 0, 1, 2 ...)", lines=6,
                placeholder="person\ncar\nbicycle",
            )
            new_desc = gr.Textbox(label="Description (optional)")
            create_btn = gr.Button("Create project", variant="primary")
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
                    rename_btn = gr.Button("Rename")
                with gr.Row():
                    add_names = gr.Textbox(label="Add classes (one per line, appended at the end)", lines=2)
                    add_btn = gr.Button("Add")
                with gr.Row():
                    delete_pick = gr.Dropdown(label="Class to delete", choices=[], allow_custom_value=True)
                    delete_policy = gr.Radio(DELETE_POLICIES, value="refuse", label="Its boxes")
                    move_to = gr.Dropdown(label="Move them to", choices=[], allow_custom_value=True)
                    delete_btn = gr.Button("Delete class", variant="stop")
                with gr.Row():
                    order = gr.Textbox(label="Class order (one per line; edit the order, keep every name)", lines=4)
                    order_btn = gr.Button("Apply new order")
            with gr.Accordion("Delete project", open=False):
                gr.Markdown("Deletes the project with all its images, boxes and files. This cannot be undone.")
                with gr.Row():
                    confirm = gr.Textbox(label="Type the project's name to confirm")
                    delete_project_btn = gr.Button("Delete project", variant="stop")

    details_json = gr.JSON(visible=False)
    detail_outputs = [summary, classes_table, rename_pick, delete_pick, move_to, order]
    project = ctx.project

    def show(ev):
        return ev.success(render_details, details_json, detail_outputs, api_visibility="private")

    # Picking a project (or the list refreshing) shows its details.
    show(project.change(h["project_details"], project, details_json, api_name="project_details"))

    created = create_btn.click(
        h["create_project"], [new_name, new_classes, new_desc], details_json, api_name="create_project"
    )
    created.success(
        h["list_projects"], None, ctx.projects_json, api_visibility="private"
    ).success(
        lambda projects, d: render_picker(projects, None, prefer=(d or {}).get("name")),
        [ctx.projects_json, details_json], project, api_visibility="private",
    ).success(lambda: ("", "", ""), None, [new_name, new_classes, new_desc], api_visibility="private")

    show(rename_btn.click(h["rename_class"], [project, rename_pick, rename_to], details_json, api_name="rename_class"))
    show(add_btn.click(h["add_classes"], [project, add_names], details_json, api_name="add_classes")).success(
        lambda: "", None, add_names, api_visibility="private"
    )
    show(delete_btn.click(
        h["delete_class"], [project, delete_pick, delete_policy, move_to], details_json, api_name="delete_class"
    ))
    show(order_btn.click(h["reorder_classes"], [project, order], details_json, api_name="reorder_classes"))

    delete_project_btn.click(
        h["delete_project"], [project, confirm], details_json, api_name="delete_project"
    ).success(h["list_projects"], None, ctx.projects_json, api_visibility="private").success(
        lambda projects: (render_picker(projects, None), ""), ctx.projects_json, [project, confirm],
        api_visibility="private",
    )
