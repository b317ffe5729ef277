"""Train tab: the split manager, the training form, live curves of the running job, the models compared
side by side (evaluate, download the .pt, re-annotate with it).

Every action calls the public API (``ui/api.py``); renderers next, wiring last; every event is private.
"""

from __future__ import annotations

import html

import gradio as gr
import pandas as pd

from ..types import UserError
from .common import UIContext, imgsz_hint, table, user_errors, with_keywords

REFRESH_S = 2.0
SPLIT_HEADERS = ["split", "images", "approved", "unreviewed", "rejected", "approved boxes"]
ROUND_HEADERS = ["job", "status", "at approvals", "from", "model", "mAP50-95", "promoted", "data", "edits per image"]
EDIT_HEADERS = ["model", "images", "edits per image", "accepted", "deleted", "added", "reclassed", "adjusted"]
CLASS_HEADERS = ["class", "instances", "precision", "recall", "mAP50", "mAP50-95"]
LOSSES = ("train/box_loss", "train/cls_loss", "train/dfl_loss", "val/box_loss", "val/cls_loss", "val/dfl_loss")
METRICS = ("precision", "recall", "mAP50", "mAP50-95")


# --- renderers (private) -------------------------------------------------------------------------------
def _fmt(v) -> str:
    return "" if v is None else (f"{v:.3f}" if isinstance(v, float) else str(v))


def _duration(seconds) -> str:
    if seconds is None:
        return "?"
    s = int(seconds)
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


def render_splits(summary: dict):
    rows = []
    for split in ("train", "val", "test", "unassigned"):
        t = (summary or {}).get("splits", {}).get(split)
        if t:
            rows.append([split, t["images"], t["approved"], t["unreviewed"], t["rejected"], t["approved_boxes"]])
    cfg = (summary or {}).get("config")
    values = ([round(100 * cfg["train"]), round(100 * cfg["val"]), round(100 * cfg["test"]), cfg["seed"]]
              if cfg else [80, 20, 0, 0])
    warning = (summary or {}).get("warning")
    return (table(rows, SPLIT_HEADERS), f"⚠ {warning}" if warning else "", *values)


def curves(epochs: list[dict]) -> tuple[pd.DataFrame | None, pd.DataFrame | None]:
    """Long-format frames (epoch, value, series) for the loss and metric line plots; None when there is
    nothing to draw (Gradio 6's LinePlot stops drawing lines for good once it was given an empty frame)."""
    def frame(keys):
        rows = [(e["epoch"], e[k], k) for e in epochs for k in keys if e.get(k) is not None]
        if not rows:
            return None
        # Typed even when empty: the plot reads quantitative/nominal axes from the dtypes.
        return pd.DataFrame({"epoch": pd.Series([r[0] for r in rows], dtype="int64"),
                             "value": pd.Series([r[1] for r in rows], dtype="float64"),
                             "series": pd.Series([r[2] for r in rows], dtype="object")})

    return frame(LOSSES), frame(METRICS)


def render_live(view: dict):
    if not view:
        empty_l, empty_m = curves([])
        return ("No training yet for this project: choose a base model and press **Start training**.", empty_l,
                empty_m, "", table([], CLASS_HEADERS), None, None, gr.Number())
    job = view["job"]
    live = view.get("live") or {}
    result = view.get("result") or {}
    kind = "Evaluation" if job["kind"] == "evaluate" else "Training"
    head = [f"### {kind} job #{job['id']}: {job['status']}"]
    if job["status"] in ("queued", "running") and job["kind"] == "train":
        head.append(f"Epoch **{live.get('epoch') or 0} / {live.get('epochs') or job['total']}** · "
                    f"{live.get('stage') or 'queued'} · batch {live.get('batch_i') or 0}/{live.get('batches') or '?'} "
                    f"· ETA {_duration(live.get('eta_s'))} · {round(100 * (job['progress'] or 0))}%")
    if job.get("error"):
        head.append(f"<span style='color:#dc2626'>{html.escape(job['error'])}</span>")
    met = result.get("metrics") or {}
    if met:
        head.append(" · ".join(f"{k} **{_fmt(met.get(k))}**" for k in ("mAP50-95", "mAP50", "precision", "recall")))
    if view.get("model"):
        head.append(f"Registered as model **{html.escape(view['model'])}**"
                    + (" (cancelled: best weights so far)" if result.get("cancelled") else ""))
    speed = result.get("speed") or met.get("speed") or {}
    if speed:
        head.append(f"Speed on {speed.get('device', 'the worker')}: {speed.get('preprocess')} / "
                    f"{speed.get('inference')} / {speed.get('postprocess')} ms per image (pre / inference / post)")
    if result.get("onnx"):
        head.append(html.escape(result["onnx"]["detail"]))
    per_class = result.get("per_class") or met.get("per_class") or []
    rows = [[r["class"], r.get("instances"), _fmt(r.get("precision")), _fmt(r.get("recall")), _fmt(r.get("mAP50")),
             _fmt(r.get("mAP50-95"))] for r in per_class]
    loss, metric = curves(view.get("epochs") or [])
    log_tail = "\n".join((job.get("log") or "").splitlines()[-40:])
    plots = view.get("plots") or {}
    return ("\n\n".join(head), loss, metric, log_tail, table(rows, CLASS_HEADERS), plots.get("confusion_matrix"),
            plots.get("pr_curve"), gr.Number(value=job["id"]))


