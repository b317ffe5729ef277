"""The .pt registry's gatekeeper: validate an ultralytics DETECTION checkpoint and read its facts (the class
mapping onto a project's class table lives in ``classmap``).

torch and ultralytics are imported inside the functions that need them, so importing this module is cheap
(the UI imports services, which import this).

A .pt file is a pickle: loading it runs code from the file. The app tells users so before they upload one;
here we load it with plain ``torch.load(weights_only=False)`` and never with ultralytics' own loaders, which
may download files or pip-install a module the pickle names.
"""

from __future__ import annotations

import hashlib
import math
import re
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping

from .types import UserError

SUPPORTED_TASK = "detect"

TASK_WORDS = {
    "detect": "a detection model",
    "segment": "a segmentation model",
    "semantic": "a semantic-segmentation model",
    "classify": "a classification model",
    "pose": "a pose (keypoint) model",
    "obb": "an oriented-bounding-box (OBB) model",
    "depth": "a depth-estimation model",
}
TRAIN_ARG_KEYS = ("task", "model", "data", "epochs", "imgsz", "batch")
HASH_CHUNK = 1 << 20


@dataclass(frozen=True)
class ModelInfo:
    task: str
    class_names: tuple[str, ...]
    size_bytes: int
    sha256: str
    imgsz: int | None
    architecture: str
    parameters: int
    ultralytics_version: str | None
    train_args: dict = field(default_factory=dict, hash=False)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def as_dict(self) -> dict:
        d = asdict(self)
        d["class_names"] = list(self.class_names)
        d["train_args"] = dict(self.train_args)
        return d


# --- reading a checkpoint ----------------------------------------------------------------------------------


def sha256_file(path: Path, chunk: int = HASH_CHUNK) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def inspect_checkpoint(path: Path | str, display_name: str | None = None) -> ModelInfo:
    """Check that ``path`` is an ultralytics detection checkpoint and return its facts.

    Raises UserError naming ``display_name`` (default: the file's name) and saying what is wrong.
    """
    path = Path(path)
    name = display_name or path.name
    if not path.is_file():
        raise UserError(f"{name}: no such model file")
    size = path.stat().st_size
    if size == 0:
        raise UserError(f"{name} is empty (0 bytes); upload the .pt file again")

    digest = sha256_file(path)
    ckpt = _load(path, name)
    model, ckpt_dict = _find_model(ckpt, name)

    train_args = _as_plain_dict(ckpt_dict.get("train_args"))
    model_args = _as_plain_dict(getattr(model, "args", None))
    task = _resolve_task(model, train_args, model_args)
    if task != SUPPORTED_TASK:
        what = TASK_WORDS.get(task, f"a {task!r} model")
        raise UserError(
            f"{name} is {what} (task={task}); Auto Annotator needs {TASK_WORDS[SUPPORTED_TASK]} "
            f"(task={SUPPORTED_TASK})"
        )

    class_names = _class_names(getattr(model, "names", None), name)
    imgsz = _imgsz(train_args.get("imgsz", model_args.get("imgsz")))
    source_args = train_args or model_args
    version = ckpt_dict.get("version")
    return ModelInfo(
        task=task,
        class_names=class_names,
        size_bytes=size,
        sha256=digest,
        imgsz=imgsz,
        architecture=_architecture(model),
        parameters=int(sum(p.numel() for p in model.parameters())),
        ultralytics_version=str(version) if version else None,
        train_args={k: _json_safe(source_args[k]) for k in TRAIN_ARG_KEYS if k in source_args},
    )


