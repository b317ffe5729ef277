"""Fine-tuning for real, offline: generated shape scenes with exact boxes, a real worker process and the
app-side monitor, 1-2 epochs at imgsz 64. Also cancel mid-training, the CUDA out-of-memory fallback
(simulated), the refusals, and reconciliation of a training job whose worker vanished."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from annotator import checkpoints
from annotator.demo import scenes
from annotator.services import Services
from annotator.settings import Settings
from annotator.types import UserError

from ..support import wait_for_job, worker_world

pytestmark = [pytest.mark.slow]

IMGSZ = 64


def _scenes(services: Services, tmp_path: Path, n: int, approve: int | None = None, first_seed: int = 60_000):
    """A 'Shapes' project with n scenes (256x192) whose true boxes are stored; the first ``approve`` approved."""
    folder = tmp_path / f"scenes-{first_seed}"
    truth = scenes.write_scenes(folder, range(first_seed, first_seed + n), 256, 192, name="scene_{i:03d}.jpg")
    p = services.ctx.store.find_project("Shapes") or services.projects.create_project("Shapes", list(scenes.CLASSES))
    services.images.add_images(p, [(folder, "scenes")], dataset="scenes")
    images = [i for i in services.images.list_images(p, page_size=500).images if i.rel_path in truth]
    services.ctx.store.insert_boxes([(im.id, dataclasses.replace(b, created_by="ann"))
                                 for im in images for b in truth[im.rel_path]])
    chosen = images if approve is None else images[:approve]
    services.ctx.store.set_review_status([i.id for i in chosen], "approved", "ann")
    if not services.models.list_models(p):
        services.models.add_model(p, scenes.DEMO_MODEL_PATH, name="demo-shapes")
    return p, images


@pytest.fixture
def world(tmp_path):
    with worker_world(tmp_path, stale_after_s=20) as world:
        yield world


def _wait(services: Services, job_id: int, until, timeout: float = 240.0):
    return wait_for_job(services, job_id, until, timeout)


def _loads(path: Path) -> list[str]:
    from ultralytics import YOLO

    return list(YOLO(str(path), task="detect").names.values())


def test_fine_tune_registers_a_loadable_model_with_lineage_then_evaluate_and_reannotate(world, tmp_path):
    services, _ = world
    p, images = _scenes(services, tmp_path, 24, approve=20)
    services.splits.configure_splits(p, 75, 25, 0)
    job = services.training.start_training(p, base="demo-shapes", epochs=2, imgsz=IMGSZ, batch=8, onnx_check=False)
    assert job.kind == "train" and job.status == "queued" and job.total == 2
    snap = job.params["snapshot"]
    stored = [i.split for i in services.images.list_images(p, status="approved").images]
    assert snap["per_split"] == {"train": stored.count("train"), "val": stored.count("val")}
    assert snap["images"] == 20 and stored.count("val") >= 3 and len(snap["box_hash"]) == 64
    job = _wait(services, job.id, lambda j: not j.active)
    assert job.status == "succeeded", (job.error, job.log[-2000:])
    assert job.progress == 1.0 and job.done == 2
    epochs = services.training.training_view(job.id)["epochs"]  # the job_epochs rows, in order
    assert [e["epoch"] for e in epochs] == [1, 2]
    assert all(e["train/box_loss"] > 0 and 0 <= e["mAP50-95"] <= 1 for e in epochs)
    assert "epoch 2/2" in job.log and "speed on cpu" in job.log

    m = services.models.get_model(p, job.result["model_id"])
    parent = services.models.get_model(p, "demo-shapes")
    assert (m.source, m.parent_id, m.job_id, m.name) == ("trained", parent.id, job.id, f"demo-shapes-ft{job.id}")
    assert m.class_names == tuple(scenes.CLASSES) and m.params["imgsz"] == IMGSZ
    assert m.params["snapshot"]["box_hash"] == snap["box_hash"]
    assert m.params["train"]["epochs"] == 2 and m.params["train"]["base"] == "demo-shapes"
    trained_on = services.ctx.store.training_images(job.id)
    assert sorted(i for i, _ in trained_on) == sorted(i.id for i in images[:20])  # the exact data, reproducible
    assert 0 <= m.metrics["mAP50-95"] <= m.metrics["mAP50"] <= 1
    assert {r["class"] for r in m.metrics["per_class"]} <= set(scenes.CLASSES) and m.metrics["per_class"]
    assert m.metrics["speed"]["inference"] > 0 and m.metrics["speed"]["images"] >= 1
    assert m.metrics["onnx"]["ok"] is False and "not requested" in m.metrics["onnx"]["detail"]
    weights = services.models.model_file(m)
    assert weights.is_file() and checkpoints.inspect_checkpoint(weights).class_names == tuple(scenes.CLASSES)
    assert _loads(weights) == list(scenes.CLASSES)
    view = services.training.training_view(job.id)
    assert Path(view["plots"]["confusion_matrix"]).is_file() and Path(view["plots"]["pr_curve"]).is_file()
    jdir = services.settings.job_dir(job.id)
    assert (jdir / "run" / "results.csv").is_file() and (jdir / "run" / "args.yaml").is_file()
    data_yaml = (jdir / "dataset" / "data.yaml").read_text()
    assert str(tmp_path) not in data_yaml and "names" in data_yaml

    # The training checked the approved labels with its new model (services/quality.py): a check_labels job
    # over the 20 approved images, its findings the Annotate tab's "Likely label errors" queue.
    check = services.jobs.get_job(job.result["label_check"])
    assert (check.kind, check.model_id, check.total) == ("check_labels", m.id, 20)
    check = _wait(services, check.id, lambda j: not j.active)
    assert check.status == "succeeded", check.error
    assert check.result["images"] == 20 and check.result["findings"] == len(services.quality.label_errors(p))

    # The new model and its parent, side by side, evaluated on the same val images by the training job.
    table = {r["name"]: r for r in services.training.compare_models(p)["models"]}
    assert table[m.name]["parent"] == "demo-shapes" and table[m.name]["on_current_val"]
    assert table["demo-shapes"]["evaluated"] and table["demo-shapes"]["val_box_hash"] == table[m.name]["val_box_hash"]
    # ... at the SAME image size (the parent scored at the child's, whatever its own), so one is marked better
    assert table["demo-shapes"]["evaluated_imgsz"] == table[m.name]["evaluated_imgsz"] == IMGSZ
    assert table[m.name]["vs_parent"] in ("better", "worse") and table["demo-shapes"]["vs_parent"] is None

    # Evaluate the uploaded model on the current approved val split, as a job.
    ev = _wait(services, services.training.start_evaluation(p, "demo-shapes", imgsz=IMGSZ).id, lambda j: not j.active)
    assert ev.status == "succeeded", ev.error
    row = {r["name"]: r for r in services.training.compare_models(p)["models"]}["demo-shapes"]
    assert row["on_current_val"] and row["mAP50"] == ev.result["metrics"]["mAP50"]

    # One click: re-annotate the not-yet-approved images with the new model.
    ann = services.annotation.start_annotation(p, m.name)
    assert ann.model_id == m.id and ann.total == 4
    ann = _wait(services, ann.id, lambda j: not j.active)
    assert ann.status == "succeeded", ann.error


def test_cancel_mid_training_keeps_a_usable_best_pt(world, tmp_path):
    services, _ = world
    p, _ = _scenes(services, tmp_path, 16)
    services.splits.configure_splits(p, 75, 25, 0)
    job = services.training.start_training(p, base="yolov8n.yaml", epochs=40, imgsz=IMGSZ, batch=4, onnx_check=False,
                               name="cut-short")
    _wait(services, job.id, lambda j: len(services.ctx.store.job_epochs(j.id)) >= 1)
    services.jobs.cancel_job(job.id)
    job = _wait(services, job.id, lambda j: not j.active)
    assert job.status == "cancelled", job.error
    finished = len(services.ctx.store.job_epochs(job.id))
    assert 1 <= finished < 40 and "cancel requested" in job.log
    m = services.models.get_model(p, "cut-short")
    assert m.parent_id is None and m.metrics["cancelled"] and m.metrics["epochs_done"] == finished
    assert _loads(services.models.model_file(m)) == list(scenes.CLASSES)
    assert (services.settings.job_dir(job.id) / "run" / "weights" / "best.pt").is_file()


def test_cuda_out_of_memory_halves_the_batch_and_retries(services, tmp_path):
    """In-process run with a fake CUDA OOM for any batch above 2; the real training then runs at 2."""
    import torch
    from huey import MemoryHuey

    from jobs import tasks
    from jobs.protocol import JobChannel
    from jobs.train import run_training, ultralytics_train

    huey = MemoryHuey("oom-test")
    tasks.register(huey)
    services.ctx._queue = huey
    p, _ = _scenes(services, tmp_path, 12)
    services.splits.configure_splits(p, 75, 25, 0)
    job = services.training.start_training(p, base="yolov8n.yaml", epochs=1, imgsz=IMGSZ, batch=8, onnx_check=False)
    payload = huey.dequeue().args[0]
    tried = []

    nbs = []

    def flaky(base, args, callbacks):
        tried.append(args["batch"])
        nbs.append(args["nbs"])
        if args["batch"] > 2:
            raise torch.OutOfMemoryError(f"CUDA out of memory. Tried to allocate 2.00 GiB (batch {args['batch']})")
        return ultralytics_train(base, args, callbacks)

    channel = JobChannel(huey, job.id, 0)
    assert run_training(channel, payload, train_fn=flaky) == "succeeded"
    assert tried == [8, 4, 2]
    assert nbs == [8, 8, 8]  # a step per batch of 8 (not ultralytics' 64: 9 images made one step per epoch)
    logs = []
    while (line := channel.pop_log(len(logs))) is not None:
        logs.append(line)
    text = "\n".join(logs)
    assert "CUDA out of memory at batch 8: retrying with batch 4" in text
    assert "CUDA out of memory at batch 4: retrying with batch 2" in text
    done = channel.read_done()
    assert done["status"] == "succeeded" and done["result"]["batch"] == 2 and done["result"]["best"]

    tried.clear()
    job2 = services.training.start_training(p, base="yolov8n.yaml", epochs=1, imgsz=IMGSZ, batch=2, onnx_check=False)
    payload = huey.dequeue().args[0]
    assert run_training(JobChannel(huey, job2.id, 0), payload, train_fn=lambda b, a, c: flaky(b, {**a, "batch": 9}, c)) \
        == "failed"
    assert "out of memory even at batch 2" in JobChannel(huey, job2.id, 0).read_done()["error"]


def test_multi_gpu_training_arguments_reach_ultralytics(services, tmp_path, monkeypatch):
    """device "0,1" (ultralytics' own DDP on a host with two GPUs) travels unchanged from start_training to
    ultralytics' train(); ultralytics then trains in its own processes, so the worker's trainer holds no
    validation: best.pt is validated and timed on the first GPU. Run on CPU: the GPUs are stood in for."""
    from huey import MemoryHuey

    import jobs.train as train_mod
    from jobs import tasks
    from jobs.protocol import JobChannel
    from jobs.train import run_training, ultralytics_train

    huey = MemoryHuey("ddp-test")
    tasks.register(huey)
    services.ctx._queue = huey
    p, _ = _scenes(services, tmp_path, 12)
    services.splits.configure_splits(p, 75, 25, 0)
    job = services.training.start_training(p, base="yolov8n.yaml", epochs=1, imgsz=IMGSZ, batch=8, device="0,1",
                                           onnx_check=False)
    payload = huey.dequeue().args[0]
    assert payload["train"]["device"] == "0,1"
    asked = {}

    def ddp_parent(base, args, callbacks):  # what model.train(device="0,1") leaves in the calling process
        asked["device"] = args["device"]
        trainer = ultralytics_train(base, {**args, "device": "cpu"}, callbacks)
        trainer.validator = None
        return trainer

    assert train_mod.first_device("0,1") == "0" and train_mod.multi_gpu("0,1") and not train_mod.multi_gpu("0")
    firsts = []
    monkeypatch.setattr(train_mod, "first_device", lambda d: firsts.append(d) or "cpu")  # "GPU 0" of "0,1"
    channel = JobChannel(huey, job.id, 0)
    assert run_training(channel, payload, train_fn=ddp_parent) == "succeeded"
    assert asked["device"] == "0,1" and firsts and set(firsts) == {"0,1"}
    done = channel.read_done()
    assert done["result"]["metrics"]["mAP50-95"] is not None and done["result"]["speed"]["images"] > 0
    logs = []
    while (line := channel.pop_log(len(logs))) is not None:
        logs.append(line)
    assert "multi-GPU run (0,1): validating best.pt on GPU" in "\n".join(logs)


def test_refusals_name_the_problem(services, tmp_path):
    p, images = _scenes(services, tmp_path, 6, approve=0)
    with pytest.raises(UserError, match="has no approved images"):
        services.training.start_training(p, epochs=1)
    services.ctx.store.set_review_status([i.id for i in images], "approved", "ann")
    services.splits.configure_splits(p, 100, 0, 0, reassign=True)
    with pytest.raises(UserError, match=r"The val split has none of the 6 approved images \(train 6, val 0"):
        services.training.start_training(p, epochs=1)
    with pytest.raises(UserError, match="has no approved images in the val split"):
        services.training.start_evaluation(p, "demo-shapes")
    services.splits.configure_splits(p, 0, 1, 0, reassign=True)
    with pytest.raises(UserError, match="The train split has none"):
        services.training.start_training(p, epochs=1)
    services.splits.configure_splits(p, 50, 50, 0, reassign=True)
    for bad, match in [({"imgsz": 100}, "multiple of 32"), ({"epochs": -3}, "epochs must be between 1"),
                       ({"batch": "lots"}, "batch must be 'auto' or a whole number"),
                       ({"optimizer": "Adagrad"}, "optimizer must be one of"),
                       ({"lr0": 0.01}, "optimizer 'auto' chooses its own learning rate"),
                       ({"lr0": 5, "optimizer": "SGD"}, r"learning rate must be in \(0, 1\]"),
                       ({"device": "gpu"}, "device must be auto"),
                       ({"base": "resnet50.yaml"}, "not an architecture ultralytics ships"),
                       ({"base": "missing-model"}, "no model 'missing-model'"),
                       ({"name": "demo-shapes"}, "already registered"),
                       ({"datasets": ["other"]}, "no dataset named 'other'")]:
        with pytest.raises(UserError, match=match):
            services.training.start_training(p, **{"epochs": 1, **bad})
    for img in images:  # a person deletes every box in the editor
        services.review.save_image(p, img.id, [], services.review.load_image(p, img.id)["version"], user="ann")
    with pytest.raises(UserError, match="have no boxes: training needs at least one labelled object"):
        services.training.start_training(p, epochs=1)
    assert [j.kind for j in services.jobs.list_jobs(p)] == []  # nothing was queued by a refusal


def test_cli_train_and_evaluate_wait(tmp_path):
    """`python -m annotator train ... --wait` and `evaluate`, as a user runs them (LocalBackend + a worker)."""
    import json

    from ..support import run_cli

    data = tmp_path / "data"
    services = Services.open(Settings.from_env({"ANNOTATOR_DATA_DIR": str(data)}))
    try:
        p, _ = _scenes(services, tmp_path, 12)
        services.splits.configure_splits(p, 75, 25, 0)
    finally:
        services.close()
    bad = run_cli(data, "train", "Shapes", "--imgsz", "100", check=False)
    assert bad.returncode == 2 and "multiple of 32" in bad.stderr
    done = run_cli(data, "train", "Shapes", "--base", "yolov8n.yaml", "--epochs", "1", "--imgsz", str(IMGSZ),
                   "--batch", "4", "--device", "cpu", "--no-onnx", "--name", "cli-model", "--wait", "--json")
    job = json.loads(done.stdout)
    assert job["status"] == "succeeded" and job["result"]["model"] == "cli-model"
    assert "epoch 1/1" in done.stderr
    ev = run_cli(data, "evaluate", "Shapes", "--model", "cli-model", "--wait")
    assert "on the approved val split: mAP50-95" in ev.stdout and "circle" in ev.stdout


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")  # ultralytics' own tracing, not ours
def test_onnx_export_check_exports_a_valid_model_or_says_why(tmp_path, monkeypatch):
    import importlib.util

    import onnx

    from annotator.demo import scenes
    from jobs.train import onnx_check

    weights = tmp_path / "best.pt"
    weights.write_bytes(scenes.DEMO_MODEL_PATH.read_bytes())
    res = onnx_check(weights, 64, tmp_path)
    assert res["ok"] is True and res["file"] == "best.onnx", res
    onnx.checker.check_model(str(tmp_path / "best.onnx"))
    names = [o.name for o in onnx.load(str(tmp_path / "best.onnx")).graph.output]
    assert names  # a real graph with outputs

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "onnx" else real(n, *a))
    missing = onnx_check(weights, 64, tmp_path / "other")
    assert missing["ok"] is False and "onnx package is not installed" in missing["detail"]


def test_nominal_batch_gives_small_sets_enough_optimizer_steps():
    from jobs.train import nominal_batch

    assert nominal_batch(16, 60) == 16  # a fixed batch: one optimizer step per batch
    assert nominal_batch(-1, 60) == 15  # automatic batch: a step at least every quarter of the set
    assert nominal_batch(-1, 10_000) == 64 and nominal_batch(-1, 2) == 1


def test_replay_mixes_in_other_datasets_and_each_dataset_is_scored_against_the_base(world, tmp_path):
    """Forgetting made visible: a round on the 'new' dataset with replay 0.5 takes all of 'old''s val images
    and half as many of its train images as 'new' has; the job scores the new model and its base on each
    dataset's val images, the models table shows both, and a dataset where the model scores lower than
    its base is named in worse_on. Without replay only the chosen dataset goes in; replay out of 0-1 is
    refused naming the value."""
    services, _ = world
    p, old = _scenes(services, tmp_path, 16, first_seed=61_000)
    folder = tmp_path / "new"
    truth = scenes.write_scenes(folder, range(62_000, 62_016), 256, 192, name="new_{i:03d}.jpg")
    services.images.add_images(p, [folder], dataset="new")
    new = [i for i in services.images.list_images(p, dataset="new", page_size=100).images]
    services.ctx.store.insert_boxes([(im.id, b) for im in new for b in truth[im.rel_path]])
    services.ctx.store.set_review_status([i.id for i in new], "approved", "ann")
    services.splits.configure_splits(p, 75, 25, 0)
    splits = {i.id: i.split for i in services.images.list_images(p, status="approved", page_size=100).images}
    old_val = sum(1 for i in old if splits[i.id] == "val")
    new_train = sum(1 for i in new if splits[i.id] == "train")

    with pytest.raises(UserError, match="replay must be a share between 0 and 1, got 1.5"):
        services.training.start_training(p, datasets=["new"], replay=1.5, epochs=1, imgsz=IMGSZ)
    plain = services.training.start_training(p, base="demo-shapes", datasets=["new"], epochs=1, imgsz=IMGSZ,
                                             batch=8, onnx_check=False)
    assert plain.params["snapshot"]["images"] == 16 and plain.params["replayed"] is None
    services.jobs.cancel_job(plain.id)
    _wait(services, plain.id, lambda j: not j.active)

    job = services.training.start_training(p, base="demo-shapes", datasets=["new"], replay=0.5, epochs=1,
                                           imgsz=IMGSZ, batch=8, onnx_check=False)
    assert job.params["replayed"] == {"train": round(0.5 * new_train), "val": old_val}
    assert job.params["snapshot"]["images"] == 16 + round(0.5 * new_train) + old_val
    assert f"replay: {round(0.5 * new_train)} train and {old_val} val image(s)" in job.log
    job = _wait(services, job.id, lambda j: not j.active)
    assert job.status == "succeeded", (job.error, job.log[-2000:])
    m = services.models.get_model(p, job.result["model_id"])
    rows = {r["dataset"]: r for r in m.metrics["per_dataset"]}
    assert set(rows) == {"scenes", "new"} and rows["scenes"]["val_images"] == old_val
    assert all(0 <= r["model"]["mAP50-95"] <= 1 and 0 <= r["parent"]["mAP50-95"] <= 1 for r in rows.values())
    assert "dataset 'scenes'" in job.log and "(base " in job.log
    row = {r["name"]: r for r in services.training.compare_models(p)["models"]}[m.name]
    got = {d["dataset"]: d for d in row["per_dataset"]}
    for ds in ("scenes", "new"):
        assert got[ds]["change"] == round(rows[ds]["model"]["mAP50-95"] - rows[ds]["parent"]["mAP50-95"], 5)
    assert row["worse_on"] == [d for d in ("new", "scenes") if got[d]["change"] < -0.01]
