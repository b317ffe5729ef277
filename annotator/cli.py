"""``annotator ...`` (or ``python -m annotator ...``): the same services as the app, scriptable (``--json`` on every command).

Every command is one or two ``Backend.call(domain, name, **kwargs)``: the service function in this process,
or, while the app runs and holds the DuckDB lock, the running app's public API endpoint of the same name
with the same keyword arguments (found via ``data/app.json``); if no app answers, the error says which
process holds the database.
"""

from __future__ import annotations

import argparse
import contextlib
import html
import json
import os
import sys
import tempfile
import zipfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .settings import Settings
from .types import API_ALIASES, VIDEO_EXTENSIONS, StoreBusy, UserError, disk_problem, to_json
from .users import ROLES


# --- the backend: the services in this process, or the running app's API, under the same names ---------------
class Backend:
    """``call(domain, name, **kwargs)`` runs the service function ``services.<domain>.<name>`` with ``kwargs``
    (named as the public API names them: ``project``, ``model``, see ``types.API_ALIASES``) and returns its
    result as JSON (``types.to_json``). Here (``local``) it calls the services itself; while the app holds
    the database (``remote``) it calls the app's endpoint ``/<name>`` (``ui/api.py``) with the same keyword
    arguments: files and folders are uploaded (a folder as an uncompressed zip), and files in the result
    are downloaded."""

    def __init__(self, services=None, client=None, url: str | None = None):
        self.services, self.client, self.url = services, client, url

    @classmethod
    def local(cls, settings: Settings) -> "Backend":
        from .services import Services
        from .users import Users

        # Holding the database lock means holding the data folder's files: the CLI here acts as an admin.
        return cls(services=Services.open(settings, users=Users()))

    @classmethod
    def remote(cls, url: str, settings: Settings) -> "Backend":
        from gradio_client import Client

        return cls(client=Client(url, auth=cli_credentials(settings), verbose=False), url=url)

    def close(self) -> None:
        (self.services or self.client).close()

    def call(self, domain: str, name: str, /, **kwargs):
        if self.services is not None:
            return self._local(domain, name, kwargs)
        return self._remote(name, kwargs)

    def _local(self, domain: str, name: str, kwargs: dict):
        import inspect

        fn = getattr(getattr(self.services, domain), name)
        params = inspect.signature(fn).parameters
        kwargs = {API_ALIASES.get(k, k): v for k, v in kwargs.items()}
        if "user" in params:
            kwargs["user"] = os.environ.get("USER") or "cli"
        tty = "progress" in params and sys.stderr.isatty()
        if tty:
            kwargs["progress"] = _progress_line
        try:
            return to_json(fn(**kwargs))
        finally:
            if tty:
                print(file=sys.stderr)

    def _remote(self, name: str, kwargs: dict):
        from gradio_client.exceptions import AppError

        with tempfile.TemporaryDirectory(prefix="annotator-cli-") as tmp:
            kwargs = {k: _upload(v, Path(tmp)) for k, v in kwargs.items()}
            try:
                return self.client.predict(**kwargs, api_name=f"/{name}")
            except AppError as e:  # the app's own message (HTML-escaped for the browser)
                raise UserError(html.unescape(getattr(e, "message", None) or str(e))) from None

    def run_jobs_here(self):
        """Owning the store, the CLI ingests job results itself and runs a local worker while it waits;
        through the app, the app does."""
        if self.services is None:
            return None
        from .launch import start_jobs

        return start_jobs(self.services, self.services.settings.local_worker)


def cli_credentials(settings: Settings, env=None, tty: bool | None = None) -> tuple[str, str] | None:
    """Who the CLI signs in as when it goes through the running app (it then acts with that user's role):
    ANNOTATOR_CLI_USER + ANNOTATOR_CLI_PASSWORD, else the first ANNOTATOR_AUTH user, else (login configured,
    a terminal) a prompt; None when the app runs without login."""
    import getpass

    env = os.environ if env is None else env
    user, password = env.get("ANNOTATOR_CLI_USER"), env.get("ANNOTATOR_CLI_PASSWORD")
    if user and password is not None:
        return user, password
    if settings.auth and not user:
        return settings.auth[0]
    if not settings.users and not user:
        return None
    tty = sys.stdin.isatty() if tty is None else tty
    if not tty:
        raise UserError("The running app has login: set ANNOTATOR_CLI_USER and ANNOTATOR_CLI_PASSWORD (or "
                        "ANNOTATOR_AUTH=user:password) for the CLI to sign in")
    user = user or input("Auto Annotator user: ").strip()
    return user, getpass.getpass(f"Password for {user}: ")


def _progress_line(done: int, total: int, name: str) -> None:
    print(f"\r{done}/{total} {name[-60:]:<60}", end="", file=sys.stderr, flush=True)


def _upload(value, tmp: Path):
    """A path (or a list of them) as a file for the app's API: a folder goes as an uncompressed zip."""
    if isinstance(value, (list, tuple)):
        return [_upload(v, tmp) for v in value]
    if not isinstance(value, Path):
        return value
    from gradio_client import handle_file

    path = value
    if path.is_dir():
        archive = tmp / f"{path.name or 'folder'}.zip"
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as zf:
            for f in sorted(path.rglob("*")):
                if f.is_file() and not f.is_symlink():
                    zf.write(f, f.relative_to(path).as_posix())
        path = archive
    return handle_file(str(path))


