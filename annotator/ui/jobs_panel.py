"""The Jobs panel, under every tab: progress bars, status, log, Cancel and Resume; refreshed when the
app's one timer sees a job added or moved (``UIContext.jobs_key``).

The log (and the Job field that Cancel / Resume act on) follows the newest job, unless the user pinned one
with Show (or Enter in the Job field); "Follow newest" unpins. A page reload re-attaches to running work:
the panel reads job state from the store, not the session.
"""

from __future__ import annotations

import html

import gradio as gr

from .common import UIContext, with_keywords

REFRESH_S = 1.5
STATUS_COLOURS = {"queued": "#6b7280", "running": "#2563eb", "succeeded": "#16a34a", "failed": "#dc2626",
                  "cancelled": "#9ca3af", "interrupted": "#d97706"}


def _duration(seconds) -> str:
    if seconds is None:
        return ""
    s = int(seconds)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else (f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s")


def jobs_html(jobs: list[dict], names: dict[int, str]) -> str:
    if not jobs:
        return "<p style='opacity:.7'>No jobs yet. Auto-annotation runs here, in the background.</p>"
    rows = []
    for j in jobs:
        pct = round(100 * (j.get("progress") or 0))
        colour = STATUS_COLOURS.get(j["status"], "#6b7280")
        ips = f"{j['images_per_s']:.1f} img/s" if j.get("images_per_s") else ""
        eta = f"ETA {_duration(j['eta_s'])}" if j.get("eta_s") and j["status"] == "running" else ""
        c = j.get("result") or {}
        if j["kind"] == "check_labels":  # services/quality.py: findings, not boxes
            saved = (f"{c.get('findings', 0)} likely label error(s) on {c.get('images', 0)} approved images: the "
                     "Annotate tab's queue 'Likely label errors'" if c.get("images") is not None else "")
        else:
            saved = f"{c.get('boxes', 0)} boxes on {c.get('images', 0)} images" if c.get("images") is not None else ""
        if c.get("protected"):
            saved += f", {c['protected']} left alone (a person got there first)"
        err = f"<div style='color:#dc2626'>{html.escape(j['error'])}</div>" if j.get("error") else ""
        shards = _shards_html(j.get("live") or {}, j["status"])
        rows.append(
            f"<tr><td>#{j['id']}</td><td>{html.escape(names.get(j['project_id'], '?'))}</td><td>{j['kind']}</td>"
            f"<td><span style='color:{colour};font-weight:600'>{j['status']}</span></td>"
            f"<td style='min-width:180px'><progress value='{pct}' max='100' style='width:120px'></progress> "
            f"{pct}%<br><small>{j['done']}/{j['total'] or '?'} {ips} {eta}</small>{shards}</td>"
            f"<td><small>{html.escape(saved)}</small>{err}</td></tr>"
        )
    head = "<tr><th>job</th><th>project</th><th>kind</th><th>status</th><th>progress</th><th>result</th></tr>"
    return f"<table class='aa-jobs'>{head}{''.join(rows)}</table>"


def _shards_html(live: dict, status: str) -> str:
    """A sharded job: its shards (done / running / waiting) and each worker taking part, with its device,
    its images/s while it runs a shard and the images it finished."""
    sh = live.get("shards") or {}
    if not sh or (sh.get("total", 0) <= 1 and len(live.get("workers") or []) <= 1):
        return ""
    parts = [f"{sh.get('succeeded', 0)}/{sh['total']} shards done"]
    if sh.get("running"):
        parts.append(f"{sh['running']} running")
    if sh.get("queued") and status in ("queued", "running"):
        parts.append(f"{sh['queued']} waiting")
    parts += [f"{sh[k]} {k}" for k in ("cancelled", "failed", "interrupted") if sh.get(k)]
    rows = []
    for w in live.get("workers") or []:
        speed = f"{w['ips']:.1f} img/s" if w.get("running") and w.get("ips") else "idle" if status == "running" else ""
        rows.append(f"<li>{html.escape(str(w['worker']))} ({html.escape(str(w.get('device') or '?'))}): "
                    f"{w.get('images', 0)} images {speed}</li>")
    workers = f"<ul class='aa-job-workers'>{''.join(rows)}</ul>" if rows else ""
    return f"<div class='aa-job-shards'><small>{' · '.join(parts)}</small>{workers}</div>"


def build_jobs_panel(ctx: UIContext):
    """Returns (fn, inputs, outputs) for other tabs to trigger an immediate refresh with ``.then(*...)``."""
    api, services = ctx.api, ctx.services

    def refresh(current: float | None, pinned: int | None, shown: str | None = None):
        """The table, and the log of the pinned job or else the newest; the Job field follows the newest
        while nothing is pinned (written only when it changes, so typing into it is not overwritten).
        Nothing is sent when nothing changed (``shown``: what the page shows), so an idle page stays idle."""
        jobs = [j.as_dict() for j in services.jobs.list_jobs(limit=12)]
        names = services.projects.project_names()
        sel = int(pinned) if pinned else (jobs[0]["id"] if jobs else None)
        log = ""
        if sel:
            try:
                log = services.jobs.get_job(sel).log
            except Exception:  # noqa: BLE001 - a deleted job: show nothing
                log = ""
        moved = not (pinned or sel is None or (current and int(current) == sel))
        field = gr.Number(value=sel) if moved else gr.skip()
        label = (f"Log of job #{sel}" + (" (pinned: Follow newest to unpin)" if pinned else " (newest)")) if sel \
            else "Log of the job"
        view = jobs_html(jobs, names)
        key = str(hash((view, label, log)))
        if shown == key and not moved:
            return gr.skip(), gr.skip(), gr.skip(), gr.skip()
        return view, field, gr.Textbox(value=log, label=label), key

    with gr.Accordion("Jobs", open=True, elem_id="aa-jobs"):
        jobs_view = gr.HTML()
        with gr.Row():
            job_id = gr.Number(label="Job", precision=0, minimum=0, scale=1)
            show_btn = gr.Button("Show", scale=0, min_width=80)
            cancel_btn = gr.Button("Cancel job", variant="stop", elem_classes=["aa-needs-annotator"], scale=0, min_width=120)
            resume_btn = gr.Button("Resume job", elem_classes=["aa-needs-annotator"], scale=0, min_width=120)
            follow_btn = gr.Button("Follow newest", scale=0, min_width=120)
        job_log = gr.Textbox(label="Log of the job", lines=6, max_lines=12, autoscroll=True, interactive=False,
                             elem_id="aa-job-log")
    job_json = gr.JSON(visible=False)
    pinned = gr.State(None)  # the job the user chose to watch; None = the newest
    shown = gr.State(None)  # a key of what the panel shows now
    outputs = [jobs_view, job_id, job_log, shown]
    private = dict(api_visibility="private")
    refresh_event = (refresh, [job_id, pinned, shown], outputs)
    if ctx.jobs_key is not None:  # the app's one timer says when a job was added or moved
        ctx.jobs_key.change(*refresh_event, **private, show_progress="hidden", queue=False)
    else:
        gr.Timer(REFRESH_S).tick(*refresh_event, **private, show_progress="hidden", queue=False)

    def pin(j):
        return int(j) if j else None

    show_btn.click(with_keywords(api.get_job, "job_id"), job_id, job_json, **private).then(
        pin, job_id, pinned, **private).then(*refresh_event, **private)
    job_id.submit(pin, job_id, pinned, **private).then(*refresh_event, **private)
    follow_btn.click(lambda: None, None, pinned, **private).then(*refresh_event, **private)
    for btn, fn in ((cancel_btn, api.cancel_job), (resume_btn, api.resume_job)):
        btn.click(with_keywords(fn, "job_id"), job_id, job_json, **private).then(*refresh_event, **private)
    return refresh_event
