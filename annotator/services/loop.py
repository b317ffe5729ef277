"""Keep learning: the loop runs by itself when a project asks for it.

An admin sets "fine-tune after every K new approvals" (``set_keep_learning``). After each approval
(``after_approvals``, called by review.set_review_status), once K more images are approved than when the
last round began, a round starts: a fine-tune of the project's current model (the newest registered model
that is not worse than its parent) on the approved images, with the defaults chosen from the data (image
size; epochs and patience from the number of approved images). Only one round at a time, and never while a
training or evaluation job runs on the project (a person's or a round's): the next approval tries again.
When the round's model beats its parent on the same val images at the same size, the unreviewed images are
re-annotated with it (people's work untouched, as always); when it does not, it stays registered and
nothing is re-annotated. Each round is a training job with ``params.round`` set; ``rounds`` lists them with
their model, data, metrics and what the model's boxes cost the reviewers since (loop_stats).

The rounds are the app's own actions (an admin enabled them): they run without a role check, and are
recorded as by "keep learning".
"""

from __future__ import annotations

import logging

from ..types import ACTIVE_JOB_STATES, Job, UserError
from . import annotation, training
from .context import AppContext, as_system, project, require
from .jobs import JobKind

log = logging.getLogger(__name__)

ROUND_USER = "keep learning"
DEFAULT_EVERY = 50


def set_keep_learning(ctx: AppContext, ref, every: int, user: str | None = None) -> dict:
    """Fine-tune by itself after every ``every`` new approvals (0 = off). Counting starts now."""
    p = project(ctx, ref)
    require(ctx, user, "admin", "changing the project's keep-learning setting")
    try:
        every = int(every)
    except (TypeError, ValueError):
        raise UserError(f"keep learning: the number of approvals must be a whole number, got {every!r}") from None
    if every < 0 or 0 < every < 5:
        raise UserError(f"keep learning needs at least 5 approvals between rounds (0 = off), got {every}")
    approved = ctx.store.image_status_counts(p.id).get("approved", 0)
    ctx.store.set_learn_setting(p.id, every=every, mark=approved)
    log.info("keep learning on %r: every %s approvals (by %s)", p.name, every or "off", ctx.user(user))
    return keep_learning(ctx, p)


def keep_learning(ctx: AppContext, ref) -> dict:
    """The setting and where the count stands: approvals since the last round, and how many are left."""
    p = project(ctx, ref)
    every, mark = ctx.store.learn_setting(p.id)
    approved = ctx.store.image_status_counts(p.id).get("approved", 0)
    return {"project": p.name, "every": every, "approved": approved, "since_last_round": max(0, approved - mark),
            "next_in": max(0, every - (approved - mark)) if every else None, "rounds": rounds(ctx, p)}


def _busy(ctx: AppContext, project_id: int) -> Job | None:
    for j in ctx.store.list_jobs(project_id, statuses=ACTIVE_JOB_STATES, limit=50):
        if j.kind in ("train", "evaluate"):
            return j
    return None


def current_model(ctx: AppContext, ref) -> str | None:
    """The model a round starts from: the newest registered model not marked worse than its parent."""
    p = project(ctx, ref)
    rows = training.compare_models(ctx, p)["models"]
    ok = [r for r in rows if r.get("vs_parent") != "worse"]
    return ok[-1]["name"] if ok else None


def after_approvals(ctx: AppContext, ref, user: str | None = None) -> Job | None:
    """Start a round when the project keeps learning and K new images were approved since the last one
    (and nothing trains now). Returns the round's job, or None. Never raises for the approval's sake: a
    round that cannot start is logged and tried again at the next approval."""
    p = project(ctx, ref)
    every, mark = ctx.store.learn_setting(p.id)
    if not every:
        return None
    approved = ctx.store.image_status_counts(p.id).get("approved", 0)
    if approved - mark < every or _busy(ctx, p.id) is not None:
        return None
    base = current_model(ctx, p)
    system = as_system(ctx)
    try:  # epochs, patience and image size: from the data (None)
        job = training.queue_training(system, p, base=base, epochs=None, patience=None,
                                      user=f"{ROUND_USER} (after {ctx.user(user)})", round_of=approved)
    except UserError as e:  # e.g. no val images yet: said in the log, tried again at the next approval
        log.warning("keep learning on %r: no round yet: %s", p.name, e)
        return None
    ctx.store.set_learn_setting(p.id, mark=approved)
    log.info("keep learning on %r: round job %s from %s after %s approvals", p.name, job.id, base, approved)
    return job