def _running_app_url(settings: Settings) -> str | None:
    try:
        info = json.loads(settings.app_info_path.read_text())
        os.kill(int(info["pid"]), 0)
        return str(info["url"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


@contextmanager
def backend(settings: Settings) -> Iterator[Backend]:
    try:
        b = Backend.local(settings)
    except StoreBusy as busy:
        url = _running_app_url(settings)
        if url is None:
            raise
        try:
            b = Backend.remote(url, settings)
        except Exception as e:  # noqa: BLE001 - any connection failure: say what we tried
            raise UserError(f"{busy} The app's API at {url} did not answer: {e}") from None
        print(f"(the app is running: going through its API at {url})", file=sys.stderr)
    try:
        yield b
    finally:
        b.close()


# --- commands ------------------------------------------------------------------------------------------
_STDOUT = sys.stdout  # ours alone: while a command runs, whatever libraries print goes to stderr


def _print(args, data, human: str) -> None:
    print(json.dumps(data, indent=2, default=str) if args.json else human, file=_STDOUT, flush=True)


def cmd_serve(args, settings: Settings) -> int:
    from .launch import start

    start(settings.with_overrides(host=args.host, port=args.port, share=args.share or None,
                                  local_worker=False if args.no_worker else None))
    return 0


def cmd_project_create(args, settings: Settings) -> int:
    classes = [c for c in args.classes.split(",")] if args.classes else []
    with backend(settings) as b:
        p = b.call("projects", "create_project", name=args.name, classes=classes, description=args.description or "")
        d = b.call("projects", "project_details", project=p["name"])
    names = ", ".join(f"{c['index']}:{c['name']}" for c in d["classes"])
    _print(args, d, f"Created project {d['name']!r} (id {d['id']}) with classes {names}")
    return 0


def cmd_project_list(args, settings: Settings) -> int:
    with backend(settings) as b:
        rows = b.call("projects", "list_projects")
    if not rows:
        _print(args, rows, "No projects yet. Create one: annotator project create NAME --classes a,b,c")
        return 0
    width = max(len(r["name"]) for r in rows)
    lines = [f"{'name':<{width}}  {'images':>7} {'approved':>8} {'boxes':>8} {'classes':>7} {'datasets':>8}"]
    for r in rows:
        lines.append(f"{r['name']:<{width}}  {r['images']:>7} {r['approved']:>8} {r['boxes']:>8} "
                     f"{r['classes']:>7} {r['datasets']:>8}")
    _print(args, rows, "\n".join(lines))
    return 0


def cmd_ingest(args, settings: Settings) -> int:
    """Without --dataset, each zip, folder and video goes into a dataset named after it, and loose image files
    together into one; with --dataset, everything goes into that one."""
    paths = [Path(p).expanduser() for p in args.paths]
    for p in paths:
        if not p.exists():
            raise UserError(f"{p}: no such file or folder")
    if args.dataset:
        groups = [paths]
    else:
        named = [p for p in paths if p.is_dir() or p.suffix.lower() == ".zip" or p.suffix.lower() in VIDEO_EXTENSIONS]
        loose = [p for p in paths if p not in named]
        groups = [[p] for p in named] + ([loose] if loose else [])
    reports, lines = [], []
    with backend(settings) as b:
        for group in groups:
            r = b.call("images", "add_images", project=args.project, sources=group, dataset=args.dataset,
                       sampling=args.sampling, keep_video=args.keep_video)
            reports.append(r)
            lines.append(f"Added {r['added']} image(s) to {r['project']}/{r['dataset']}; "
                         f"{r['duplicates']} duplicate(s), {r['skipped']} skipped ({r['seconds']:.1f} s)")
            lines += [f"  video      {v['name']}: {v['duration']} {v['size']} at {v['fps']} fps, {v['sampling']}: "
                      f"{v['read']} frames read, {v['kept']} kept, {v['added']} added"
                      + (f"; {v['stopped']}" if v["stopped"] else "") for v in r.get("videos", [])]
            lines += [f"  similar    {s['name']}  (near-duplicate of {s['similar_to']}, {s['distance']} bits)"
                      for s in r.get("similar", [])]
            lines += [f"  duplicate  {d['name']}  (same as {d['same_as']})" for d in r["duplicate_files"]]
            lines += [f"  skipped    {s['name']}: {s['reason']}" for s in r["skipped_files"]]
    _print(args, reports[0] if len(reports) == 1 else {"uploads": reports}, "\n".join(lines))
    return 0


def cmd_worker(args, settings: Settings) -> int:
    from jobs.worker import parse_devices, run_device_workers, run_worker

    if args.devices:
        try:
            devices = parse_devices(args.devices)
        except ValueError as e:
            raise UserError(str(e)) from None
        run_device_workers(settings, devices, workers=args.workers)
    else:
        run_worker(settings, workers=args.workers)
    return 0


def cmd_doctor(args, settings: Settings) -> int:
    from jobs.runtime import system_info

    info = system_info(settings.device)
    gpus = ", ".join(f"{g['index']}: {g['name']} ({g['memory_gb']} GB)" for g in info.get("gpus", [])) or "none"
    human = "\n".join([
        f"torch            {info.get('torch')}",
        f"ultralytics      {info.get('ultralytics')}",
        f"CUDA available   {info.get('cuda_available')} (CUDA {info.get('cuda_version') or '-'})",
        f"GPUs             {gpus}",
        f"jobs will use    {info.get('device')}  (ANNOTATOR_DEVICE={settings.device})",
        f"CPU cores        {info.get('cpu_count')}",
        f"data folder      {settings.data_dir}",
        f"queue            {settings.queue_url or settings.queue_path}",
    ])
    _print(args, info, human)
    return 0


def cmd_models_add(args, settings: Settings) -> int:
    with backend(settings) as b:
        m = b.call("models", "add_model", project=args.project, path=Path(args.path), name=args.name)
    _print(args, m, f"Registered model {m['name']!r} (id {m['id']}): {len(m['classes'])} classes "
                    f"({', '.join(m['classes'][:10])}{'...' if len(m['classes']) > 10 else ''}), sha256 {m['sha256'][:12]}")
    return 0


def cmd_models_list(args, settings: Settings) -> int:
    with backend(settings) as b:
        rows = b.call("models", "list_models", project=args.project)
    lines = [f"{m['id']:>4}  {m['name']:<28} {m['source']:<9} {len(m['classes']):>3} classes  "
             f"{m['size_bytes'] / 2**20:6.1f} MB  {m['sha256'][:12]}" for m in rows]
    _print(args, rows, "\n".join(lines) or "No models registered. Add one: annotator models add PROJECT FILE.pt")
    return 0


def _job_line(j: dict) -> str:
    eta = f", ETA {j['eta_s']:.0f} s" if j.get("eta_s") else ""
    ips = f", {j['images_per_s']:.1f} img/s" if j.get("images_per_s") else ""
    return f"job {j['id']} {j['status']}: {j['done']}/{j['total']} images{ips}{eta}"


def _class_map(items: list[str] | None, source: str) -> dict[str, str | None]:
    """--map A=B (repeatable) -> {A: B}; "A=skip" or "A=" -> {A: None}."""
    out: dict[str, str | None] = {}
    for item in items or []:
        k, sep, v = item.partition("=")
        if not sep:
            raise UserError(f"--map {item!r}: use {source}_CLASS=PROJECT_CLASS (or =skip)")
        out[k.strip()] = None if v.strip().lower() in ("", "skip") else v.strip()
    return out


def _queued(args, b, job: dict, what: str) -> int:
    """A job queued without --wait: say what was queued and how to follow it (and when no worker runs it)."""
    _print(args, job, f"Queued {what}. Follow it with: annotator jobs status {job['id']}")
    _say_if_nothing_runs_it(b, job)
    return 0


def cmd_annotate(args, settings: Settings) -> int:
    overrides = _class_map(args.map, "MODEL")
    options = {"datasets": args.dataset or [], "conf": args.conf, "iou": args.iou, "imgsz": args.imgsz or None,
               "max_det": args.max_det, "device": args.device or None, "batch": args.batch, "scope": args.scope,
               "overrides": overrides, "track": args.track}
    with backend(settings) as b:
        job = b.call("annotation", "start_annotation", project=args.project, model=args.model, **options)
        if not args.wait:
            return _queued(args, b, job, f"job {job['id']}: {job['total']} image(s)")
        job = _follow(args, b, job, _job_line)  # progress to stderr: stdout stays machine-readable
    c = job["result"]
    _print(args, job, f"Job {job['id']} {job['status']}: {c.get('boxes', 0)} box(es) on {c.get('images', 0)} image(s), "
                      f"{c.get('protected', 0)} left alone (saved/approved by a person), {c.get('errors', 0)} unreadable"
                      + (f"\nerror: {job['error']}" if job.get("error") else ""))
    return 0 if job["status"] == "succeeded" else 1


def cmd_health(args, settings: Settings) -> int:
    with backend(settings) as b:
        h = b.call("health", "health", project=args.project, scope=args.scope)
    _print(args, h, health_text(h))
    return 0


def health_text(h: dict) -> str:
    """The health numbers as a person reads them in a terminal."""
    im, bx = h["images"], h["boxes"]
    lines = [f"{h['project']} ({h['scope']} images): {im['total']} image(s), {bx['total']} box(es); per split: "
             + ", ".join(f"{k} {v}" for k, v in im["per_split"].items() if v)]
    lines.append(f"{'class':<20} {'boxes':>7} {'images':>7} {'share':>6}  train/val/test")
    for c in h["per_class"]:
        ps = c["per_split"]
        lines.append(f"{c['class'][:20]:<20} {c['boxes']:>7} {c['images']:>7} {c['share']:>6.1%}  "
                     f"{ps.get('train', 0)}/{ps.get('val', 0)}/{ps.get('test', 0)}")
    lines.append(f"images without boxes: {h['images_without_boxes']['count']} · boxes under "
                 f"{h['tiny_boxes']['min_side_px']} px: {h['tiny_boxes']['count']} · near-duplicate groups: "
                 f"{h['duplicates']['groups']} ({h['duplicates']['images']} images, "
                 f"{h['duplicates']['straddling']} across train/val)")
    lines += [f"warning: {w}" for w in h["warnings"]]
    return "\n".join(lines)


def cmd_duplicates(args, settings: Settings) -> int:
    with backend(settings) as b:
        r = b.call("similar", "near_duplicates", project=args.project, max_bits=args.max_bits)
    lines = [f"{r['project']}: {r['groups']} near-duplicate group(s), {r['images']} image(s) (within "
             f"{r['max_bits']} of 64 bits)"]
    for g in r["largest"]:
        lines.append("  " + "  ≈  ".join(f"{x['name']} [{x['split'] or '-'}]" for x in g))
    _print(args, r, "\n".join(lines))
    return 0


def cmd_check_labels(args, settings: Settings) -> int:
    with backend(settings) as b:
        job = b.call("quality", "start_label_check", project=args.project, model=args.model, conf=args.conf,
                     imgsz=args.imgsz or None, device=args.device or None, overrides=_class_map(args.map, "MODEL"))
        if not args.wait:
            return _queued(args, b, job, f"label check {job['id']}: {job['total']} approved image(s)")
        job = _follow(args, b, job, _job_line)
        found = b.call("quality", "label_errors", project=args.project) if job["status"] == "succeeded" else []
    lines = [f"Job {job['id']} {job['status']}: {len(found)} likely label error(s) on "
             f"{job['result'].get('images', 0)} image(s), worst first:"]
    lines += [f"  {f['score']:.2f}  image {f['image_id']}  {f['kind']:<11} {f['message']}" for f in found[:50]]
    if job.get("error"):
        lines.append(f"error: {job['error']}")
    _print(args, {"job": job, "findings": found}, "\n".join(lines))
    return 0 if job["status"] == "succeeded" else 1


def cmd_jobs(args, settings: Settings) -> int:
    with backend(settings) as b:
        domain, name = {"status": ("jobs", "get_job"), "cancel": ("jobs", "cancel_job"),
                        "resume": ("annotation", "resume_job")}[args.action]
        job = b.call(domain, name, job_id=args.job_id)
    _print(args, job, _job_line(job) + (f"\n{job['error']}" if job.get("error") else ""))
    return 0


def cmd_export(args, settings: Settings) -> int:
    import shutil

    options = {"fmt": args.format, "datasets": args.dataset or [], "approved_only": not args.all,
               "include_images": not args.labels_only, "val_ratio": args.val, "per_split": args.per_split,
               "with_scores": args.scores}
    with backend(settings) as b:
        r = b.call("transfer", "export_dataset", project=args.project, **options)
        zip_here = r.pop("download", None) or r["file"]  # through the app: the zip gradio_client downloaded
        if args.out:
            out = Path(args.out).expanduser()
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(zip_here, out)
            r = {**r, "file": str(out)}
    per_class = ", ".join(f"{k}: {v}" for k, v in r["per_class"].items())
    lines = [f"Exported {r['images']} image(s), {r['boxes']} box(es) ({per_class}), {r['negatives']} negative(s) "
             f"as {r['format'].upper()} -> {r['file']}"] + [f"  {n}" for n in r["notes"]]
    lines += [f"  dropped box in {d['file']}: {d['reason']}" for d in r["dropped"]]
    _print(args, r, "\n".join(lines))
    return 0


def cmd_import(args, settings: Settings) -> int:
    mapping = _class_map(args.map, "SOURCE")
    options = {"fmt": args.format, "dataset": args.dataset, "mapping": mapping,
               "add_new_classes": args.add_classes, "approve": args.approve, "replace": args.replace}
    with backend(settings) as b:
        r = b.call("transfer", "import_labels", project=args.project,
                   sources=[Path(p).expanduser() for p in args.paths], **options)
    per_class = ", ".join(f"{k}: {v}" for k, v in r["per_class"].items()) or "none"
    lines = [f"Imported {r['boxes']} box(es) ({per_class}) on {r['labelled_images']} image(s); "
             f"{r['images_added']} new image(s), {r['negatives']} negative(s), {r['approved']} approved, "
             f"{r['protected']} left alone (edited or approved by a person"
             f"{'' if r['protected'] == 0 else '; --replace replaces their boxes too'}), "
             f"{r['replaced_machine']} machine box(es) replaced"
             + (f", {r['replaced_protected']} person-labelled image(s) replaced" if r["replaced_protected"] else "")]
    if r["added_classes"]:
        lines.append("  new classes: " + ", ".join(r["added_classes"]))
    if r["dropped_by_class"]:
        lines.append("  dropped (unmapped): " + ", ".join(f"{k}: {v}" for k, v in r["dropped_by_class"].items()))
    lines += [f"  problem  {p['file']}: {p['reason']}" for p in r["problems"]]
    _print(args, r, "\n".join(lines))
    return 0


def cmd_loop_stats(args, settings: Settings) -> int:
    with backend(settings) as b:
        st = b.call("loop", "loop_stats", project=args.project)
    if not st["rounds"]:
        _print(args, st, f"{st['project']}: no approved image was pre-annotated by a job yet: nothing measured.")
        return 0
    lines = [f"{st['project']}: {st['images']} approved image(s) pre-annotated by a job, "
             f"{st['edits_per_image']} edit(s) per image", "",
             f"{'model':<24} {'images':>7} {'edits/img':>9} {'accepted':>9} {'deleted':>8} {'added':>6} "
             f"{'reclassed':>9} {'adjusted':>8}"]
    for r in st["rounds"]:
        name = (r["model"] or ("(model gone)" if r["model_id"] is not None else "(no model recorded)"))[:24]
        lines.append(f"{name:<24} {r['images']:>7} {r['edits_per_image']:>9} {100 * r['acceptance']:>8.0f}% "
                     f"{r['deleted']:>8} {r['added']:>6} {r['reclassed']:>9} {r['adjusted']:>8}")
    _print(args, st, "\n".join(lines))
    return 0


def cmd_keep_learning(args, settings: Settings) -> int:
    with backend(settings) as b:
        if args.every is None:
            st = b.call("loop", "keep_learning", project=args.project)
        else:
            st = b.call("loop", "set_keep_learning", project=args.project, every=args.every)
    head = (f"{st['project']}: a fine-tune round after every {st['every']} new approvals; {st['since_last_round']} "
            f"since the last one, the next in {st['next_in']}" if st["every"] else f"{st['project']}: keep learning is off")
    lines = [head] + [f"  round job {r['job_id']} {r['status']}: at {r['approved']} approvals, {r['base'] or '?'} -> "
                      f"{r['model'] or '-'}, mAP50-95 {r.get('mAP50-95')}, promoted {r.get('promoted')}, "
                      f"edits/image {r.get('edits_per_image')}" for r in st["rounds"]]
    _print(args, st, "\n".join(lines))
    return 0


def cmd_review_stats(args, settings: Settings) -> int:
    with backend(settings) as b:
        st = b.call("review", "review_stats", project=args.project)
    total = st["total"]
    done = st["status"]["approved"] + st["status"]["rejected"]
    lines = [f"{st['project']}: {total} image(s): approved {st['status']['approved']}, rejected "
             f"{st['status']['rejected']}, unreviewed {st['status']['unreviewed']} "
             f"({100 * done / total if total else 0:.0f}% reviewed)", "",
             f"{'class':<20} {'human':>7} {'model':>7} {'import':>7} {'total':>7}"]
    for r in st["per_class"]:
        lines.append(f"{r['class'][:20]:<20} {r['human']:>7} {r['model']:>7} {r['import']:>7} {r['total']:>7}")
    if st["per_day"]:
        lines += ["", "reviews per day:"]
        lines += [f"  {d['day']}  {d['status']:<9} {d['images']:>6}" for d in st["per_day"]]
    _print(args, st, "\n".join(lines))
    return 0


def _say_if_nothing_runs_it(b, job: dict) -> None:
    """A job queued from the CLI without the app: unless a worker is alive on the queue, nothing runs it until
    the app or a worker starts. Say so (on stderr: stdout stays the job's JSON)."""
    if b.services is None:  # through the running app: its worker takes it
        return
    try:
        alive = b.services.jobs.live_workers()
    except Exception:  # noqa: BLE001 - no queue to ask: say it
        alive = []
    if not alive:
        print(f"note: nothing runs jobs for this data folder now (no app, no worker): job {job['id']} stays "
              "queued until the app (make run / annotator serve) or a worker (annotator worker) starts. "
              "Add --wait to run it in this command instead.", file=sys.stderr)


def _follow(args, b, job: dict, line) -> dict:
    """Print ``line(job)`` to stderr whenever it changes, until the job ends (Ctrl+C cancels it)."""
    import time

    monitor = b.run_jobs_here()
    try:
        last = ""
        while True:
            try:
                job = b.call("jobs", "get_job", job_id=job["id"])
            except UserError:
                raise
            except Exception as e:  # noqa: BLE001 - through the app, which stopped answering: say so
                if b.services is not None:
                    raise
                raise UserError(
                    f"The app stopped answering ({type(e).__name__}); job {job['id']} is still recorded as "
                    f"{job['status']}. Start the app again: it resumes the job's bookkeeping (or marks it "
                    f"interrupted, to resume with: annotator jobs resume {job['id']}).") from None
            text = line(job)
            if text != last:
                print(text, file=sys.stderr, flush=True)
                last = text
            if job["status"] not in ("queued", "running"):
                return job
            time.sleep(1.0)
    except KeyboardInterrupt:
        b.call("jobs", "cancel_job", job_id=job["id"])
        print(f"cancel requested for job {job['id']}", file=sys.stderr)
        raise
    finally:
        if monitor is not None:
            monitor.stop()


def _train_line(j: dict) -> str:
    live = j.get("live") or {}
    eta = f", ETA {j['eta_s']:.0f} s" if j.get("eta_s") and j["status"] == "running" else ""
    score = f", mAP50-95 {live.get('mAP50-95')}, mAP50 {live.get('mAP50')}" if live.get("mAP50") is not None else ""
    return f"job {j['id']} {j['status']}: epoch {j['done']}/{j['total']}{score}{eta}"


def _metrics_line(met: dict) -> str:
    return ", ".join(f"{k} {met.get(k)}" for k in ("mAP50-95", "mAP50", "precision", "recall"))


def cmd_train(args, settings: Settings) -> int:
    options = {"base": args.base, "datasets": args.dataset or [], "approved_only": not args.all,
               "imgsz": args.imgsz or None, "epochs": args.epochs, "batch": args.batch, "optimizer": args.optimizer,
               "lr0": args.lr0, "patience": args.patience, "device": args.device or None, "name": args.name,
               "onnx_check": not args.no_onnx, "replay": args.replay}
    with backend(settings) as b:
        job = b.call("training", "start_training", project=args.project, **options)
        if not args.wait:
            return _queued(args, b, job, f"training job {job['id']}: {job['total']} epoch(s)")
        job = _follow(args, b, job, _train_line)
    result = job["result"]
    human = f"Job {job['id']} {job['status']}"
    if result.get("model"):
        human += f": registered model {result['model']!r} ({_metrics_line(result.get('metrics') or {})})"
        if result.get("speed"):
            sp = result["speed"]
            human += f"\n  speed on {sp.get('device')}: {sp.get('preprocess')} / {sp.get('inference')} / " \
                     f"{sp.get('postprocess')} ms per image"
        if result.get("onnx"):
            human += f"\n  {result['onnx']['detail']}"
    if job.get("error"):
        human += f"\nerror: {job['error']}"
    _print(args, job, human)
    return 0 if job["status"] == "succeeded" else 1


def cmd_evaluate(args, settings: Settings) -> int:
    options = {k: v for k, v in (("imgsz", args.imgsz), ("device", args.device)) if v}
    with backend(settings) as b:
        job = b.call("training", "start_evaluation", project=args.project, model=args.model, **options)
        if not args.wait:
            return _queued(args, b, job, f"evaluation job {job['id']}")
        job = _follow(args, b, job, lambda j: f"job {j['id']} {j['status']}")
    met = job["result"].get("metrics") or {}
    human = f"Job {job['id']} {job['status']}: {args.model} on the approved val split: {_metrics_line(met)}"
    human += "".join(f"\n  {r['class']:<20} mAP50-95 {r.get('mAP50-95')}  mAP50 {r.get('mAP50')}"
                     for r in met.get("per_class", []))
    if job.get("error"):
        human += f"\nerror: {job['error']}"
    _print(args, job, human)
    return 0 if job["status"] == "succeeded" else 1


def _read_password(prompt_name: str) -> str:
    """From a terminal: asked twice, hidden. Otherwise: the first line of stdin (scripts, Docker exec -i)."""
    import getpass

    if sys.stdin.isatty():
        first = getpass.getpass(f"Password for {prompt_name}: ")
        if first != getpass.getpass("Again: "):
            raise UserError("The two passwords differ; nothing was changed")
        password = first
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        raise UserError("The password is empty; nothing was changed")
    return password


def cmd_users(args, settings: Settings) -> int:
    from .users import read_users_file, remove_user, upsert_user

    path = settings.users_path
    if args.users_command == "add":
        user = upsert_user(path, args.name, _read_password(args.name), args.role, update=args.update)
        _print(args, {"name": user.name, "role": user.role, "file": str(path)},
               f"{'Updated' if args.update else 'Added'} {user.name} ({user.role}) in {path}. An app started with "
               "login applies it at the next sign-in; one started without login needs a restart.")
    elif args.users_command == "remove":
        remove_user(path, args.name)
        _print(args, {"removed": args.name, "file": str(path)}, f"Removed {args.name} from {path}")
    else:
        users = read_users_file(path) if path.exists() else []
        rows = [{"name": u.name, "role": u.role, "hashed": u.password_hash is not None} for u in users]
        from .settings import parse_auth

        env_auth = parse_auth(os.environ.get("ANNOTATOR_AUTH") or "", "ANNOTATOR_AUTH")
        env_users = [{"name": n, "role": "admin", "hashed": False, "from": "ANNOTATOR_AUTH"} for n, _ in env_auth]
        lines = [f"{r['name']:<24} {r['role']:<10}{'' if r['hashed'] else ' (plain-text password: set it again)'}"
                 for r in rows] + [f"{r['name']:<24} admin      (ANNOTATOR_AUTH)" for r in env_users]
        _print(args, rows + env_users, "\n".join(lines) if lines else
               f"No users in {path}: the app runs without login (loopback only). "
               "Add one: annotator users add NAME --role admin")
    return 0


def _bytes(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


def cmd_fsck(args, settings: Settings) -> int:
    """Exit 0: clean, or everything found was repaired; 1: problems remain (found without --repair, or
    rows whose file is missing, which need a person)."""
    with backend(settings) as b:
        r = b.call("fsck", "fsck", repair=args.repair)
        swept = getattr(b.services, "swept", None) if b.services is not None else None
    if swept and (swept["files"] or swept["staging"] or swept["parts"] or swept["tmp"]):
        r["swept_at_start"] = swept
    c = r["checked"]
    lines = [f"{r['data_dir']}: {c['projects']} project(s), {c['images']} image(s), {c['models']} model(s), "
             f"{c['exports']} export(s); {c['files']} file(s) checked in {r['seconds']:.1f} s"]
    if r.get("swept_at_start"):
        sw = r["swept_at_start"]
        lines.append(f"at start: removed {sw['files']} file(s) of interrupted uploads, {sw['staging']} staging "
                     f"folder(s), {sw['parts']} half-written file(s), {sw['tmp']} temp folder(s)")
    for label, rows in (("problem", r["problems"]), ("note", r["notes"])):
        for row in rows:
            action = f" - {row['action']}" if row.get("action") else ""
            lines.append(f"{label:<8} {row['count']:>6} {row['what']} ({_bytes(row['bytes'])}){action}")
            lines += [f"           {e}" for e in row["examples"]]
            lines += [f"           failed: {e}" for e in row.get("failed", [])]
    if r["clean"]:
        lines.append("Clean: every file has its row and every row its file.")
    elif r["remaining"] and not args.repair:
        lines.append(f"{r['remaining']} problem(s). `annotator fsck --repair` removes orphans and leftovers; "
                     "rows whose file is missing are kept and reported.")
    elif r["remaining"]:
        lines.append(f"{r['remaining']} problem(s) remain: they need a person (restore the missing files from a "
                     "backup, or register the model again).")
    else:
        lines.append("Repaired.")
    _print(args, r, "\n".join(lines))
    return 0 if r["remaining"] == 0 else 1


def cmd_backup(args, settings: Settings) -> int:
    """Locally the services write the tar to OUT; through the app, the app writes it into its backups/ folder,
    the CLI streams it to OUT (checking its size) and then asks the app to remove its copy."""
    out = Path(args.out).expanduser().resolve()
    if out.exists() and not args.force:
        raise UserError(f"{out} exists: choose another name, or add --force to replace it")
    with backend(settings) as b:
        if b.services is not None:
            r = b.call("backup", "backup", out=out, exports=not args.no_exports)
        else:
            client = b.client
            saved, client.download_files = client.download_files, False  # we stream it to OUT ourselves
            try:
                r = b.call("backup", "backup", exports=not args.no_exports)
            finally:
                client.download_files = saved
            try:
                _fetch(client, r.pop("download"), out, int(r["size_bytes"]))
            finally:
                b.call("backup", "discard_backup", name=r["name"])
            r = {**r, "file": str(out)}
    rows = r["rows"]
    human = (f"Backup written to {r['file']} ({_bytes(r['size_bytes'])}): {rows['projects']} project(s), "
             f"{rows['images']} image(s), {rows['boxes']} box(es), {rows['models']} model(s); {r['files']} file(s) "
             f"with SHA-256 sums; database snapshot in {r['snapshot_seconds']:.2f} s, {r['seconds']:.1f} s in all")
    if r["missing_count"]:
        human += f"\n  {r['missing_count']} file(s) the database names were missing (see annotator fsck): " + \
                 ", ".join(r["missing"][:5])
    _print(args, r, human)
    return 0


def _fetch(client, filedata: dict, out: Path, size: int) -> None:
    """Stream a file the app handed out (a gradio FileData) to ``out``, whole or not at all."""
    import shutil

    import httpx

    free = shutil.disk_usage(out.parent if out.parent.exists() else Path.cwd()).free
    if size > free:
        raise UserError(f"Not enough free space for the backup at {out.parent}: it is {_bytes(size)}, "
                        f"{_bytes(free)} is free")
    url = filedata.get("url") or f"{client.src.rstrip('/')}/gradio_api/file={filedata['path']}"
    out.parent.mkdir(parents=True, exist_ok=True)
    part = out.with_name(out.name + ".part")
    try:
        with httpx.stream("GET", url, headers=client.headers, cookies=client.cookies, verify=client.ssl_verify,
                          follow_redirects=True, timeout=httpx.Timeout(60.0, read=None)) as resp:
            resp.raise_for_status()
            with open(part, "wb") as f:
                for chunk in resp.iter_bytes(1 << 20):
                    f.write(chunk)
        if part.stat().st_size != size:
            raise UserError(f"The backup's download stopped at {part.stat().st_size} of {size} bytes; run it again")
        os.replace(part, out)
    finally:
        part.unlink(missing_ok=True)


def cmd_restore(args, settings: Settings) -> int:
    from .services.backup import restore

    r = restore(Path(args.archive), Path(args.data), force=args.force)
    rows = r["rows"]
    _print(args, r, f"Restored {args.archive} (made {r['created_at']} by version {r['version']}) into {r['data_dir']}: "
                    f"{rows['projects']} project(s), {rows['images']} image(s), {rows['boxes']} box(es), "
                    f"{rows['models']} model(s), {r['files']} file(s), every checksum verified. Start the app on it: "
                    f"ANNOTATOR_DATA_DIR={r['data_dir']} annotator")
    return 0


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="print machine-readable JSON")
    parser = argparse.ArgumentParser(
        prog="annotator",
        description="Auto Annotator. Without a command: serve the app. Data folder: $ANNOTATOR_DATA_DIR (./data).",
    )
    sub = parser.add_subparsers(dest="command")

    serve = sub.add_parser("serve", help="start the web app (default)")
    add_serve_args(serve)
    serve.set_defaults(func=cmd_serve)

    project = sub.add_parser("project", help="create or list projects")
    psub = project.add_subparsers(dest="project_command", required=True)
    create = psub.add_parser("create", parents=[common], help="create a project with its ordered classes")
    create.add_argument("name")
    create.add_argument("--classes", required=True, help="comma-separated, in YOLO index order: a,b,c")
    create.add_argument("--description", default="")
    create.set_defaults(func=cmd_project_create)
    plist = psub.add_parser("list", parents=[common], help="list projects with counts")
    plist.set_defaults(func=cmd_project_list)

    ing = sub.add_parser("ingest", parents=[common],
                         help="add a zip, a folder, image files or videos to a project")
    ing.add_argument("project", help="project name (or id)")
    ing.add_argument("paths", nargs="+", help="zip file(s), folder(s), image file(s) or video(s) (.mp4 .mov .avi "
                                              ".mkv .webm)")
    ing.add_argument("--dataset", help="one dataset for everything (default: each zip, folder or video its own, "
                                       "named after it; loose image files together in upload-<time>)")
    ing.add_argument("--sampling", default=None,
                     help="which frames of a video become images: fps:2 (default ANNOTATOR_VIDEO_SAMPLING), "
                          "every:10, scene:0.2 (when the picture changes), all; add ,max:N to cap the count")
    ing.add_argument("--keep-video", action="store_true", help="store the video files too (default: frames only)")
    ing.set_defaults(func=cmd_ingest)

    worker = sub.add_parser("worker", help="run a job worker alone (e.g. on a GPU host; see README)")
    worker.add_argument("--workers", type=int, default=1, help="concurrent jobs in this worker (default 1)")
    worker.add_argument("--devices", default=None,
                        help="one worker process per device: 'all' (every GPU of this host), GPU numbers such as "
                             "0,1,2, or 'cpu' entries (cpu,cpu: two CPU processes); each takes shards of the "
                             "same auto-annotation job")
    worker.set_defaults(func=cmd_worker)

    doctor = sub.add_parser("doctor", parents=[common], help="torch, CUDA, GPU and the device jobs will use")
    doctor.set_defaults(func=cmd_doctor)

    models = sub.add_parser("models", help="the project's model registry")
    msub = models.add_subparsers(dest="models_command", required=True)
    madd = msub.add_parser("add", parents=[common],
                           help="register an ultralytics detection .pt (what its pickle imports is checked first)")
    madd.add_argument("project")
    madd.add_argument("path")
    madd.add_argument("--name", help="registry name (default: the file name)")
    madd.set_defaults(func=cmd_models_add)
    mlist = msub.add_parser("list", parents=[common], help="list a project's models")
    mlist.add_argument("project")
    mlist.set_defaults(func=cmd_models_list)

    ann = sub.add_parser("annotate", parents=[common], help="auto-annotate a project's images with a model")
    ann.add_argument("project")
    ann.add_argument("--model", required=True, help="registered model name (or id)")
    ann.add_argument("--dataset", action="append", help="only this dataset (repeatable; default: all)")
    ann.add_argument("--conf", type=float, default=None,
                     help="confidence threshold (default: the model's own best, from its validation; else 0.25)")
    ann.add_argument("--iou", type=float, default=0.7)
    ann.add_argument("--imgsz", type=int, default=0,
                     help="default: from the data (the boxes people confirmed; else the model's own size)")
    ann.add_argument("--max-det", type=int, default=300)
    ann.add_argument("--device", default="", help="auto (default), cpu, 0, 1, ...")
    ann.add_argument("--batch", type=int, default=0, help="0 = auto (8 on CPU, 16 on GPU)")
    ann.add_argument("--scope", choices=["unreviewed", "untouched"], default="unreviewed",
                     help="unreviewed images (default), or also rejected ones; never saved/approved ones")
    ann.add_argument("--map", action="append", metavar="MODEL=PROJECT",
                     help="override the class mapping, e.g. --map car=vehicle --map dog=skip")
    ann.add_argument("--track", action="store_true",
                     help="give the machine boxes of video frames track ids (ByteTrack over each video's frames)")
    ann.add_argument("--wait", action="store_true", help="print progress until the job ends")
    ann.set_defaults(func=cmd_annotate)

    hl = sub.add_parser("health", parents=[common],
                        help="dataset health: per class and split, box sizes, duplicates, imbalance, drift")
    hl.add_argument("project")
    hl.add_argument("--scope", choices=["approved", "all"], default="approved",
                    help="approved images (what training sees; default) or every image and box")
    hl.set_defaults(func=cmd_health)
    dup = sub.add_parser("duplicates", parents=[common], help="near-duplicate groups of a project's images")
    dup.add_argument("project")
    dup.add_argument("--max-bits", type=int, default=None,
                     help="hash distance (of 64 bits) that counts as near-duplicate (default ANNOTATOR_NEAR_DUPLICATE_BITS)")
    dup.set_defaults(func=cmd_duplicates)
    chk = sub.add_parser("check-labels", parents=[common],
                         help="run a model over the approved images and list likely label errors")
    chk.add_argument("project")
    chk.add_argument("--model", required=True, help="registered model name (or id)")
    chk.add_argument("--conf", type=float, default=0.5, help="how sure the model must be to flag a label (0.5)")
    chk.add_argument("--imgsz", type=int, default=0)
    chk.add_argument("--device", default="")
    chk.add_argument("--map", action="append", metavar="MODEL=PROJECT",
                     help="override the class mapping, e.g. --map car=vehicle --map dog=skip")
    chk.add_argument("--wait", action="store_true", help="print progress until the job ends, then the findings")
    chk.set_defaults(func=cmd_check_labels)

    exp = sub.add_parser("export", parents=[common], help="export the project as a YOLO or COCO zip")
    exp.add_argument("project")
    exp.add_argument("--format", choices=["yolo", "coco"], required=True)
    exp.add_argument("--approved-only", action="store_true", default=True,
                     help="only approved images (the default)")
    exp.add_argument("--all", action="store_true", help="also unreviewed images that have boxes")
    exp.add_argument("--labels-only", action="store_true", help="labels without the image files")
    exp.add_argument("--dataset", action="append", help="only this dataset (repeatable; default: all)")
    exp.add_argument("--val", type=float, default=0.2, help="validation share for images without a split")
    exp.add_argument("--per-split", action="store_true", help="COCO: one annotations file per split")
    exp.add_argument("--scores", action="store_true", help="COCO: keep machine confidence as 'score'")
    exp.add_argument("--out", help="copy the zip here (default: it stays in the project's exports/ folder)")
    exp.set_defaults(func=cmd_export)

    imp = sub.add_parser("import", parents=[common], help="import images labelled elsewhere (YOLO or COCO)")
    imp.add_argument("project")
    imp.add_argument("paths", nargs="+", help="a zip, or a folder, with images and labels")
    imp.add_argument("--format", choices=["yolo", "coco"], required=True)
    imp.add_argument("--dataset", help="dataset for the images (default: the zip's or folder's name)")
    imp.add_argument("--approve", action="store_true", help="mark the imported images approved")
    imp.add_argument("--replace", action="store_true",
                     help="also replace the boxes of images a person edited or approved (default: left alone)")
    imp.add_argument("--add-classes", action="store_true", help="add source classes the project lacks")
    imp.add_argument("--map", action="append", metavar="SOURCE=PROJECT", help="map a class (or =skip)")
    imp.set_defaults(func=cmd_import)

    rstats = sub.add_parser("review-stats", parents=[common],
                            help="review progress and boxes per class (human / model / import)")
    rstats.add_argument("project")
    rstats.set_defaults(func=cmd_review_stats)
    lstats = sub.add_parser("loop-stats", parents=[common],
                            help="edits per image and acceptance rate per model round (what the loop saves)")
    lstats.add_argument("project")
    lstats.set_defaults(func=cmd_loop_stats)
    keep = sub.add_parser("keep-learning", parents=[common],
                          help="show or set: fine-tune by itself after every N new approvals (0 = off)")
    keep.add_argument("project")
    keep.add_argument("--every", type=int, help="new approvals between rounds (0 = off); omit to show")
    keep.set_defaults(func=cmd_keep_learning)
    tr = sub.add_parser("train", parents=[common], help="fine-tune a YOLO model on the project's approved images")
    tr.add_argument("project")
    tr.add_argument("--base", help="registered model (name or id) or an architecture such as yolov8n.yaml "
                                   "(default: the newest registered model, else yolov8n.yaml)")
    tr.add_argument("--epochs", type=int,
                    help="default: from the number of training images (CPU about 1200 passes, 10-60 epochs; GPU 3000, "
                         "20-100)")
    tr.add_argument("--imgsz", type=int, default=0, help="default: from the data (the boxes people confirmed)")
    tr.add_argument("--batch", default="auto", help="a number, or auto")
    tr.add_argument("--optimizer", default="auto", help="auto, SGD, Adam, AdamW, NAdam, RAdam, RMSProp")
    tr.add_argument("--lr0", type=float, default=None, help="initial learning rate (needs --optimizer)")
    tr.add_argument("--patience", type=int,
                    help="early stopping patience in epochs (0 = off; default: half the epochs, at least 15)")
    tr.add_argument("--device", default="", help="auto (default), cpu, 0, 1, ...")
    tr.add_argument("--dataset", action="append", help="only this dataset (repeatable; default: all)")
    tr.add_argument("--replay", type=float, default=0.0,
                    help="with --dataset: also the other datasets' val images and this share (0-1) of their train "
                         "images, so the model does not forget them")
    tr.add_argument("--all", action="store_true", help="also unreviewed images that have boxes")
    tr.add_argument("--name", help="name of the new model (default: <base>-ft<job id>)")
    tr.add_argument("--no-onnx", action="store_true", help="skip the ONNX export check")
    tr.add_argument("--wait", action="store_true", help="print progress until the job ends")
    tr.set_defaults(func=cmd_train)

    ev = sub.add_parser("evaluate", parents=[common], help="a model's metrics on the approved val split")
    ev.add_argument("project")
    ev.add_argument("--model", required=True, help="registered model name (or id)")
    ev.add_argument("--imgsz", type=int, default=0, help="default: the model's training size")
    ev.add_argument("--device", default="", help="auto (default), cpu, 0, 1, ...")
    ev.add_argument("--wait", action="store_true", help="print progress until the job ends")
    ev.set_defaults(func=cmd_evaluate)

    users = sub.add_parser("users", help="who may sign in, with which role (the users file)")
    usub = users.add_subparsers(dest="users_command", required=True)
    uadd = usub.add_parser("add", parents=[common], help="add a user (password: prompted, or stdin's first line)")
    uadd.add_argument("name")
    uadd.add_argument("--role", choices=ROLES, default="annotator",
                      help="viewer: reads; annotator: also uploads, reviews, auto-annotates, exports; "
                           "admin: also projects, classes, models, splits, training (default: annotator)")
    uadd.add_argument("--update", action="store_true", help="change an existing user's password and role")
    uadd.set_defaults(func=cmd_users)
    ulist = usub.add_parser("list", parents=[common], help="list the users and their roles")
    ulist.set_defaults(func=cmd_users)
    urm = usub.add_parser("remove", parents=[common], help="remove a user")
    urm.add_argument("name")
    urm.set_defaults(func=cmd_users)
    fsck = sub.add_parser("fsck", parents=[common],
                          help="check the data folder against the database (exit 1 when problems are found)")
    fsck.add_argument("--repair", action="store_true",
                      help="remove orphan files and leftovers, make missing thumbnails again (rows are never "
                           "deleted)")
    fsck.set_defaults(func=cmd_fsck)

    bk = sub.add_parser("backup", parents=[common],
                        help="write a backup tar (database snapshot + files + checksums); works while the app runs")
    bk.add_argument("out", help="the tar to write, e.g. backup.tar")
    bk.add_argument("--no-exports", action="store_true", help="leave the export zips out")
    bk.add_argument("--force", action="store_true", help="replace OUT if it exists")
    bk.set_defaults(func=cmd_backup)
    rs = sub.add_parser("restore", parents=[common], help="restore a backup tar into a data folder")
    rs.add_argument("archive", help="a tar written by annotator backup")
    rs.add_argument("--data", required=True, help="the data folder to restore into (new or empty)")
    rs.add_argument("--force", action="store_true",
                    help="restore into a non-empty folder: the backup's files and database replace those there")
    rs.set_defaults(func=cmd_restore)

    jobs_p = sub.add_parser("jobs", help="a job's status, or cancel / resume it")
    jobs_p.add_argument("action", choices=["status", "cancel", "resume"])
    jobs_p.add_argument("job_id", type=int)
    jobs_p.add_argument("--json", action="store_true")
    jobs_p.set_defaults(func=cmd_jobs)
    return parser


def add_serve_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", help="interface to listen on (default 127.0.0.1; 0.0.0.0 for the whole network)")
    p.add_argument("--port", type=int, help="port (default 7860)")
    p.add_argument("--share", action="store_true", help="also publish a shareable Gradio link (requires auth)")
    p.add_argument("--no-worker", action="store_true",
                   help="do not start a local job worker (workers run elsewhere: annotator worker)")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0].startswith("--") and argv[0] not in ("-h", "--help"):
        argv = ["serve", *argv]
    args = build_parser().parse_args(argv)
    global _STDOUT
    _STDOUT = sys.stdout
    try:
        settings = Settings.from_env(load_users=args.func not in (cmd_users, cmd_worker))  # neither needs logins
        if args.func is cmd_serve or args.func is cmd_worker:
            return args.func(args, settings)
        # ultralytics prints a banner on its first import, gradio_client its progress: keep --json clean.
        with contextlib.redirect_stdout(sys.stderr):
            return args.func(args, settings)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except Exception as e:
        problem = disk_problem(e)  # a full disk or a read-only data folder: a message and exit 2, no traceback
        if problem is None:
            raise
        print(f"error: {problem}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
