"""Auto-annotation jobs, the app's half: start (validate, map classes, queue), resume an interrupted run on
the images it has not finished, and ingest the worker's result chunks (the monitor calls ``KIND``).

Images a person saved or approved are never touched; re-running replaces only the machine boxes of the
others (checked again at commit time, in the store)."""

from __future__ import annotations

from typing import Sequence

from jobs.protocol import ANNOTATE, AnnotatePayload

from ..store import utcnow
from ..types import Box, Job, JobShard, UserError
from .context import AppContext, dataset_ids, model, project, require
from .jobs import require_job_owner
from .jobs import JobKind, get_job
from .models import class_mapping, conf_for, suggest_imgsz

SCOPES = {"unreviewed": ("unreviewed",), "untouched": ("unreviewed", "rejected")}


def start_annotation(
    ctx: AppContext, ref, model_ref, datasets: Sequence[str] | None = None, conf: float | None = None, iou: float = 0.7,
    imgsz: int | None = None, max_det: int = 300, device: str | None = None, batch: int = 0,
    scope: str = "unreviewed", overrides: dict | None = None, track: bool = False, user: str | None = None,
) -> Job:
    """Queue an auto-annotation job. Images a person saved or approved are never touched; re-running
    replaces only the machine boxes of the others. ``conf`` None (or 0): the model's own best threshold
    (conf_for: from its newest evaluation here, else its training), ``imgsz`` None: from the project's data
    (suggest_imgsz). ``track``: the machine boxes of a video's frames get track ids (ByteTrack over the
    frames in order: each video's frames are one shard); still images are annotated as usual."""
    require(ctx, user, "annotator", "running auto-annotation")
    p = project(ctx, ref)
    m = model(ctx, p, model_ref)
    if scope not in SCOPES:
        raise UserError(f"scope must be one of {', '.join(SCOPES)}, got {scope!r}")
    conf, conf_reason = conf_for(m, conf, ctx.store.latest_evaluations(p.id).get(m.id))
    if not (0.0 < float(iou) <= 1.0):
        raise UserError(f"IoU threshold must be in (0, 1], got {iou}")
    imgsz_reason = "as chosen"
    if not imgsz:
        advice = suggest_imgsz(ctx, p, m, device)
        imgsz, imgsz_reason = advice["imgsz"], advice["reason"]
    imgsz = int(imgsz)
    if not (32 <= imgsz <= 4096):
        raise UserError(f"image size must be between 32 and 4096, got {imgsz}")
    if int(max_det) < 1:
        raise UserError(f"max detections must be at least 1, got {max_det}")
    if int(batch) < 0:
        raise UserError(f"batch must be 0 (auto) or a positive number, got {batch}")
    device = (device or ctx.settings.device or "auto").strip()
    ds_ids = dataset_ids(ctx, p, datasets)
    mapping = class_mapping(ctx, p, m, overrides)
    if all(v is None for v in mapping.values()):
        raise UserError(
            f"None of the model's classes ({', '.join(m.class_names)}) maps to a class of {p.name!r} "
            f"({', '.join(p.class_names)}); map at least one in the class mapping table"
        )
    images = ctx.store.images_for_annotation(p.id, ds_ids, SCOPES[scope])
    if not images:
        raise UserError("No images to annotate: every image in scope has been saved or approved by a person, "
                        "or the project has no images yet")
    params = {
        "model": m.name, "model_file": m.file, "datasets": list(datasets or []), "dataset_ids": ds_ids,
        "conf": conf, "conf_reason": conf_reason, "iou": float(iou), "imgsz": imgsz, "imgsz_reason": imgsz_reason,
        "max_det": int(max_det), "device": device,
        "batch": int(batch), "scope": scope, "track": bool(track),
        "mapping": {str(k): v for k, v in mapping.items()},
        "mapping_named": {m.class_names[k]: (p.class_names[v] if v is not None else None)
                          for k, v in mapping.items()},
    }
    job_id = ctx.store.create_job(p.id, "annotate", params, len(images), model_id=m.id, user=user)
    _enqueue(ctx, job_id, 0, p.id, params, images)
    return ctx.store.get_job(job_id)