def per_dataset_cell(m: dict) -> str:
    """"street 0.810 (0.740) ▲; demo 0.520 (0.800) ▼ forgot": each dataset's val score beside the base's."""
    parts = []
    for d in m.get("per_dataset") or []:
        mark = ""
        if d.get("change") is not None:
            mark = " ▼ forgot" if d["dataset"] in (m.get("worse_on") or []) else (" ▲" if d["change"] > 0 else "")
        base = f" ({_fmt(d.get('base_mAP50-95'))})" if d.get("base_mAP50-95") is not None else ""
        parts.append(f"{d['dataset'] or '(none)'} {_fmt(d.get('mAP50-95'))}{base}{mark}")
    return "; ".join(parts)


def forgetting_note(cmp: dict) -> str:
    """Under the models table: which model forgot which dataset, and what to do about it."""
    lines = [f"- **{m['name']}** scores lower than its base on {', '.join(repr(d) for d in m['worse_on'])}: "
             "train the next round with *Replay other datasets* (or on all datasets)."
             for m in cmp.get("models") or [] if m.get("worse_on")]
    return "\n".join(lines)


def render_compare(cmp: dict, current: str | None):
    classes = cmp.get("classes") or []
    headers = ["model", "source", "parent", "mAP50-95", "mAP50", "precision", "recall",
               *[f"{c} mAP50-95" for c in classes], "per dataset (base)", "inference ms", "evaluated on", "imgsz",
               "job"]
    rows = []
    for m in cmp.get("models") or []:
        on = (f"{m['val_images']} val img ({m['val_box_hash']})" + (" = current" if m["on_current_val"] else " (older)")
              if m["evaluated"] else "not evaluated")
        speed = (m.get("speed_ms") or {}).get("inference")
        mark = {"better": " ▲ beats its parent", "worse": " ▼ worse than its parent"}.get(m.get("vs_parent"), "")
        rows.append([m["name"] + mark, m["source"], m["parent"] or "", _fmt(m["mAP50-95"]), _fmt(m["mAP50"]),
                     _fmt(m["precision"]), _fmt(m["recall"]), *[_fmt(m["per_class"].get(c)) for c in classes],
                     per_dataset_cell(m), _fmt(speed), on, m.get("evaluated_imgsz") or m["imgsz"] or "",
                     m["job_id"] or ""])
    names = [m["name"] for m in cmp.get("models") or []]
    value = current if current in names else (names[-1] if names else None)
    archs = list(cmp.get("architectures") or [])
    return table(rows, headers), gr.Dropdown(choices=names, value=value), gr.Dropdown(
        choices=names + archs, value=value or (archs[0] if archs else None)), forgetting_note(cmp)


# --- wiring ------------------------------------------------------------------------------------------
def _model_label(r: dict) -> str:
    return r["model"] or ("(model removed)" if r["model_id"] is not None else "(unknown model)")


def render_edits(st: dict):
    rows = [[_model_label(r), r["images"], r["edits_per_image"], f"{100 * r['acceptance']:.0f}%", r["deleted"],
             r["added"], r["reclassed"], r["adjusted"]] for r in st.get("rounds", [])]
    return table(rows, EDIT_HEADERS), *edits_plots(st)


