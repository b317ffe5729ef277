"""A .pt runs no code of its own when it is checked or registered: every global its pickle names is read
from the opcodes and checked against what a detection checkpoint needs, before torch.load sees the file.

Each payload would leave a marker file behind if it ran; the marker must never appear. Real checkpoints of
every detection family ultralytics builds from yaml must still pass."""

from __future__ import annotations

import builtins
import io
import os
import pickle
import subprocess
import zipfile
from pathlib import Path

import pytest

from annotator.checkpoints import UnsafeCheckpoint, check_file, check_globals, inspect_checkpoint, pickle_globals
from annotator.types import UserError

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")

NAMES = {0: "person", 1: "car", 2: "dog"}


class Payload:
    """Calls ``call(*args)`` when unpickled: what a hostile checkpoint carries."""

    def __init__(self, call, *args):
        self.call, self.args = call, args

    def __reduce__(self):
        return (self.call, self.args)


def _detector(yaml: str = "yolov8n.yaml"):
    from ultralytics import YOLO

    model = YOLO(yaml, verbose=False).model
    model.names = dict(NAMES)
    return model


@pytest.fixture(scope="module")
def detector():
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _detector()
    finally:
        torch.set_num_threads(threads)


def _save(obj, path: Path, **kw) -> Path:
    import torch

    torch.save(obj, path, **kw)
    return path


def _payloads(marker: Path) -> dict[str, tuple[object, str]]:
    """name -> (payload object, the global the refusal must name)."""
    return {
        "os.system": (Payload(os.system, f"touch {marker}"), "posix.system"),
        "builtins.eval": (Payload(builtins.eval, f"open({str(marker)!r}, 'w').close()"), "builtins.eval"),
        "subprocess.Popen": (Payload(subprocess.Popen, ["touch", str(marker)]), "subprocess.Popen"),
        "builtins.exec": (Payload(builtins.exec, f"open({str(marker)!r}, 'w').close()"), "builtins.exec"),
    }


@pytest.mark.parametrize("kind", ["os.system", "builtins.eval", "subprocess.Popen", "builtins.exec"])
@pytest.mark.parametrize("where", ["beside the model", "nested in train_args", "an attribute of a layer",
                                   "alone", "protocol 4", "legacy format"])
def test_a_payload_is_refused_before_any_of_it_runs(detector, tmp_path, kind, where):
    import copy

    marker = tmp_path / "ran"
    payload, named = _payloads(marker)[kind]
    path = tmp_path / "evil.pt"
    if where == "beside the model":
        _save({"model": detector, "epoch": 1, "x": payload}, path)
    elif where == "nested in train_args":
        _save({"model": detector, "train_args": {"task": "detect", "extra": [{"deep": (1, payload)}]}}, path)
    elif where == "an attribute of a layer":
        model = copy.deepcopy(detector)
        model.model[-1].hook = payload  # a __reduce__ inside a nested object
        _save({"model": model}, path)
    elif where == "alone":
        _save(payload, path)
    elif where == "protocol 4":  # names through STACK_GLOBAL and the memo
        _save({"model": detector, "x": payload}, path, pickle_protocol=4)
    else:  # torch's pre-1.6 format: a row of pickles, not a zip
        _save({"model": detector, "x": payload}, path, _use_new_zipfile_serialization=False)
    with pytest.raises(UnsafeCheckpoint) as exc:
        inspect_checkpoint(path, display_name="upload.pt")
    msg = str(exc.value)
    assert msg.startswith("upload.pt refused: the file imports") and f"`{named}`" in msg, msg
    assert "ANNOTATOR_TRUST_ALL_CHECKPOINTS=1" in msg
    assert not marker.exists(), "the payload ran"


def test_registering_a_payload_stores_nothing(services, project, detector, tmp_path):
    marker = tmp_path / "ran"
    path = _save({"model": detector, "x": Payload(os.system, f"touch {marker}")}, tmp_path / "evil.pt")
    with pytest.raises(UserError, match=r"evil\.pt refused: the file imports `posix\.system`"):
        services.models.add_model(project, path)
    assert not marker.exists()
    assert services.models.list_models(project) == []
    assert not list(services.settings.project_dir(project.id).glob("models/*"))


def test_a_computed_import_name_is_refused(tmp_path):
    """STACK_GLOBAL on a value the pickle computes (here str('posix'), built by a REDUCE): the name cannot be
    read without running the pickle, so the file is refused."""
    body = (b"\x80\x04"
            + b"\x8c\x08builtins\x8c\x03str\x93"  # builtins.str (allowed)
            + b"\x8c\x05posix\x85R"  # str('posix'): a value computed at load time
            + b"\x8c\x06system\x93"  # STACK_GLOBAL of it and 'system'
            + b"\x8c\x07touch x\x85R.")
    path = tmp_path / "computed.pt"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("computed/data.pkl", body)
        zf.writestr("computed/version", "3\n")
    with pytest.raises(UnsafeCheckpoint, match="computes the name of something it imports"):
        check_file(path)


