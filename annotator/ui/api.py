"""THE public API: one typed function per use case, published with ``gr.api`` under its own name.

Each function is named like the service function it calls and takes that function's keyword parameters,
with two exceptions: ``project`` and ``model`` are the services' ``ref`` and ``model_ref``
(``types.API_ALIASES``), and ``user`` comes from the signed-in Gradio user ("local" without login). File
inputs are ``FileData`` (``gradio_client.handle_file(path)``); results are ``types.to_json`` of what the
service returns, so the CLI's local path (which calls the services itself) prints the same JSON. The tabs'
event handlers call these same functions (their events are private), so the UI and the API cannot drift.

    from gradio_client import Client
    client = Client("http://127.0.0.1:7860")
    job = client.predict(project="Demo", model="demo-shapes", conf=0.4, api_name="/start_annotation")

A test checks every parameter against its service function's (tests/test_api.py).
"""

from __future__ import annotations

import contextlib
import inspect
import os
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import gradio as gr
from gradio import FileData

from ..services import Services
from ..types import UserError, disk_problem, to_json
from .common import user_errors, username

# name -> (services domain, gr.api options), in definition order; filled by @endpoint
ENDPOINTS: dict[str, tuple[str, dict]] = {}
# Reads and review edits skip the queue (a few ms each: the editor's round trips); uploads, imports and
# exports share their concurrency limit with the UI's events of the same name. The one read that may decode
# a large image (load_image making a display copy) is bounded by the process's decoded-pixel budget
# (annotator/pixels.py, ANNOTATOR_DECODE_BUDGET_MB), not by the queue: normal images never wait.
_FAST = {"queue": False}
_HEAVY = {"concurrency_limit": 2}

_progress: ContextVar[Callable[[int, int, str], None] | None] = ContextVar("annotator_api_progress", default=None)


def endpoint(domain: str, **options) -> Callable:
    """Publish a method of ``Api`` as an endpoint calling the ``domain`` service of the same name; a
    ``UserError`` becomes a ``gr.Error`` with its message (in the browser and for API clients alike)."""

    def register(fn: Callable) -> Callable:
        if options.get("concurrency_limit"):
            options.setdefault("concurrency_id", fn.__name__)
        ENDPOINTS[fn.__name__] = (domain, options)
        return user_errors(fn)

    return register


@contextlib.contextmanager
def reporting(progress: gr.Progress, verb: str, unit: str) -> Iterator[None]:
    """Within the block, a long service call made through the API reports to the UI event's progress bar
    (``gr.api`` functions cannot take a ``gr.Progress`` themselves)."""

    def tick(done: int, total: int, name: str) -> None:
        progress((done, total), desc=f"{verb} {name}", unit=unit)

    token = _progress.set(tick)
    try:
        yield
    finally:
        _progress.reset(token)


def _sources(files: Any) -> list[tuple[Path, str]]:
    """Uploaded files (FileData, its dict, or a path from a gr.File) -> (path on disk, original name)."""
    if files is None:
        return []
    out = []
    for f in files if isinstance(files, (list, tuple)) else [files]:
        if isinstance(f, dict):
            path, name = f.get("path"), f.get("orig_name")
        else:
            path, name = getattr(f, "path", None) or f, getattr(f, "orig_name", None)
        if not path:
            continue
        out.append((Path(path), name or Path(path).name))
    return out


def _drop_uploads(files: list[tuple[Path, str]]) -> None:
    """Remove uploaded files from Gradio's temp folder once what they carried is stored (otherwise every
    upload costs its size twice for a day). Only files inside that folder: never a path of the caller's."""
    root = os.environ.get("GRADIO_TEMP_DIR")
    if not root:
        return
    root_path = Path(root).resolve()
    for path, _ in files:
        try:
            p = Path(path).resolve()
            if root_path in p.parents and p.is_file():
                p.unlink()
                if p.parent != root_path and not any(p.parent.iterdir()):
                    p.parent.rmdir()
        except OSError:  # already gone, or in use: the hourly cache cleanup takes it
            continue