def _load(path: Path, name: str) -> Any:
    import pickle

    import torch

    try:
        from ultralytics.nn.tasks import temporary_modules
    except Exception:  # pragma: no cover - the context manager moved; load without the legacy aliases
        import contextlib

        def temporary_modules(**_kw):
            return contextlib.nullcontext()

    try:
        import ultralytics  # noqa: F401  (registers its classes for unpickling)

        installed = ultralytics.__version__
    except Exception as e:  # pragma: no cover - the app requires ultralytics
        raise UserError(f"Cannot check {name}: the ultralytics package is not importable ({e})") from None

    # The same module renames ultralytics applies, so checkpoints from older 8.x releases still load.
    aliases = dict(
        modules={
            "ultralytics.yolo.utils": "ultralytics.utils",
            "ultralytics.yolo.v8": "ultralytics.models.yolo",
            "ultralytics.yolo.data": "ultralytics.data",
        },
        attributes={
            "ultralytics.nn.modules.block.Silence": "torch.nn.Identity",
            "ultralytics.nn.tasks.YOLOv10DetectionModel": "ultralytics.nn.tasks.DetectionModel",
            "ultralytics.utils.loss.v10DetectLoss": "ultralytics.utils.loss.E2EDetectLoss",
            "pathlib.WindowsPath": "pathlib.PosixPath",
        },
    )
    try:
        with temporary_modules(**aliases), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's TorchScript-dispatch and pickle notices; we judge the result
            return torch.load(path, map_location="cpu", weights_only=False)
    except ModuleNotFoundError as e:
        missing = e.name or str(e)
        if missing.split(".")[0] == "models":
            raise UserError(
                f"{name} looks like a YOLOv5 model from the github.com/ultralytics/yolov5 repository (it needs "
                f"its '{missing}' module); Auto Annotator needs a model trained with the ultralytics package "
                f"(YOLOv8 or newer)"
            ) from None
        if missing.startswith("ultralytics"):
            raise UserError(
                f"{name} was saved by a different ultralytics version: it needs the module '{missing}', which "
                f"ultralytics {installed} does not have"
            ) from None
        raise UserError(
            f"{name} needs the Python module '{missing}', which is not installed here; "
            f"it is not a plain ultralytics checkpoint"
        ) from None
    except AttributeError as e:
        # pickle: "Can't get attribute 'C9k9' on <module 'ultralytics.nn.modules.block' ...>"
        m = re.search(r"attribute '([^']+)' on <module '([^']+)'", str(e))
        what = f"'{m.group(2)}.{m.group(1)}'" if m else f"a class this version lacks ({e})"
        raise UserError(
            f"{name} was saved by a newer or different ultralytics version: it needs {what}, which "
            f"ultralytics {installed} does not have. Upgrade ultralytics or re-export the model."
        ) from None
    except MemoryError:
        raise UserError(f"{name} is too large to load into memory") from None
    except (pickle.UnpicklingError, EOFError, RuntimeError, ValueError, TypeError, OSError,
            UnicodeDecodeError, IndexError, KeyError, ImportError):
        raise UserError(f"{name} {_why_unreadable(path)}") from None
    except Exception as e:  # anything else a hostile or exotic pickle raises
        raise UserError(f"{name} could not be loaded as a PyTorch checkpoint ({type(e).__name__}: {e})") from None


def _why_unreadable(path: Path) -> str:
    """Say in words why torch.load failed, from the file's first bytes."""
    import zipfile

    with open(path, "rb") as f:
        head = f.read(4096)
    if head.startswith(b"PK\x03\x04"):
        if not zipfile.is_zipfile(path):
            return "is truncated or damaged (a PyTorch checkpoint whose end is missing); upload it again"
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
        if not any(n.endswith("data.pkl") for n in names):
            return "is a zip archive, not a PyTorch checkpoint"
        return "is a damaged PyTorch checkpoint; upload it again"
    if head.startswith(b"\x80") and len(head) >= 2 and head[1] <= 5:  # a pickle protocol 2-5 header
        return "is a damaged or truncated PyTorch file; upload it again"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        # A multi-byte character cut at the 4096-byte boundary still counts as text.
        try:
            text = head[:-4].decode("utf-8") if len(head) > 8 else None
        except UnicodeDecodeError:
            text = None
    if text is not None and all(c.isprintable() or c in "\r\n\t" for c in text):
        return "is a text file, not a PyTorch checkpoint"
    return "is not a PyTorch checkpoint (unknown format)"