@pytest.mark.parametrize("damage", ["cut", "garbage"])
def test_a_payload_before_damage_is_refused_not_passed_on(tmp_path, damage):
    """A pickle that cannot be read to its end still runs everything before the damage when loaded: a
    payload there must be refused, not handed to torch.load as "just a damaged file"."""
    marker = tmp_path / "ran"
    head = pickle.dumps(Payload(os.system, f"touch {marker}"), protocol=2)[:-1]  # the REDUCE, without STOP
    body = head + (b"" if damage == "cut" else b"\xff\xfe garbage")
    for name, data in (("legacy.pt", body), ("zip.pt", None)):
        path = tmp_path / name
        if data is None:
            with zipfile.ZipFile(path, "w") as zf:
                zf.writestr("ckpt/data.pkl", body)
        else:
            path.write_bytes(data)
        with pytest.raises(UnsafeCheckpoint, match="imports `posix.system`"):
            inspect_checkpoint(path)
    assert not marker.exists()


def test_two_members_of_one_name_are_refused(detector, tmp_path):
    good = _save({"model": detector}, tmp_path / "good.pt")
    twin = tmp_path / "twin.pt"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(twin, "w") as dst:
        for info in src.infolist():
            dst.writestr(info, src.read(info))
        data = next(n for n in src.namelist() if n.endswith("data.pkl"))
        with pytest.warns(UserWarning):  # zipfile's own "Duplicate name"
            dst.writestr(data, pickle.dumps(Payload(os.system, "true")))
    with pytest.raises(UnsafeCheckpoint, match="two entries of the same name"):
        check_file(twin)


def test_trusting_every_checkpoint_skips_the_refusal_and_says_so(detector, tmp_path):
    path = _save({"model": detector, "x": Payload(os.system, "true")}, tmp_path / "evil.pt")
    check_file(path, trust_all=True)  # no refusal (the caller chose to trust it; nothing is loaded here)
    with pytest.raises(UnsafeCheckpoint):
        check_file(path)


def test_the_allow_list_reads_python2_names_and_rejects_functions_of_allowed_packages():
    assert check_globals(["__builtin__.set", "collections.OrderedDict", "torch._utils._rebuild_tensor_v2",
                          "torch.HalfStorage", "torch.float16", "torch.nn.modules.conv.Conv2d",
                          "ultralytics.nn.tasks.DetectionModel", "ultralytics.nn.modules.conv.Conv",
                          "pathlib.PosixPath", "ultralytics.yolo.utils.IterableSimpleNamespace"]) == []
    refused = ["torch.load", "torch.storage._load_from_bytes", "ultralytics.nn.tasks.torch_safe_load",
               "builtins.getattr", "torch.nn.functional.relu", "ultralytics.utils.checks.check_requirements"]
    assert check_globals(refused + ["__builtin__.eval"]) == sorted(refused + ["builtins.eval"])  # as imported


@pytest.mark.slow
@pytest.mark.parametrize("yaml", ["yolov5n.yaml", "yolov8n.yaml", "yolov9t.yaml", "yolov10n.yaml", "yolo11n.yaml"])
def test_real_detection_checkpoints_of_every_family_still_register(services, project, tmp_path, yaml):
    """YOLOv5u, v8, v9, v10 and 11 detection models built from ultralytics' yamls, saved as ultralytics saves
    a trained model (protocol 2) and with protocol 4: nothing they import is refused."""
    import torch
    from ultralytics import __version__

    model = _detector(yaml).half()
    for n, protocol in enumerate((2, 4)):
        path = tmp_path / f"{Path(yaml).stem}-{protocol}.pt"
        torch.save({"epoch": -1, "model": model, "ema": None, "updates": None, "optimizer": None,
                    "train_args": {"task": "detect", "imgsz": 320, "model": yaml}, "version": __version__,
                    "date": "2026-01-01T00:00:00"}, path, pickle_protocol=protocol)
        assert check_globals(pickle_globals(path)) == []
        if n == 0:
            m = services.models.add_model(project, path, name=Path(yaml).stem)
            assert m.class_names == ("person", "car", "dog") or list(m.class_names) == ["person", "car", "dog"]


def test_pickle_globals_reads_without_importing(tmp_path):
    """The scan imports nothing the file names: a module that does not exist is simply reported."""
    body = b"\x80\x02cno_such_mod\nrun_it\n)R."  # GLOBAL, EMPTY_TUPLE, REDUCE, STOP
    path = tmp_path / "legacy.pt"
    buf = io.BytesIO()
    for part in (pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2), pickle.dumps(1001, protocol=2),
                 pickle.dumps({}, protocol=2), body, pickle.dumps([], protocol=2)):
        buf.write(part)
    path.write_bytes(buf.getvalue())
    assert "no_such_mod.run_it" in pickle_globals(path)
    assert check_globals(pickle_globals(path)) == ["no_such_mod.run_it"]