def edits_plots(st: dict) -> tuple[pd.DataFrame | None, pd.DataFrame | None]:
    """The two bar charts beside the table, one bar per model in the order they were made: edits per image,
    and the share of images accepted with no edit. None when nothing was measured (see curves())."""
    rounds = st.get("rounds") or []
    if not rounds:
        return None, None
    labels = [f"{k + 1}. {_model_label(r)}" for k, r in enumerate(rounds)]
    edits = pd.DataFrame({"model": pd.Series(labels, dtype="object"),
                          "edits per image": pd.Series([float(r["edits_per_image"]) for r in rounds], dtype="float64")})
    accepted = pd.DataFrame({"model": pd.Series(labels, dtype="object"),
                             "accepted %": pd.Series([100.0 * float(r["acceptance"]) for r in rounds], dtype="float64")})
    return edits, accepted


def render_learning(st: dict):
    every = int(st.get("every") or 0)
    if every:
        note = (f"On: a round after every {every} new approvals; {st['since_last_round']} since the last one, "
                f"the next in {st['next_in']}.")
    else:
        note = "Off."
    rows = [[r["job_id"], r["status"], r["approved"], r["base"] or "", r["model"] or "", _fmt(r.get("mAP50-95")),
             {True: "yes", False: "no (worse than its parent)"}.get(r.get("promoted"), ""), r["data"],
             "" if r.get("edits_per_image") is None else f"{r['edits_per_image']} ({r['measured_images']} img)"]
            for r in st.get("rounds", [])]
    return gr.Number(value=every), note, table(rows, ROUND_HEADERS)