def _payload(ctx: AppContext, job_id: int, attempt: int, project_id: int, params: dict, images,
             shard: int, retry: int = 0) -> AnnotatePayload:
    """One shard's task: ``images`` are (id, file in the project folder, width, height)."""
    extra = {}
    if params.get("track"):
        frames = ctx.store.frames_of([i for i, *_ in images])  # image id -> (video id, frame index, frame rate)
        extra["track"] = {"video_of": {str(i): v for i, (v, _, _) in frames.items()},
                          "frame_rate": {str(v): r for v, _, r in frames.values()}}
    return {
        **extra,
        "job_id": job_id, "attempt": attempt, "shard": shard, "retry": retry,
        "model_path": str(ctx.settings.project_file(project_id, params["model_file"])),
        "model_name": params["model"], "root": str(ctx.settings.data_dir),
        "images": [(int(i), str(ctx.settings.project_file(project_id, f)), int(w), int(h)) for i, f, w, h in images],
        **{k: params[k] for k in ("conf", "iou", "imgsz", "max_det", "device", "batch")},
        "mapping": {int(k): v for k, v in params["mapping"].items()},
    }


MIN_SHARD = 32  # images: below this a shard's start (task pickup, pipeline fill) weighs on its time


def shard_size(images: int, most: int, workers: int) -> int:
    """Images per shard: at most ``most`` (settings.shard_images), equal shards, and with several live
    workers at least two shards each (a fast GPU worker takes more of them than a slow one), but never below
    MIN_SHARD images. With one worker a job under ``most`` images is one shard."""
    most, images = max(1, int(most)), max(1, int(images))
    count = -(-images // most)
    if workers > 1:
        count = max(count, min(2 * workers, -(-images // min(MIN_SHARD, most))))
    return -(-images // count)


def _enqueue(ctx: AppContext, job_id: int, attempt: int, project_id: int, params: dict, images) -> None:
    """Split the images into shards (shard_sizes), record them, queue one task per shard: any number of
    workers take them."""
    from .jobs import live_workers

    size = shard_size(len(images), ctx.settings.shard_images, len(live_workers(ctx)))
    groups = _by_video(ctx, images, size) if params.get("track") else \
        [images[k:k + size] for k in range(0, len(images), size)]
    tasks = [getattr(ctx.queue, ANNOTATE).s(_payload(ctx, job_id, attempt, project_id, params, g, shard=n))
             for n, g in enumerate(groups)]
    ctx.store.create_shards(job_id, attempt, [[i for i, *_ in g] for g in groups], [t.id for t in tasks])
    for task in tasks:
        ctx.queue.enqueue(task)
    size_note = f" at imgsz {params['imgsz_reason']}" if params.get("imgsz_reason") not in (None, "as chosen") else ""
    conf = (f"; confidence {params['conf_reason']}" if params.get("conf_reason") not in (None, "as chosen")
            else "")
    shards = f" in {len(groups)} shards of up to {size}" if len(groups) > 1 else ""
    ctx.store.update_job(job_id, task_id=tasks[0].id,
                         log=f"attempt {attempt}: queued {len(images)} image(s){shards}{size_note}{conf}")


def _by_video(ctx: AppContext, images, size: int) -> list:
    """A tracking job's shards: each video's frames in frame order, one shard per video (a tracker follows
    one video from frame to frame, in one worker); the still images in shards of ``size``."""
    frames = ctx.store.frames_of([i for i, *_ in images])
    videos: dict[int, list] = {}
    stills = []
    for item in images:
        f = frames.get(int(item[0]))
        if f is None:
            stills.append(item)
        else:
            videos.setdefault(f[0], []).append((f[1], item))
    groups = [[item for _, item in sorted(v, key=lambda x: (x[0], x[1][0]))] for _, v in sorted(videos.items())]
    return groups + [stills[k:k + size] for k in range(0, len(stills), size)]


def retry_shard(ctx: AppContext, job: Job, shard: JobShard) -> dict:
    """Give a shard whose worker died to the next free worker: a new try on the shard's images that no try
    has finished (their boxes came in already; none is done twice). Returns the shard's new fields, and
    ``left``: how many images the new try has."""
    images = shard.images or ctx.store.shard_images(job.id, job.attempt, shard.shard)
    left = ctx.store.images_left(job.id, images)
    if job.params.get("track") and left:  # a video's frames go on in frame order
        order = {i: k for k, i in enumerate(images)}
        left.sort(key=lambda item: order.get(int(item[0]), 0))
    fresh = dict(retry=shard.retry + 1, done_before=len(images) - len(left), done=len(images) - len(left),
                 chunks_in=0, chunks_lost=0, logs_in=0, worker=None, device=None, ips=None, heartbeat_at=None,
                 started_at=None, error=None)
    if not left:
        return {**fresh, "status": "succeeded", "finished_at": utcnow(), "left": 0}
    task = getattr(ctx.queue, ANNOTATE).s(_payload(ctx, job.id, job.attempt, job.project_id, job.params, left,
                                                   shard=shard.shard, retry=shard.retry + 1))
    ctx.queue.enqueue(task)
    return {**fresh, "status": "queued", "task_id": task.id, "left": len(left)}


def resume_job(ctx: AppContext, job_id: int | str, user: str | None = None) -> Job:
    """Run an interrupted / failed / cancelled auto-annotation again on the images it has not finished (an
    annotator resumes their own jobs, an admin anyone's)."""
    require(ctx, user, "annotator", "resuming a job")
    job = get_job(ctx, job_id)
    require_job_owner(ctx, job, user, "resuming")
    if job.kind != "annotate":
        raise UserError(f"Job {job.id} is a {job.kind} job; only auto-annotation can be resumed")
    if job.active or job.status == "succeeded":
        raise UserError(f"Job {job.id} is {job.status}; only interrupted, failed or cancelled jobs resume")
    params = job.params
    images = ctx.store.images_for_annotation(
        job.project_id, params.get("dataset_ids") or None, SCOPES[params["scope"]], exclude_job=job.id
    )
    attempt = job.attempt + 1
    done_before = ctx.store.job_image_count(job.id)
    ctx.store.update_job(
        job.id, status="queued", attempt=attempt, error=None, finished_at=None, chunks_in=0, logs_in=0, live={},
        done_before=done_before, done=done_before, total=done_before + len(images),
        progress=done_before / max(1, done_before + len(images)),
        log=f"resumed by {user or 'local'}: {len(images)} image(s) left, {done_before} already done",
    )
    if not images:
        ctx.store.update_job(job.id, status="succeeded", finished_at=utcnow(), progress=1.0,
                             log="nothing left to do")
        return ctx.store.get_job(job.id)
    _enqueue(ctx, job.id, attempt, job.project_id, params, images)
    return ctx.store.get_job(job.id)


def ingest_chunk(ctx: AppContext, job: Job, chunk: dict, cursor: dict) -> None:
    """Commit one chunk of predictions with the job's tallies and channel cursor, in one transaction."""
    items = [(int(image_id), [Box.from_dict(b, source="model", model_id=job.model_id, job_id=job.id) for b in boxes])
             for image_id, boxes in chunk["items"]]
    ctx.store.save_predictions(job.id, job.attempt, job.model_id, items, chunk.get("failed", []), cursor=cursor)


KIND = JobKind(
    kind="annotate", ingest=ingest_chunk, finish=None,
    live_keys=("stage", "ips", "eta_s", "batch", "device", "unmapped"),
    stale_hint="Boxes of the images it finished are kept; Resume does the rest.",
    retry_shard=retry_shard,
)
