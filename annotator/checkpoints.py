"""The .pt registry's gatekeeper: validate an ultralytics DETECTION checkpoint and read its facts (the class
mapping onto a project's class table lives in ``classmap``).

torch and ultralytics are imported inside the functions that need them, so importing this module is cheap
(the UI imports services, which import this).

A .pt file is a pickle, and a pickle can call any importable function while it loads (``os.system``,
``eval`` ...). So before torch ever sees a file, ``pickle_globals`` reads every global its pickles name
straight from their opcodes (nothing imported from the file, nothing run) and ``check_globals`` refuses any
outside what a detection checkpoint needs: torch's tensor rebuilders, storages and dtypes, ``torch.nn`` and
``ultralytics.nn`` module classes, and plain data classes (OrderedDict, Path, numpy arrays ...). Only a file
that passed is loaded, with plain ``torch.load(weights_only=False)`` and never with ultralytics' own loaders
(which may download files or pip-install a module the pickle names). ``trust_all=True``
(``ANNOTATOR_TRUST_ALL_CHECKPOINTS=1``) skips the refusal for a trusted exotic checkpoint.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import math
import pickletools
import re
import warnings
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any, Iterable, Mapping

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

# The same module renames ultralytics applies when it loads, so checkpoints from older 8.x releases load.
MODULE_ALIASES = {
    "ultralytics.yolo.utils": "ultralytics.utils",
    "ultralytics.yolo.v8": "ultralytics.models.yolo",
    "ultralytics.yolo.data": "ultralytics.data",
}
ATTRIBUTE_ALIASES = {
    "ultralytics.nn.modules.block.Silence": "torch.nn.Identity",
    "ultralytics.nn.tasks.YOLOv10DetectionModel": "ultralytics.nn.tasks.DetectionModel",
    "ultralytics.utils.loss.v10DetectLoss": "ultralytics.utils.loss.E2EDetectLoss",
    "pathlib.WindowsPath": "pathlib.PosixPath",
}

# --- what a checkpoint's pickle may import ------------------------------------------------------------------

# Plain data and torch's own rebuilding functions (what torch.load(weights_only=True) allows, plus the
# containers ultralytics' checkpoints use). Functions here only build values; none runs or loads anything.
SAFE_GLOBALS: dict[str, frozenset[str]] = {
    "builtins": frozenset({"set", "frozenset", "slice", "range", "complex", "bytearray", "bytes", "list", "dict",
                           "tuple", "int", "float", "bool", "str", "object"}),
    "collections": frozenset({"OrderedDict", "defaultdict", "deque", "Counter"}),
    "copyreg": frozenset({"_reconstructor"}),  # protocol-2 objects: cls.__new__ of a class that must pass too
    "pathlib": frozenset({"Path", "PosixPath", "WindowsPath", "PurePath", "PurePosixPath", "PureWindowsPath"}),
    "types": frozenset({"SimpleNamespace"}),
    "argparse": frozenset({"Namespace"}),
    "datetime": frozenset({"datetime", "date", "time", "timedelta", "timezone"}),
    "numpy": frozenset({"ndarray", "dtype"}),
    "numpy.core.multiarray": frozenset({"_reconstruct", "scalar"}),
    "numpy._core.multiarray": frozenset({"_reconstruct", "scalar"}),
    "torch._utils": frozenset({"_rebuild_tensor", "_rebuild_tensor_v2", "_rebuild_tensor_v3", "_rebuild_parameter",
                               "_rebuild_parameter_with_state", "_rebuild_sparse_tensor", "_rebuild_qtensor",
                               "_rebuild_device_tensor_from_numpy", "_rebuild_meta_tensor_no_storage",
                               "_rebuild_wrapper_subclass", "_rebuild_nested_tensor"}),
    "torch._tensor": frozenset({"_rebuild_from_type_v2"}),
    "torch.nn.parameter": frozenset({"Parameter"}),
    "torch.storage": frozenset({"UntypedStorage", "TypedStorage"}),
    "torch": frozenset({"Size", "device", "Tensor", "memory_format", "layout", "qscheme"}),
    "ultralytics.utils": frozenset({"IterableSimpleNamespace"}),
}
# Modules whose CLASSES may be named when they are torch.nn.Module subclasses (a model's layers): importing
# them is importing the installed torch and ultralytics, never anything the file brings.
MODULE_PACKAGES = ("torch.nn.modules", "ultralytics.nn")
TRUST_SETTING = "ANNOTATOR_TRUST_ALL_CHECKPOINTS=1"

_STRINGS = {"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "SHORT_BINSTRING", "BINSTRING", "STRING"}
_PUTS = {"PUT", "BINPUT", "LONG_BINPUT"}
_GETS = {"GET", "BINGET", "LONG_BINGET"}
_LEGACY_PICKLES = 5  # torch's pre-1.6 format: magic, protocol, sys info, the object, storage keys; then raw bytes


class UnsafeCheckpoint(UserError):
    """A checkpoint refused before loading: its pickle imports something a detection checkpoint never needs."""


def _torchscript(name: str) -> UserError:
    return UserError(f"{name} is a TorchScript export, not an ultralytics checkpoint; upload the original .pt weights")


def _yolov5_repo(name: str, missing: str) -> UserError:
    return UserError(
        f"{name} looks like a YOLOv5 model from the github.com/ultralytics/yolov5 repository (it needs its "
        f"'{missing}' module); Auto Annotator needs a model trained with the ultralytics package (YOLOv8 or newer)")


class _TorchScript(Exception):
    """A TorchScript archive: torch.load would hand it to torch.jit.load (code), never to the unpickler."""


class _NotAPickle(Exception):
    """The file is not a torch checkpoint we can read to its end: torch.load's own error path says why in
    words. ``found``: the globals named before the point where reading stopped (an unpickler runs the same
    opcodes in the same order, so it cannot get past that point either: these are all it could import)."""

    def __init__(self, reason: str, found: set[str] | None = None):
        super().__init__(reason)
        self.found = set(found or ())


def _globals_of(stream: IO[bytes]) -> set[str]:
    """The globals ONE pickle in ``stream`` names ("module.name"), read from its opcodes; nothing is
    imported or run. A global whose name the pickle computes (STACK_GLOBAL on anything but two strings
    pushed right before it) is refused: only names that can be read are checked."""
    found: set[str] = set()
    recent: list[str | None] = []  # what the last pushes put on the stack (None: not a string we know)
    memo: dict[int, str | None] = {}
    try:
        for op, arg, _ in pickletools.genops(stream):
            name = op.name
            if name in ("GLOBAL", "INST"):
                module, _, attr = str(arg).partition(" ")
                found.add(f"{module}.{attr}")
                recent.append(None)
            elif name == "STACK_GLOBAL":
                if len(recent) < 2 or not isinstance(recent[-1], str) or not isinstance(recent[-2], str):
                    raise UnsafeCheckpoint("computes the name of something it imports while loading")
                found.add(f"{recent[-2]}.{recent[-1]}")
                del recent[-2:]
                recent.append(None)
            elif name in _STRINGS:
                recent.append(arg if isinstance(arg, str) else None)
            elif name == "MEMOIZE":
                memo[len(memo)] = recent[-1] if recent else None
            elif name in _PUTS:
                memo[int(arg)] = recent[-1] if recent else None
            elif name in _GETS:
                recent.append(memo.get(int(arg)))
            elif name in ("EXT1", "EXT2", "EXT4"):
                raise UnsafeCheckpoint("imports through the copyreg extension registry")
            elif name in ("FRAME", "PROTO"):
                continue
            elif name == "STOP":
                break
            else:
                recent.append(None)
    except UnsafeCheckpoint:
        raise
    except Exception as e:  # truncated or not a pickle: what came before still counts
        raise _NotAPickle(str(e), found) from None
    return found


def pickle_globals(path: Path | str) -> set[str]:
    """Every global ("module.name") the pickles of a torch checkpoint name: ``data.pkl`` (and any other
    ``.pkl``) of a zip checkpoint, or the pickles of torch's legacy format. Raises UnsafeCheckpoint for a
    file torch would load in another way than we read it (two members of one name, TorchScript)."""
    path = Path(path)
    with open(path, "rb") as f:
        head = f.read(4)
    if head.startswith(b"PK\x03\x04"):
        try:
            zf = zipfile.ZipFile(path)
        except zipfile.BadZipFile as e:
            raise _NotAPickle(str(e)) from None
        with zf:
            names = zf.namelist()
            if len(names) != len(set(names)):
                raise UnsafeCheckpoint("has two entries of the same name (a torch loader may read another "
                                       "than the one checked)")
            leaves = [n.rsplit("/", 1)[-1] for n in names]
            if "constants.pkl" in leaves or any("/code/" in f"/{n}" for n in names):
                raise _TorchScript()
            if leaves.count("data.pkl") != 1:
                raise _NotAPickle("no single data.pkl")
            found: set[str] = set()
            for n in names:
                if n.endswith(".pkl"):
                    try:
                        with zf.open(n) as member:
                            found |= _globals_of(member)
                    except _NotAPickle as e:
                        raise _NotAPickle(str(e), found | e.found) from None
            return found
    found = set()
    with open(path, "rb") as f:
        for _ in range(_LEGACY_PICKLES):
            try:
                found |= _globals_of(f)
            except _NotAPickle as e:
                raise _NotAPickle(str(e), found | e.found) from None
    return found


def _is_module_class(module: str, attr: str) -> bool:
    """Whether module.attr is a torch.nn.Module subclass of the installed torch / ultralytics layers."""
    if not any(module == p or module.startswith(p + ".") for p in MODULE_PACKAGES):
        return False
    try:
        import torch

        obj = importlib.import_module(module)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except Exception:  # noqa: BLE001 - a class this version lacks: torch.load says so in words
        return True
    return inspect.isclass(obj) and issubclass(obj, torch.nn.Module)


def _torch_value(attr: str) -> bool:
    """torch.<attr> that only names a value type: a dtype (torch.float16) or a storage class."""
    import torch

    obj = getattr(torch, attr, None)
    return isinstance(obj, torch.dtype) or (inspect.isclass(obj) and attr.endswith("Storage"))


def _alias(full: str) -> str:
    """The name the unpickler really imports: Python 2 names as pickle maps them for protocols < 3
    (``__builtin__.set`` is ``builtins.set``), then ultralytics' renames."""
    import _compat_pickle

    module, _, attr = full.rpartition(".")
    if (module, attr) in _compat_pickle.NAME_MAPPING:
        module, attr = _compat_pickle.NAME_MAPPING[(module, attr)]
    elif module in _compat_pickle.IMPORT_MAPPING:
        module = _compat_pickle.IMPORT_MAPPING[module]
    full = f"{module}.{attr}"
    for old, new in MODULE_ALIASES.items():
        if full.startswith(old + "."):
            full = new + full[len(old):]
    return ATTRIBUTE_ALIASES.get(full, full)


