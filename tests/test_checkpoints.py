"""annotator.checkpoints and annotator.classmap: checkpoint validation against real ultralytics checkpoints built offline, and the
model-class -> project-class mapping."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import types
import zipfile
from copy import deepcopy
from pathlib import Path

import pytest

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")  # torch.jit.trace's deprecation notice

from annotator.checkpoints import ModelInfo, inspect_checkpoint, sha256_file
from annotator.classmap import apply_overrides, match_classes
from annotator.types import UserError

NAMES = ("person", "Traffic Light", "dog")
TRAIN_ARGS = {"task": "detect", "model": "yolov8n.yaml", "data": "/home/u/shapes/data.yaml", "epochs": 1,
              "imgsz": 320, "batch": 4, "lr0": 0.01}


def _save_yolo(yolo, path: Path, ckpt: dict | None = None) -> Path:
    """YOLO.save() writes {**yolo.ckpt, ema: None, model: fp16 copy, version, date, ...}; a yaml-built model
    has an empty ckpt, so ``ckpt`` adds what a trained checkpoint carries (train_args ...)."""
    yolo.ckpt = dict(ckpt or {})
    yolo.save(path)
    return path


@pytest.fixture(scope="session")
def ckpts(tmp_path_factory) -> dict[str, Path]:
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # building a model runs a stride-probe forward; one thread is fastest on a busy box
    try:
        return _build_checkpoints(tmp_path_factory.mktemp("checkpoints"))
    finally:
        torch.set_num_threads(threads)


def _build_checkpoints(d: Path) -> dict[str, Path]:
    import torch
    from ultralytics import YOLO, __version__
    from ultralytics.utils import ROOT
    from ultralytics.utils.torch_utils import strip_optimizer

    out: dict[str, Path] = {}

    # A 3-class yolov8n, built from ultralytics' own yaml with nc: 3 (the file name sets scale 'n').
    yaml_text = (ROOT / "cfg/models/v8/yolov8.yaml").read_text().replace("nc: 80", "nc: 3", 1)
    (d / "yolov8n.yaml").write_text(yaml_text)
    det = YOLO(str(d / "yolov8n.yaml"), verbose=False)
    assert det.task == "detect" and det.model.model[-1].nc == 3
    det.model.names = {2: NAMES[2], 0: NAMES[0], 1: NAMES[1]}  # insertion order != index order

    # 1. last.pt as ultralytics' Trainer.save_model writes it: 'model' None, the weights in 'ema'.
    ema = deepcopy(det.model).half()
    ema.args = dict(TRAIN_ARGS)
    last = d / "last.pt"
    torch.save({
        "epoch": 0, "best_fitness": 0.5, "model": None, "ema": ema, "updates": 10, "optimizer": None,
        "train_args": {**TRAIN_ARGS, "save_dir": Path("/runs/detect/train")}, "train_metrics": {"fitness": 0.5},
        "date": "2026-01-01T00:00:00", "version": __version__,
    }, last)
    out["last"] = last
    # 2. best.pt as ultralytics finishes training: strip_optimizer() moves ema -> model, drops the optimizer.
    strip_optimizer(last, str(d / "best.pt"))
    out["best"] = d / "best.pt"
    # 3. YOLO(...).save() of an untrained model: no train_args, names as a list.
    det.model.names = list(NAMES)
    out["saved"] = _save_yolo(det, d / "saved.pt")
    # 4. a pickled YOLO object: ultralytics' loader accepts it, but it names callback functions (refused).
    torch.save(det, d / "yolo_object.pt")
    out["yolo_object"] = d / "yolo_object.pt"

    # Other tasks, straight from the yamls.
    for task, yaml in (("segment", "yolov8n-seg.yaml"), ("classify", "yolov8n-cls.yaml"),
                       ("pose", "yolov8n-pose.yaml"), ("obb", "yolov8n-obb.yaml")):
        m = YOLO(yaml, verbose=False)
        assert m.task == task
        out[task] = _save_yolo(m, d / f"{task}.pt", {"train_args": {"task": task, "imgsz": 640}})
        if task == "segment":
            seg = m
    # A segmentation model whose metadata claims 'detect' (Segment subclasses Detect): the head decides.
    seg.model.args = {"task": "detect"}
    out["seg_claims_detect"] = _save_yolo(seg, d / "seg_claims_detect.pt", {"train_args": {"task": "detect"}})

    # Detection models without names.
    det.model.names = {}
    out["no_names"] = _save_yolo(det, d / "no_names.pt")
    del det.model.names
    out["names_missing"] = _save_yolo(det, d / "names_missing.pt")
    det.model.names = list(NAMES)

    # Torch files that are not ultralytics checkpoints.
    torch.save(det.model.state_dict(), d / "state_dict.pt")
    out["state_dict"] = d / "state_dict.pt"
    torch.save({"model": det.model.state_dict(), "epoch": 3}, d / "sd_under_model.pt")
    out["sd_under_model"] = d / "sd_under_model.pt"
    torch.save(torch.zeros(3, 4), d / "tensor.pt")
    out["tensor"] = d / "tensor.pt"
    torch.save({"weights": [1, 2, 3]}, d / "other_dict.pt")
    out["other_dict"] = d / "other_dict.pt"
    torch.save(det.model, d / "bare_model.pt")
    out["bare_model"] = d / "bare_model.pt"
    torch.jit.trace(torch.nn.Linear(2, 2), torch.zeros(1, 2)).save(str(d / "torchscript.pt"))
    out["torchscript"] = d / "torchscript.pt"

    # A YOLOv5-repo checkpoint: its classes live in a 'models.yolo' module that is not installed here.
    fake = {"models": types.ModuleType("models"), "models.yolo": types.ModuleType("models.yolo")}
    v5cls = type("DetectionModel", (torch.nn.Module,), {"__module__": "models.yolo"})
    fake["models.yolo"].DetectionModel = v5cls
    sys.modules.update(fake)
    try:
        torch.save({"model": v5cls(), "epoch": 1}, d / "yolov5.pt")
    finally:
        for key in fake:
            sys.modules.pop(key, None)
    out["yolov5"] = d / "yolov5.pt"
    # A checkpoint from a newer ultralytics: it names a head class this version lacks.
    import ultralytics.nn.modules.head as heads

    future = type("FutureDetect", (torch.nn.Module,), {"__module__": heads.__name__})
    heads.FutureDetect = future
    try:
        torch.save({"model": future(), "version": "99.0.0"}, d / "future.pt")
    finally:
        del heads.FutureDetect
    out["future"] = d / "future.pt"

    # Files that are not PyTorch at all.
    good = out["best"].read_bytes()
    (d / "truncated.pt").write_bytes(good[: len(good) // 2])
    out["truncated"] = d / "truncated.pt"
    (d / "empty.pt").write_bytes(b"")
    out["empty"] = d / "empty.pt"
    (d / "random.pt").write_bytes(bytes((i * 7919 + 13) % 251 for i in range(8192)))
    out["random"] = d / "random.pt"
    (d / "notes.pt").write_text("names:\n  0: person\n  1: dog\n# exported by hand\n")
    out["text"] = d / "notes.pt"
    with zipfile.ZipFile(d / "archive.pt", "w") as zf:
        zf.writestr("images/a.txt", "not a model")
    out["zip"] = d / "archive.pt"
    return out


# --- good checkpoints ----------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["best", "last", "saved"])
def test_detection_checkpoint_facts(ckpts, key):
    path = ckpts[key]
    info = inspect_checkpoint(path)
    assert isinstance(info, ModelInfo)
    assert info.task == "detect"
    assert info.class_names == NAMES
    assert info.num_classes == 3
    assert info.size_bytes == path.stat().st_size
    assert info.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert info.architecture == "yolov8n"
    assert 2_000_000 < info.parameters < 4_000_000  # yolov8n with 3 classes: ~3.0M
    json.dumps(info.as_dict())  # JSON-safe all the way down
    assert info.as_dict()["class_names"] == list(NAMES)


def test_trained_checkpoint_carries_training_facts(ckpts):
    import ultralytics

    for key in ("best", "last"):
        info = inspect_checkpoint(ckpts[key])
        assert info.imgsz == 320
        assert info.ultralytics_version == ultralytics.__version__
        assert info.train_args == {"task": "detect", "model": "yolov8n.yaml", "data": "/home/u/shapes/data.yaml",
                                   "epochs": 1, "imgsz": 320, "batch": 4}


def test_saved_untrained_model_uses_model_args(ckpts):
    info = inspect_checkpoint(ckpts["saved"])
    assert info.imgsz == 640  # ultralytics' default args that YOLO() attaches to a new model
    assert info.ultralytics_version is not None
    assert info.train_args["task"] == "detect"


def test_sha256_is_streamed_in_chunks(ckpts):
    path = ckpts["saved"]
    assert sha256_file(path, chunk=4096) == hashlib.sha256(path.read_bytes()).hexdigest()


def test_importing_models_does_not_import_torch_or_ultralytics():
    code = "import sys, annotator.checkpoints; print(sorted(m for m in ('torch', 'ultralytics') if m in sys.modules))"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         cwd=Path(__file__).resolve().parents[1])
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]"


# --- rejected files ------------------------------------------------------------------------------------


@pytest.mark.parametrize("key, expected", [
    ("segment", "is a segmentation model (task=segment); Auto Annotator needs a detection model (task=detect)"),
    ("classify", "is a classification model (task=classify)"),
    ("pose", "is a pose (keypoint) model (task=pose)"),
    ("obb", "is an oriented-bounding-box (OBB) model (task=obb)"),
    ("seg_claims_detect", "is a segmentation model (task=segment)"),
    ("no_names", "has no class names"),
    ("names_missing", "has no class names"),
    ("state_dict", "is a plain state_dict"),
    ("sd_under_model", "stores a state_dict under 'model'"),
    ("tensor", "holds a single tensor, not an ultralytics checkpoint"),
    ("other_dict", "is not an ultralytics checkpoint (it has no 'model' entry; keys: weights)"),
    ("bare_model", "holds a bare DetectionModel saved with torch.save(model)"),
    ("torchscript", "is a TorchScript export"),
    ("yolo_object", "refused: the file imports `ultralytics.models.yolo.model.YOLO`"),
    ("yolov5", "looks like a YOLOv5 model"),
    ("future", "needs 'ultralytics.nn.modules.head.FutureDetect'"),
    ("truncated", "is truncated or damaged"),
    ("empty", "is empty (0 bytes)"),
    ("random", "is not a PyTorch checkpoint"),
    ("text", "is a text file, not a PyTorch checkpoint"),
    ("zip", "is a zip archive, not a PyTorch checkpoint"),
])
def test_bad_files_raise_user_error_naming_the_file(ckpts, key, expected):
    path = ckpts[key]
    with pytest.raises(UserError) as exc:
        inspect_checkpoint(path, display_name="My Upload.pt")
    msg = str(exc.value)
    assert msg.startswith("My Upload.pt "), msg
    assert expected in msg, msg
    assert str(path.parent) not in msg  # the user sees the name they uploaded, not our tmp path


def test_default_display_name_is_the_file_name(ckpts):
    with pytest.raises(UserError, match=r"^segment\.pt is a segmentation model"):
        inspect_checkpoint(ckpts["segment"])


def test_missing_file(tmp_path):
    with pytest.raises(UserError, match="nothere.pt: no such model file"):
        inspect_checkpoint(tmp_path / "nothere.pt")


# --- class mapping -------------------------------------------------------------------------------------

PROJECT = ["Person", "car", "traffic light", "Dog"]


def test_match_classes_ignores_case_and_whitespace():
    model = ["person", "  CAR ", "traffic  light", "bicycle", "dog"]
    assert match_classes(model, PROJECT) == {0: 0, 1: 1, 2: 2, 3: None, 4: 3}


def test_match_classes_edge_cases():
    assert match_classes([], PROJECT) == {}
    assert match_classes(["a", "b"], []) == {0: None, 1: None}
    assert match_classes(["x", "X"], ["y", "x"]) == {0: 1, 1: 1}  # two model classes may feed one project class


def test_overrides_by_index_and_name():
    model = ["person", "bike", "doggo", "car"]
    mapping = match_classes(model, PROJECT)
    assert mapping == {0: 0, 1: None, 2: None, 3: 1}
    new = apply_overrides(mapping, {1: "CAR", "doggo": 3, "2": "dog"}, PROJECT, model_names=model)
    assert new == {0: 0, 1: 1, 2: 3, 3: 1}
    assert mapping == {0: 0, 1: None, 2: None, 3: 1}  # the input is not modified


def test_overrides_skip_and_json_style_keys():
    model = ["person", "car"]
    mapping = match_classes(model, PROJECT)
    assert apply_overrides(mapping, {"0": None, " CAR ": "skip"}, PROJECT, model_names=model) == {0: None, 1: None}
    assert apply_overrides(mapping, {1: "Skip"}, PROJECT) == {0: 0, 1: None}
    assert apply_overrides(mapping, {1: ""}, PROJECT) == {0: 0, 1: None}
    assert apply_overrides(mapping, {}, PROJECT) == mapping


def test_overrides_unknown_names_are_reported_together():
    model = ["person", "car"]
    mapping = match_classes(model, PROJECT)
    with pytest.raises(UserError) as exc:
        apply_overrides(mapping, {"truck": "car", 0: "pedestrian", 1: "Dgo"}, PROJECT, model_names=model)
    msg = str(exc.value)
    assert "'truck'" in msg and "'pedestrian'" in msg and "'Dgo'" in msg
    assert "unknown model class" in msg and "unknown project class" in msg


@pytest.mark.parametrize("overrides", [{5: 0}, {0: 4}, {0: -1}, {0: True}, {"7": "car"}])
def test_overrides_out_of_range_indices(overrides):
    with pytest.raises(UserError, match="Class mapping: unknown"):
        apply_overrides({0: 0, 1: None}, overrides, PROJECT, model_names=["person", "bike"])
