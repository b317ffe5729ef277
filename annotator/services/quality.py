"""Likely label errors: a model is run over the approved images (a "check_labels" job, sharded like
auto-annotation and run by the same worker task) and its predictions are compared with the approved boxes
(annotator/label_errors.py): a confident prediction nothing labels (missed), a labelled box nothing predicts
(spurious), a confident other class on a labelled box (wrong class), a box much looser than the model's
(loose). The findings form the Annotate tab's "Likely label errors" queue, worst first; accepting one applies
the model's suggestion as a person's edit, dismissing it keeps the label.

A training job starts a check with its new model when it finishes (services/training.py); anyone can start
one with a chosen model.
"""

from __future__ import annotations

from ..label_errors import PRED_FLOOR, find_label_errors
from ..types import Job, NotFound, UserError
from .annotation import _enqueue, retry_shard
from .context import AppContext, audit, image_in, model, project, require
from .jobs import JobKind
from .models import class_mapping, suggest_imgsz

CHECK_KIND = "check_labels"
FLAG_CONF = 0.5  # a prediction must be at least this confident to accuse a label


def start_label_check(ctx: AppContext, ref, model_ref, conf: float = FLAG_CONF, imgsz: int | None = None,
                      device: str | None = None, overrides: dict | None = None, user: str | None = None) -> Job:
    """Queue a check of the project's approved images with a model (see the module doc). ``conf``: how
    confident a prediction must be to flag a label (0-1, default 0.5); ``overrides``: the class mapping's,
    as for auto-annotation (model class -> project class, None to skip)."""
    require(ctx, user, "annotator", "checking labels")
    p = project(ctx, ref)
    m = model(ctx, p, model_ref)
    try:
        conf = float(conf)
    except (TypeError, ValueError):
        raise UserError(f"confidence must be a number between 0 and 1, got {conf!r}") from None
    if not PRED_FLOOR < conf <= 1.0:
        raise UserError(f"confidence must be between {PRED_FLOOR} and 1, got {conf}")
    mapping = class_mapping(ctx, p, m, overrides)
    if all(v is None for v in mapping.values()):
        raise UserError(f"None of the model's classes ({', '.join(m.class_names)}) is a class of {p.name!r}; "
                        "map them (--map MODEL=PROJECT, the API's overrides)")
    images = ctx.store.approved_images(p.id)
    if not images:
        raise UserError(f"Project {p.name!r} has no approved images to check yet")
    imgsz = int(imgsz) if imgsz else suggest_imgsz(ctx, p, m, device)["imgsz"]
    params = {
        "model": m.name, "model_file": m.file, "flag_conf": conf,
        # The worker predicts down to the floor: "no prediction at all" (spurious) must not mean "none above 0.5".
        "conf": PRED_FLOOR, "conf_reason": "as chosen", "iou": 0.7, "imgsz": imgsz, "imgsz_reason": "as chosen",
        "max_det": 300, "device": (device or ctx.settings.device or "auto").strip(), "batch": 0,
        "mapping": {str(k): v for k, v in mapping.items()},
    }
    job_id = ctx.store.create_job(p.id, CHECK_KIND, params, len(images), model_id=m.id, user=user)
    _enqueue(ctx, job_id, 0, p.id, params, images)
    return ctx.store.get_job(job_id)


def ingest_check(ctx: AppContext, job: Job, chunk: dict, cursor: dict) -> None:
    """Compare one chunk's predictions with the approved boxes; store the findings with the job's cursor."""
    p = ctx.store.get_project(job.project_id)
    ids = [int(i) for i, _ in chunk["items"]]
    labelled = ctx.store.boxes_for_images(ids)
    recs = ctx.store.get_images(ids)
    rows = []
    for image_id, boxes in chunk["items"]:
        rec = recs.get(int(image_id))
        if rec is None or rec.status != "approved":  # deleted, or un-approved since the job started
            continue
        preds = [(b["class_idx"], b["x1"], b["y1"], b["x2"], b["y2"], b.get("confidence") or 0.0) for b in boxes]
        for e in find_label_errors(labelled.get(int(image_id), []), preds, rec.width, rec.height,
                                   float(job.params.get("flag_conf", FLAG_CONF)), class_names=p.class_names):
            rows.append({"image_id": int(image_id), "kind": e.kind, "score": float(e.score), "box_id": e.box_id,
                         "class_idx": e.class_idx, "suggestion_class": e.suggestion_class,
                         "box": e.suggestion_box or e.box, "confidence": e.confidence, "message": e.message})
    ctx.store.save_label_check(p.id, job.id, job.attempt, job.model_id, ids, rows, chunk.get("failed", []), cursor)


CHECK = JobKind(
    kind=CHECK_KIND, ingest=ingest_check, finish=None,
    live_keys=("stage", "ips", "eta_s", "batch", "device"),
    stale_hint="Findings of the images it checked are kept; start the check again for the rest.",
    retry_shard=retry_shard,
)


def label_errors(ctx: AppContext, ref, image_id=None, status: str = "open") -> list[dict]:
    """The project's findings (or one image's), worst first: id, image_id, kind, score, box_id, class_idx,
    suggestion_class, the box to add or the corners to set (x1..y2), confidence, message, status."""
    p = project(ctx, ref)
    if status not in ("open", "accepted", "dismissed", "", None):
        raise UserError(f"status must be open, accepted or dismissed, got {status!r}")
    img = image_in(ctx, p, image_id).id if image_id not in (None, "") else None
    return ctx.store.label_errors(p.id, status or None, img)


def label_error_queue(ctx: AppContext, ref) -> list[int]:
    """Images with open findings, the worst finding first (the Annotate tab's "Likely label errors" order)."""
    return ctx.store.label_error_queue(project(ctx, ref).id)


def resolve_label_error(ctx: AppContext, ref, error_id, status: str, user: str | None = None) -> dict:
    """Mark a finding ``accepted`` (its suggestion was applied, by the editor, as a person's edit) or
    ``dismissed`` (the label is right). Returns the finding."""
    who = require(ctx, user, "annotator", "resolving label findings")
    p = project(ctx, ref)
    if status not in ("accepted", "dismissed"):
        raise UserError(f"a finding is resolved as accepted or dismissed, got {status!r}")
    try:
        error_id = int(error_id)
    except (TypeError, ValueError):
        raise UserError(f"finding id must be a number, got {error_id!r}") from None
    done = ctx.store.resolve_label_error(p.id, error_id, status, who)
    if done is None:
        raise NotFound(f"Project {p.name!r} has no open finding {error_id} (resolved already, or replaced by a "
                       "newer check)")
    audit(ctx, who, "%s label finding %d (%s) on image %d of %r", status, error_id, done["kind"], done["image_id"],
          p.name)
    return {**done, "status": status}