def check_globals(names: Iterable[str]) -> list[str]:
    """The names a detection checkpoint has no business importing, as the unpickler would import them
    (sorted); empty when all are allowed."""
    bad = set()
    for full in set(names):
        real = _alias(full)
        module, _, attr = real.rpartition(".")
        if attr in SAFE_GLOBALS.get(module, ()):
            continue
        if module == "torch" and _torch_value(attr):
            continue
        if _is_module_class(module, attr):
            continue
        bad.add(real)
    return sorted(bad)


def check_file(path: Path | str, name: str | None = None, trust_all: bool = False) -> None:
    """Refuse (UnsafeCheckpoint, naming the file and the globals) a checkpoint whose pickle imports
    anything outside the allow-list, before any of it runs. A file that is not a readable checkpoint passes
    here, unless what could be read of it already imports something refused, and fails in torch.load's
    error path, which says why in words."""
    path = Path(path)
    name = name or path.name
    if trust_all:
        return
    try:
        bad = check_globals(pickle_globals(path))
    except _NotAPickle as e:  # damaged or not a checkpoint: torch.load says why, unless it could import first
        bad = check_globals(e.found)
        if not bad:
            return
    except _TorchScript:
        raise _torchscript(name) from None
    except UnsafeCheckpoint as e:
        raise UnsafeCheckpoint(f"{name} refused: the file {e}. Only load checkpoints you trust; "
                               f"{TRUST_SETTING} turns this check off.") from None
    if bad and all(b.split(".")[0] == "models" for b in bad):  # the yolov5 repository's own classes
        raise _yolov5_repo(name, bad[0].rpartition(".")[0])
    if bad:
        shown = ", ".join(f"`{b}`" for b in bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        raise UnsafeCheckpoint(
            f"{name} refused: the file imports {shown}, which a detection checkpoint never needs (loading it "
            f"could run code). Nothing of it ran. If you trust this file, start the app with {TRUST_SETTING}.")




def sha256_file(path: Path, chunk: int = HASH_CHUNK) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def inspect_checkpoint(path: Path | str, display_name: str | None = None, trust_all: bool = False) -> ModelInfo:
    """Check that ``path`` is an ultralytics detection checkpoint and return its facts.

    Raises UserError naming ``display_name`` (default: the file's name) and saying what is wrong; a file
    whose pickle imports anything outside the allow-list is refused before any of it runs (unless
    ``trust_all``).
    """
    path = Path(path)
    name = display_name or path.name
    if not path.is_file():
        raise UserError(f"{name}: no such model file")
    size = path.stat().st_size
    if size == 0:
        raise UserError(f"{name} is empty (0 bytes); upload the .pt file again")

    digest = sha256_file(path)
    check_file(path, name, trust_all=trust_all)
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

    try:
        with temporary_modules(modules=dict(MODULE_ALIASES), attributes=dict(ATTRIBUTE_ALIASES)), \
                warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's TorchScript-dispatch and pickle notices; we judge the result
            return torch.load(path, map_location="cpu", weights_only=False)
    except ModuleNotFoundError as e:
        missing = e.name or str(e)
        if missing.split(".")[0] == "models":
            raise _yolov5_repo(name, missing) from None
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
        raise _torchscript(name)
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
