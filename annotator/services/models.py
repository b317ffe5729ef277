"""The project's model registry: register a checked ultralytics detection .pt (uploaded, demo or trained),
list and find models, and map a model's classes onto the project's."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from .. import checkpoints, classmap
from ..diskspace import files_size, require_space
from ..names import clean_name
from ..sizing import SizeProfile, choose_imgsz
from ..types import ModelRecord, Project, UserError
from .context import AppContext, model, project, require


def store_model_file(ctx: AppContext, p: Project, src: Path, sha256: str) -> str:
    """Copy a checked .pt into the project's models/ folder (named by its content hash, written whole or
    not at all); returns its project-relative path."""
    rel = ctx.settings.model_rel(sha256)
    dst = ctx.settings.project_file(p.id, rel)
    if not dst.exists():
        require_space(dst.parent, files_size([src]), f"store the model {src.name}")
        dst.parent.mkdir(parents=True, exist_ok=True)
        tmp = dst.with_suffix(".part")
        try:
            shutil.copyfile(src, tmp)
            os.replace(tmp, dst)
        finally:
            tmp.unlink(missing_ok=True)
    return rel


def add_model(ctx: AppContext, ref, path: Path | str, name: str | None = None, user: str | None = None,
              display_name: str | None = None, source: str = "uploaded") -> ModelRecord:
    """Validate an ultralytics detection checkpoint and register a copy in the project's registry.

    .pt files are pickles: one whose pickle imports anything a detection checkpoint never needs is refused
    before any of it runs (unless the app trusts every checkpoint: ANNOTATOR_TRUST_ALL_CHECKPOINTS=1).
    """
    require(ctx, user, "admin", "adding a model")
    p = project(ctx, ref)
    path = Path(path)
    shown = display_name or path.name
    info = checkpoints.inspect_checkpoint(path, display_name=shown, trust_all=ctx.settings.trust_all_checkpoints)
    name = clean_name(name or Path(shown).stem, "Model name")
    for m in ctx.store.list_models(p.id):
        if m.sha256 == info.sha256:
            raise UserError(f"{shown} is already registered in {p.name!r} as model {m.name!r}")
    rel = store_model_file(ctx, p, path, info.sha256)
    try:
        mid = ctx.store.add_model(
            p.id, name, rel, info.sha256, info.size_bytes, info.class_names, source, task=info.task,
            params=info.as_dict(), user=user,
        )
    except BaseException:
        if not any(m.sha256 == info.sha256 for m in ctx.store.list_models(p.id)):
            ctx.settings.project_file(p.id, rel).unlink(missing_ok=True)
        raise
    return ctx.store.get_model(mid)


def list_models(ctx: AppContext, ref) -> list[ModelRecord]:
    return ctx.store.list_models(project(ctx, ref).id)


def get_model(ctx: AppContext, ref, model_ref: int | str | ModelRecord) -> ModelRecord:
    """A registered model of the project by name or id; NotFound lists the models there are."""
    return model(ctx, project(ctx, ref), model_ref)


def model_file(ctx: AppContext, m: ModelRecord) -> Path:
    return ctx.settings.project_file(m.project_id, m.file)


def model_weights(ctx: AppContext, ref, model_ref) -> Path:
    """The .pt file of a registered model (to download it)."""
    if model_ref in (None, ""):
        raise UserError("Choose a model first")
    return model_file(ctx, get_model(ctx, ref, model_ref))


def class_mapping(ctx: AppContext, ref, model_ref, overrides: dict | None = None) -> dict[int, int | None]:
    """Model class index -> project class index (None = skip): by name, then the user's overrides."""
    p = project(ctx, ref)
    m = model(ctx, p, model_ref)
    mapping = classmap.match_classes(m.class_names, p.class_names)
    if overrides:
        mapping = classmap.apply_overrides(mapping, overrides, p.class_names, m.class_names)
    return mapping


def device_class(ctx: AppContext, device: str | None) -> str:
    """ "gpu" when the jobs will run on a GPU (asked for one, or "auto" and a live worker has one), else "cpu"."""
    d = (device or ctx.settings.device or "auto").strip().lower()
    if d in ("cpu", "mps"):
        return "cpu"
    if d not in ("", "auto"):
        return "gpu"
    try:
        from jobs.protocol import live_workers

        workers = live_workers(ctx.queue)
    except Exception:  # noqa: BLE001 - no queue to ask: assume the modest case
        return "cpu"
    return "gpu" if any(str(w.get("device", "cpu")) not in ("cpu", "mps") for w in workers) else "cpu"


DEFAULT_CONF = 0.25


def conf_for(m, conf=None, evaluation: dict | None = None) -> tuple[float, str]:
    """(confidence threshold, why): the one asked for, else the threshold of best F1 of the model's newest
    evaluation on this project's val images (``evaluation``: store.latest_evaluations' entry; how an uploaded
    model gets one), else of its own training's val images (a model this app trained: jobs/train.py
    best_conf), else DEFAULT_CONF."""
    if conf not in (None, "", 0, 0.0):
        try:
            value = float(conf)
        except (TypeError, ValueError):
            raise UserError(f"confidence threshold must be a number between 0 and 1, got {conf!r}") from None
        if not (0.0 < value <= 1.0):
            raise UserError(f"confidence threshold must be between 0 and 1, got {conf}")
        return value, "as chosen"
    evaluated = ((evaluation or {}).get("metrics") or {}).get("best_conf")
    if evaluated:
        job = (evaluation or {}).get("job_id")
        return float(evaluated), (f"{float(evaluated):.2f}: where {m.name}'s boxes on this project's val images had "
                                  f"the best F1 (its evaluation{f' job #{job}' if job else ''})")
    best = (m.metrics or {}).get("best_conf")
    if best:
        return float(best), (f"{float(best):.2f}: where {m.name}'s boxes on its val images had the best F1 "
                             "(fewest boxes to delete plus boxes to draw)")
    return DEFAULT_CONF, f"{DEFAULT_CONF}: the default ({m.name} has no validation of its own yet)"


def suggest_conf(ctx: AppContext, ref, model_ref: str) -> dict:
    """The confidence threshold auto-annotation with this model uses when none is given, and why."""
    p = project(ctx, ref)
    m = model(ctx, p, model_ref)
    conf, reason = conf_for(m, None, ctx.store.latest_evaluations(p.id).get(m.id))
    return {"conf": conf, "reason": reason}


def suggest_imgsz(ctx: AppContext, ref, model_ref: str | None = None, device: str | None = None) -> dict:
    """The image size a job on this project should run at, from the project's images and boxes (see
    annotator/sizing.py), with the reason in words. ``model_ref``: the base (a registered model, whose
    training size is the floor; an architecture yaml or none: no floor)."""
    p = project(ctx, ref)
    base = None
    if model_ref:
        try:
            base = int(model(ctx, p, model_ref).params.get("imgsz") or 0) or None
        except UserError:
            base = None  # an architecture yaml: no floor
    n, p90, k, r10, source = ctx.store.size_profile(p.id)
    kind = device_class(ctx, device)
    size, reason = choose_imgsz(SizeProfile(n, p90, k, r10, source), base, kind)
    return {"imgsz": size, "reason": reason, "device": kind, "base_imgsz": base}