def _find_model(ckpt: Any, name: str):
    """Return (model, checkpoint dict) the way ultralytics' loader picks the model: 'ema', else 'model'."""
    import torch
    from ultralytics.nn.tasks import BaseModel

    if isinstance(ckpt, torch.jit.ScriptModule):
        raise UserError(
            f"{name} is a TorchScript export, not an ultralytics checkpoint; upload the original .pt weights"
        )
    if isinstance(ckpt, BaseModel):
        raise UserError(
            f"{name} holds a bare {type(ckpt).__name__} saved with torch.save(model), not an ultralytics "
            f"checkpoint; save it with YOLO(...).save('model.pt') instead"
        )
    if not isinstance(ckpt, dict) and isinstance(getattr(ckpt, "model", None), BaseModel):
        ckpt = {"model": ckpt.model}  # a pickled YOLO object: ultralytics accepts it the same way
    if isinstance(ckpt, torch.Tensor):
        raise UserError(f"{name} holds a single tensor, not an ultralytics checkpoint")
    if not isinstance(ckpt, dict):
        raise UserError(f"{name} holds a {type(ckpt).__name__}, not an ultralytics checkpoint")
    if "model" not in ckpt and "ema" not in ckpt:
        if ckpt and all(isinstance(v, torch.Tensor) for v in ckpt.values()):
            raise UserError(
                f"{name} is a plain state_dict (weights only, no model or class names), not an ultralytics "
                f"checkpoint; use the best.pt or last.pt that ultralytics training wrote"
            )
        keys = ", ".join(sorted(map(str, ckpt))[:6]) or "none"
        raise UserError(f"{name} is not an ultralytics checkpoint (it has no 'model' entry; keys: {keys})")
    model = ckpt.get("ema")
    if model is None:
        model = ckpt.get("model")
    if model is None:
        raise UserError(f"{name} is an ultralytics checkpoint without a model (both 'model' and 'ema' are empty)")
    if not isinstance(model, BaseModel):
        kind = f"{type(model).__module__}.{type(model).__name__}"
        if isinstance(model, dict):
            raise UserError(
                f"{name} stores a state_dict under 'model', not an ultralytics model; it is not an "
                f"ultralytics checkpoint"
            )
        raise UserError(f"{name} holds a {kind}, not an ultralytics model")
    return model, ckpt


def _as_plain_dict(value: Any) -> dict:
    if isinstance(value, dict):
        return value
    if value is not None and hasattr(value, "__dict__"):  # IterableSimpleNamespace / argparse.Namespace
        return {k: v for k, v in vars(value).items() if not k.startswith("_")}
    return {}


def _head_task(model) -> str | None:
    """The task the model's output layer computes; None when the head is not one we know.

    Order matters: Segment, Pose and OBB subclass Detect.
    """
    from ultralytics.nn.modules import head as heads

    last = None
    seq = getattr(model, "model", None)
    try:
        last = seq[-1]
    except Exception:
        return None
    checks = (
        ("SemanticSegment", "semantic"),
        ("Segment", "segment"),
        ("YOLOESegment", "segment"),
        ("Pose", "pose"),
        ("OBB", "obb"),
        ("Depth", "depth"),
        ("Classify", "classify"),
        ("RTDETRDecoder", "detect"),
        ("Detect", "detect"),
    )
    for cls_name, task in checks:
        cls = getattr(heads, cls_name, None)
        if cls is not None and isinstance(last, cls):
            return task
    return None


def _resolve_task(model, train_args: dict, model_args: dict) -> str:
    declared = train_args.get("task") or model_args.get("task") or getattr(model, "task", None)
    head = _head_task(model)
    if isinstance(declared, str) and declared:
        # The head has the last word when it contradicts a 'detect' claim (Segment & co. subclass Detect).
        if declared == SUPPORTED_TASK and head not in (None, SUPPORTED_TASK):
            return head
        return declared
    if head:
        return head
    from ultralytics.nn.tasks import guess_model_task

    return guess_model_task(model)


def _class_names(names: Any, name: str) -> tuple[str, ...]:
    if isinstance(names, Mapping):
        try:
            items = sorted((int(k), v) for k, v in names.items())
        except (TypeError, ValueError):
            raise UserError(f"{name}: its class names are not keyed by class index ({list(names)[:5]})") from None
        indices = [k for k, _ in items]
        if indices != list(range(len(items))):
            raise UserError(f"{name}: its class indices are not 0..{len(items) - 1} (got {indices[:10]})")
        values = [v for _, v in items]
    elif isinstance(names, (list, tuple)):
        values = list(names)
    else:
        values = []
    if not values:
        raise UserError(f"{name} has no class names; Auto Annotator needs a model that names its classes")
    out = tuple("" if v is None else str(v) for v in values)
    empty = [i for i, v in enumerate(out) if not v.strip()]
    if empty:
        raise UserError(f"{name}: class {empty[0]} has an empty name")
    return out


def _imgsz(value: Any) -> int | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (list, tuple)):
        sizes = [_imgsz(v) for v in value]
        sizes = [s for s in sizes if s]
        return max(sizes) if sizes else None
    try:
        n = int(value)
    except (TypeError, ValueError):
        return None
    return n if n > 0 else None


def _architecture(model) -> str:
    yaml = getattr(model, "yaml", None)
    yaml_file = yaml.get("yaml_file") if isinstance(yaml, dict) else None
    if yaml_file:
        return Path(str(yaml_file)).stem
    return type(model).__name__


def _json_safe(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    return str(value)