@contextlib.contextmanager
def _consuming(files: list[tuple[Path, str]]) -> Iterator[None]:
    """Uploaded files used by the block: removed from Gradio's temp folder once it stored what they carried,
    and also when it failed for lack of disk space (keeping them would keep the disk full; the message says
    to upload again). Any other failure keeps them, so the same upload can be retried as it is."""
    try:
        yield
    except Exception as e:
        if disk_problem(e) is not None:
            _drop_uploads(files)
        raise
    _drop_uploads(files)


def _download(path: str | Path, name: str | None = None) -> dict:
    """A file for the client to download (gradio_client fetches it and hands back a local path)."""
    return FileData(path=str(path), orig_name=name or Path(path).name).model_dump()


class Api:
    """The endpoints over one ``Services``; ``publish()`` registers them inside the app's Blocks."""

    def __init__(self, services: Services):
        self.services = services

    def call(self, name: str, *, user: str | None = None, **kwargs):
        """An endpoint called from Python (the editor's server functions): the same function with the same
        keyword parameters as the published one, but a ``UserError`` (a ``Conflict`` with its details) is
        raised as it is instead of becoming a ``gr.Error``; ``user`` is the signed-in user of the call."""
        if name not in ENDPOINTS:
            raise AttributeError(f"no endpoint named {name!r}")
        fn = getattr(type(self), name).__wrapped__
        if "request" in inspect.signature(fn).parameters:
            kwargs["request"] = _Caller(user or "local")
        return fn(self, **kwargs)

    def publish(self) -> None:
        """``gr.api`` every endpoint under its own name. Call it first inside the Blocks, before any UI
        event, so each name is claimed here and nowhere else."""
        # Backups are handed out from where they were written (static: Gradio would copy them into its cache).
        gr.set_static_paths([str(self.services.settings.backups_dir)])
        for name, (_, options) in ENDPOINTS.items():
            fn = getattr(self, name)
            gr.api(fn, api_name=name, api_description=_summary(fn), **options)

    # --- projects and their classes -------------------------------------------------------------------
    @endpoint("projects")
    def list_projects(self) -> list[dict]:
        """Every project with its counts (images, approved, boxes, classes, datasets)."""
        return to_json(self.services.projects.list_projects())

    @endpoint("projects")
    def create_project(self, name: str, classes: str | list[str], description: str = "",
                       request: gr.Request = None) -> dict:
        """A new project with its ordered classes (a list, or one name per line): index = YOLO index."""
        return to_json(self.services.projects.create_project(name, classes, description, user=username(request)))

    @endpoint("projects", **_FAST)
    def get_project(self, project: str) -> dict:
        """A project by name or id: its id, name, classes (index and name), description."""
        return to_json(self.services.projects.get_project(project))

    @endpoint("projects")
    def project_details(self, project: str) -> dict:
        """A project's classes (with box counts), datasets and images per review state."""
        return to_json(self.services.projects.project_details(project))

    @endpoint("projects")
    def rename_class(self, project: str, class_ref: str | int, new_name: str, request: gr.Request = None) -> dict:
        """Rename a class (by name or index); it keeps its index. Returns the project."""
        return to_json(self.services.projects.rename_class(project, class_ref, new_name, user=username(request)))

    @endpoint("projects")
    def add_classes(self, project: str, names: str | list[str], request: gr.Request = None) -> dict:
        """Append classes (a list, or one name per line). Returns the project."""
        return to_json(self.services.projects.add_classes(project, names, user=username(request)))

    @endpoint("projects")
    def delete_class(self, project: str, class_ref: str | int, boxes: str = "refuse",
                     move_to: str | int | None = None, request: gr.Request = None) -> dict:
        """Delete a class; its boxes: refuse (if any), delete, or move (to ``move_to``)."""
        return to_json(self.services.projects.delete_class(project, class_ref, boxes or "refuse", move_to,
                                                           user=username(request)))

    @endpoint("projects")
    def reorder_classes(self, project: str, new_order: str | list[str], request: gr.Request = None) -> dict:
        """Give the classes a new order (every current name once); boxes follow their class."""
        return to_json(self.services.projects.reorder_classes(project, new_order, user=username(request)))

    @endpoint("projects")
    def delete_project(self, project: str, confirm: str, request: gr.Request = None) -> str:
        """Delete a project with everything in it; ``confirm`` is its exact name. Returns the name."""
        return to_json(self.services.projects.delete_project(project, confirm, user=username(request)))

    @endpoint("users", **_FAST)
    def whoami(self, request: gr.Request = None) -> dict:
        """Who is signed in (``user``), their ``role`` (viewer, annotator, admin), whether the app has
        ``login``, and the roles theirs includes (``can``)."""
        return to_json(self.services.users.whoami(user=username(request)))

    # --- images -----------------------------------------------------------------------------------------
    @endpoint("images", **_HEAVY)
    def add_images(self, project: str, sources: list[FileData], dataset: str | None = None,
                   sampling: str | None = None, keep_video: bool = False, request: gr.Request = None) -> dict:
        """Upload zips, image files or videos (.mp4 .mov .avi .mkv .webm, also inside a zip) into a dataset
        (default: the zip's or the video's name). A video becomes frames by ``sampling``: "fps:2" (frames per
        second), "every:10" (every Nth frame), "scene:0.2" (when the picture changes), "all", each optionally
        with ",max:N"; default the app's ANNOTATOR_VIDEO_SAMPLING. ``keep_video`` stores the video file too.
        The report lists what was added, duplicates, skipped files with reasons, the videos sampled (frames
        read, kept, where a damaged one stopped) and near-duplicates of the added images (``similar``)."""
        files = _sources(sources)
        with _consuming(files):
            report = self.services.images.add_images(project, files, dataset or None, user=username(request),
                                                     progress=_progress.get(), sampling=sampling or None,
                                                     keep_video=bool(keep_video))
        return to_json(report)

    @endpoint("images")
    def list_images(self, project: str, dataset: str | None = None, status: str | None = None, page: int = 0,
                    page_size: int = 60, similar: bool = False) -> dict:
        """A page (from 0) of a project's images, optionally of one dataset / review state; ``similar``: only
        images with a near-duplicate, group by group. A video's frames carry video_id, frame_index, frame_time."""
        return to_json(self.services.images.list_images(project, dataset or None, status or None, page,
                                                        page_size, bool(similar)))

    # --- models -----------------------------------------------------------------------------------------
    @endpoint("models")
    def add_model(self, project: str, path: FileData, name: str | None = None, request: gr.Request = None) -> dict:
        """Register an ultralytics detection .pt under ``name`` (default: the file name); a file whose pickle
        imports anything a detection checkpoint never needs is refused before any of it runs."""
        files = _sources(path)
        if not files:
            raise UserError("Choose a .pt file to upload")
        file, shown = files[0]
        with _consuming(files):  # registered: the registry holds its own copy
            model = self.services.models.add_model(project, file, name or None, user=username(request),
                                                   display_name=shown)
        return to_json(model)

    @endpoint("models")
    def list_models(self, project: str) -> list[dict]:
        """The project's registered models."""
        return to_json(self.services.models.list_models(project))

    @endpoint("models", **_FAST)
    def suggest_imgsz(self, project: str, model: str | None = None, device: str | None = None) -> dict:
        """The image size jobs on this project should run at, from its images and boxes (the smallest
        objects must stay about 12 px; never below the base model's size), with the reason in words."""
        return to_json(self.services.models.suggest_imgsz(project, model or None, device or None))

    @endpoint("models", **_FAST)
    def suggest_conf(self, project: str, model: str) -> dict:
        """The confidence threshold auto-annotation with ``model`` uses when given 0: the threshold of best
        F1 on the model's own val images (a model this app trained), else 0.25; with the reason."""
        return to_json(self.services.models.suggest_conf(project, model))

    @endpoint("models")
    def class_mapping(self, project: str, model: str, overrides: dict | None = None) -> dict:
        """Model class index -> project class index (null = skipped): by name, then ``overrides``. Edit it
        and pass it back to start_annotation as ``overrides`` (keys: model class index or name)."""
        return to_json(self.services.models.class_mapping(project, model, overrides or None))

    @endpoint("models")
    def model_weights(self, project: str, model: str) -> FileData:
        """The model's .pt file (gradio_client downloads it)."""
        path = self.services.models.model_weights(project, model)
        return FileData(path=str(path), orig_name=f"{model}.pt")

    # --- auto-annotation and jobs -----------------------------------------------------------------------
    @endpoint("annotation")
    def start_annotation(self, project: str, model: str, datasets: list[str] | None = None, conf: float | None = None,
                         iou: float = 0.7, imgsz: int | None = None, max_det: int = 300, device: str | None = None,
                         batch: int = 0, scope: str = "unreviewed", overrides: dict | None = None,
                         track: bool = False, request: gr.Request = None) -> dict:
        """Queue auto-annotation of the project's unreviewed (``scope`` "untouched": also rejected) images.
        ``overrides``: model class (name or index) -> project class (name or index, null to skip). ``track``:
        the machine boxes of video frames get track ids (ByteTrack)."""
        return to_json(self.services.annotation.start_annotation(
            project, model, datasets=[d for d in datasets or [] if d], conf=conf, iou=iou, imgsz=imgsz or None,
            max_det=max_det, device=device or None, batch=batch, scope=scope or "unreviewed",
            overrides=overrides or None, track=bool(track), user=username(request)))

    @endpoint("annotation")
    def resume_job(self, job_id: int, request: gr.Request = None) -> dict:
        """Run an interrupted, failed or cancelled auto-annotation again on the images it has not finished."""
        return to_json(self.services.annotation.resume_job(job_id, user=username(request)))

    @endpoint("jobs")
    def get_job(self, job_id: int) -> dict:
        """A job: status, progress, live state, result, error, log."""
        return to_json(self.services.jobs.get_job(job_id))

    @endpoint("jobs")
    def list_jobs(self, project: str | None = None, limit: int = 30) -> list[dict]:
        """The newest jobs (of one project, or all)."""
        return to_json(self.services.jobs.list_jobs(project or None, limit))

    @endpoint("jobs")
    def cancel_job(self, job_id: int, request: gr.Request = None) -> dict:
        """Cancel a queued or running job (a running one stops after its current batch)."""
        return to_json(self.services.jobs.cancel_job(job_id, user=username(request)))

    @endpoint("jobs", **_FAST)
    def jobs_signature(self, limit: int = 12) -> str:
        """A short string that changes whenever one of the newest ``limit`` jobs is added or moves: poll it
        to know when to re-read the jobs."""
        return to_json(self.services.jobs.jobs_signature(limit))

    @endpoint("jobs")
    def system_info(self) -> dict:
        """torch, CUDA, the GPUs and the device of the app and of every live worker."""
        return to_json(self.services.jobs.system_info())

    # --- review -----------------------------------------------------------------------------------------
    @endpoint("review", **_FAST)
    def load_image(self, project: str, image_id: int) -> dict:
        """An image with its boxes (``Box.as_dict``: class_idx, corners, provenance) and version."""
        return to_json(self.services.review.load_image(project, image_id))

    @endpoint("review", **_FAST)
    def save_image(self, project: str, image_id: int, boxes: list[dict], version: int,
                   request: gr.Request = None) -> dict:
        """Replace an image's boxes (each with ``class_idx`` or ``class`` and x1, y1, x2, y2; a box with the
        ``id`` of a stored box and unchanged corners keeps its provenance). ``version`` is load_image's: a
        save by someone else since then is refused."""
        return to_json(self.services.review.save_image(project, image_id, boxes or [], version,
                                                       user=username(request)))

    @endpoint("review", **_FAST)
    def set_review_status(self, project: str, image_ids: list[int], status: str,
                          drop_machine_below: float | None = None, version: int | None = None,
                          request: gr.Request = None) -> dict:
        """approved / rejected / unreviewed (reset). Approving with ``drop_machine_below`` first deletes the
        machine boxes under that confidence. With ``version`` (one image, load_image's) a change by anyone
        since then refuses the review, as it refuses a save."""
        return to_json(self.services.review.set_review_status(project, image_ids, status, user=username(request),
                                                              drop_machine_below=drop_machine_below,
                                                              version=version))

    @endpoint("review", **_FAST)
    def review_queue(self, project: str, offset: int = 0, limit: int = 50, status: str | None = None,
                     dataset: str | None = None, class_name: str | None = None, no_boxes: bool = False,
                     below_conf: float | None = None, sort: str = "upload") -> dict:
        """The images a reviewer goes through (filters: status or "all", dataset, has a box of class_name,
        no boxes, a machine box below below_conf; sort "upload", "uncertain" or "informative": uncertain and
        unlike the approved images), a page of them."""
        return to_json(self.services.review.review_queue(
            project, offset=offset, limit=limit, status=status or None, dataset=dataset or None,
            class_name=class_name or None, no_boxes=bool(no_boxes), below_conf=below_conf or None,
            sort=sort or "upload"))

    @endpoint("review", **_FAST)
    def review_queue_ids(self, project: str, status: str | None = None, dataset: str | None = None,
                         class_name: str | None = None, no_boxes: bool = False, below_conf: float | None = None,
                         sort: str = "upload") -> list[int]:
        """Every image id of the review queue, in order (review_queue's filters)."""
        return to_json(self.services.review.review_queue_ids(
            project, status=status or None, dataset=dataset or None, class_name=class_name or None,
            no_boxes=bool(no_boxes), below_conf=below_conf or None, sort=sort or "upload"))

    @endpoint("review", **_FAST)
    def queue_thumbs(self, project: str, image_ids: list[int]) -> list[dict]:
        """Filmstrip entries for these images, in order: thumbnail file, review state, boxes, lowest machine
        confidence."""
        return to_json(self.services.review.queue_thumbs(project, image_ids or []))

    # --- dataset quality ------------------------------------------------------------------------------------
    @endpoint("quality")
    def start_label_check(self, project: str, model: str, conf: float = 0.5, imgsz: int | None = None,
                          device: str | None = None, overrides: dict | None = None, request: gr.Request = None) -> dict:
        """Queue a label check: ``model`` predicts on every approved image and disagreements become findings
        (likely missed, spurious, wrong-class or loose labels; ``conf``: how sure the model must be to flag
        one; ``overrides``: the class mapping's, as for start_annotation). Returns the job."""
        return to_json(self.services.quality.start_label_check(project, model, conf, imgsz or None, device or None,
                                                              overrides or None, user=username(request)))

    @endpoint("quality", **_FAST)
    def label_errors(self, project: str, image_id: int | None = None, status: str = "open") -> list[dict]:
        """Likely label errors, worst first (of one image with ``image_id``): kind, score, message, the box in
        question (box_id) and the suggestion (suggestion_class, x1..y2)."""
        return to_json(self.services.quality.label_errors(project, image_id, status or None))

    @endpoint("quality", **_FAST)
    def resolve_label_error(self, project: str, error_id: int, status: str, request: gr.Request = None) -> dict:
        """Mark a finding ``accepted`` (its suggestion was applied) or ``dismissed`` (the label is right)."""
        return to_json(self.services.quality.resolve_label_error(project, error_id, status, user=username(request)))

    @endpoint("health")
    def health(self, project: str, scope: str = "approved") -> dict:
        """Dataset health: images and boxes per class and split, box size and aspect histograms, objects per
        image, images without boxes, tiny boxes, near-duplicates, class imbalance and train/val drift, with
        warnings. ``scope``: approved (what training sees) or all."""
        return to_json(self.services.health.health(project, scope or "approved"))

    @endpoint("similar")
    def near_duplicates(self, project: str, max_bits: int | None = None) -> dict:
        """Near-duplicate groups of the project (hashes within ``max_bits`` of 64; default the app's setting):
        counts and the largest groups with their paths and splits."""
        return to_json(self.services.similar.near_duplicates(project, max_bits))

    @endpoint("review")
    def delete_track(self, project: str, image_id: int, job_id: int, track_id: int, request: gr.Request = None) -> dict:
        """Delete a machine track (``job_id`` and ``track_id`` of a box from auto-annotation with tracking) in the
        frames after this one of its video; frames a person saved or approved are left alone (``protected``)."""
        return to_json(self.services.review.delete_track(project, image_id, job_id, track_id,
                                                         user=username(request)))

    @endpoint("review", **_FAST)
    def copy_boxes(self, project: str, from_image: int, to_image: int, request: gr.Request = None) -> list[dict]:
        """The boxes of one image as new (a person's) boxes for another, scaled by their sizes; nothing saved."""
        return to_json(self.services.review.copy_boxes(project, from_image, to_image, user=username(request)))

    @endpoint("review", **_FAST)
    def class_colours(self, project: str) -> list[str]:
        """The colour of each class ("#rrggbb", by class index), as the gallery and the editor draw it."""
        return to_json(self.services.review.class_colours(project))

    @endpoint("review", **_FAST)
    def review_stats_counts(self, project: str) -> dict:
        """Images per review state."""
        return to_json(self.services.review.review_stats_counts(project))

    @endpoint("review", **_FAST)
    def project_revision(self, project: str) -> int:
        """A number that moves whenever the project's boxes, reviews, images, splits or classes change: poll
        it to know when to re-read."""
        return to_json(self.services.review.project_revision(project))

    @endpoint("review", **_FAST)
    def image_changes(self, project: str, image_ids: list[int]) -> dict:
        """image id -> version, review state, and who or which job changed it last, when (the project's
        images among those given)."""
        return to_json(self.services.review.image_changes(project, image_ids or []))

    @endpoint("review", **_FAST)
    def review_stats(self, project: str) -> dict:
        """Boxes per class by source, images per review state, reviews per day."""
        return to_json(self.services.review.review_stats(project))

    @endpoint("loop", **_FAST)
    def loop_stats(self, project: str) -> dict:
        """Edits per image and acceptance rate (approved with zero edits) per model round: what each model's
        pre-annotations cost the reviewers (deleted, added, reclassed, adjusted boxes)."""
        return to_json(self.services.loop.loop_stats(project))

    @endpoint("loop", **_FAST)
    def keep_learning(self, project: str) -> dict:
        """The keep-learning setting (a fine-tune round after every K approvals; 0 = off), the approvals since
        the last round, and the rounds so far with their model, metrics and reviewer edits."""
        return to_json(self.services.loop.keep_learning(project))

    @endpoint("loop")
    def set_keep_learning(self, project: str, every: int, request: gr.Request = None) -> dict:
        """Fine-tune by itself after every ``every`` new approvals (0 = off); admins only."""
        return to_json(self.services.loop.set_keep_learning(project, every, user=username(request)))

    # --- splits and training ----------------------------------------------------------------------------
    @endpoint("splits")
    def split_summary(self, project: str) -> dict:
        """Images and boxes per split and review state, and the stored ratios."""
        return to_json(self.services.splits.split_summary(project))

    @endpoint("splits")
    def configure_splits(self, project: str, train: float, val: float, test: float, seed: int = 0,
                         reassign: bool = False, request: gr.Request = None) -> dict:
        """Store the split ratios (fractions or percentages) and seed; assign every image without a split
        (``reassign``: every image afresh)."""
        return to_json(self.services.splits.configure_splits(project, train, val, test, seed, bool(reassign),
                                                             user=username(request)))

    @endpoint("splits")
    def set_split(self, project: str, split: str, image_ids: list[int] | None = None, dataset: str | None = None,
                  status: str | None = None, request: gr.Request = None) -> dict:
        """Move images (these ids, a dataset, a review state, or all) to ``split``."""
        return to_json(self.services.splits.set_split(project, split, image_ids, dataset or None, status or None,
                                                      user=username(request)))

    @endpoint("training")
    def start_training(self, project: str, base: str | None = None, datasets: list[str] | None = None,
                       approved_only: bool = True, imgsz: int | None = None, epochs: int | None = None,
                       batch: str | int = "auto", optimizer: str = "auto", lr0: float | None = None,
                       patience: int | None = None, device: str | None = None, name: str | None = None,
                       onnx_check: bool = True, replay: float = 0.0, request: gr.Request = None) -> dict:
        """Queue fine-tuning on the approved images. ``base``: a registered model, an architecture such as
        yolov8n.yaml, or empty for the newest model. ``replay`` (0-1, with ``datasets``): also the other
        datasets' val images and that share of their train images, against forgetting."""
        return to_json(self.services.training.start_training(
            project, base=base or None, datasets=[d for d in datasets or [] if d], approved_only=bool(approved_only),
            imgsz=imgsz or None, epochs=epochs, batch=batch, optimizer=optimizer or "auto", lr0=lr0 or None,
            patience=patience, device=device or None, name=(name or "").strip() or None,
            onnx_check=bool(onnx_check), replay=float(replay or 0.0), user=username(request)))

    @endpoint("training")
    def start_evaluation(self, project: str, model: str, device: str | None = None, imgsz: int | None = None,
                         batch: int | None = None, request: gr.Request = None) -> dict:
        """Queue the evaluation of a registered model on the approved val images."""
        return to_json(self.services.training.start_evaluation(project, model, device=device or None,
                                                               imgsz=imgsz or None, batch=batch or None,
                                                               user=username(request)))

    @endpoint("training")
    def compare_models(self, project: str) -> dict:
        """Every registered model with its newest evaluation (on which val data), side by side."""
        return to_json(self.services.training.compare_models(project))

    @endpoint("training")
    def training_view(self, job_id: int) -> dict:
        """A training or evaluation job: live state, per-epoch rows, result and plot files."""
        return to_json(self.services.training.training_view(job_id))

    # --- datasets in and out ----------------------------------------------------------------------------
    @endpoint("transfer", **_HEAVY)
    def export_dataset(self, project: str, fmt: str, datasets: list[str] | None = None, approved_only: bool = True,
                       include_images: bool = True, val_ratio: float = 0.2, per_split: bool = False,
                       with_scores: bool = False, request: gr.Request = None) -> dict:
        """A YOLO or COCO zip of the project: the summary, ``file`` (its path in the app's data folder) and
        ``download`` (gradio_client fetches the zip and puts its local path there)."""
        result = to_json(self.services.transfer.export_dataset(
            project, fmt, datasets=[d for d in datasets or [] if d], approved_only=bool(approved_only),
            include_images=bool(include_images), val_ratio=float(val_ratio or 0), per_split=bool(per_split),
            with_scores=bool(with_scores), user=username(request), progress=_progress.get()))
        return {**result, "download": _download(result["file"])}

    @endpoint("transfer")
    def analyze_labels(self, project: str, sources: list[FileData], fmt: str, request: gr.Request = None) -> dict:
        """What an import would bring: the source's classes, their box counts and the project class each
        maps to (by name)."""
        return to_json(self.services.transfer.analyze_labels(project, _sources(sources), fmt,
                                                             user=username(request)))

    @endpoint("transfer", **_HEAVY)
    def import_labels(self, project: str, sources: list[FileData], fmt: str, dataset: str | None = None,
                      mapping: dict | None = None, add_new_classes: bool = False, approve: bool = False,
                      replace: bool = False, request: gr.Request = None) -> dict:
        """Import images labelled elsewhere (a YOLO or COCO zip). ``mapping``: source class -> project class
        (null to drop); ``add_new_classes`` adds the unmatched ones. The imported boxes replace the machine's;
        ``replace`` also replaces the boxes of images a person edited or approved."""
        files = _sources(sources)
        with _consuming(files):
            report = self.services.transfer.import_labels(
                project, files, fmt, dataset or None, mapping or None, bool(add_new_classes), bool(approve),
                bool(replace), user=username(request), progress=_progress.get())
        return to_json(report)

    # --- the data folder --------------------------------------------------------------------------------
    @endpoint("fsck", concurrency_limit=1)
    def fsck(self, repair: bool = False, request: gr.Request = None) -> dict:
        """Check the data folder against the store: files no row references, rows whose file is missing, work
        left by an earlier run (counts, bytes, examples). ``repair`` removes orphans and leftovers and makes
        missing thumbnails again; rows whose file is missing are reported, never deleted."""
        return to_json(self.services.fsck.fsck(repair=bool(repair), user=username(request)))

    @endpoint("backup", concurrency_limit=1)
    def backup(self, exports: bool = True, request: gr.Request = None) -> dict:
        """A backup tar (a consistent database snapshot, the files it references, a manifest and SHA-256 sums),
        written into the app's backups/ folder: ``download`` is the file; ``name`` is what discard_backup
        takes once it is fetched. ``exports``: include the export zips."""
        result = to_json(self.services.backup.backup(exports=bool(exports), user=username(request)))
        return {**result, "download": _download(result["file"])}

    @endpoint("backup")
    def discard_backup(self, name: str, request: gr.Request = None) -> dict:
        """Remove a backup from the app's backups/ folder (after its download)."""
        return to_json(self.services.backup.discard_backup(name, user=username(request)))


@dataclass(frozen=True)
class _Caller:
    """Who calls an endpoint from Python: what ``username(request)`` reads of a ``gr.Request``."""

    username: str


def _summary(fn: Callable) -> str:
    return " ".join((fn.__doc__ or "").split())