def finish_round(ctx: AppContext, job: Job, done: dict) -> dict:
    """The training job's finish (training.finish_training), then, for a round whose model beats its parent
    on the same val images, the re-annotation of the unreviewed images with it."""
    result = training.finish_training(ctx, job, done)
    if not job.params.get("round") or done.get("status") != "succeeded" or not result.get("model"):
        return result
    rows = {r["name"]: r for r in training.compare_models(ctx, job.project_id)["models"]}
    verdict = rows.get(result["model"], {}).get("vs_parent")
    if verdict == "worse":
        ctx.store.update_job(job.id, log=f"round: {result['model']} is worse than its parent on the same val images: "
                                         "kept registered, nothing re-annotated")
        return {**result, "promoted": False}
    try:
        ann = annotation.start_annotation(as_system(ctx), job.project_id, result["model"], scope="unreviewed",
                                          user=ROUND_USER)
    except UserError as e:  # nothing left to annotate: fine
        ctx.store.update_job(job.id, log=f"round: {result['model']} promoted; nothing to re-annotate ({e})")
        return {**result, "promoted": True}
    ctx.store.update_job(job.id, log=f"round: {result['model']} "
                                     f"{'beats' if verdict == 'better' else 'has no comparable parent score against'} "
                                     f"its parent: re-annotating {ann.total} unreviewed image(s) (job {ann.id})")
    return {**result, "promoted": True, "reannotation_job": ann.id}


def loop_stats(ctx: AppContext, ref) -> dict:
    """What the loop saves reviewers, per model round: for the approved images each model's job
    pre-annotated, edits per image (deleted + added + reclassed + adjusted, see annotator/edits.py) and the
    acceptance rate (approved with zero edits). ``rounds`` in the order the models were made."""
    p = project(ctx, ref)
    rows = ctx.store.review_edit_rows(p.id)
    models = {m.id: m for m in ctx.store.list_models(p.id)}
    rounds: dict = {}
    for r in rows:
        key = r["model_id"]
        g = rounds.setdefault(key, {"model_id": key, "model": models[key].name if key in models else None,
                                    "jobs": set(), "images": 0, "edits": 0, "accepted": 0, "deleted": 0,
                                    "added": 0, "reclassed": 0, "adjusted": 0, "shown": 0, "approved": 0})
        g["jobs"].add(r["job_id"])
        g["images"] += 1
        g["accepted"] += r["edits"] == 0
        for k in ("edits", "deleted", "added", "reclassed", "adjusted", "shown", "approved"):
            g[k] += int(r[k])
    out = []
    for g in sorted(rounds.values(), key=lambda g: (g["model_id"] is None, g["model_id"] or 0)):
        n = g["images"]
        out.append({**g, "jobs": sorted(g["jobs"]), "edits_per_image": round(g["edits"] / n, 3),
                    "acceptance": round(g["accepted"] / n, 3)})
    total = sum(g["images"] for g in out)
    return {"project": p.name, "rounds": out, "images": total,
            "edits_per_image": round(sum(g["edits"] for g in out) / total, 3) if total else None}


def rounds(ctx: AppContext, ref) -> list[dict]:
    """The project's rounds, oldest first: job, when, approvals it began at, its model and metrics, whether it
    was promoted, and the reviewers' edits per image on that model's boxes so far."""
    p = project(ctx, ref)
    per_model = {r["model_id"]: r for r in _loop_rows(ctx, p)}
    out = []
    for j in reversed(ctx.store.list_jobs(p.id, limit=500)):
        if j.kind != "train" or not j.params.get("round"):
            continue
        res = j.result or {}
        mid = res.get("model_id")
        seen = per_model.get(mid) or {}
        out.append({"job_id": j.id, "status": j.status, "started_at": j.created_at.isoformat(timespec="seconds"),
                    "approved": j.params.get("round"), "base": j.params.get("base"), "model": res.get("model"),
                    "model_id": mid, "mAP50-95": (res.get("metrics") or {}).get("mAP50-95"),
                    "promoted": res.get("promoted"), "data": (j.params.get("snapshot") or {}).get("box_hash", "")[:12],
                    "edits_per_image": seen.get("edits_per_image"), "measured_images": seen.get("images", 0)})
    return out


def _loop_rows(ctx: AppContext, p) -> list[dict]:
    return loop_stats(ctx, p)["rounds"]


TRAIN_ROUND_KIND = JobKind(kind="train", ingest=training.TRAIN_KIND.ingest, finish=finish_round,
                           live_keys=training.TRAIN_KIND.live_keys, stale_hint=training.TRAIN_KIND.stale_hint)