def build_train_tab(ctx: UIContext):
    """Returns the event of a queued job, for the app to chain a Jobs-panel refresh onto."""
    api, services = ctx.api, ctx.services
    project = ctx.project
    ARCHITECTURES, OPTIMIZERS = services.training.ARCHITECTURES, services.training.OPTIMIZERS
    with gr.Accordion("Splits", open=False):
        gr.Markdown("Every image keeps a stored split. New images are assigned by the ratios below in a seeded, "
                    "deterministic order; images that have a split keep it.")
        with gr.Row():
            r_train = gr.Number(label="train %", value=80, minimum=0)
            r_val = gr.Number(label="val %", value=20, minimum=0)
            r_test = gr.Number(label="test %", value=0, minimum=0)
            seed = gr.Number(label="seed", value=0, precision=0)
            reassign = gr.Checkbox(label="re-split every image", value=False)
            apply_btn = gr.Button("Save ratios & assign", elem_classes=["aa-needs-admin"], scale=0, min_width=160)
        splits_table = gr.Dataframe(value=table([], SPLIT_HEADERS), interactive=False, elem_id="aa-splits")
        splits_note = gr.Markdown(elem_id="aa-splits-note")
        with gr.Row():
            move_dataset = gr.Dropdown(label="Move dataset (empty = all)", choices=[], allow_custom_value=True)
            move_status = gr.Dropdown(label="review state (empty = any)", choices=["", "approved", "unreviewed",
                                                                                   "rejected"], value="")
            move_to = gr.Dropdown(label="to split", choices=["train", "val", "test"], value="val")
            move_btn = gr.Button("Move", elem_classes=["aa-needs-admin"], scale=0, min_width=100)
    with gr.Row():
        with gr.Column(scale=2, min_width=320):
            gr.Markdown("### Train")
            base = gr.Dropdown(label="Base model (registered, or a fresh architecture)", choices=list(ARCHITECTURES),
                               value=ARCHITECTURES[0], allow_custom_value=True)
            datasets = gr.Dropdown(label="Datasets (empty = all)", choices=[], multiselect=True, allow_custom_value=True)
            approved_only = gr.Checkbox(value=True, label="Approved images only")
            replay = gr.Slider(0.0, 1.0, value=0.0, step=0.05, label="Replay other datasets (share)",
                               info="With chosen datasets: also the others' val images and this share of their "
                                    "train images, so the model does not forget them.")
            with gr.Row():
                imgsz = gr.Number(label="Image size (0 = from the data)", value=0, precision=0, minimum=0)
                epochs = gr.Number(label="Epochs (0 = from the data)", value=0, precision=0, minimum=0)
                batch = gr.Textbox(label="Batch (number or auto)", value="auto")
            imgsz_note = gr.Markdown(elem_id="aa-train-imgsz")
            with gr.Row():
                optimizer = gr.Dropdown(label="Optimizer", choices=list(OPTIMIZERS), value="auto")
                lr0 = gr.Number(label="Learning rate (0 = default)", value=0, minimum=0)
                patience = gr.Number(label="Patience (empty = from the data, 0 = off)", value=None, precision=0,
                                     minimum=0)
            with gr.Row():
                device = gr.Dropdown(label="Device", choices=["auto", "cpu", "0", "1", "2", "3"], value="auto",
                                     allow_custom_value=True)
                model_name = gr.Textbox(label="New model's name (optional)")
                onnx_check = gr.Checkbox(value=True, label="Check ONNX export")
            start_btn = gr.Button("Start training", variant="primary", elem_classes=["aa-needs-admin"])
        with gr.Column(scale=3, min_width=420):
            status_md = gr.Markdown()
            with gr.Row():
                loss_plot = gr.LinePlot(x="epoch", y="value", color="series", title="Loss per epoch", height=260)
                metric_plot = gr.LinePlot(x="epoch", y="value", color="series", title="Validation per epoch",
                                          height=260, y_lim=[0, 1])
            with gr.Row():
                job_id = gr.Number(label="Job shown", precision=0, minimum=0, scale=1)
                cancel_btn = gr.Button("Cancel training", variant="stop", elem_classes=["aa-needs-admin"], scale=0, min_width=140)
            log_box = gr.Textbox(label="Log (tail)", lines=6, max_lines=10, autoscroll=True, interactive=False)
    with gr.Row():
        class_table = gr.Dataframe(value=table([], CLASS_HEADERS), label="Validation per class", interactive=False,
                                   scale=2)
        confusion = gr.Image(label="Confusion matrix", interactive=False, height=300, scale=1)
        pr_curve = gr.Image(label="Precision-recall curve", interactive=False, height=300, scale=1)
    gr.Markdown("### Models, side by side")
    compare_table = gr.Dataframe(interactive=False, wrap=True)
    forget_md = gr.Markdown(elem_id="aa-forgetting")
    with gr.Row():
        model = gr.Dropdown(label="Model", choices=[], allow_custom_value=True)
        eval_btn = gr.Button("Evaluate on the approved val split", elem_classes=["aa-needs-admin"], scale=0, min_width=220)
        reannotate_btn = gr.Button("Re-annotate not-yet-approved images with it", variant="primary", elem_classes=["aa-needs-annotator"], scale=0,
                                   min_width=260)
        download_btn = gr.Button("Download .pt", scale=0, min_width=120)
    action_md = gr.Markdown()
    weights_file = gr.File(label="Weights", interactive=False, height=80)
    gr.Markdown("### What each model cost the reviewers\n"
                "For every approved image a job pre-annotated: the edits between the model's boxes and the approved "
                "ones (deleted + added + reclassed + moved/resized beyond IoU 0.85). Fewer is better: this is what "
                "a fine-tune round should cut. Accepted: approved with no edit.")
    edits_table = gr.Dataframe(value=table([], EDIT_HEADERS), interactive=False, wrap=True, elem_id="aa-loop")
    with gr.Row():
        edits_plot = gr.BarPlot(x="model", y="edits per image", title="Edits per image, per model (fewer is better)",
                                height=240, sort=None, x_label_angle=-20, elem_id="aa-loop-edits")
        accepted_plot = gr.BarPlot(x="model", y="accepted %", title="Accepted with no edit, per model",
                                   height=240, y_lim=[0, 100], sort=None, x_label_angle=-20, elem_id="aa-loop-accepted")
    edits_outputs = [edits_table, edits_plot, accepted_plot]
    gr.Markdown("### Keep learning\n"
                "After every N new approvals, fine-tune the current model by itself (defaults from the data), and "
                "when the new model beats its parent on the same val images, re-annotate the unreviewed images "
                "with it. One round at a time, never beside another training. 0 = off.")
    with gr.Row():
        learn_every = gr.Number(label="Fine-tune after every N new approvals (0 = off)", value=0, precision=0,
                                minimum=0, scale=1)
        learn_btn = gr.Button("Save", elem_classes=["aa-needs-admin"], scale=0, min_width=100)
    learn_md = gr.Markdown(elem_id="aa-learn")
    rounds_table = gr.Dataframe(value=table([], ROUND_HEADERS), interactive=False, wrap=True, elem_id="aa-rounds")

    job_json, cmp_json, split_json, act_json, status_json = (gr.JSON(visible=False) for _ in range(5))
    live_outputs = [status_md, loss_plot, metric_plot, log_box, class_table, confusion, pr_curve, job_id]

    def live(project_name, shown):
        """The job the user picked, else the project's newest training/evaluation."""
        try:
            jid = int(shown) if shown else None
            if jid is None and project_name:
                j = services.training.latest_job(project_name, ("train", "evaluate"))
                jid = j.id if j else None
            return render_live(services.training.training_view(jid) if jid else {})
        except UserError:
            return render_live({})

    private = dict(api_visibility="private")

    def train(project_name, datasets_, approved_only_, base_, imgsz_, epochs_, batch_, optimizer_, lr0_, patience_,
              device_, name_, onnx_check_, replay_, request: gr.Request = None):
        return api.start_training(
            project=project_name, base=base_ or None, datasets=datasets_, approved_only=approved_only_,
            imgsz=int(imgsz_ or 0) or None, epochs=int(epochs_ or 0), batch=batch_, optimizer=optimizer_ or "auto",
            lr0=lr0_ or None, patience=None if patience_ in (None, "") else int(patience_), device=device_ or None,
            name=name_, onnx_check=onnx_check_, replay=replay_ or 0.0, request=request)

    def compare(project_name):
        if not project_name:
            return {"models": [], "classes": [], "architectures": list(ARCHITECTURES)}
        return api.compare_models(project=project_name)

    def splits(project_name):
        return api.split_summary(project=project_name) if project_name else {}

    def configure(project_name, train_, val_, test_, seed_, reassign_, request: gr.Request = None):
        return api.configure_splits(project=project_name, train=train_, val=val_, test=test_, seed=int(seed_ or 0),
                                    reassign=reassign_, request=request)

    def move(project_name, split, dataset, status, request: gr.Request = None):
        return api.set_split(project=project_name, split=split, dataset=dataset or None, status=status or None,
                             request=request)

    def weights(project_name, model_name):
        if not model_name:
            raise gr.Error("Choose a model in the table's model picker first")
        return api.model_weights(project=project_name, model=model_name).path

    def reannotate(project_name, model_name, request: gr.Request = None):
        if not model_name:
            raise gr.Error("Choose the model to re-annotate with")
        job = api.start_annotation(project=project_name, model=model_name, scope="unreviewed", request=request)
        rows = {m["name"]: m for m in api.compare_models(project=project_name)["models"]}
        if rows.get(model_name, {}).get("vs_parent") == "worse":
            gr.Warning(f"{model_name} scores worse than its parent {rows[model_name]['parent']} on the same val "
                       f"images: the re-annotation (job {job['id']}) uses it anyway; cancel it in the Jobs panel "
                       "if that was not meant.")
        return job

    started = start_btn.click(train, [project, datasets, approved_only, base, imgsz, epochs, batch, optimizer, lr0,
                                      patience, device, model_name, onnx_check, replay], job_json, **private)
    evaluated = eval_btn.click(with_keywords(api.start_evaluation, "project", "model"), [project, model], job_json,
                               **private)
    job_id.submit(with_keywords(api.training_view, "job_id"), job_id, status_json, **private)
    compared = project.change(compare, project, cmp_json, **private)
    split_ev = project.change(splits, project, split_json, **private)
    configured = apply_btn.click(configure, [project, r_train, r_val, r_test, seed, reassign], split_json, **private)
    moved = move_btn.click(move, [project, move_to, move_dataset, move_status], split_json, **private)
    download_btn.click(weights, [project, model], weights_file, **private)
    reannotated = reannotate_btn.click(reannotate, [project, model], act_json, **private)

    for ev in (split_ev, configured, moved):
        ev.success(render_splits, split_json, [splits_table, splits_note, r_train, r_val, r_test, seed],
                   api_visibility="private")

    # Live: the split table follows reviews, uploads, imports and split moves (the project's revision) while
    # this tab is on screen, and once on coming back; the ratio fields are left as the user typed them.
    def live_splits(project_name, tab):
        if not project_name or tab != "train":
            return gr.skip(), gr.skip()
        try:
            return render_splits(services.splits.split_summary(project_name))[:2]
        except UserError:
            return gr.skip(), gr.skip()

    def live_edits(project_name, tab=None):
        if not project_name or tab not in (None, "train"):
            return gr.skip(), gr.skip(), gr.skip()
        try:
            return render_edits(services.loop.loop_stats(project_name))
        except UserError:
            return gr.skip(), gr.skip(), gr.skip()

    project.change(live_edits, project, edits_outputs, **private, show_progress="hidden")

    def learning(project_name, tab=None):
        if not project_name or tab not in (None, "train"):
            return gr.skip(), gr.skip(), gr.skip()
        try:
            return render_learning(api.keep_learning(project=project_name))
        except (UserError, gr.Error):
            return gr.skip(), gr.skip(), gr.skip()

    def set_learning(project_name, every, request: gr.Request = None):
        return render_learning(api.set_keep_learning(project=project_name, every=int(every or 0), request=request))

    project.change(learning, project, [learn_every, learn_md, rounds_table], **private, show_progress="hidden")
    learn_btn.click(set_learning, [project, learn_every], [learn_every, learn_md, rounds_table], **private)
    for trigger in (project.change, base.change, device.change):
        trigger(lambda p, b, d: imgsz_hint(api, p, b, d), [project, base, device], imgsz_note, **private,
                show_progress="hidden")
    if ctx.revision("train") is not None and ctx.active_tab is not None:
        for trigger in (ctx.revision("train").change, ctx.active_tab.change):
            trigger(live_splits, [project, ctx.active_tab], [splits_table, splits_note], **private,
                    show_progress="hidden")
            trigger(live_edits, [project, ctx.active_tab], edits_outputs, **private, show_progress="hidden")
            trigger(learning, [project, ctx.active_tab], [learn_every, learn_md, rounds_table], **private,
                    show_progress="hidden")
    compared.success(render_compare, [cmp_json, model], [compare_table, model, base, forget_md],
                     api_visibility="private")
    project.change(user_errors(lambda p: (gr.Dropdown(choices=[d.name for d in services.images.datasets(p)] if p else [], value=[]),
                              gr.Dropdown(choices=[""] + ([d.name for d in services.images.datasets(p)] if p else []),
                                          value=""))),
                   project, [datasets, move_dataset], api_visibility="private")
    project.change(lambda p: live(p, None), project, live_outputs, api_visibility="private")
    started.success(lambda j: live(None, j["id"]), job_json, live_outputs, api_visibility="private")
    evaluated.success(lambda j: live(None, j["id"]), job_json, live_outputs, api_visibility="private")
    reannotated.success(lambda j: f"Queued auto-annotation job **{j['id']}** with model **{j['params']['model']}**: "
                                  f"{j['total']} image(s). Progress below, under *Jobs*.", act_json, action_md,
                        api_visibility="private")

    def cancel_shown(j, request: gr.Request = None):
        if not j:
            raise gr.Error("No training job is shown")
        return api.cancel_job(job_id=j, request=request)

    cancel_btn.click(cancel_shown, job_id, act_json, api_visibility="private")
    timer = gr.Timer(REFRESH_S, active=ctx.active_tab is None)
    timer.tick(live, [project, job_id], live_outputs, api_visibility="private", show_progress="hidden")

    # When the shown job ends, the models table changes: refresh it once per finished job.
    rendered = gr.State(None)

    def maybe_compare(project_name, shown, done_id, current):
        unchanged = (gr.skip(), gr.skip(), gr.skip(), gr.skip(), done_id)
        if not project_name or not shown or int(shown) == done_id:
            return unchanged
        job = services.jobs.get_job(int(shown))
        if job.active:
            return unchanged
        return (*render_compare(services.training.compare_models(project_name), current), job.id)

    timer.tick(maybe_compare, [project, job_id, rendered, model], [compare_table, model, base, forget_md, rendered],
               api_visibility="private", show_progress="hidden")
    if ctx.active_tab is not None:  # the live curves tick only while this tab is on screen (redrawing plots
        # under other tabs costs the page's main thread, e.g. the Annotate editor's frames)
        ctx.active_tab.change(lambda t: gr.Timer(active=t == "train"), ctx.active_tab, timer,
                              api_visibility="private", show_progress="hidden", queue=False)
    return started, evaluated, reannotated
